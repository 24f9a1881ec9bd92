r"""Pre-training budget curve: held-out retrieval and downstream Δr against pre-training steps.

  python main.py --config=configs/budget.py --workdir=/data/runs/budget \
      --config.pretrain_run=/data/runs/paper_cpu/pretrain_100hz_128 \
      --config.data_dir=/data/runs/paper_cpu/tfds

Uses the intermediate checkpoints a pre-training run kept (configs/paper.py:cpu keeps every 100
steps): for each, the sweep below with the pre-trained arm only, against one random-init sweep
(of the checkpoint's architecture) shared by all steps. Writes <workdir>/report/budget.csv and
budget_curve.png. The pre-training run's sample rate and window must be those of the data sets
(here 100 Hz / 128: peak KFM).
"""

import ml_collections

from configs import common, sweep


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size, variant = common.parse_args(arg)
  c = ml_collections.ConfigDict()
  c.stage = 'budget'
  c.data_dir = ''           # '' = <workdir>/tfds
  c.pretrain_run = ''       # a pre-training run directory (or its checkpoints dir)
  c.steps = ()              # which saved steps; () = all
  c.sweep = sweep.get_config(f'{size},{variant}')
  c.sweep.datasets = ('synthetic_walking_kfm',)
  c.sweep.fractions = (0.1, 1.0)
  c.sweep.seeds = (0,)
  if size != 'tiny':  # the fine-tuning of configs/paper.py:cpu (every arm to its stopping point)
    from configs import paper  # noqa: PLC0415

    c.sweep.finetune.train.epochs = paper.CPU_EPOCHS
    c.sweep.finetune.train.patience_epochs = paper.CPU_PATIENCE
    c.sweep.finetune.train.batch_size = 16
    c.sweep.finetune.train.log_every = 50
    c.sweep.finetune.linear_probe_learning_rate = 1e-2
  return c
