r"""The main job on the embedded synthetic data: prepare -> pre-train -> sweep -> results table.

  python main.py --config=configs/demo.py:tiny --workdir=runs/demo_tiny   # ~2 min on 2 cores
  python main.py --config=configs/demo.py --workdir=runs/demo             # `make demo`

The paper stage (configs/paper.py) sized for `make demo` on a 2-core CPU: the reference recipe
(shared encoder, reference NCE loss, linear head, linear probe then full_from_probe, per-fold
normalisation for both arms, within-subject r) with all five folds, but one pre-training at
100 Hz / 128 samples for the three tasks instead of one per task, the reference encoder with
[2, 2, 2, 2] blocks (the authors' December 2022 depth), two fractions and short schedules (200
pre-training steps, 30 fine-tuning steps per stage at batch 16): it shows the path and the
direction of the effect, not the paper's numbers (configs/paper.py:cpu is the longer run). Writes
<workdir>/report/ (summary.md, results.csv, headline.csv, efficiency.csv, plots). Rerunning
resumes: finished stages and cells are skipped.
"""

import ml_collections

from configs import common, paper


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = common.parse_arg(arg)
  tiny = size == 'tiny'
  c = paper.get_config(size)
  c.stage = 'demo'
  c.sweep.task_data = {}          # every task at the pre-training's 100 Hz / 128 samples
  c.sweep.seeds = (0,)
  if tiny:
    c.sweep.fractions = (1.0,)
    c.sweep.folds = (0,)
  else:
    paper.cpu_budget(c)           # [2, 2, 2, 2] blocks, batch 16, probe rate 1e-2
    c.pretrain.train.steps = 200
    c.pretrain.train.eval_every = 200
    c.pretrain.train.checkpoint_every = 50
    c.pretrain.train.max_to_keep = 2
    c.pretrain.train.log_every = 25
    c.sweep.fractions = (0.1, 1.0)
    c.sweep.finetune.train.steps = 30
    c.sweep.finetune.train.log_every = 30
  return c
