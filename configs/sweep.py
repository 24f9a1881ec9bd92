r"""The paper's experiment: subject-wise CV x data fractions x {pre-trained, random} x protocol.

  python main.py --config=configs/pretrain.py:tiny --workdir=runs/tiny
  python main.py --config=configs/sweep.py:tiny --workdir=runs/tiny \
      --config.init_from=runs/tiny/pretrain/checkpoints

  python main.py --config=configs/sweep.py --workdir=runs/paper \
      --config.init_from=runs/pretrain/pretrain/checkpoints \
      --config.datasets='("knee_moment",)' --config.finetune.data.manual_dir=/data/knee_moment

Rerunning the same command skips the cells already done. Results: <workdir>/report/summary.md,
results.csv and <dataset>_data_efficiency.png / <dataset>_scatter.png. Every cell copies
``finetune`` (configs/finetune.py) and sets data set, fold, fraction, init and protocol; all cells
train ``finetune.train.steps`` steps. ``init_from`` is required while 'pretrained' is in ``inits``
(``--config.inits='("random",)'`` runs the baseline alone).
"""

import ml_collections

from configs import common, finetune


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = common.parse_arg(arg)
  tiny = size == 'tiny'
  c = ml_collections.ConfigDict()
  c.stage = 'sweep'
  c.datasets = ('synthetic_running_valr', 'synthetic_walking_grf', 'synthetic_walking_kfm')
  c.fractions = (0.25, 1.0) if tiny else (0.05, 0.1, 0.25, 0.5, 1.0)
  c.inits = ('pretrained', 'random')
  c.protocols = ('linear_probe', 'full')
  c.num_folds = 5
  c.folds = ()      # which folds to run; () = all num_folds (a subset gives a quick look)
  c.fold_seed = 0
  c.fraction_seed = 0
  c.init_from = ''  # pre-training checkpoint dir; required when 'pretrained' is in inits
  c.finetune = finetune.get_config(size)
  return c
