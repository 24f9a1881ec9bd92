r"""Self-supervised pre-training: acc vs gyr InfoNCE on an unlabelled corpus.

  python main.py --config=configs/pretrain.py:tiny --workdir=runs/pretrain_tiny
  python main.py --config=configs/pretrain.py --workdir=runs/pretrain \
      --config.optimizer.learning_rate=3e-4 --config.train.steps=10000

Checkpoints go to <workdir>/pretrain/checkpoints (Orbax); rerunning resumes from the latest.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = common.parse_arg(arg)
  tiny = size == 'tiny'
  c = ml_collections.ConfigDict()
  c.stage = 'pretrain'
  c.seed = 0
  c.data_dir = ''  # '' = <workdir>/tfds
  c.data = common.data_config('synthetic_movi', size, split='train')
  c.data.eval_split = 'validation'
  c.model = common.model_config(size)
  c.ssl = ml_collections.ConfigDict({
      'temperature': 0.1,
      'learnable_temperature': False,
      'negatives': 'global',   # 'global' (whole batch across devices) | 'local' (per device)
      'grouped': False,        # exclude the other sites of the same window from the negatives
  })
  c.augment = common.augment_config()
  c.optimizer = common.optimizer_config(learning_rate=1e-3 if tiny else 1e-4)
  c.train = common.train_config(steps=60 if tiny else 3000, batch_size=16 if tiny else 64)
  return c
