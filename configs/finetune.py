r"""Supervised fine-tuning (or training from scratch) on a labelled set, one CV fold.

  python main.py --config=configs/finetune.py:tiny --workdir=runs/ft \
      --config.init_from=runs/pretrain_tiny/pretrain/checkpoints
  python main.py --config=configs/finetune.py --workdir=runs/ft_random \
      --config.data.dataset=synthetic_walking_kfm --config.protocol=linear_probe

init_from='' trains from random init. With a checkpoint, the encoder (params and BatchNorm
statistics) is restored and a fresh head is built; the encoder architecture comes from the
checkpoint. The default is the reference protocol: a single Dense head on the concatenated
per-site embeddings, 'full_from_probe' (a linear probe whose encoder BatchNorm adapts, then the
whole network fine-tuned from it, each stage train.steps long), inputs normalised with the
fold's training subjects for both arms. ':default,two_encoder' is this project's first design
(MLP head, fresh-head 'full', the checkpoint's normalisation).
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
  })
  c.model = common.model_config(size, variant)
  c.augment = common.augment_config()
  c.optimizer = common.optimizer_config(learning_rate=1e-3)
  c.train = common.train_config(steps=60 if tiny else 1000, batch_size=32 if tiny else 256)
  c.train.max_to_keep = 1
  return c
