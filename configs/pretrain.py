r"""Self-supervised pre-training: acc vs gyr contrastive learning on an unlabelled corpus.

The default is the reference recipe (Tan et al. 2023): one ResNet shared by acc and gyr, projection
heads Dense-BatchNorm-ReLU-Dense, the reference NCE loss (tau 0.1), AdamW 1e-4, 20 % warm-up then
cosine decay. ':default,two_encoder' selects this project's first design instead.

  python main.py --config=configs/pretrain.py:tiny --workdir=runs/pretrain_tiny
  python main.py --config=configs/pretrain.py --workdir=runs/pretrain \
      --config.optimizer.learning_rate=3e-4 --config.train.steps=10000

Checkpoints go to <workdir>/pretrain/checkpoints (Orbax); rerunning resumes from the latest.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size, variant = common.parse_args(arg)
  tiny = size == 'tiny'
  c = ml_collections.ConfigDict()
  c.stage = 'pretrain'
  c.seed = 0
  c.data_dir = ''  # '' = <workdir>/tfds
  c.data = common.data_config('synthetic_movi', size, split='train')
  c.data.eval_split = 'validation'
  # A second unlabelled corpus pooled with this one ('' = none; configs/paper.py's 'ipol_windows'
  # variant adds the real IPOL walks): its imu_sites take data.imu_sites' names in order, its
  # subjects are renumbered after these, rate and window are data's.
  c.data.mix = ml_collections.ConfigDict({
      'dataset': '', 'size': size, 'options': {}, 'manual_dir': '', 'imu_sites': (),
      'split': 'train', 'eval_split': 'validation'})
  c.model = common.model_config(size, variant)
  c.ssl = ml_collections.ConfigDict({
      # 'reference_nce': acc -> gyr, negatives-only denominator (all pairs of the same window
      # masked out); 'info_nce': symmetric InfoNCE with the positive in the denominator.
      'loss': 'info_nce' if variant == 'two_encoder' else 'reference_nce',
      'temperature': 0.1,
      'learnable_temperature': False,
      'negatives': 'global',   # 'global' (whole batch across devices) | 'local' (per device)
      'grouped': False,        # info_nce: exclude the other sites of the same window
      # >0: the loss in column blocks of this many site-windows, memory ~ M x chunk instead of
      # M x M (M = global batch x sites); equal to the dense loss. 0: dense (faster when it fits).
      'chunk_size': 0,
  })
  c.augment = common.augment_config()
  c.optimizer = common.optimizer_config(learning_rate=1e-3 if tiny else 1e-4)
  c.train = common.train_config(steps=60 if tiny else 3000, batch_size=16 if tiny else 64)
  return c
