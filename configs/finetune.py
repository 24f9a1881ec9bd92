r"""Supervised fine-tuning (or training from scratch) on a labelled set, one CV fold.

  python main.py --config=configs/finetune.py:tiny --workdir=runs/ft \
      --config.init_from=runs/pretrain_tiny/pretrain/checkpoints
  python main.py --config=configs/finetune.py --workdir=runs/ft_random \
      --config.data.dataset=synthetic_walking_kfm --config.protocol=linear_probe

init_from='' trains from random init. With a checkpoint, the encoders (params and BatchNorm
statistics) are restored and a fresh head is built; the encoder architecture comes from the
checkpoint.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = common.parse_arg(arg)
  tiny = size == 'tiny'
  c = ml_collections.ConfigDict()
  c.stage = 'finetune'
  c.seed = 0
  c.data_dir = ''
  c.data = common.data_config('synthetic_walking_grf', size, split='train')
  c.init_from = ''             # pre-training checkpoint dir, '' = random init
  c.protocol = 'full'          # 'full' fine-tune | 'linear_probe' (encoder frozen)
  # Input normalisation: 'auto' = the pre-trained encoder's statistics when init_from is set
  # (its input contract), else this fold's training subjects; or 'checkpoint' / 'train_subjects'.
  c.input_norm = 'auto'
  c.split = ml_collections.ConfigDict({
      'num_folds': 5,
      'fold': 0,
      'fold_seed': 0,
      'fraction': 1.0,         # of the training windows, nested across fractions
      'fraction_seed': 0,
  })
  c.model = common.model_config(size)
  c.augment = common.augment_config()
  c.optimizer = common.optimizer_config(learning_rate=1e-3)
  c.train = common.train_config(steps=60 if tiny else 1000, batch_size=32 if tiny else 256)
  c.train.checkpoint_every = c.train.steps
  c.train.max_to_keep = 1
  return c
