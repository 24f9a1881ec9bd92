r"""The two pre-training objectives compared under one protocol (issue 27), one resumable command.

  python main.py --config=configs/objectives.py:tiny --workdir=runs/objectives_tiny   # minutes
  nohup python main.py --config=configs/objectives.py:cpu --workdir=/data/runs/objectives &
  python main.py --config=configs/objectives.py:cpu,real_running --workdir=runs/objectives_real

Every arm of ``arms`` pre-trains on the same corpus (synthetic_movi at the task's sites, rate and
window) for the same budget (steps x windows; each objective keeps its own optimiser), then
fine-tunes on the same folds, fractions and seeds of one labelled set (``task``) in each group
of ``groups``: ``peaks`` (the task's scalar label) and ``curves`` (the 3-axis GRF curve of each
window, ``grf_curve``). Beside them, random init of each backbone and the feature baseline
(peaks: ridge on per-window features; curves: ridge on each step's lagged channels). The arms:
``nce_resnet`` (Tan et al. 2023: acc <-> gyr NCE, 1-D ResNet),
``nce_transformer`` (the same NCE on the masked model's Transformer, acc and gyr tokens apart:
the crossed pairing, so objective and backbone can be told apart) and the masked Transformer of
Tan et al. 2024 at mask ratios 6.25, 12.5 (the reference's), 25 and 50 %
(``masked_6_25`` ... ``masked_50``: the masking-ratio curve). An arm is a whole pre-training
config (configs/pretrain.py), so ``--config.arms.masked_12_5.ssl.mask_ratio=0.2`` or any other
knob overrides it; ``arms`` must agree on the data and the budget (checked before any work).

The task is peak KFM's walking set (8 lower-body IMUs, 100 Hz / 128 samples: the reference's
walking GRF setting), whose windows also carry GRF curves, so one pre-training per arm serves
both groups. The masking-ratio curve runs on the curves (the reference's target:
``group_arms.peaks`` holds the reference ratio and the NCE arms only). ``interleave`` trains round
by round (one fraction and fold of every sweep, the smallest fraction first), so a run stopped
part-way has compared every arm on the same cells (``report_partial/`` after each round).
Arguments: 'tiny' (tiny data and models; mask ratios 12.5 and 50 % only, fold 0 at
100 % of the labels: a smoke run of every part) | 'cpu' (the default data at the CPU budget
of configs/paper.py:cpu, one fine-tuning seed, fractions 10 / 25 / 100 %) | 'default' (the
reference budgets). Add ',real_running' (e.g. 'cpu,real_running') for the real running file
instead: the sacrum's synthetic corpus, NCE (ResNet, Transformer) and masked 12.5 % only, the
vertical GRF curve of one runner's 31 trials, folds over the trials (within-subject), fractions
25 / 100 %, fine-tuning up to REAL_EPOCHS (100) epochs per stage.
"""

import os

import ml_collections

from configs import common, paper, pretrain, sweep

TASK = 'synthetic_walking_kfm'
# The 'real_running' variant's task: one runner's treadmill file (sacral acc -> vertical GRF).
REAL = 'real_running'
REAL_TASK = 'real_running_grf'
REAL_EPOCHS = 100.0   # the real file's fine-tuning budget per stage (_real_running)
REAL_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), '..', 'shared', 'data', 'real_running_grf'))
# The masking-ratio curve (Tan et al. 2024: 6.25-12.5 % works best); 12.5 % is the reference's.
MASK_RATIOS = (0.0625, 0.125, 0.25, 0.5)
TINY_MASK_RATIOS = (0.125, 0.5)


def arm_name(ratio: float) -> str:
  """'masked_12_5' for 0.125: a config key (no dots)."""
  return 'masked_' + f'{100 * ratio:g}'.replace('.', '_')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parts = [p.strip() for p in (arg or '').split(',') if p.strip()]
  real = REAL in parts
  if real:
    parts.remove(REAL)
  cpu = bool(parts) and parts[0] == 'cpu'
  if cpu:
    parts[0] = 'default'
  inner = ','.join(parts)
  size, _ = common.parse_args(inner)
  tiny = size == 'tiny'
  task_data = dict(sweep.PAPER_TASK_DATA[TASK])
  sites = ('Hip', 'Spine1', 'RightUpLeg', 'LeftUpLeg', 'RightLeg', 'LeftLeg', 'RightFoot',
           'LeftFoot')  # the task's IMUs (data_prep/builders/synthetic.py SyntheticWalkingKfm)
  if real:
    sites = ('Hip',)  # the running file's sacral accelerometer

  def arm(variant: str, ratio: float = 0.125) -> ml_collections.ConfigDict:
    p = pretrain.get_config(inner + (f',{variant}' if variant else ''))
    p.data.imu_sites = sites
    p.data.options = {'drop_static': True}  # the reference's 0.2 g static-window filter
    if not tiny or real:  # the real file is read at 100 Hz / 128 whatever the size
      p.data.sample_rate_hz = task_data['sample_rate_hz']
      p.data.window_length = task_data['window_length']
    p.ssl.mask_ratio = ratio
    if cpu:
      paper.cpu_pretrain_budget(p)
      if not variant:
        p.optimizer.learning_rate = 1e-3  # the ResNet's NCE, as configs/paper.py:cpu
    elif not tiny:
      p.train.steps, p.train.batch_size = 10_000, 256
    return p

  c = ml_collections.ConfigDict()
  c.stage = 'objectives'
  c.data_dir = ''  # '' = <workdir>/tfds, shared by every part
  c.task = TASK
  c.arms = ml_collections.ConfigDict()
  c.arms.nce_resnet = arm('')
  c.arms.nce_transformer = arm('nce_transformer')
  # tiny: the curve's two ends that bracket the reference's ratio are enough to run every path
  for r in ((0.125,) if real else TINY_MASK_RATIOS if tiny else MASK_RATIOS):
    c.arms[arm_name(r)] = arm('masked', ratio=r)
    if real:  # the task has no gyroscope: the masked model's tokens are the sacrum's acc only
      c.arms[arm_name(r)].data.use_gyr = False
  c.groups = ml_collections.ConfigDict()
  if real:
    return _real_running(c, inner, cpu, tiny)
  for group in ('peaks', 'curves'):
    s = sweep.get_config(inner)
    s.datasets = (TASK,)
    data = {} if tiny else dict(task_data)
    if group == 'curves':
      data.update(options={'curves': True}, targets=('grf_curve',))
      # the feature baseline of a curve: ridge on each step's lagged channels (features.py)
      s.inits = ('pretrained', 'random', 'features')
    s.task_data = {TASK: data}
    if cpu:
      paper.cpu_finetune_budget(s.finetune)
      s.fractions = (0.1, 0.25, 1.0)
    if tiny:  # one fold, all labels: a smoke run of every part in minutes, not a result
      s.folds, s.fractions = (0,), (1.0,)
    c.groups[group] = s
  # The arms each group fine-tunes (absent or () = all): the ratio curve on the curves only.
  c.group_arms = ml_collections.ConfigDict()
  c.group_arms.peaks = ('nce_resnet', 'nce_transformer', arm_name(0.125))
  c.group_arms.curves = ()
  c.interleave = True  # round by round (fraction, fold); False: each sweep whole in turn
  c.report_only = False  # True: report the finished cells, train nothing
  return c


def _real_running(c: ml_collections.ConfigDict, inner: str, cpu: bool, tiny: bool
                  ) -> ml_collections.ConfigDict:
  """The 'real_running' variant's one group, ``curves`` on the real running file: the arms
  pre-trained on the synthetic corpus's sacrum (the masked model on its accelerometer only),
  fine-tuned on one runner's 31 treadmill trials, folds over the trials (``split.unit='trial'``:
  within-subject, new speeds and slopes of the same runner, not new people)."""
  s = sweep.get_config(inner)
  s.datasets = (REAL_TASK,)
  s.task_data = {REAL_TASK: {'sample_rate_hz': 100.0, 'window_length': 128,
                             'manual_dir': REAL_DIR, 'targets': ('grf_curve',)}}
  s.inits = ('pretrained', 'random', 'features')
  s.finetune.split.unit = 'trial'
  if cpu:
    paper.cpu_finetune_budget(s.finetune)
    # The file is small (15 training windows per fold at 25 %, about 57 at 100 %: one to four
    # steps an epoch), so the CPU budget's 40 epochs were 40-160 steps: in six arm x protocol x
    # fraction groups some cells were still improving at the end (convergence.csv of the
    # 2026-12-07 run). The finetune config's own 100 epochs cost minutes here; patience stays 8.
    s.finetune.train.epochs = REAL_EPOCHS
  s.fractions = (1.0,) if tiny else (0.25, 1.0)
  if tiny:
    s.folds = (0,)
  c.task = REAL_TASK
  c.groups.curves = s
  c.group_arms = ml_collections.ConfigDict({'curves': ()})
  c.interleave = True
  c.report_only = False
  return c
