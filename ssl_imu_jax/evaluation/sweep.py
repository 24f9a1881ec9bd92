"""The paper's experiment as one resumable command.

Subject-wise K-fold CV x training-data fractions x fine-tuning seeds x {pre-trained, random} init
x protocols, plus the feature baseline (init 'features': ridge on hand features, ``features.py``;
one cell per data set, fold, fraction and seed, whatever the protocols), for every labelled data
set in ``config.datasets``; then results.csv, summary.md (tables, paired tests, data efficiency)
and figures in ``<workdir>/report``.

Layout::

  <workdir>/sweep/<dataset>/folds.json            subject -> fold, written once
  <workdir>/sweep/<dataset>/fold<k>/frac<p>/seed<s>/<init>_<protocol>/
      ...                                          the fine-tune run (checkpoints, result.json)
      sweep_cell.json                              written atomically when the cell is done
  <workdir>/sweep/<dataset>/fold<k>/frac<p>/seed<s>/features_ridge/
      result.json, ridge_model.json, sweep_cell.json   the feature baseline of the same split
  <workdir>/report/                                results.csv, summary.md, *.png

A 'full_from_probe' cell starts from the 'linear_probe' cell of the same data set, fold,
fraction, seed and init when that protocol is in the sweep (it runs first), else it trains its
own probe. ``init_from`` is one pre-training checkpoint or several: each data set takes the one
pre-trained at its sample rate and window length (``task_data`` sets those per data set).

A cell counts as done when its ``sweep_cell.json`` exists; rerunning skips done cells, so a killed
sweep continues where it stopped. The file also holds the cell's config: if the config changed
since, the sweep stops with an error rather than mixing results of different settings. A cell
trains up to ``finetune.train.epochs`` passes over its own training windows with early stopping
on its validation subjects (``finetune.split.validation_fraction``), or, with epochs = 0,
``finetune.train.steps`` steps whatever its fraction; a features cell trains no steps
(its config holds only the data, split and penalty grid, so the deep arms' keys never block it).
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from ssl_imu_jax import files
from ssl_imu_jax import metrics as metrics_lib
from ssl_imu_jax.data import splits
from ssl_imu_jax.errors import ConfigError, MissingInputError
from ssl_imu_jax.evaluation import report
from ssl_imu_jax.training import checkpointing, interrupt, trainer

FEATURES = 'features'  # the feature baseline's init (ssl_imu_jax/evaluation/features.py)
RIDGE = 'ridge'        # ... and its one protocol
INITS = ('pretrained', 'random', FEATURES)
PROTOCOLS = ('linear_probe', 'full_from_probe', 'full')
CELL_FILE = 'sweep_cell.json'
TrainFn = Callable[[ml_collections.ConfigDict, str], Mapping[str, Any]]
SubjectIdsFn = Callable[[ml_collections.ConfigDict], Sequence[int]]


def validate_config(config: ml_collections.ConfigDict, prefix: str = '',
                    init_from: bool = True) -> None:
  """Clear errors for a sweep config that cannot run (each names the key, ``config.<prefix>``:
  the paper stage's sweep is ``sweep.``), before any data is built. ``init_from=False``: the
  caller sets it (the paper stage's own pre-trainings)."""
  key = f'config.{prefix}'
  for name in ('datasets', 'fractions', 'inits', 'protocols', 'num_folds', 'fold_seed',
               'fraction_seed', 'init_from', 'finetune'):
    if name not in config:
      raise ConfigError(f'sweep config lacks key {key}{name}')
  if not config.datasets:
    raise ConfigError(f'{key}datasets is empty: name at least one labelled data set')
  bad = [i for i in config.inits if i not in INITS]
  if bad or not config.inits:
    raise ConfigError(f'{key}inits must be a non-empty subset of {INITS}, got {config.inits}')
  bad = [p for p in config.protocols if p not in PROTOCOLS]
  if bad or not config.protocols:
    raise ConfigError(f'{key}protocols must be a non-empty subset of {PROTOCOLS}, got '
                      f'{config.protocols}')
  fr = [float(f) for f in config.fractions]
  if not fr or any(not 0.0 < f <= 1.0 for f in fr) or len(set(fr)) != len(fr):
    raise ConfigError(f'{key}fractions must be distinct values in (0, 1], got '
                      f'{config.fractions}')
  if int(config.num_folds) < 2:
    raise ConfigError(f'{key}num_folds must be >= 2, got {config.num_folds}')
  folds_to_run(config)
  seeds = [int(x) for x in config.get('seeds', (0,))]
  if not seeds or len(set(seeds)) != len(seeds):
    raise ConfigError(f'{key}seeds must be distinct integers, got {config.get("seeds")}')
  if 'pretrained' in config.inits and init_from:
    if not init_candidates(config):
      raise ConfigError(f"{key}init_from (the pre-training checkpoint dir, or several) is "
                        f"required when 'pretrained' is in {key}inits")
    for path in init_candidates(config):
      if not os.path.exists(checkpointing.locate(path)):
        raise MissingInputError(f'{key}init_from: {path!r} does not exist (nor is it a released '
                                f'weights name: {", ".join(checkpointing.released_names())})')
  steps = config.finetune.train.steps
  if int(steps) < 1:
    raise ConfigError(f'{key}finetune.train.steps must be >= 1, got {steps}')
  from ssl_imu_jax.training import finetune  # noqa: PLC0415

  ft = config.finetune
  if ft.get('input_norm', 'train_subjects') not in finetune.NORM_POLICIES:
    raise ConfigError(f'{key}finetune.input_norm must be one of {finetune.NORM_POLICIES}, got '
                      f'{ft.input_norm!r}')


def check_dataset_names(config: ml_collections.ConfigDict, prefix: str = '') -> None:
  """Every name in ``config.datasets`` is a registered data set (a ConfigError naming the key
  ``<prefix>datasets`` and the valid names), checked before any of them is built."""
  from ssl_imu_jax.data import input_pipeline  # noqa: PLC0415

  for dataset in config.datasets:
    input_pipeline.check_dataset(dataset, f'{prefix}datasets')


def folds_to_run(config: ml_collections.ConfigDict) -> list[int]:
  """``config.folds`` (a subset, e.g. a quick look at fold 0) or all ``num_folds`` folds."""
  folds = [int(f) for f in config.get('folds', ())] or list(range(int(config.num_folds)))
  bad = [f for f in folds if not 0 <= f < int(config.num_folds)]
  if bad:
    raise ConfigError(f'config.folds has {bad}, outside 0..{int(config.num_folds) - 1}')
  return folds


def report_dir_for(config: ml_collections.ConfigDict, workdir: str) -> str:
  """``<workdir>/report``; a run of a subset of the folds reports into ``report_folds<k-..>``, so
  it never overwrites the full report with one that covers fewer subjects."""
  folds = folds_to_run(config)
  if len(folds) == int(config.num_folds):
    return os.path.join(workdir, 'report')
  return os.path.join(workdir, 'report_folds' + '-'.join(str(f) for f in folds))


def init_candidates(config: ml_collections.ConfigDict) -> list[str]:
  """``config.init_from`` as a list of checkpoint paths (one path, or several separated by
  commas: one per sample rate and window)."""
  value = config.init_from
  parts = value.split(',') if isinstance(value, str) else list(value)
  return [str(v).strip() for v in parts if str(v).strip()]


def cell_dir(workdir: str, dataset: str, fold: int, fraction: float, init: str,
             protocol: str, seed: int = 0) -> str:
  """``<workdir>/sweep/<dataset>/fold<k>/frac<p>/seed<s>/<init>_<protocol>``."""
  return os.path.join(workdir, 'sweep', dataset, f'fold{fold}', f'frac{fraction:g}',
                      f'seed{seed}', f'{init}_{protocol}')


def plan(config: ml_collections.ConfigDict) -> Iterator[tuple[str, int, float, str, str, int]]:
  """All cells (dataset, fold, fraction, init, protocol, seed) in run order; a linear probe
  always comes before the full_from_probe cell that starts from it. The feature baseline has
  one cell (protocol 'ridge') per data set, fold, fraction and seed."""
  protocols = sorted(config.protocols, key=PROTOCOLS.index)
  for dataset in config.datasets:
    for fold in folds_to_run(config):
      for fraction in sorted(float(f) for f in config.fractions):
        for seed in config.get('seeds', (0,)):
          for init in config.inits:
            for protocol in ((RIDGE,) if init == FEATURES else protocols):
              yield dataset, fold, fraction, init, protocol, int(seed)


def task_data(config: ml_collections.ConfigDict, dataset: str) -> ml_collections.ConfigDict:
  """``config.finetune.data`` with the data set's own overrides from ``config.task_data``."""
  d = config.finetune.data.copy_and_resolve_references()
  d.unlock()
  d.dataset = dataset
  for key, value in (config.get('task_data', None) or {}).get(dataset, {}).items():
    if key not in d:
      raise ConfigError(f'config.task_data.{dataset}.{key}: not a data config key; expected one '
                        f'of {sorted(d)}')
    d[key] = value
  return d


@functools.cache
def _checkpoint_encoder(path: str) -> dict[str, Any] | None:
  """The encoder config a pre-training checkpoint was trained with (None: no checkpoint there)."""
  from ssl_imu_jax.training import finetune

  try:
    return finetune.pretrained_info(path)[2]['encoder']
  except FileNotFoundError:
    return None


def cell_config(config: ml_collections.ConfigDict, data_dir: str, dataset: str, fold: int,
                fraction: float, init: str, protocol: str, seed: int = 0,
                workdir: str = '') -> ml_collections.ConfigDict:
  """The fine-tune config of one cell: ``config.finetune`` with the cell's fields set (a
  features cell: ``features_cell_config``)."""
  from ssl_imu_jax.training import finetune

  if init == FEATURES:
    return features_cell_config(config, data_dir, dataset, fold, fraction, seed)
  c = config.finetune.copy_and_resolve_references()
  c.unlock()
  c.stage = 'finetune'
  c.data_dir = data_dir
  c.data = task_data(config, dataset)
  c.seed = int(seed)
  c.split.num_folds = int(config.num_folds)
  c.split.fold = int(fold)
  c.split.fold_seed = int(config.fold_seed)
  c.split.fraction = float(fraction)
  c.split.fraction_seed = int(config.fraction_seed) + int(seed)
  c.init_from = ''
  candidates = init_candidates(config)
  if candidates and (init == 'pretrained' or 'pretrained' in config.inits):
    ckpt = finetune.select_checkpoint(candidates, c.data)
    if init == 'pretrained':
      c.init_from = ckpt
    else:  # the random arm gets the pre-trained arm's architecture, whatever finetune.model says
      enc = _checkpoint_encoder(ckpt)
      if enc is not None:
        c.model.encoder = ml_collections.ConfigDict(enc)
  c.protocol = protocol
  c.probe_from = ''
  if protocol == 'full_from_probe' and 'linear_probe' in config.protocols and workdir:
    c.probe_from = cell_dir(workdir, dataset, fold, fraction, init, 'linear_probe', seed)
  c.train.steps = int(config.finetune.train.steps)  # the same for every cell
  return c


def features_cell_config(config: ml_collections.ConfigDict, data_dir: str, dataset: str,
                         fold: int, fraction: float, seed: int = 0) -> ml_collections.ConfigDict:
  """The config of a feature-baseline cell: the data, the split of the deep cells of the same
  fold, fraction and seed (``finetune.split``, validation subjects included) and the penalty grid;
  nothing of the deep model or its training, which do not affect it."""
  from ssl_imu_jax.evaluation import features

  split = config.finetune.split
  c = ml_collections.ConfigDict()
  c.stage = 'features'
  c.data_dir = data_dir
  c.data = task_data(config, dataset)
  c.seed = int(seed)
  c.split = ml_collections.ConfigDict({
      'num_folds': int(config.num_folds), 'fold': int(fold), 'fold_seed': int(config.fold_seed),
      'fraction': float(fraction), 'fraction_seed': int(config.fraction_seed) + int(seed),
      'validation_fraction': float(split.get('validation_fraction',
                                             features.VALIDATION_FRACTION)),
      'validation_seed': int(split.get('validation_seed', 0))})
  if 'unit' in split:  # absent in older configs: their cells keep their fingerprints
    c.split.unit = str(split.unit)
  c.init_from = ''
  c.protocol = RIDGE
  c.ridge = ml_collections.ConfigDict({'alphas': tuple(features.ALPHAS),
                                       'cv_folds': int(features.CV_FOLDS)})
  if any(str(t).endswith('_curve') for t in c.data.get('targets', ()) or ()):
    c.ridge.curve_lags = tuple(features.CURVE_LAGS)  # the per-step model of a curve target
    c.ridge.curve_fit_rows = int(features.CURVE_FIT_ROWS)
  return c


def load_done_cell(path: str, expected: Mapping[str, Any]) -> dict[str, Any] | None:
  """The record of a completed cell, None if not done; an error if it ran with another config."""
  marker = os.path.join(path, CELL_FILE)
  if not os.path.exists(marker):
    return None
  with open(marker, encoding='utf-8') as f:
    try:
      done = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{marker} is not valid JSON ({e}); delete it to rerun the cell') from e
  diff = trainer.config_changes(done.get('config', {}), expected)
  if diff:
    shown = ', '.join(diff[:5])
    raise ValueError(f'{marker} was trained with a different config ({shown}); use a new '
                     f'--workdir, or delete {path} to retrain this cell')
  return done['record']


def write_folds(path: str, folds: Mapping[int, int], meta: Mapping[str, Any]) -> None:
  """Writes folds.json, or checks an existing one holds the same assignment."""
  content = {**meta, 'folds': {str(s): int(f) for s, f in sorted(folds.items())}}
  if os.path.exists(path):
    with open(path, encoding='utf-8') as f:
      old = json.load(f)
    if old.get('folds') != content['folds']:
      raise ValueError(f'{path} holds another fold assignment than the current data and '
                       f'config (num_folds/fold_seed or the subjects changed); use a new --workdir')
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  files.write_json_atomic(path, content)


def done_records(config: ml_collections.ConfigDict, workdir: str) -> list[dict[str, Any]]:
  """The records of the sweep's finished cells (``sweep_cell.json``), in plan order."""
  out = []
  for cell in plan(config):
    marker = os.path.join(cell_dir(workdir, *cell), CELL_FILE)
    if os.path.exists(marker):
      with open(marker, encoding='utf-8') as f:
        out.append(json.load(f)['record'])
  return out


def dataset_subject_ids(cfg: ml_collections.ConfigDict) -> np.ndarray:
  """Subject id of every window in the cell's split (builds the TFDS data set if needed)."""
  from ssl_imu_jax.data import input_pipeline
  from ssl_imu_jax.training.finetune import split_unit  # noqa: PLC0415

  path = input_pipeline.ensure_built(cfg.data, cfg.data_dir)
  ids = input_pipeline.subject_ids(path, cfg.data.split)
  unit = split_unit(cfg)
  if unit != 'subject':
    ids = splits.units(ids, input_pipeline.subject_ids(path, cfg.data.split, field='trial'),
                       unit, path)
  return ids


def finetune_train_fn() -> TrainFn:
  from ssl_imu_jax.training import finetune
  return finetune.train_and_evaluate


def features_train_fn() -> TrainFn:
  from ssl_imu_jax.evaluation import features
  return features.train_and_evaluate


def cell_groups(pending: Sequence[tuple], max_cells: int) -> Iterator[list[tuple]]:
  """The cells to train, in groups of at most ``max_cells`` of one data set and protocol, every
  linear probe before the full_from_probe cells that start from it (1: one by one, in order).
  Feature-baseline cells are never grouped: each comes alone, before the groups."""
  if max_cells <= 1:
    yield from ([p] for p in pending)
    return
  yield from ([p] for p in pending if p[0][3] == FEATURES)
  deep = [p for p in pending if p[0][3] != FEATURES]
  datasets = list(dict.fromkeys(p[0][0] for p in deep))
  by_key: dict[tuple[int, int], list[tuple]] = {}
  for p in deep:  # cell = (dataset, fold, fraction, init, protocol, seed)
    by_key.setdefault((datasets.index(p[0][0]), PROTOCOLS.index(p[0][4])), []).append(p)
  for key in sorted(by_key):
    items = by_key[key]
    for lo in range(0, len(items), max_cells):
      yield items[lo:lo + max_cells]


def run(config: ml_collections.ConfigDict, workdir: str, train_fn: TrainFn | None = None,
        subject_ids_fn: SubjectIdsFn | None = None, features_fn: TrainFn | None = None,
        write_report: bool = True) -> str:
  """Runs (or resumes) every cell, writes the report, prints the table; returns the report dir.

  Args:
    config: the sweep config (configs/sweep.py).
    workdir: run directory; cells go to <workdir>/sweep, the report to <workdir>/report.
    train_fn: ``(finetune_config, cell_workdir) -> result`` (default finetune.train_and_evaluate,
      or groups of ``config.max_cells_per_program`` cells in one program: multicell.py).
    subject_ids_fn: ``finetune_config -> subject id per window`` used for folds.json
      (default: read from the TFDS data set).
    features_fn: ``(features_config, cell_workdir) -> result`` of the feature-baseline cells
      (default features.train_and_evaluate; never grouped with the deep cells).
    write_report: False: train the cells only (a caller running the sweep in pieces reports
      once it has run it whole); returns '' then.

  Under main.py a signal (Ctrl-C, SIGTERM) stops the cell in training at its next step boundary
  (its checkpoint saved: the rerun resumes it), or the sweep before its next cell.
  """
  validate_config(config)
  if subject_ids_fn is None:  # the records are read (injected functions: any names)
    check_dataset_names(config)
  with trainer.run_root(workdir):  # paths inside the work directory compare relative to it
    return _run(config, os.fspath(workdir), train_fn, subject_ids_fn, features_fn, write_report)


def _run(config, workdir, train_fn, subject_ids_fn, features_fn, write_report=True) -> str:
  data_dir = config.finetune.data_dir or os.path.join(workdir, 'tfds')
  grouped = train_fn is None and int(config.get('max_cells_per_program', 1)) > 1
  train_fn = train_fn or finetune_train_fn()
  features_fn = features_fn or features_train_fn()
  subject_ids_fn = subject_ids_fn or dataset_subject_ids
  cells = list(plan(config))
  os.makedirs(os.path.join(workdir, 'sweep'), exist_ok=True)
  files.write_json_atomic(os.path.join(workdir, 'sweep', 'sweep_config.json'),
                    json.loads(config.to_json_best_effort()))
  report_only = bool(config.get('report_only', False))
  folds_of: dict[str, dict[int, int]] = {}
  n_trained = n_skipped = 0
  todo = {c for c in cells if not os.path.exists(os.path.join(cell_dir(workdir, *c), CELL_FILE))}
  if len(todo) < len(cells):
    print(f'sweep: {len(cells) - len(todo)} of {len(cells)} cells done before (skipped); '
          f'{len(todo)} to train', flush=True)
  eta = CellTimer()
  done_recs: dict[tuple, dict[str, Any]] = {}
  pending = []  # (cell, cfg, path, name, expected) to train, in plan order
  for cell in cells:
    dataset, fold, fraction, init, protocol, seed = cell
    cfg = cell_config(config, data_dir, dataset, fold, fraction, init, protocol, seed, workdir)
    if 'train' in cfg:
      cfg.train.progress = False  # per-step scalars go to the cell's metrics.jsonl only
    if dataset not in folds_of:
      ids = subject_ids_fn(cfg)
      folds = splits.assign_folds(ids, int(config.num_folds), int(config.fold_seed))
      write_folds(os.path.join(workdir, 'sweep', dataset, 'folds.json'), folds,
                  {'dataset': dataset, 'num_folds': int(config.num_folds),
                   'fold_seed': int(config.fold_seed)})
      folds_of[dataset] = folds
    path = cell_dir(workdir, dataset, fold, fraction, init, protocol, seed)
    name = f'{dataset} fold{fold} frac{fraction:g} seed{seed} {init}_{protocol}'
    expected = trainer.fingerprint(cfg)
    rec = load_done_cell(path, expected)
    if rec is not None:
      n_skipped += 1
      done_recs[cell] = rec
    elif not report_only:
      pending.append((cell, cfg, path, name, expected))

  def record(item, result, took, compiled):
    nonlocal n_trained
    cell, cfg, path, name, expected = item
    dataset, fold, fraction, init, protocol, seed = cell
    rec = report.make_record(result, task=dataset, init=init, protocol=protocol,
                             fraction=fraction, fold=fold,
                             steps=steps_run(result, cfg) if 'train' in cfg else None,
                             seed=seed, norm_policy=result.get('norm_policy', ''))
    _check_cell_subjects(rec, folds_of[dataset], fold, name)
    files.write_json_atomic(os.path.join(path, CELL_FILE), {'config': expected, 'record': rec})
    n_trained += 1
    todo.discard(cell)
    eta.add(cell, took, compiled)
    done_recs[cell] = rec
    if rec.get('curve'):  # a curve cell: r per present axis, mean over test subjects
      c = report.curves_frame([rec])
      c = c[c.subject == report.ALL]
      score = 'curve r (' + '/'.join(c.axis) + ') = ' + _fmt_list(c.pearson_r.to_numpy())
    else:
      r = report.results_frame([rec])
      score = 'pooled r = ' + _fmt_list(r[r.subject == report.ALL].pearson_r.to_numpy())
    print(f'{progress_bar(len(cells) - len(todo), len(cells))} {name}: {score} '
          f'({took:.1f} s; about {eta.left(todo) / 60:.1f} min left)', flush=True)

  with compile_clock() as compiling:
    for group in cell_groups(pending, int(config.get('max_cells_per_program', 1)) if grouped
                             else 1):
      label = (f'sweep cell{"s" if len(group) > 1 else ""} {", ".join(g[3] for g in group)}, '
               f'{len(cells) - len(todo)} of {len(cells)} cells done')
      with interrupt.activity(label), interrupt.checked():
        interrupt.check(note='before it started')  # asked during the last one: stop here
        for item in group:
          os.makedirs(item[2], exist_ok=True)
        t0, c0 = time.time(), compiling.seconds
        try:
          if group[0][0][3] == FEATURES:
            results = [features_fn(group[0][1], group[0][2])]
          elif len(group) == 1:
            results = [train_fn(group[0][1], group[0][2])]
          else:
            from ssl_imu_jax.training import multicell

            results = multicell.train_cells([g[1] for g in group], [g[2] for g in group],
                                            data_dir)
        except Exception as e:
          e.add_note(f'in sweep cell(s) {", ".join(g[3] for g in group)}; rerun to resume from '
                     f'the cells without results')
          raise
        took = (time.time() - t0) / len(group)
        compiled = min(compiling.seconds - c0, time.time() - t0) / len(group)
        for item, result in zip(group, results, strict=True):
          record(item, result, took, compiled)
  records = [done_recs[c] for c in cells if c in done_recs]
  if config.get('final_model', False) and not report_only and {'pretrained', 'random'} & set(
      config.inits):
    for dataset in config.datasets:
      with interrupt.activity(f'the final model of {dataset}'):
        train_final_model(config, workdir, data_dir, dataset, records, train_fn)
  if not write_report:
    return ''
  report_dir = report_dir_for(config, workdir)
  if report_only:
    if not records:
      raise ConfigError(f'config.report_only: no finished cell under {workdir}/sweep to report')
    report_dir = os.path.join(workdir, 'report_partial')
  from ssl_imu_jax.training.finetune import split_unit  # noqa: PLC0415

  notes = [
      f'Data sets: {", ".join(config.datasets)}; {int(config.num_folds)}-fold subject-wise CV '
      f'(fold_seed {int(config.fold_seed)}; assignment in sweep/<dataset>/folds.json).',
      f'Fractions of the training windows: '
      f'{", ".join(f"{float(f):g}" for f in sorted(config.fractions))} (nested, fraction_seed '
      f'{int(config.fraction_seed)}).',
      *(['Units: the trials of one subject (finetune.split.unit=trial): folds, fractions and '
         'intervals run over trials, so every figure is within-subject (new trials of the same '
         'person, not new people); "subject" columns hold trial numbers.']
        if split_unit(config.finetune) == 'trial' else []),
      f'Inits: {", ".join(config.inits)}'
      + (f' (pre-trained from {", ".join(init_candidates(config))})'
         if 'pretrained' in config.inits else '')
      + f'; protocols: {", ".join(config.protocols)}.'
      + (' Feature baseline: ridge on hand-computed per-window features of every site (a curve '
         "target: on each step's channels at lags of +-8 samples and the window means; "
         'ssl_imu_jax/evaluation/features.py), its penalty chosen on the validation subjects; the '
         'same folds, fractions and seeds.' if FEATURES in config.inits else ''),
      f'Fine-tuning seeds: {", ".join(str(int(x)) for x in config.get("seeds", (0,)))}; '
      f'linear-probe BatchNorm adapts: '
      f'{bool(config.finetune.get("linear_probe_bn_adapt", True))}.',
      f'{len(cells)} cells: {n_trained} trained in this run, {n_skipped} reused from earlier runs'
      + (f'; PARTIAL: {len(cells) - len(records)} cells not trained yet (config.report_only).'
         if report_only else '.'),
  ]
  table = report.write_report(records, report_dir, title='Sweep results', notes=notes)
  print(table, flush=True)
  subset = '' if report_dir.endswith(os.sep + 'report') else (
      f' (folds {", ".join(str(f) for f in folds_to_run(config))} of {int(config.num_folds)} '
      f'only; the full report, if any, is left as it was)')
  print(f'report: {report_dir}{subset}', flush=True)
  return report_dir


def steps_run(result: Mapping[str, Any], cfg: ml_collections.ConfigDict) -> int:
  """The steps a cell trained (its own stopping point), or the config's for older results."""
  return int((result.get('training') or {}).get('steps_run') or cfg.train.steps)


def final_model_dir(workdir: str, dataset: str) -> str:
  return os.path.join(workdir, 'final', dataset)


def final_recipe(config: ml_collections.ConfigDict) -> tuple[str, str, float, int]:
  """(init, protocol, fraction, seed) of the final model: the pre-trained arm when there is one,
  the last protocol (full_from_probe over linear_probe), the largest fraction, the first seed."""
  init = 'pretrained' if 'pretrained' in config.inits else 'random'
  protocol = sorted(config.protocols, key=PROTOCOLS.index)[-1]
  return (init, protocol, max(float(f) for f in config.fractions),
          int(config.get('seeds', (0,))[0]))


def cv_summary(records: Sequence[Mapping[str, Any]], dataset: str, init: str, protocol: str,
               fraction: float) -> dict[str, dict[str, Any]]:
  """Cross-validated figures of one recipe: within-subject r (mean, sd), pooled r and RMSE; for a
  curve target, per axis each curve metric's (mean, sd) over test subjects (``curve_axes``)."""
  recs = [r for r in records if r['task'] == dataset and r['init'] == init and
          r['protocol'] == protocol and float(r['fraction']) == fraction]
  if not recs:
    return {}
  cells = (f'{len(recs)} cells: {init} / {protocol} / {fraction:g} of the training windows, '
           f'{len({r["fold"] for r in recs})} folds')
  if recs[0].get('curve'):  # per axis: each curve metric's mean and sd over test subjects
    table = report.curve_summary(report.curves_frame(recs))
    axes = {str(r.axis): {k: (float(getattr(r, k)), float(getattr(r, f'{k}_sd')))
                          for k in metrics_lib.CURVE_METRICS} for r in table.itertuples()}
    return {str(recs[0]['targets'][0]): {'curve_axes': axes, 'cells': cells,
                                         'n_subjects': int(table.n_subjects.max())}}
  df = report.results_frame(recs)
  out = {}
  for j, target in enumerate(recs[0]['targets']):
    w = report.within_subject_results(df, dataset, target)[(protocol, fraction, init)]
    yt = np.concatenate([np.asarray(r['predictions']['y_true'], float)[:, j] for r in recs])
    yp = np.concatenate([np.asarray(r['predictions']['y_pred'], float)[:, j] for r in recs])
    pooled = metrics_lib.regression_metrics(yt, yp)
    out[target] = {'within_subject_r': w.mean, 'within_subject_r_sd': w.sd,
                   'n_subjects': w.n_subjects, 'pooled_r': pooled['pearson_r'],
                   'rmse': pooled['rmse'], 'rrmse': pooled['rrmse'], 'cells': cells}
  return out


def train_final_model(config: ml_collections.ConfigDict, workdir: str, data_dir: str,
                      dataset: str, records: Sequence[Mapping[str, Any]],
                      train_fn: TrainFn) -> str:
  """Trains (or reuses) the model to deploy on all subjects of ``dataset`` with the sweep's
  recipe (``final_recipe``); its model card carries the sweep's cross-validated figures."""
  from ssl_imu_jax.models import model_card
  from ssl_imu_jax.training import checkpointing, finetune

  init, protocol, fraction, seed = final_recipe(config)
  cfg = cell_config(config, data_dir, dataset, finetune.FINAL_FOLD, fraction, init, protocol,
                    seed)
  cfg.train.progress = False
  path = final_model_dir(workdir, dataset)
  expected = trainer.fingerprint(cfg)
  if load_done_cell(path, expected) is None:
    os.makedirs(path, exist_ok=True)
    t0 = time.time()
    result = train_fn(cfg, path)
    files.write_json_atomic(os.path.join(path, CELL_FILE), {'config': expected, 'record': {
        'task': dataset, 'init': init, 'protocol': protocol, 'fraction': fraction,
        'seed': seed, 'train_subjects': result['train_subjects'], 'final': True}})
    print(f'final model {dataset} ({init} / {protocol}, {fraction:g} of the windows, all '
          f'{len(result["train_subjects"])} subjects): {time.time() - t0:.1f} s -> {path}',
          flush=True)
  ckpt_dir = checkpointing.find_checkpoint_dir(path)
  step, meta = checkpointing.read_meta(ckpt_dir)
  card = model_card.render_finetune(meta, step, cv=cv_summary(records, dataset, init, protocol,
                                                               fraction))
  files.write_text_atomic(os.path.join(path, finetune.MODEL_CARD), card)
  return path


def progress_bar(done: int, total: int, width: int = 20) -> str:
  """'[#######.............] 120/360' (cells finished, this run's and earlier runs')."""
  filled = int(width * done / total) if total else width
  return f'[{"#" * filled}{"." * (width - filled)}] {done}/{total}'


class CellTimer:
  """Time left in the sweep, learnt from the cells this run has trained.

  A cell's time is its training (per cell, roughly constant within a data set, init and
  protocol; 10x and more between them) plus, for the first cell that runs a program (one per
  data set and protocol, shared by the inits), its compilation: JAX's trace / lower / compile
  events during the cell (``compile_clock``; with a warm XLA cache, the cache loads). Counting
  that first cell's compilation as step time made the estimate 4-5x too high at the start.

  The estimate of a cell not trained yet is the mean training time (compilation excluded) of the
  trained cells of its (data set, init, protocol); else of its (data set, protocol); else of its
  data set; else of every trained cell; plus, once per (data set, protocol) that has not run yet,
  the mean compilation of the programs compiled so far.
  """

  def __init__(self):
    self._times: dict[tuple[str, str, str], list[float]] = {}
    self._compiles: dict[tuple[str, str], float] = {}

  def add(self, cell, seconds: float, compile_seconds: float = 0.0) -> None:
    compile_seconds = min(max(float(compile_seconds), 0.0), float(seconds))
    self._times.setdefault((cell[0], cell[3], cell[4]), []).append(seconds - compile_seconds)
    program = (cell[0], cell[4])
    self._compiles[program] = self._compiles.get(program, 0.0) + compile_seconds

  def estimate(self, cell) -> float:
    """Training time of one cell (compilation excluded), from its closest trained kin."""
    own = self._times.get((cell[0], cell[3], cell[4]))
    if own:
      return float(np.mean(own))
    same_protocol = [t for (d, _, p), ts in self._times.items()
                     if (d, p) == (cell[0], cell[4]) for t in ts]
    same_set = [t for (d, _, _), ts in self._times.items() if d == cell[0] for t in ts]
    every = [t for ts in self._times.values() for t in ts]
    return float(np.mean(same_protocol or same_set or every or [0.0]))

  def left(self, cells) -> float:
    cells = list(cells)
    new_programs = {(c[0], c[4]) for c in cells} - set(self._compiles)
    per_program = float(np.mean(list(self._compiles.values()))) if self._compiles else 0.0
    return sum(self.estimate(c) for c in cells) + per_program * len(new_programs)


class compile_clock:  # noqa: N801 -- used as a context manager, like a function
  """``seconds``: time JAX spent tracing, lowering and compiling (persistent-cache loads
  included) since entering; a listener on ``jax.monitoring``'s duration events."""

  EVENTS = ('/jax/core/compile/jaxpr_trace_duration',
            '/jax/core/compile/jaxpr_to_mlir_module_duration',
            '/jax/core/compile/backend_compile_duration')

  def __init__(self):
    self.seconds = 0.0

  def _listen(self, event: str, duration: float, **_) -> None:
    if event in self.EVENTS:
      self.seconds += float(duration)

  def __enter__(self):
    import jax  # noqa: PLC0415

    jax.monitoring.register_event_duration_secs_listener(self._listen)
    return self

  def __exit__(self, *exc):
    import jax  # noqa: PLC0415

    jax.monitoring.unregister_event_duration_listener(self._listen)
    return False


def _fmt_list(x: np.ndarray) -> str:
  return ', '.join('nan' if not math.isfinite(v) else f'{v:.3f}' for v in x)


def _check_cell_subjects(rec: Mapping[str, Any], folds: Mapping[int, int], fold: int,
                         name: str) -> None:
  """The cell tested exactly the subjects folds.json puts in its fold, and trained on none."""
  want = sorted(s for s, f in folds.items() if f == fold)
  if sorted(rec['test_subjects']) != want:
    raise ValueError(f'cell {name}: fine-tuning tested subjects {rec["test_subjects"]} but '
                     f'folds.json puts {want} in fold {fold} (fold assignment disagrees)')
  leaked = [s for s in rec['train_subjects'] if folds.get(int(s)) == fold]
  if leaked:
    raise ValueError(f'cell {name}: test-fold subject(s) {leaked} were in the training set')
