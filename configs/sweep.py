r"""The paper's experiment: subject-wise CV x fractions x seeds x {pre-trained, random} x protocol,
beside the feature baseline (ridge on hand-computed window features,
ssl_imu_jax/evaluation/features.py).

  python main.py --config=configs/pretrain.py:tiny --workdir=runs/pretrain_tiny
  python main.py --config=configs/sweep.py:tiny --workdir=runs/sweep_tiny \
      --config.init_from=runs/pretrain_tiny/pretrain/checkpoints

  python main.py --config=configs/sweep.py --workdir=runs/sweep_knee_moment \
      --config.init_from=runs/pretrain/pretrain/checkpoints \
      --config.datasets='("knee_moment",)' --config.finetune.data.manual_dir=/data/knee_moment

Rerunning the same command skips the cells already done. Results: <workdir>/report/summary.md,
results.csv, headline.csv and <dataset>_data_efficiency.png / <dataset>_scatter.png. Every deep
cell copies ``finetune`` (configs/finetune.py), sets data set, fold, fraction, seed, init and
protocol, and trains to its own stopping point (up to ``finetune.train.epochs`` passes over its
training windows, early stopping on ``finetune.split``'s validation subjects; with epochs = 0,
``finetune.train.steps`` steps); the 'features' init is one ridge cell per
fold, fraction and seed (its penalty chosen on ``finetune.split``'s validation subjects).
``init_from`` is required while 'pretrained' is in ``inits`` (``--config.inits='("random",)'``
runs the random-init baseline alone); it may name several checkpoints separated by commas
(``--config.init_from=a/checkpoints,b/checkpoints``), one per sample rate and window: each data
set then takes the one that matches it (``task_data`` sets a data set's own rate and window; the
defaults are the reference's per-task values). configs/paper.py runs the pre-trainings and this
sweep in one command.
"""

import ml_collections

from configs import common, finetune

# The reference's per-task sample rate and window (Tan et al. 2023): loading rate 200 Hz / 64,
# peak vGRF 200 Hz / 128, peak KFM 100 Hz / 128.
PAPER_TASK_DATA = {
    'synthetic_running_valr': {'sample_rate_hz': 200.0, 'window_length': 64},
    'synthetic_walking_grf': {'sample_rate_hz': 200.0, 'window_length': 128},
    'synthetic_walking_kfm': {'sample_rate_hz': 100.0, 'window_length': 128},
    'running_valr': {'sample_rate_hz': 200.0, 'window_length': 64},
    'camargo2021': {'sample_rate_hz': 200.0, 'window_length': 128},
    'knee_moment': {'sample_rate_hz': 100.0, 'window_length': 128},
}
PAPER_FRACTIONS = (0.1, 0.16, 0.25, 0.4, 0.63, 1.0)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size, variant = common.parse_args(arg)
  tiny = size == 'tiny'
  c = ml_collections.ConfigDict()
  c.stage = 'sweep'
  c.datasets = ('synthetic_running_valr', 'synthetic_walking_grf', 'synthetic_walking_kfm')
  # Per-data-set data overrides (sample_rate_hz, window_length, imu_sites, ...); {} for none.
  c.task_data = {} if tiny else {k: dict(v) for k, v in PAPER_TASK_DATA.items()}
  c.fractions = (0.25, 1.0) if tiny else PAPER_FRACTIONS
  c.seeds = (0,)    # fine-tuning seeds (head init, data order, fraction sample) per cell
  # 'features': the feature baseline (ridge on hand features, one cell per fold/fraction/seed).
  c.inits = ('pretrained', 'random', 'features')
  c.protocols = ('linear_probe', 'full') if variant == 'two_encoder' else (
      'linear_probe', 'full_from_probe')
  c.num_folds = 5
  c.folds = ()      # which folds to run; () = all num_folds (a subset gives a quick look)
  c.fold_seed = 0
  c.fraction_seed = 0
  c.init_from = ''  # pre-training checkpoint dir (several: comma-separated); for 'pretrained'
  c.report_only = False  # True: report the finished cells (report_partial/), train nothing
  # True: after the cells, one model per data set on all subjects (the pre-trained arm, last
  # protocol, largest fraction, first seed) in <workdir>/final/<dataset>, to deploy with predict.
  c.final_model = False
  # >1: up to this many cells of one data set and protocol train as one vmapped program
  # (ssl_imu_jax/training/multicell.py; equal results); 1: one after the other.
  c.max_cells_per_program = 1
  c.finetune = finetune.get_config(arg)
  return c
