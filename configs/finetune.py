r"""Supervised fine-tuning (or training from scratch) on a labelled set, one CV fold.

  python main.py --config=configs/finetune.py:tiny --workdir=runs/ft \
      --config.init_from=runs/pretrain_tiny/pretrain/checkpoints
  python main.py --config=configs/finetune.py --workdir=runs/ft_random \
      --config.data.dataset=synthetic_walking_kfm --config.protocol=linear_probe

init_from='' trains from random init. With a checkpoint, the encoder (params and BatchNorm
statistics) is restored and a fresh head is built; the encoder architecture comes from the
checkpoint. The default is the reference protocol: a single Dense head on the concatenated
per-site embeddings, 'full_from_probe' (a linear probe whose encoder BatchNorm adapts, then the
whole network fine-tuned from it), inputs normalised with the fold's training subjects for both
arms. Each stage trains to a defined stopping point: up to train.epochs passes over its training
windows, validated every epoch on training subjects held out inside the fold
(split.validation_fraction), stopped after train.patience_epochs without improvement; the best
validated state is scored. 'tiny' trains train.steps with no validation subjects (the
plumbing). ':default,two_encoder' is this project's first design (MLP head, fresh-head 'full',
the checkpoint's normalisation).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size, variant = common.parse_args(arg)
  tiny = size == 'tiny'
  two = variant == 'two_encoder'
  c = ml_collections.ConfigDict()
  c.stage = 'finetune'
  c.seed = 0
  c.data_dir = ''
  c.data = common.data_config('synthetic_walking_grf', size, split='train')
  c.init_from = ''             # pre-training checkpoint dir, '' = random init
  # 'linear_probe' (only the head trains) | 'full_from_probe' (probe, then everything from it) |
  # 'full' (everything, fresh head).
  c.protocol = 'full' if two else 'full_from_probe'
  c.probe_from = ''            # full_from_probe: a linear-probe run to start from ('' = train one)
  c.linear_probe_bn_adapt = True  # the frozen encoder's BatchNorm statistics adapt (reference)
  # A linear probe with linear_probe_bn_adapt=False and no augmentation embeds the windows once
  # and trains the head on the embeddings (equal results, far fewer encoder passes).
  c.cache_embeddings = True
  c.linear_probe_learning_rate = 0.0  # > 0: the probe's peak rate (0 = optimizer.learning_rate)
  # Input normalisation: 'train_subjects' = refit on this fold's training subjects for both arms
  # (reference); 'checkpoint' = the pre-trained encoder's statistics; 'auto' = the checkpoint's
  # when init_from is set, else the training subjects'.
  c.input_norm = 'auto' if two else 'train_subjects'
  c.split = ml_collections.ConfigDict({
      'num_folds': 5,
      'fold': 0,
      'fold_seed': 0,
      'fraction': 1.0,         # of the training windows, nested across fractions
      'fraction_seed': 0,
      # Training subjects held out inside the fold for early stopping and model selection
      # (subject-wise; the same fraction of their windows as of the training windows); 0 =
      # none: the last step is scored (the reference has no validation subjects).
      'validation_fraction': 0.0 if tiny else 0.2,
      'validation_seed': 0,
      # (Not set here, so older runs keep their fingerprints:) 'unit': 'trial' splits the
      # trials of a one-subject set instead of subjects, a within-subject evaluation
      # (configs/objectives.py:cpu,real_running); a set of several subjects refuses it.
  })
  c.model = common.model_config(size, variant)
  # The random-init arm's backbone: 'resnet' (model.encoder) | 'transformer' (model.transformer,
  # the masked-reconstruction Transformer: mean-pooled tokens into the head, or a head per token
  # for a curve target). A pre-trained arm takes the backbone its checkpoint records.
  c.model.backbone = 'resnet'
  c.model.transformer = common.transformer_config(size)
  c.augment = common.augment_config()
  c.optimizer = common.optimizer_config(learning_rate=1e-3)
  c.train = common.train_config(steps=60 if tiny else 1000, batch_size=32 if tiny else 256)
  c.train.max_to_keep = 1
  # The budget in passes over the cell's training windows (its steps follow from its size;
  # 0 = train.steps for every cell), a validation every validate_every_epochs and a stop after
  # patience_epochs without a better validation loss (0 = run the whole budget); the state
  # with the best validation loss is the one scored and saved.
  c.train.epochs = 0.0 if tiny else 100.0
  c.train.validate_every_epochs = 1.0
  c.train.patience_epochs = 10.0
  return c
