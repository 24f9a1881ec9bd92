r"""The main job on the embedded synthetic data: prepare -> pre-train -> sweep -> results table.

  python main.py --config=configs/demo.py:tiny --workdir=runs/demo_tiny   # < 3 min on 2 cores
  python main.py --config=configs/demo.py --workdir=runs/demo             # `make demo`

Pre-trains on synthetic_movi, then fine-tunes on the three synthetic labelled sets from the
pre-trained encoder and from random init (subject-wise CV), and writes <workdir>/report/
(results.csv, summary.md, plots). Rerunning resumes: finished stages and cells are skipped.
"""

import ml_collections

from configs import common, pretrain, sweep


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = common.parse_arg(arg)
  tiny = size == 'tiny'
  c = ml_collections.ConfigDict()
  c.stage = 'demo'
  c.data_dir = ''  # '' = <workdir>/tfds, shared by both stages
  c.pretrain = pretrain.get_config(size)
  c.sweep = sweep.get_config(size)
  if tiny:
    c.sweep.fractions = (1.0,)
    c.sweep.protocols = ('full',)
    c.sweep.folds = (0,)
  else:
    # Sized for `make demo` on a 2-core CPU (12-13 min measured): the paper's encoder, short schedules,
    # three of the five folds, two data fractions, full fine-tuning only.
    c.pretrain.train.steps = 200
    c.pretrain.train.batch_size = 16
    c.pretrain.train.eval_every = 100
    c.pretrain.train.checkpoint_every = 50
    c.pretrain.train.log_every = 25
    c.pretrain.optimizer.learning_rate = 1e-3
    c.sweep.fractions = (0.1, 1.0)
    c.sweep.protocols = ('full',)
    c.sweep.folds = (0, 1, 2)
    c.sweep.finetune.train.steps = 100
    c.sweep.finetune.train.batch_size = 16
    c.sweep.finetune.train.log_every = 50
  return c
