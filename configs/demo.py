r"""The main job on the embedded synthetic data: released encoder -> sweep -> results table.

  python main.py --config=configs/demo.py --workdir=runs/demo             # `make demo`
  python main.py --config=configs/demo.py --workdir=runs/demo_scratch \
      --config.pretrain_from_scratch=True                                 # pre-train here too
  python main.py --config=configs/demo.py:tiny --workdir=runs/demo_tiny   # ~2 min on 2 cores

The paper stage (configs/paper.py) sized for `make demo` on a 2-core CPU: the reference recipe
(shared encoder, linear head, linear probe then full_from_probe, per-fold normalisation for both
arms, within-subject r) on the three synthetic tasks at their own rates and windows, folds 0-2
of the 5 subject-wise folds (``--config.sweep.folds="()"`` runs all five: 20 min instead of 8 idle),
fine-tuned from the released encoders weights/synthetic_movi_<rate>hz_<T> (pre-trained by
configs/paper.py:cpu; their model cards say how) against random init and the feature baseline
(ridge on hand features), all of the labels, each stage up to 30 epochs at batch 16 with early
stopping (patience 5 epochs) on validation subjects held out inside each training fold.
``pretrain_from_scratch=True`` pre-trains the three encoders here instead (200 steps each: the
path, not a useful encoder); 'tiny' always does, with a tiny encoder and every task at the tiny
data's rate. Writes <workdir>/report/ (summary.md, results.csv, headline.csv, efficiency.csv,
paper_comparison.md, plots). Rerunning resumes: finished stages and cells are skipped.
"""

import ml_collections

from configs import common, paper


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = common.parse_arg(arg)
  tiny = size == 'tiny'
  c = paper.get_config(size)
  c.stage = 'demo'
  c.sweep.seeds = (0,)
  if tiny:
    c.sweep.task_data = {}          # every task at the tiny pre-training's rate and window
    c.sweep.fractions = (1.0,)
    c.sweep.folds = (0,)
  else:
    paper.cpu_budget(c)           # [2, 2, 2, 2] blocks (the released encoders), batch 16
    c.pretrain_from_scratch = False
    c.pretrain.train.steps = 200  # only with --config.pretrain_from_scratch=True
    c.pretrain.train.eval_every = 200
    c.pretrain.train.checkpoint_every = 50
    c.pretrain.train.max_to_keep = 2
    c.pretrain.train.log_every = 25
    # Every arm trained to its stopping point (paper.cpu_budget: validation subjects, early
    # stopping) at a smaller budget, one fraction and three of the five folds, so that the demo
    # stays within 15 min on 2 cores (all five: 20 min idle); the data-efficiency curve and every
    # fold are the paper protocol's (configs/paper.py:cpu).
    c.sweep.fractions = (1.0,)
    c.sweep.folds = (0, 1, 2)
    c.sweep.finetune.train.epochs = 30.0
    c.sweep.finetune.train.patience_epochs = 5.0
  return c
