"""What a person reads after fine-tuning: a tidy results.csv, summary.md, headline tables, figures.

A *cell record* is one trained model: the cell keys (task, init, protocol, fraction, fold, seed)
plus steps, the input normalisation policy and the part of ``finetune.train_and_evaluate``'s
result the report needs (test-set predictions in label units, targets, units, window and subject
counts). ``make_record`` builds one from a result; ``write_results`` turns any list of them (a
whole sweep, or the demo's single run) into ``results.csv``, ``headline.csv``, ``efficiency.csv``
and ``summary.md``; ``write_report`` adds the figures per data set.

results.csv is tidy: one row per (cell, target, test subject) plus one pooled row per (cell,
target) with ``subject='all'``, so "one row per trained model" is the subset subject == 'all'.
Metrics are computed by ``metrics.regression_metrics`` on the rows' windows: a subject row on
that subject's test windows, the pooled row on all test windows of the cell; ``n_test`` is the
number of windows the row's metrics were computed on.

The headline is the paper's metric (Tan et al., ASB 2023): within-subject r, i.e. the subject
rows' r averaged over seeds per subject, then over test subjects, compared with a paired t test
over subjects. The pooled r (over all test windows of a fold) and fold-paired tests are reported
beside it.

The feature baseline (init 'features', protocol 'ridge': ``features.py``) is a third arm: it has
no protocol of its own, so its value at a fraction stands beside every deep protocol's row, and
the pre-trained arm is compared with it as with random init (Δr, interval, paired t).

A curve target (a GRF curve per window, issue 27) is scored per test subject by
``metrics.curve_metrics`` when the cell finishes; its record carries those rows
(``curve_metrics``), not the curves, and ``curves.csv`` (``curves_frame``, columns
CURVE_COLUMNS) holds them tidily: one row per (cell, target, axis, test subject) plus one row per
(cell, target, axis) with ``subject='all'``, the mean over the subjects (``*_sd`` their sd).
Curve cells add no rows to results.csv and the tables built on it (whose columns stay as they
were).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ssl_imu_jax import files, stats
from ssl_imu_jax import metrics as metrics_lib

COLUMNS = ('task', 'target', 'unit', 'init', 'protocol', 'fraction', 'fold', 'seed',
           'norm_policy', 'inputs', 'subject', 'pearson_r', 'r2', 'rmse', 'rrmse', 'n_train',
           'n_test', 'n_train_subjects', 'steps', 'budget_epochs', 'epochs_run', 'best_epoch',
           'stopped_early', 'still_improving', 'late_improvement')
# The training-length fields a record copies from a result's 'training' summary (finetune.py).
TRAINING_KEYS = ('budget_epochs', 'epochs_run', 'best_epoch', 'stopped_early', 'still_improving',
                 'late_improvement', 'steps_run', 'scored')
CONVERGENCE_COLUMNS = ('task', 'init', 'protocol', 'fraction', 'cells', 'budget_epochs',
                       'epochs_run_median', 'epochs_run_min', 'epochs_run_max',
                       'best_epoch_median', 'stopped_early', 'still_improving',
                       'late_improvement_mean')
CELL_KEYS = ('task', 'init', 'protocol', 'fraction', 'fold', 'seed')
RESULT_KEYS = ('predictions', 'targets', 'units', 'n_train', 'n_test', 'train_subjects',
               'test_subjects')
FEATURES = 'features'  # the feature baseline's init ...
RIDGE = 'ridge'        # ... and its one protocol
INIT_ORDER = ('pretrained', 'random', FEATURES)
DEEP_INITS = ('pretrained', 'random')
PROTOCOL_ORDER = ('linear_probe', 'full_from_probe', 'full')
ALL = 'all'
MIN_SUBJECT_WINDOWS = stats.MIN_SUBJECT_WINDOWS
HEADLINE_COLUMNS = ('task', 'target', 'protocol', 'fraction', 'within_r_pretrained',
                    'within_r_random', 'sd_pretrained', 'sd_random', 'n_subjects', 'delta_r',
                    'delta_r_low', 'delta_r_high', 't', 'p', 'pooled_r_pretrained',
                    'pooled_r_random', 'within_r_features', 'sd_features',
                    'delta_r_vs_features', 'delta_r_vs_features_low', 'delta_r_vs_features_high',
                    't_vs_features', 'p_vs_features', 'n_subjects_vs_features',
                    'pooled_r_features')
EFFICIENCY_COLUMNS = ('task', 'target', 'protocol', 'grid_fraction', 'percent_less',
                      'times_less_grid', 'times_less_interp', 'ci_low', 'ci_high', 'p_reach')
CURVE_COLUMNS = ('task', 'target', 'unit', 'axis', 'init', 'protocol', 'fraction', 'fold', 'seed',
                 'norm_policy', 'inputs', 'subject', 'n_samples', 'rmse', 'rrmse', 'r2',
                 'pearson_r', 'rmse_sd', 'rrmse_sd', 'r2_sd', 'pearson_r_sd', 'n_subjects',
                 'n_train', 'n_train_subjects', 'steps', 'epochs_run', 'best_epoch')
CURVE_HEADLINE_COLUMNS = ('task', 'target', 'axis', 'metric', 'protocol', 'fraction', 'pretrained',
                          'random', 'sd_pretrained', 'sd_random', 'n_subjects', 'delta',
                          'delta_low', 'delta_high', 't', 'p')
N_BOOT = 1000
BOOT_SEED = 0


def make_record(result: Mapping[str, Any], *, task: str, init: str, protocol: str,
                fraction: float, fold: int, steps: int | None = None, seed: int = 0,
                norm_policy: str = '') -> dict[str, Any]:
  """A JSON-serialisable cell record from one ``train_and_evaluate`` result (checked).

  ``seed`` is the cell's fine-tuning seed, ``norm_policy`` how its inputs were normalised (e.g.
  'train_subjects'); records written before these existed read as seed 0 and ''.
  """
  missing = [k for k in RESULT_KEYS if k not in result]
  if missing:
    raise ValueError(f'fine-tune result of {task} fold{fold} frac{fraction:g} {init}_{protocol} '
                     f'lacks key(s) {missing}; expected {list(RESULT_KEYS)}')
  pred = result['predictions']
  if result.get('curve'):
    return _curve_record(result, task=task, init=init, protocol=protocol, fraction=fraction,
                         fold=fold, steps=steps, seed=seed, norm_policy=norm_policy)
  for k in ('subject_id', 'y_true', 'y_pred'):
    if k not in pred:
      raise ValueError(f"fine-tune result: 'predictions' lacks {k!r}")
  targets = [str(t) for t in result['targets']]
  units = [str(u) for u in result['units']]
  sid = np.asarray(pred['subject_id']).astype(np.int64).ravel()
  y_true = np.asarray(pred['y_true'], dtype=np.float64).reshape(len(sid), -1)
  y_pred = np.asarray(pred['y_pred'], dtype=np.float64).reshape(len(sid), -1)
  if y_true.shape != y_pred.shape or y_true.shape[1] != len(targets) or len(units) != len(targets):
    raise ValueError(f"fine-tune result: predictions y_true {y_true.shape} / y_pred "
                     f"{y_pred.shape} do not match {len(targets)} targets {targets} "
                     f"with units {units}")
  return {
      **_cell_keys(result, task=task, init=init, protocol=protocol, fraction=fraction,
                   fold=fold, steps=steps, seed=seed, norm_policy=norm_policy),
      'targets': targets, 'units': units,
      'predictions': {'subject_id': sid.tolist(), 'y_true': y_true.tolist(),
                      'y_pred': y_pred.tolist()},
  }


def _cell_keys(result: Mapping[str, Any], *, task: str, init: str, protocol: str,
               fraction: float, fold: int, steps: int | None, seed: int,
               norm_policy: str) -> dict[str, Any]:
  """The keys every cell record carries (which cell, its inputs, training length, counts and
  subjects), after checking that no subject is on both sides of the split."""
  train_s = sorted(int(s) for s in result['train_subjects'])
  test_s = sorted(int(s) for s in result['test_subjects'])
  overlap = set(train_s) & set(test_s)
  if overlap:
    raise ValueError(f'{task} fold{fold}: subject(s) {sorted(overlap)} are in both the training '
                     f'and the test set')
  return {
      'task': str(task), 'init': str(init), 'protocol': str(protocol),
      'fraction': float(fraction), 'fold': int(fold), 'seed': int(seed),
      'norm_policy': str(norm_policy),
      'inputs': 'acc+gyr' if result.get('use_gyr', True) else 'acc only',
      'steps': None if steps is None else int(steps),
      'training': {k: v for k, v in (result.get('training') or {}).items()
                   if k in TRAINING_KEYS},
      'n_train': int(result['n_train']), 'n_test': int(result['n_test']),
      'train_subjects': train_s, 'test_subjects': test_s,
  }


def _curve_record(result: Mapping[str, Any], *, task: str, init: str, protocol: str,
                  fraction: float, fold: int, steps: int | None, seed: int,
                  norm_policy: str) -> dict[str, Any]:
  """The record of a curve cell: the cell keys and counts as for scalars, the curve's spec and
  its per-subject ``curve_metrics`` (the curves stay in the cell's curves.npz)."""
  return {
      **_cell_keys(result, task=task, init=init, protocol=protocol, fraction=fraction,
                   fold=fold, steps=steps, seed=seed, norm_policy=norm_policy),
      'targets': [str(t) for t in result['targets']],
      'units': [str(u) for u in result['units']],
      'curve': dict(result['curve']),
      'curve_metrics': {'per_subject': list((result.get('curve_metrics') or {}).get(
          'per_subject', []))},
      'predictions': {'subject_id': [int(s) for s in result['predictions']['subject_id']],
                      'file': result['predictions'].get('file', '')},
  }


def curves_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
  """The tidy curve table (columns CURVE_COLUMNS) of the curve records among ``records``: their
  per-subject rows, and per (cell, target, axis) the mean and sd over subjects
  (``stats.mean_sd``; subject 'all')."""
  rows = []
  for rec in records:
    if not rec.get('curve'):
      continue
    training = rec.get('training') or {}
    base = {k: rec[k] for k in ('task', 'init', 'protocol', 'fraction', 'fold', 'n_train')}
    base.update(seed=int(rec.get('seed', 0)), norm_policy=str(rec.get('norm_policy') or ''),
                inputs=str(rec.get('inputs') or 'acc+gyr'), steps=rec.get('steps'),
                n_train_subjects=len(rec['train_subjects']),
                epochs_run=training.get('epochs_run'), best_epoch=training.get('best_epoch'),
                target=rec['targets'][0], unit=rec['units'][0])
    per = rec['curve_metrics']['per_subject']
    for axis in [a for a, p in zip(rec['curve']['axes'], rec['curve']['present'], strict=True)
                 if p]:
      mine = [r for r in per if r['axis'] == axis]
      for r in mine:
        rows.append({**base, 'axis': axis, 'subject': str(r['subject']),
                     'n_samples': int(r['n_samples']), 'n_subjects': 1,
                     **{k: r[k] for k in metrics_lib.CURVE_METRICS}})
      if mine:
        summary = {}
        for k in metrics_lib.CURVE_METRICS:
          mean, sd, _ = stats.mean_sd([r[k] for r in mine])
          summary[k], summary[f'{k}_sd'] = mean, sd
        rows.append({**base, 'axis': axis, 'subject': ALL, 'n_subjects': len(mine),
                     'n_samples': int(sum(r['n_samples'] for r in mine)), **summary})
  df = pd.DataFrame(rows, columns=list(CURVE_COLUMNS))
  if len(df):
    df['fraction'] = df['fraction'].astype(float)
  return df


def curve_summary(curves: pd.DataFrame) -> pd.DataFrame:
  """The reference's curve table from ``curves_frame``: per (task, target, axis, init, protocol,
  fraction), each metric's mean and sd over test subjects (a subject's values first averaged
  over its fine-tuning seeds, so each subject counts once)."""
  keys = ['task', 'target', 'unit', 'axis', 'init', 'protocol', 'fraction']
  per = curves[curves.subject != ALL]
  per = per.groupby(keys + ['subject'], sort=False)[list(metrics_lib.CURVE_METRICS)].mean()
  rows = []
  for key, g in per.reset_index().groupby(keys, sort=False):
    row = dict(zip(keys, key, strict=True))
    for k in metrics_lib.CURVE_METRICS:
      row[k], row[f'{k}_sd'], row['n_subjects'] = stats.mean_sd(g[k])
    rows.append(row)
  return pd.DataFrame(rows)


def curve_markdown(curves: pd.DataFrame) -> str:
  """summary.md's section for curve targets: ``curve_summary`` as a table."""
  table = curve_summary(curves)
  rows = [[r.task, f'{r.target} ({r.unit})', r.axis, r.init, r.protocol, f'{r.fraction:.0%}',
           str(r.n_subjects)] + [f'{getattr(r, k):.3f} ± {getattr(r, k + "_sd"):.3f}'
                                 for k in metrics_lib.CURVE_METRICS]
          for r in table.itertuples()]
  return ('## Curve targets: mean ± sd over test subjects (samples with true vertical force > '
          f'{metrics_lib.STANCE_THRESHOLD_BW} BW)\n\n'
          + _markdown(['task', 'target', 'axis', 'init', 'protocol', 'fraction', 'subjects',
                       'RMSE', 'rRMSE (%)', 'R²', 'r'], rows) + '\n')


def curve_comparison_markdown(head: pd.DataFrame, eff: pd.DataFrame) -> str:
  """summary.md's pre-trained vs random section for curves: r and rRMSE per axis with the paired
  difference over test subjects, then the data efficiency read from the curve r."""
  out = ['## Curve targets: pre-trained vs random init, paired over test subjects', '',
         'Difference = pre-trained - random, mean over subjects [95 % paired-t interval]; a '
         'gain is a positive difference in r, a negative one in rRMSE.', '']
  sel = head[head.metric.isin(('pearson_r', 'rrmse'))]
  rows = [[r.task, r.axis, r.metric, r.protocol, f'{r.fraction:.0%}', _fmt(r.pretrained),
           _fmt(r.random), f'{_fmt(r.delta, sign=True)} [{_fmt(r.delta_low, sign=True)}, '
           f'{_fmt(r.delta_high, sign=True)}]', _fmt_p(r.p), str(r.n_subjects)]
          for r in sel.itertuples()]
  out += [_markdown(['task', 'axis', 'metric', 'protocol', 'fraction', 'pre-trained', 'random',
                     'difference', 'p', 'subjects'], rows), '']
  if len(eff):
    out += ['Data efficiency from the curve r: the smallest swept fraction whose pre-trained r '
            'reaches random init\'s at the largest one.', '']
    rows = [[r.task, r.axis, r.protocol,
             'not reached' if math.isnan(r.grid_fraction) else f'{r.grid_fraction:.0%}',
             _fmt(r.times_less_interp, 2), f'{_fmt(r.ci_low, 2)} to {_fmt(r.ci_high, 2)}',
             f'{r.p_reach:.0%}'] for r in eff.itertuples()]
    out += [_markdown(['task', 'axis', 'protocol', 'reached at', 'times less (interpolated)',
                       'bootstrap 95 %', 'reached in'], rows), '']
  return '\n'.join(out)


def _cell_key(rec: Mapping[str, Any]) -> tuple[Any, ...]:
  return (str(rec['task']), str(rec['init']), str(rec['protocol']), float(rec['fraction']),
          int(rec['fold']), int(rec.get('seed', 0)))


def results_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
  """The tidy table (columns COLUMNS) of a list of cell records.

  Raises ValueError when two records are the same cell (task, init, protocol, fraction, fold,
  seed): their rows could not be told apart.
  """
  rows = []
  seen: dict[tuple[Any, ...], int] = {}
  for n, rec in enumerate(records):
    key = _cell_key(rec)
    if key in seen:
      raise ValueError(f'records {seen[key]} and {n} are the same cell '
                       f'{dict(zip(CELL_KEYS, key, strict=True))}; give them different seeds or '
                       f'report them separately')
    seen[key] = n
    if rec.get('curve'):  # scored per subject and axis: curves_frame
      continue
    pred = rec['predictions']
    sid = np.asarray(pred['subject_id'], dtype=np.int64)
    y_true = np.asarray(pred['y_true'], dtype=np.float64).reshape(len(sid), -1)
    y_pred = np.asarray(pred['y_pred'], dtype=np.float64).reshape(len(sid), -1)
    base = {k: rec[k] for k in ('task', 'init', 'protocol', 'fraction', 'fold', 'n_train')}
    base['seed'] = int(rec.get('seed', 0))
    base['norm_policy'] = str(rec.get('norm_policy') or '')
    base['inputs'] = str(rec.get('inputs') or 'acc+gyr')
    base['steps'] = rec.get('steps')
    training = rec.get('training') or {}
    for k in ('budget_epochs', 'epochs_run', 'best_epoch', 'stopped_early', 'still_improving',
              'late_improvement'):
      base[k] = training.get(k)
    base['n_train_subjects'] = len(rec['train_subjects'])
    subjects = np.unique(sid)
    for j, (target, unit) in enumerate(zip(rec['targets'], rec['units'], strict=True)):
      groups = [(ALL, np.ones(len(sid), bool))] + [(str(s), sid == s) for s in subjects]
      for name, mask in groups:
        m = metrics_lib.regression_metrics(y_true[mask, j], y_pred[mask, j])
        rows.append({**base, 'target': target, 'unit': unit, 'subject': name,
                     'n_test': int(mask.sum()), **m})
  df = pd.DataFrame(rows, columns=list(COLUMNS))
  if len(df):
    df['fraction'] = df['fraction'].astype(float)
    df['fold'] = df['fold'].astype(int)
    df['seed'] = df['seed'].astype(int)
  return df


def _order(values: Iterable[str], preferred: Sequence[str]) -> list[str]:
  vals = set(values)
  return [v for v in preferred if v in vals] + sorted(vals - set(preferred))


def _protocols(values: Iterable[str]) -> list[str]:
  """The deep arms' protocols in order (the rows of the tables); the feature baseline's 'ridge'
  only when there is no other (its value stands beside every deep protocol)."""
  vals = set(values)
  return _order(vals - {RIDGE}, PROTOCOL_ORDER) or _order(vals, PROTOCOL_ORDER)


def _protocol_of(init: str, protocol: str) -> str:
  """The protocol under which ``init``'s cells compared with ``protocol``'s are stored."""
  return RIDGE if init == FEATURES else protocol


def _within(within: Mapping[tuple[str, float, str], stats.WithinSubjectR], protocol: str,
            frac: float, init: str) -> stats.WithinSubjectR | None:
  """The within-subject r of ``init`` beside ``protocol`` (the features arm: its ridge cells)."""
  return within.get((_protocol_of(init, protocol), float(frac), init))


def _fmt(x: float | None, digits: int = 3, sign: bool = False) -> str:
  if x is None or not math.isfinite(x):
    return '—'
  return f'{x:+.{digits}f}' if sign else f'{x:.{digits}f}'


def _fmt_p(p: float | None) -> str:
  if p is None:
    return '—'
  return f'{p:.3g}' if p >= 0.001 else f'{p:.2e}'


def _frac(f: float) -> str:
  return f'{f:.0%}' if f * 100 == round(f * 100) else f'{f:.1%}'


def _mean_sd_text(values: Sequence[float], n_expected: int, digits: int = 3) -> str:
  m, sd, n = stats.mean_sd(values)
  if n == 0:
    return '—'
  text = f'{m:.{digits}f}' if n < 2 else f'{m:.{digits}f} ± {sd:.{digits}f}'
  if n != n_expected:
    text += f' (n={n})'
  return text


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join('---' for _ in header) + '|']
  lines += ['| ' + ' | '.join(r) + ' |' for r in rows]
  return '\n'.join(lines)


def _runs(pooled: pd.DataFrame) -> int:
  """Number of trained models per cell of a table: distinct (fold, seed) pairs."""
  return len(pooled[['fold', 'seed']].drop_duplicates())


def metric_table(df: pd.DataFrame, task: str, target: str, metric: str = 'pearson_r',
                 digits: int = 3) -> str:
  """Markdown table of the pooled metric, mean ± sd over (fold, seed): fraction x init/protocol."""
  pooled = df[(df.task == task) & (df.target == target) & (df.subject == ALL)]
  n_runs = _runs(pooled)
  combos = [(i, p) for i in _order(pooled.init, INIT_ORDER)
            for p in _order(pooled.protocol, PROTOCOL_ORDER)
            if ((pooled.init == i) & (pooled.protocol == p)).any()]
  rows = []
  for frac in sorted(pooled.fraction.unique()):
    row = [_frac(frac)]
    for i, p in combos:
      sel = pooled[(pooled.fraction == frac) & (pooled.init == i) & (pooled.protocol == p)]
      row.append(_mean_sd_text(sel[metric].to_numpy(), n_runs, digits))
    rows.append(row)
  return _markdown(['fraction'] + [f'{i} / {p}' for i, p in combos], rows)


def within_subject_results(df: pd.DataFrame, task: str, target: str, metric: str = 'pearson_r'
                           ) -> dict[tuple[str, float, str], stats.WithinSubjectR]:
  """Within-subject ``metric`` per (protocol, fraction, init) of one task and target."""
  sub = df[(df.task == task) & (df.target == target) & (df.subject != ALL)]
  return {(str(p), float(f), str(i)): stats.within_subject_r(g, MIN_SUBJECT_WINDOWS, metric)
          for (p, f, i), g in sub.groupby(['protocol', 'fraction', 'init'], sort=False)}


def _subject_pairs(within: Mapping[tuple[str, float, str], stats.WithinSubjectR], protocol: str,
                   frac: float, a: str = 'pretrained',
                   b: str = 'random') -> tuple[np.ndarray, np.ndarray] | None:
  """Per-subject values of inits ``a`` and ``b`` aligned on the union of their subjects, or
  None."""
  pre = _within(within, protocol, frac, a)
  rnd = _within(within, protocol, frac, b)
  if pre is None or rnd is None:
    return None
  subjects = pre.per_subject.index.union(rnd.per_subject.index)
  return (pre.per_subject.reindex(subjects).to_numpy(),
          rnd.per_subject.reindex(subjects).to_numpy())


def paired_test_rows(df: pd.DataFrame, task: str, target: str, metric: str = 'pearson_r',
                     over: Sequence[str] = ('folds', 'subjects'), a: str = 'pretrained',
                     b: str = 'random') -> list[list[str]]:
  """Init ``a`` vs ``b`` (default pre-trained vs random) per protocol and fraction, paired over
  (fold, seed) and/or subjects; ``b='features'`` pairs each protocol with the feature baseline.

  Over folds the pairs are the pooled metric of each (fold, seed); over subjects each subject's
  metric averaged over seeds (one pair per subject, as in ``within_subject_r``).
  """
  sel = df[(df.task == task) & (df.target == target)]
  within = within_subject_results(df, task, target, metric) if 'subjects' in over else {}
  rows = []
  for protocol in _protocols(sel.protocol):
    for frac in sorted(sel.fraction.unique()):
      for kind in over:
        if kind == 'folds':
          pooled = sel[(sel.fraction == frac) & (sel.subject == ALL)]
          side = [pooled[(pooled.init == i) & (pooled.protocol == _protocol_of(i, protocol))]
                  .set_index(['fold', 'seed'])[metric] for i in (a, b)]
          if any(s.empty for s in side) or a == b:
            continue
          keys = side[0].index.union(side[1].index)
          pair = side[0].reindex(keys).to_numpy(), side[1].reindex(keys).to_numpy()
        elif kind == 'subjects':
          pair = _subject_pairs(within, protocol, float(frac), a, b)
          if pair is None:
            continue
        else:
          raise ValueError(f"paired_test_rows: over must hold 'folds' and/or 'subjects', "
                           f'got {kind!r}')
        wil, tt = stats.paired_tests(*pair, kind)
        note = '; '.join(n for n in dict.fromkeys([wil.note, tt.note]) if n)
        rows.append([f'{frac:g}', protocol, kind, str(wil.n), tt.diff_text(),
                     _fmt(wil.statistic, 1), _fmt_p(wil.p_value), _fmt(tt.statistic, 2),
                     _fmt_p(tt.p_value), note])
  return rows


def efficiency_results(df: pd.DataFrame, task: str,
                       target: str) -> dict[str, stats.DataEfficiency]:
  """The interpolated data-efficiency figure per protocol from the POOLED r (mean over runs)."""
  pooled = df[(df.task == task) & (df.target == target) & (df.subject == ALL)]
  out = {}
  for protocol in _protocols(pooled.protocol):
    means = (pooled[pooled.protocol == protocol]
             .groupby(['fraction', 'init'])['pearson_r'].mean().unstack('init'))
    if not {'pretrained', 'random'} <= set(means.columns):
      continue
    out[protocol] = stats.data_efficiency(means.index.to_numpy(),
                                          means['pretrained'].to_numpy(),
                                          means['random'].to_numpy())
  return out


@dataclasses.dataclass(frozen=True)
class HeadlineEfficiency:
  """Data efficiency of one protocol from the within-subject r.

  Attributes:
    fractions: the swept fractions, ascending.
    pretrained_r, random_r: within-subject mean r per fraction (NaN where no cell).
    grid: read at the swept fractions (the paper's reading).
    interpolated: interpolated on log fraction.
    bootstrap: intervals from resampling test subjects.
  """

  fractions: tuple[float, ...]
  pretrained_r: tuple[float, ...]
  random_r: tuple[float, ...]
  grid: stats.GridEfficiency
  interpolated: stats.DataEfficiency
  bootstrap: stats.BootstrapEfficiency


def _subject_matrix(within: Mapping[tuple[str, float, str], stats.WithinSubjectR], protocol: str,
                   init: str, fractions: Sequence[float], subjects: Sequence[str]) -> np.ndarray:
  """[n_subjects, n_fractions] within-subject r of one protocol and init (NaN where missing)."""
  out = np.full((len(subjects), len(fractions)), np.nan)
  for j, f in enumerate(fractions):
    w = within.get((protocol, float(f), init))
    if w is not None:
      out[:, j] = w.per_subject.reindex(list(subjects)).to_numpy(dtype=np.float64)
  return out


def headline_efficiency(df: pd.DataFrame, task: str, target: str, n_boot: int = N_BOOT,
                        seed: int = BOOT_SEED) -> dict[str, HeadlineEfficiency]:
  """Grid-point, interpolated and bootstrapped data efficiency per protocol (within-subject r)."""
  return efficiency_from_within(within_subject_results(df, task, target), n_boot, seed)


def efficiency_from_within(within: Mapping[tuple[str, float, str], stats.WithinSubjectR],
                           n_boot: int = N_BOOT, seed: int = BOOT_SEED
                           ) -> dict[str, HeadlineEfficiency]:
  """``headline_efficiency`` from per-subject values keyed (protocol, fraction, init): a peak
  target's within-subject r or a curve axis' r (``curve_within``); higher is better."""
  out = {}
  for protocol in _order({k[0] for k in within}, PROTOCOL_ORDER):
    keys = [k for k in within if k[0] == protocol]
    if not {'pretrained', 'random'} <= {k[2] for k in keys}:
      continue
    fractions = sorted({k[1] for k in keys})
    subjects = sorted(set().union(*(within[k].per_subject.index for k in keys)))
    pre = _subject_matrix(within, protocol, 'pretrained', fractions, subjects)
    rnd = _subject_matrix(within, protocol, 'random', fractions, subjects)
    pre_r = [within[k].mean if k in within else math.nan
             for k in ((protocol, f, 'pretrained') for f in fractions)]
    rnd_r = [within[k].mean if k in within else math.nan
             for k in ((protocol, f, 'random') for f in fractions)]
    out[protocol] = HeadlineEfficiency(
        tuple(fractions), tuple(pre_r), tuple(rnd_r),
        stats.data_efficiency_grid(fractions, pre_r, rnd_r),
        stats.data_efficiency(fractions, pre_r, rnd_r),
        stats.bootstrap_efficiency(pre, rnd, fractions, n_boot, seed))
  return out


def curve_within(curves: pd.DataFrame, task: str, target: str, axis: str,
                 metric: str = 'pearson_r') -> dict[tuple[str, float, str], stats.WithinSubjectR]:
  """A curve metric per test subject (mean over its fine-tuning seeds) per (protocol, fraction,
  init) of one task, target and axis, from ``curves_frame``: what ``within_subject_results``
  is for a peak target (every subject's metric already pools its stance samples)."""
  sub = curves[(curves.task == task) & (curves.target == target) & (curves.axis == axis)
               & (curves.subject != ALL)]
  return {(str(p), float(f), str(i)): stats.within_subject_r(g.assign(n_test=g.n_samples), 1,
                                                            metric)
          for (p, f, i), g in sub.groupby(['protocol', 'fraction', 'init'], sort=False)}


def curve_axes(curves: pd.DataFrame) -> list[tuple[str, str, str]]:
  return list(dict.fromkeys(zip(curves.task, curves.target, curves.axis, strict=True)))


def curve_headline_frame(curves: pd.DataFrame) -> pd.DataFrame:
  """curve_headline.csv: per (task, target, axis, metric, protocol, fraction) the mean over test
  subjects of the pre-trained and random arms and their difference, with the paired t over
  subjects (delta_low / _high its 95 % interval); a gain is positive for r and R², negative for
  RMSE and rRMSE."""
  rows = []
  for task, target, axis in curve_axes(curves):
    for metric in metrics_lib.CURVE_METRICS:
      within = curve_within(curves, task, target, axis, metric)
      for protocol in _order({k[0] for k in within}, PROTOCOL_ORDER):
        for frac in sorted({k[1] for k in within if k[0] == protocol}):
          w = {i: within.get((protocol, frac, i)) for i in DEEP_INITS}
          n, t, p, lo, hi = _paired_t(within, protocol, frac) or (0, math.nan, math.nan,
                                                                  math.nan, math.nan)
          mean = {i: math.nan if w[i] is None else w[i].mean for i in DEEP_INITS}
          rows.append({'task': task, 'target': target, 'axis': axis, 'metric': metric,
                       'protocol': protocol, 'fraction': frac,
                       'pretrained': mean['pretrained'], 'random': mean['random'],
                       'sd_pretrained': math.nan if w['pretrained'] is None else w['pretrained'].sd,
                       'sd_random': math.nan if w['random'] is None else w['random'].sd,
                       'n_subjects': n, 'delta': mean['pretrained'] - mean['random'],
                       'delta_low': lo, 'delta_high': hi, 't': t, 'p': p})
  return pd.DataFrame(rows, columns=list(CURVE_HEADLINE_COLUMNS))


def curve_efficiency_frame(curves: pd.DataFrame, n_boot: int = N_BOOT,
                           seed: int = BOOT_SEED) -> pd.DataFrame:
  """curve_efficiency.csv: efficiency.csv's figures per curve axis, from each test subject's
  curve r (Pearson, the reference's correlation metric)."""
  rows = [{**_efficiency_row(task, target, protocol, eff), 'axis': axis}
          for task, target, axis in curve_axes(curves)
          for protocol, eff in efficiency_from_within(
              curve_within(curves, task, target, axis), n_boot, seed).items()]
  return pd.DataFrame(rows, columns=list(EFFICIENCY_COLUMNS) + ['axis'])


def task_targets(df: pd.DataFrame) -> list[tuple[str, str]]:
  return [(task, target) for task in sorted(df.task.unique())
          for target in dict.fromkeys(df[df.task == task].target)]


def _pooled_mean(pooled: pd.DataFrame, protocol: str, frac: float, init: str) -> float:
  sel = pooled[(pooled.protocol == protocol) & (pooled.fraction == frac) & (pooled.init == init)]
  return stats.mean_sd(sel.pearson_r.to_numpy())[0]


def _paired_t(within: Mapping[tuple[str, float, str], stats.WithinSubjectR], protocol: str,
              frac: float, a: str = 'pretrained',
              b: str = 'random') -> tuple[int, float, float, float, float] | None:
  """(n pairs, t, p, 95 % low, high) of the paired t over subjects of ``a`` - ``b``, or None."""
  pair = _subject_pairs(within, protocol, frac, a, b)
  if pair is None:
    return None
  tt = stats.paired_tests(*pair, 'subjects')[1]
  lo, hi = tt.ci95 or (math.nan, math.nan)
  return (tt.n, math.nan if tt.statistic is None else tt.statistic,
          math.nan if tt.p_value is None else tt.p_value, lo, hi)


def headline_frame(df: pd.DataFrame) -> pd.DataFrame:
  """headline.csv: one row per (task, target, protocol, fraction), columns HEADLINE_COLUMNS.

  within_r_*: within-subject r (mean over subjects), sd_*: its sd over subjects; delta_r:
  within_r_pretrained - within_r_random, delta_r_low / _high the 95 % t interval of the mean
  per-subject difference; t, p: paired t over subjects (the paper's test) and
  n_subjects its number of pairs (subjects of the one init present, if only one is);
  pooled_r_*: pooled r, mean over (fold, seed). The feature baseline (``*_features``: the same
  value on every protocol's row of a fraction) and the pre-trained arm against it
  (``delta_r_vs_features`` with its interval, ``t_vs_features``, ``p_vs_features`` over
  ``n_subjects_vs_features`` subjects); NaN where an arm has no cells.
  """
  rows = []
  for task, target in task_targets(df):
    within = within_subject_results(df, task, target)
    pooled = df[(df.task == task) & (df.target == target) & (df.subject == ALL)]
    for protocol in _protocols(pooled.protocol):
      for frac in sorted(pooled[pooled.protocol == protocol].fraction.unique()):
        frac = float(frac)
        w = {i: _within(within, protocol, frac, i) for i in INIT_ORDER}
        mean = {i: math.nan if w[i] is None else w[i].mean for i in INIT_ORDER}
        sd = {i: math.nan if w[i] is None else w[i].sd for i in INIT_ORDER}
        nan5 = (0, math.nan, math.nan, math.nan, math.nan)
        n, t, p, lo, hi = _paired_t(within, protocol, frac) or nan5
        if n == 0:
          n = max((w[i].n_subjects for i in DEEP_INITS if w[i] is not None),
                  default=0 if w[FEATURES] is None else w[FEATURES].n_subjects)
        nf, tf, pf, lof, hif = _paired_t(within, protocol, frac, 'pretrained', FEATURES) or nan5
        rows.append({
            'task': task, 'target': target, 'protocol': protocol, 'fraction': frac,
            'within_r_pretrained': mean['pretrained'], 'within_r_random': mean['random'],
            'sd_pretrained': sd['pretrained'], 'sd_random': sd['random'], 'n_subjects': n,
            'delta_r': mean['pretrained'] - mean['random'], 'delta_r_low': lo,
            'delta_r_high': hi, 't': t, 'p': p,
            'pooled_r_pretrained': _pooled_mean(pooled, protocol, frac, 'pretrained'),
            'pooled_r_random': _pooled_mean(pooled, protocol, frac, 'random'),
            'within_r_features': mean[FEATURES], 'sd_features': sd[FEATURES],
            'delta_r_vs_features': mean['pretrained'] - mean[FEATURES],
            'delta_r_vs_features_low': lof, 'delta_r_vs_features_high': hif,
            't_vs_features': tf, 'p_vs_features': pf, 'n_subjects_vs_features': nf,
            'pooled_r_features': _pooled_mean(pooled, RIDGE, frac, FEATURES)})
  return pd.DataFrame(rows, columns=list(HEADLINE_COLUMNS))


def _efficiency_row(task: str, target: str, protocol: str,
                    eff: HeadlineEfficiency) -> dict[str, Any]:
  def num(x: float | None) -> float:
    return math.nan if x is None else x

  g, b = eff.grid, eff.bootstrap
  return {'task': task, 'target': target, 'protocol': protocol,
          'grid_fraction': num(g.fraction), 'percent_less': num(g.percent_less),
          'times_less_grid': num(g.times_less),
          'times_less_interp': num(eff.interpolated.times_less),
          'ci_low': num(b.times_less_ci[0]), 'ci_high': num(b.times_less_ci[1]),
          'p_reach': b.p_reach}


def efficiency_frame(df: pd.DataFrame, n_boot: int = N_BOOT,
                     seed: int = BOOT_SEED) -> pd.DataFrame:
  """efficiency.csv: one row per (task, target, protocol) with both inits (EFFICIENCY_COLUMNS).

  From the within-subject r: grid_fraction / percent_less / times_less_grid by the grid-point
  rule, times_less_interp interpolated on log fraction, ci_low / ci_high its bootstrap 95 %
  interval over subjects (NaN: that end never reaches the target), p_reach the share of
  resamples that reach it.
  """
  rows = [_efficiency_row(task, target, protocol, eff)
          for task, target in task_targets(df)
          for protocol, eff in headline_efficiency(df, task, target, n_boot, seed).items()]
  return pd.DataFrame(rows, columns=list(EFFICIENCY_COLUMNS))


def _has_features(within: Mapping[tuple[str, float, str], Any]) -> bool:
  return any(k[2] == FEATURES for k in within)


def headline_table(df: pd.DataFrame, task: str, target: str) -> str:
  """Markdown table: fraction x protocol of within-subject r (mean ± sd over subjects), Δr
  with the 95 % t interval of its mean over subjects; with feature-baseline cells, its r (one
  column: it has no protocol) and each protocol's pre-trained Δr against it."""
  within = within_subject_results(df, task, target)
  sub = df[(df.task == task) & (df.target == target) & (df.subject != ALL)]
  n_sub = sub.subject.nunique()
  protocols = [p for p in _protocols({k[0] for k in within}) if p != RIDGE]
  feats = _has_features(within)
  header = ['fraction'] + (['features (ridge)'] if feats else [])
  for protocol in protocols:
    header += [f'{protocol}: pretrained', f'{protocol}: random', f'{protocol}: Δr']
    header += [f'{protocol}: Δr vs features'] if feats else []
  rows = []

  def text(w: stats.WithinSubjectR | None) -> str:
    return '—' if w is None else _mean_sd_text(w.per_subject.to_numpy(), n_sub)

  def delta(protocol: str, frac: float, b: str) -> str:
    pair = _subject_pairs(within, protocol, frac, 'pretrained', b)
    return '—' if pair is None else stats.paired_tests(*pair, 'subjects')[1].diff_text()

  for frac in sorted({k[1] for k in within}):
    row = [_frac(frac)] + ([text(within.get((RIDGE, frac, FEATURES)))] if feats else [])
    for protocol in protocols:
      row += [text(within.get((protocol, frac, i))) for i in DEEP_INITS]
      row.append(delta(protocol, frac, 'random'))
      row += [delta(protocol, frac, FEATURES)] if feats else []
    rows.append(row)
  return _markdown(header, rows)


def _features_section(within: Mapping[tuple[str, float, str], stats.WithinSubjectR]
                      ) -> list[str]:
  """summary.md lines: the pre-trained arm against the feature baseline, paired over subjects
  at every protocol and fraction ([] without feature-baseline cells)."""
  if not _has_features(within):
    return []
  md = ['#### Pre-trained vs the feature baseline (ridge on hand features): paired t over test '
        'subjects', '']
  rows, full = [], []
  for protocol in [p for p in _protocols({k[0] for k in within}) if p != RIDGE]:
    fracs = sorted(k[1] for k in within if k[0] == protocol and k[2] == 'pretrained')
    for frac in fracs:
      pair = _subject_pairs(within, protocol, frac, 'pretrained', FEATURES)
      if pair is None:
        continue
      wil, tt = stats.paired_tests(*pair, 'subjects')
      note = '; '.join(n for n in dict.fromkeys([tt.note, wil.note]) if n)
      rows.append([_frac(frac), protocol, str(tt.n), tt.diff_text(), _fmt(tt.statistic, 2),
                   _fmt_p(tt.p_value), _fmt_p(wil.p_value), note])
      if frac == fracs[-1]:
        full.append(f'- Δr vs features at {_frac(frac)}, {protocol}: {tt.diff_text()} '
                    f'(pre-trained {_fmt(within[(protocol, frac, "pretrained")].mean)} vs '
                    f'features {_fmt(_within(within, protocol, frac, FEATURES).mean)}; 95 % t '
                    f'interval over subjects; p = {_fmt_p(tt.p_value)}).')
  if not rows:
    return md + ['Not computed: needs cells of the pre-trained arm beside the feature '
                 'baseline.', '']
  return md + full + ['', _markdown(['fraction', 'protocol', 'n subjects',
                                     'mean Δr vs features [95 % CI]', 't', 'p', 'Wilcoxon p',
                                     'note'], rows), '']


def _headline_section(df: pd.DataFrame, task: str,
                      target: str) -> tuple[list[str], list[str]]:
  """(summary.md lines, printed lines) of the within-subject headline of one task and target."""
  table = headline_table(df, task, target)
  md = ['### Within-subject r (the paper\'s metric): mean ± sd over test subjects', '', table, '']
  printed = ['within-subject r (mean ± sd over test subjects):', table]
  within = within_subject_results(df, task, target)
  feats = _features_section(within)
  printed += [line[2:] for line in feats if line.startswith('- Δr vs features')]
  eff = headline_efficiency(df, task, target)
  if not eff:
    md += ['Δr, paired t and data efficiency not computed: needs cells of both inits '
           '(pretrained and random).', ''] + feats
    return md, printed
  for protocol, e in eff.items():
    de = e.interpolated
    pair = _subject_pairs(within, protocol, de.full_fraction)
    tt = stats.paired_tests(*pair, 'subjects')[1] if pair is not None else None
    md.append(f'- Δr at {_frac(de.full_fraction)}, {protocol}: '
              f'{tt.diff_text() if tt else _fmt(de.delta_r_full, sign=True)} '
              f'(pre-trained {_fmt(de.pretrained_full_r)} vs random {_fmt(de.target_r)}; '
              f'95 % t interval over subjects).')
  md.append('')
  rows = []
  for protocol, e in eff.items():
    for frac in e.fractions:
      pair = _subject_pairs(within, protocol, frac)
      if pair is None:
        continue
      wil, tt = stats.paired_tests(*pair, 'subjects')
      note = '; '.join(n for n in dict.fromkeys([tt.note, wil.note]) if n)
      rows.append([_frac(frac), protocol, str(tt.n), tt.diff_text(),
                   _fmt(tt.statistic, 2), _fmt_p(tt.p_value), _fmt_p(wil.p_value), note])
  md += ['#### Paired t test over test subjects (the paper\'s test)', '',
         _markdown(['fraction', 'protocol', 'n subjects', 'mean Δr [95 % CI]', 't', 'p',
                    'Wilcoxon p', 'note'], rows), ''] + feats + [
         '#### Data efficiency (within-subject r)', '']
  for protocol, e in eff.items():
    if len(e.fractions) < 2:
      line = (f'not computed: one fraction ({_frac(e.fractions[0])}) was swept, and data '
              f'efficiency compares fractions')
    else:
      line = (f'{e.grid.text()}; interpolated on log fraction: {e.interpolated.text()}; '
              f'{e.bootstrap.text()}')
    md.append(f'- {protocol}: {line}.')
    printed.append(f'data efficiency, {protocol}: {line}')
  md.append('')
  return md, printed


def summary_markdown(df: pd.DataFrame, title: str = 'Results',
                     notes: Sequence[str] = (), figures: Mapping[str, Sequence[str]] | None = None
                     ) -> tuple[str, str]:
  """(summary.md text, the plain tables to print: within-subject headline, then pooled r)."""
  md = [f'# {title}', '']
  md += [f'- {n}' for n in notes]
  steps = sorted({int(s) for s in df.steps.dropna().unique()}) if len(df) else []
  validated = len(df) and df.best_epoch.notna().any()
  if validated:
    md.append('- Every cell trained to its own stopping point: up to its epoch budget, '
              'validated every epoch on training subjects held out inside its fold, stopped '
              'after the patience without a better validation loss; the best validated state '
              'is the one scored (see "Training length").')
  elif len(steps) > 1:
    md.append(f'- WARNING: cells trained different numbers of steps: {steps}')
  elif steps:
    md.append(f'- Every cell trained {steps[0]} steps (no validation subjects: the last step '
              f'is scored).' if not df.steps.isna().any() else
              f'- Every deep cell trained {steps[0]} steps (no validation subjects: the last '
              f'step is scored).')
  policies = sorted(set(df.norm_policy)) if len(df) else []
  if len(policies) > 1:
    md.append(f'- WARNING: cells normalised their inputs differently: {policies}')
  elif policies and policies[0]:
    md.append(f'- Input normalisation: {policies[0]}.')
  seeds = sorted(set(df.seed)) if len(df) else []
  if len(seeds) > 1:
    md.append(f'- Fine-tuning seeds: {", ".join(str(s) for s in seeds)}.')
  md += [
      '- Headline, within-subject r (the paper\'s metric): Pearson r over one test subject\'s '
      'windows, averaged over seeds per subject, then mean ± sd (ddof=1) over test subjects '
      f'(subjects with < {MIN_SUBJECT_WINDOWS} test windows left out). Δr = pre-trained minus '
      'random init with the same protocol and fraction. The paired t test pairs each subject\'s '
      'r (one pair per subject, not per seed); subjects of one fold share a trained model, so '
      'its p values treat correlated pairs as independent.',
      '- Data efficiency as the paper reads it: the smallest swept fraction whose pre-trained '
      'within-subject r reaches random init\'s at the largest fraction; beside it the crossing '
      'interpolated on log fraction, with a 95 % percentile interval from resampling test '
      f'subjects ({N_BOOT} resamples, seed {BOOT_SEED}). headline.csv and efficiency.csv hold '
      'these numbers.',
      '- Pooled r: Pearson r over all test windows of a fold; mean ± sd (ddof=1) across (fold, '
      'seed) runs; its paired tests pair the runs (fold, seed), the conservative test.',
      "- results.csv: one row per cell, target and test subject, plus a pooled row per cell "
      "(subject = 'all'); rrmse = RMSE / (max - min of the true values in those rows) x 100.",
  ]
  if len(df) and (df.init == FEATURES).any():
    md.append('- Feature baseline (init features, protocol ridge): ridge regression on '
              'hand-computed per-window features of every site '
              '(ssl_imu_jax/evaluation/features.py), '
              'its penalty chosen on the validation subjects; the same folds, fractions, seeds '
              'and test subjects. It has no protocol, so its r stands beside every protocol; '
              'Δr vs features = pre-trained minus it, paired over subjects as above.')
  md.append('')
  printed = []
  for task, target in task_targets(df):
    tdf = df[df.task == task]
    unit = tdf[tdf.target == target].unit.iloc[0]
    inputs = sorted(set(tdf.inputs))
    heading = f'{task}: {target}' + (f' ({unit})' if unit else '') + (
        ', accelerometer only' if inputs == ['acc only'] else
        f', WARNING: cells differ in their inputs {inputs}' if len(inputs) > 1 else '')
    subj = tdf[(tdf.target == target) & (tdf.subject != ALL)]
    n_sub = subj.subject.nunique()
    per_subject = subj.drop_duplicates(['fold', 'subject']).n_test
    windows = (f' Test windows per subject: min {per_subject.min()}, median '
               f'{per_subject.median():g}, max {per_subject.max()}.' if n_sub else '')
    md += [f'## {heading}', '',
           f'{tdf.fold.nunique()} fold(s), {tdf.seed.nunique()} seed(s), {n_sub} test '
           f'subject(s).{windows}', '']
    printed.append(heading)
    head_md, head_printed = _headline_section(df, task, target)
    md += head_md
    printed += head_printed
    r_table = metric_table(df, task, target)
    md += ['### Pooled r (over all test windows of a fold): mean ± sd over (fold, seed)', '',
           r_table, '',
           f'### Pooled RMSE in {unit or "label units"} (mean ± sd over (fold, seed))', '',
           metric_table(df, task, target, 'rmse', 4), '']
    printed += ['pooled r (over all test windows of a fold), mean ± sd over (fold, seed):',
                r_table]
    tests = paired_test_rows(df, task, target, over=('folds',))
    md += ['### Paired tests of pooled r over (fold, seed): pre-trained vs random init', '']
    if tests:
      md += [_markdown(['fraction', 'protocol', 'paired over', 'n', 'mean Δr [95 % CI]',
                        'Wilcoxon signed-rank W', 'p', 'paired t', 'p', 'note'], tests), '']
    else:
      md += ['Not computed: needs cells of both inits (pretrained and random).', '']
    if (tdf.init == FEATURES).any():
      tests = paired_test_rows(df, task, target, over=('folds',), b=FEATURES)
      md += ['### Paired tests of pooled r over (fold, seed): pre-trained vs the feature '
             'baseline', '']
      md += [_markdown(['fraction', 'protocol', 'paired over', 'n', 'mean Δr vs features '
                        '[95 % CI]', 'Wilcoxon signed-rank W', 'p', 'paired t', 'p', 'note'],
                       tests), ''] if tests else [
          'Not computed: needs cells of the pre-trained arm beside the feature baseline.', '']
    if target == list(dict.fromkeys(tdf.target))[0] and validated:
      conv = convergence_markdown(df, task)
      md += ['### Training length (per arm and fraction, over its cells)', '',
             'Epochs = passes over a cell\'s training windows. still improving = the cell used '
             'its whole budget and its best validation loss came in the last quarter of it (a '
             'longer budget might have helped); late gain = mean relative fall of the best '
             'validation loss during the last quarter of the epochs run.', '', conv, '']
      printed += ['training length (epochs run, best epoch, convergence flags):', conv]
    md += ['### Data efficiency from pooled r (interpolated)', '']
    eff = efficiency_results(df, task, target)
    if not eff:
      md += ['Not computed: needs cells of both inits (pretrained and random).', '']
    for protocol, de in eff.items():
      if tdf[tdf.protocol == protocol].fraction.nunique() < 2:
        md.append(f'- {protocol}: not computed (one fraction swept); Δr at '
                  f'{de.full_fraction:.0%} = {_fmt(de.delta_r_full)}.')
        continue
      md.append(f'- {protocol}: {de.text()}; Δr at {de.full_fraction:.0%} = '
                f'{_fmt(de.delta_r_full)} (pre-trained {_fmt(de.pretrained_full_r)} vs random '
                f'{_fmt(de.target_r)}).')
    md.append('')
    printed.append('')
    if target == list(dict.fromkeys(tdf.target))[-1]:
      for fig in (figures or {}).get(task, ()):
        md += [f'![{os.path.basename(fig)}]({os.path.basename(fig)})', '']
  return '\n'.join(md).rstrip() + '\n', '\n'.join(printed).rstrip() + '\n'


def convergence_frame(records_or_df) -> pd.DataFrame:
  """Per (task, init, protocol, fraction): how long its cells trained and whether they had
  stopped improving (CONVERGENCE_COLUMNS), from the cells' training summaries: a results frame,
  or records (scalar and curve cells alike: each record's ``training``)."""
  if isinstance(records_or_df, pd.DataFrame):
    df = records_or_df
    cells = df[df.subject == ALL].drop_duplicates(list(CELL_KEYS))
  else:
    cells = pd.DataFrame(
        [{**{k: rec.get(k) for k in CELL_KEYS},
          **{k: (rec.get('training') or {}).get(k) for k in TRAINING_KEYS}}
         for rec in records_or_df], columns=list(CELL_KEYS) + list(TRAINING_KEYS))
  cells = cells[cells.epochs_run.notna()]
  rows = []
  for (task, init, protocol, frac), g in cells.groupby(['task', 'init', 'protocol', 'fraction'],
                                                       sort=False):
    best = g.best_epoch.dropna().astype(float)
    flags = g.still_improving.dropna().astype(bool)
    rows.append({'task': task, 'init': init, 'protocol': protocol, 'fraction': float(frac),
                 'cells': len(g), 'budget_epochs': float(g.budget_epochs.astype(float).median()),
                 'epochs_run_median': float(g.epochs_run.astype(float).median()),
                 'epochs_run_min': float(g.epochs_run.astype(float).min()),
                 'epochs_run_max': float(g.epochs_run.astype(float).max()),
                 'best_epoch_median': float(best.median()) if len(best) else math.nan,
                 'stopped_early': int(g.stopped_early.astype(bool).sum()),
                 'still_improving': int(flags.sum()),
                 'late_improvement_mean': float(g.late_improvement.dropna().astype(float).mean())
                 if g.late_improvement.notna().any() else math.nan})
  out = pd.DataFrame(rows, columns=list(CONVERGENCE_COLUMNS))
  if len(out):
    out['_i'] = [_order(out.init, INIT_ORDER).index(i) for i in out.init]
    out['_p'] = [_order(out.protocol, PROTOCOL_ORDER).index(p) for p in out.protocol]
    out = out.sort_values(['task', '_i', '_p', 'fraction']).drop(columns=['_i', '_p'])
  return out.reset_index(drop=True)


def convergence_markdown(df: pd.DataFrame, task: str) -> str:
  conv = convergence_frame(df)
  conv = conv[conv.task == task]
  rows = [[r.init, r.protocol, _frac(r.fraction), str(r.cells), f'{r.budget_epochs:.0f}',
           f'{r.epochs_run_median:.1f} [{r.epochs_run_min:.1f}, {r.epochs_run_max:.1f}]',
           _fmt(r.best_epoch_median, 1), f'{r.stopped_early}/{r.cells}',
           f'{r.still_improving}/{r.cells}' + (' ⚠' if r.still_improving else ''),
           f'{100 * r.late_improvement_mean:.1f} %' if math.isfinite(r.late_improvement_mean)
           else '—']
          for r in conv.itertuples()]
  return _markdown(['init', 'protocol', 'fraction', 'cells', 'budget (epochs)',
                    'epochs run, median [min, max]', 'best epoch (median)', 'stopped early',
                    'still improving', 'late gain'], rows)


def write_results(records: Sequence[Mapping[str, Any]], report_dir: str,
                  title: str = 'Fine-tuning results', notes: Sequence[str] = (),
                  figures: Mapping[str, Sequence[str]] | None = None) -> str:
  """Writes results.csv, headline.csv, efficiency.csv and summary.md; returns the printed text.

  Works for a single fine-tune run (one record) as well as a sweep.
  """
  if not records:
    raise ValueError('write_results: no cell records to report')
  os.makedirs(report_dir, exist_ok=True)
  df = results_frame(records)
  for name, frame in (('results', df), ('headline', headline_frame(df)),
                      ('efficiency', efficiency_frame(df)), ('convergence', convergence_frame(df))):
    files.write_text_atomic(os.path.join(report_dir, f'{name}.csv'), frame.to_csv(index=False))
  curves = curves_frame(records)
  if len(curves):
    head, eff = curve_headline_frame(curves), curve_efficiency_frame(curves)
    for name, frame in (('curves', curves), ('curve_headline', head), ('curve_efficiency', eff)):
      files.write_text_atomic(os.path.join(report_dir, f'{name}.csv'), frame.to_csv(index=False))
  md, table = summary_markdown(df, title, notes, figures)
  if len(curves):
    md = (md.rstrip('\n') + '\n\n' + curve_markdown(curves) + '\n'
          + curve_comparison_markdown(head, eff))
  files.write_text_atomic(os.path.join(report_dir, 'summary.md'), md)
  return table


def write_report(records: Sequence[Mapping[str, Any]], report_dir: str,
                 title: str = 'Sweep results', notes: Sequence[str] = ()) -> str:
  """write_results plus, per data set, <task>_data_efficiency.png and <task>_scatter.png."""
  if not records:
    raise ValueError('write_report: no cell records to report')
  os.makedirs(report_dir, exist_ok=True)
  df = results_frame(records)
  figures = {}
  for task in sorted(df.task.unique()):
    eff_png = os.path.join(report_dir, f'{task}_data_efficiency.png')
    sc_png = os.path.join(report_dir, f'{task}_scatter.png')
    plot_data_efficiency(df, task, eff_png)
    plot_scatter([r for r in records if r['task'] == task], sc_png)
    figures[task] = (eff_png, sc_png)
  return write_results(records, report_dir, title, notes, figures)


def pyplot():
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  return plt


_COLORS = {'pretrained': 'tab:blue', 'random': 'tab:orange', FEATURES: 'tab:green'}
_STYLES = {'full': '-', 'full_from_probe': '-.', 'linear_probe': ':'}


def plot_data_efficiency(df: pd.DataFrame, task: str, path: str) -> None:
  """Within-subject r vs training fraction (log x), mean ± sd over test subjects.

  One panel per target (row) and protocol (column) with both inits and the feature baseline
  (the same line in every protocol's panel: squares); the dashed line is random init's r at the
  largest fraction, the level the pre-trained curve has to reach.
  """
  plt = pyplot()
  tdf = df[df.task == task]
  targets = list(dict.fromkeys(tdf.target))
  protocols = _protocols(tdf.protocol)
  fig, axes = plt.subplots(len(targets), len(protocols), squeeze=False, sharey='row',
                           figsize=(4.2 * len(protocols), 3.6 * len(targets)))
  for row, target in zip(axes, targets, strict=True):
    within = within_subject_results(df, task, target)
    ends = [v for w in within.values() if math.isfinite(w.mean)
            for v in (w.mean - (0.0 if math.isnan(w.sd) else w.sd),
                      w.mean + (0.0 if math.isnan(w.sd) else w.sd))]
    unit = tdf[tdf.target == target].unit.iloc[0]
    for ax, protocol in zip(row, protocols, strict=True):
      fracs = sorted({k[1] for k in within if k[0] in (protocol, RIDGE)})
      inits = _order({k[2] for k in within}, INIT_ORDER)
      for j, init in enumerate(inits):
        pts = [(f, w) for f in fracs if (w := _within(within, protocol, f, init)) is not None]
        dodge = 1.0 + 0.04 * (j - (len(inits) - 1) / 2)  # the arms' error bars side by side
        feat = init == FEATURES
        if pts:
          ax.errorbar([f * dodge for f, _ in pts], [w.mean for _, w in pts],
                      yerr=[0.0 if math.isnan(w.sd) else w.sd for _, w in pts], capsize=3,
                      marker='s' if feat else 'o', color=_COLORS.get(init),
                      linestyle='-' if feat else _STYLES.get(protocol, '-'),
                      label='features (ridge)' if feat else init)
      ref = within.get((protocol, fracs[-1], 'random')) if fracs else None
      if ref is not None and math.isfinite(ref.mean):
        ax.axhline(ref.mean, color='0.3', linestyle='--', lw=0.9,
                   label=f'random at {_frac(fracs[-1])}')
      if fracs:
        ax.set_xscale('log')
        ax.set_xticks(fracs)
        ax.set_xticklabels([_frac(f) for f in fracs])
        ax.minorticks_off()
        ax.set_xlim(min(fracs) / 1.25, max(fracs) * 1.25)
      ax.set_title(f'{target}' + (f' ({unit})' if unit else '') + f'\n{protocol}', fontsize=9)
      ax.set_xlabel('fraction of training windows', fontsize=8)
      ax.grid(True, alpha=0.3)
      ax.legend(fontsize=7, loc='lower right', framealpha=0.9)
    # r's own scale (0..1 at least), so a small gap is not blown up to fill the axis.
    row[0].set_ylim(min([0.0] + ends) - 0.05, max([1.0] + ends) + 0.02)
    row[0].set_ylabel('within-subject r\n(mean ± sd over test subjects)', fontsize=8)
  fig.suptitle(task, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_scatter(records: Sequence[Mapping[str, Any]], path: str) -> None:
  """Predicted vs true of the full-data cells (largest fraction), pooled over folds."""
  plt = pyplot()
  if not records:
    raise ValueError(f'plot_scatter: no records for {path}')
  full = max(r['fraction'] for r in records)
  recs = [r for r in records if r['fraction'] == full]
  targets = list(recs[0]['targets'])
  units = list(recs[0]['units'])
  combos = [(i, p) for i in _order({r['init'] for r in recs}, INIT_ORDER)
            for p in _order({r['protocol'] for r in recs}, PROTOCOL_ORDER)
            if any(r['init'] == i and r['protocol'] == p for r in recs)]
  fig, axes = plt.subplots(len(targets), len(combos), squeeze=False,
                           figsize=(3.6 * len(combos), 3.4 * len(targets)))
  for j, (target, unit) in enumerate(zip(targets, units, strict=True)):
    for k, (init, protocol) in enumerate(combos):
      ax = axes[j, k]
      cells = [r for r in recs if r['init'] == init and r['protocol'] == protocol]
      yt = np.concatenate([np.asarray(r['predictions']['y_true'], float)[:, j] for r in cells])
      yp = np.concatenate([np.asarray(r['predictions']['y_pred'], float)[:, j] for r in cells])
      ax.scatter(yt, yp, s=6, alpha=0.5, color=_COLORS.get(init, 'grey'))
      lo, hi = float(min(yt.min(), yp.min())), float(max(yt.max(), yp.max()))
      ax.plot([lo, hi], [lo, hi], 'k--', lw=0.8)
      m = metrics_lib.regression_metrics(yt, yp)
      ax.text(0.03, 0.97, f"pooled r = {_fmt(m['pearson_r'])}\nRMSE = {_fmt(m['rmse'])}",
              transform=ax.transAxes, va='top', fontsize=8)
      u = f' ({unit})' if unit else ''
      ax.set_title(f'{init} / {protocol}, {full:.0%}', fontsize=9)
      ax.set_xlabel(f'true {target}{u}', fontsize=8)
      ax.set_ylabel(f'predicted {target}{u}', fontsize=8)
  fig.suptitle(f"{recs[0]['task']}: test predictions pooled over folds", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


# variance.csv: one row per (task, target, protocol, fraction, versus, over) with >= 2 seeds.
VARIANCE_COLUMNS = ('task', 'target', 'protocol', 'fraction', 'versus', 'over', 'fixed_seed',
                    'n_seeds', 'seeds', 'delta_r_values', 'delta_r_mean', 'delta_r_sd',
                    'delta_r_min', 'delta_r_max', 'headline_delta_r', 'headline_delta_r_low',
                    'headline_delta_r_high')
PRETRAIN_SEED, FINETUNE_SEED = 'pretrain_seed', 'finetune_seed'
VARIANCE_HEADING = '## Variance over seeds'


def _headline_deltas(df: pd.DataFrame) -> dict[tuple[str, str, str, float, str], float]:
  """Δr per (task, target, protocol, fraction, versus) of ``df``, as headline_frame computes it
  (versus 'random': delta_r; versus 'features': delta_r_vs_features)."""
  out = {}
  for h in headline_frame(df).itertuples():
    key = (h.task, h.target, h.protocol, float(h.fraction))
    out[key + ('random',)] = float(h.delta_r)
    out[key + (FEATURES,)] = float(h.delta_r_vs_features)
  return out


def seed_variance_frame(records_by_pretrain_seed: Mapping[int, Sequence[Mapping[str, Any]]],
                        finetune_seed: int | None = None) -> pd.DataFrame:
  """Δr's spread over pre-training seeds and over fine-tuning seeds (VARIANCE_COLUMNS).

  ``records_by_pretrain_seed``: the main pre-training seed first (all arms and fine-tuning
  seeds), then each further seed's records (its pre-trained cells; other cells are ignored).
  over 'finetune_seed': Δr_s of the main encoder from the cells of fine-tuning seed s only.
  over 'pretrain_seed': Δr_k of the encoder of seed k at ``finetune_seed`` (default: the main
  records' smallest), its pre-trained cells against the main run's random / features cells of
  that fine-tuning seed; tasks with cells of >= 2 pre-training seeds only. Each Δr is
  headline_frame's (within-subject r, subjects' mean); sd has ddof=1; headline_* is the main
  run's Δr over all its fine-tuning seeds with the 95 % t interval over subjects.
  """
  seeds = [int(k) for k in records_by_pretrain_seed]
  if not seeds:
    raise ValueError('seed_variance_frame: no records')
  main = results_frame(records_by_pretrain_seed[seeds[0]])
  ft_seeds = sorted(int(s) for s in main.seed.unique())
  s0 = ft_seeds[0] if finetune_seed is None else int(finetune_seed)
  by_ft = {s: _headline_deltas(main[main.seed == s]) for s in ft_seeds}
  others = main[(main.init != 'pretrained') & (main.seed == s0)]
  by_pre = {seeds[0]: by_ft.get(s0, {})}
  tasks = {seeds[0]: set(main[(main.init == 'pretrained') & (main.seed == s0)].task)}
  for k in seeds[1:]:
    df = results_frame([r for r in records_by_pretrain_seed[k]
                        if r['init'] == 'pretrained' and int(r.get('seed', 0)) == s0])
    tasks[k] = set(df.task)
    by_pre[k] = _headline_deltas(pd.concat([df, others[others.task.isin(tasks[k])]]))
  rows = []
  for h in headline_frame(main).itertuples():
    key = (h.task, h.target, h.protocol, float(h.fraction))
    for versus, head in (('random', (h.delta_r, h.delta_r_low, h.delta_r_high)),
                         (FEATURES, (h.delta_r_vs_features, h.delta_r_vs_features_low,
                                     h.delta_r_vs_features_high))):
      if versus == FEATURES and not (main.init == FEATURES).any():
        continue
      pre = [k for k in seeds if h.task in tasks[k]]
      for over, fixed, values in ((PRETRAIN_SEED, s0, {k: by_pre[k] for k in pre}),
                                  (FINETUNE_SEED, seeds[0], by_ft)):
        if len(values) < 2:
          continue
        vals = [values[k].get(key + (versus,), math.nan) for k in values]
        m, sd, n = stats.mean_sd(vals)
        finite = [v for v in vals if math.isfinite(v)]
        rows.append({'task': h.task, 'target': h.target, 'protocol': h.protocol,
                     'fraction': float(h.fraction), 'versus': versus, 'over': over,
                     'fixed_seed': int(fixed), 'n_seeds': n,
                     'seeds': ';'.join(str(k) for k in values),
                     'delta_r_values': ';'.join(repr(float(v)) for v in vals),
                     'delta_r_mean': m, 'delta_r_sd': sd,
                     'delta_r_min': min(finite, default=math.nan),
                     'delta_r_max': max(finite, default=math.nan),
                     'headline_delta_r': float(head[0]), 'headline_delta_r_low': float(head[1]),
                     'headline_delta_r_high': float(head[2])})
  return pd.DataFrame(rows, columns=list(VARIANCE_COLUMNS))


def variance_markdown(frame: pd.DataFrame) -> str:
  """variance.md: per versus, a table of Δr's mean ± sd over pre-training and fine-tuning seeds
  beside the headline Δr and its interval over subjects."""
  if not len(frame):
    return 'No Δr over seeds: one pre-training seed and one fine-tuning seed.\n'
  md = ['Δr (within-subject r, pre-trained minus the other arm) computed per seed as in the '
        'headline, then mean ± sd (ddof=1) [min, max] over the seeds. Over pre-training seeds: '
        'each encoder\'s pre-trained cells at one fine-tuning seed (fixed, in brackets) against '
        'the other arm\'s cells of that seed. Over fine-tuning seeds: the main encoder, the cells '
        'of each fine-tuning seed alone. Headline: the main encoder, all fine-tuning seeds, with '
        'the 95 % t interval over test subjects.', '']

  def spread(r) -> tuple[str, str]:
    if r is None:
      return '—', '—'
    text = (f'{_fmt(r.delta_r_mean, sign=True)} ± {_fmt(r.delta_r_sd)} '
            f'[{_fmt(r.delta_r_min, sign=True)}, {_fmt(r.delta_r_max, sign=True)}], '
            f'n = {r.n_seeds}')
    vals = ', '.join(f'{k}: {_fmt(float(v), sign=True)}'
                     for k, v in zip(r.seeds.split(';'), r.delta_r_values.split(';'),
                                     strict=True))
    return text, vals

  for versus in _order(frame.versus, ('random', FEATURES)):
    sub = frame[frame.versus == versus]
    fixed = {o: sorted(set(sub[sub.over == o].fixed_seed)) for o in (PRETRAIN_SEED,
                                                                      FINETUNE_SEED)}
    rows = []
    for (task, target, protocol, frac), g in sub.groupby(
        ['task', 'target', 'protocol', 'fraction'], sort=False):
      by = {o: next(iter(g[g.over == o].itertuples()), None) for o in fixed}
      first = g.iloc[0]
      rows.append([f'{task} ({target})', protocol, _frac(frac),
                   f'{_fmt(first.headline_delta_r, sign=True)} '
                   f'[{_fmt(first.headline_delta_r_low, sign=True)}, '
                   f'{_fmt(first.headline_delta_r_high, sign=True)}]',
                   *spread(by[PRETRAIN_SEED]), *spread(by[FINETUNE_SEED])])
    ft = '/'.join(str(s) for s in fixed[PRETRAIN_SEED]) or '—'
    enc = '/'.join(str(s) for s in fixed[FINETUNE_SEED]) or '—'
    other = 'random init' if versus == 'random' else 'the feature baseline'
    md += [f'### Δr, pre-trained vs {other}',
           '', _markdown(['task', 'protocol', 'fraction', 'headline Δr [95 % CI over subjects]',
                          f'over pre-training seeds (fine-tuning seed {ft})', 'per seed',
                          f'over fine-tuning seeds (pre-training seed {enc})', 'per seed'],
                         rows), '']
  return '\n'.join(md).rstrip() + '\n'


def write_seed_variance(records_by_pretrain_seed: Mapping[int, Sequence[Mapping[str, Any]]],
                        report_dir: str, finetune_seed: int | None = None) -> str:
  """Writes variance.csv and variance.md into ``report_dir`` and puts the table in summary.md
  (in place of an earlier such section); returns the markdown."""
  frame = seed_variance_frame(records_by_pretrain_seed, finetune_seed)
  md = variance_markdown(frame)
  os.makedirs(report_dir, exist_ok=True)
  files.write_text_atomic(os.path.join(report_dir, 'variance.csv'), frame.to_csv(index=False))
  files.write_text_atomic(os.path.join(report_dir, 'variance.md'),
                          f'# Variance over seeds\n\n{md}')
  summary = os.path.join(report_dir, 'summary.md')
  if os.path.exists(summary):
    with open(summary, encoding='utf-8') as f:
      text = f.read().split(f'\n{VARIANCE_HEADING}\n')[0].rstrip()
    files.write_text_atomic(summary, f'{text}\n\n{VARIANCE_HEADING}\n\n{md}')
  return md


def eval_by_step(pretrain_run: str, names: tuple[str, ...]) -> dict[int, dict[str, float]]:
  """Held-out metrics ``names`` (eval rows of ``<run>/metrics.jsonl`` that hold the first name)
  per step; the last row wins."""
  path = os.path.join(pretrain_run, 'metrics.jsonl')
  out: dict[int, dict[str, float]] = {}
  if os.path.exists(path):
    with open(path, encoding='utf-8') as f:
      for line in f:
        row = json.loads(line)
        if f'eval/{names[0]}' in row:
          out[int(row['step'])] = {n: row.get(f'eval/{n}') for n in names}
  return out


def retrieval_by_step(pretrain_run: str) -> dict[int, dict[str, float]]:
  """Held-out retrieval (top1, top5) per step of an NCE pre-training (``eval_by_step``)."""
  return eval_by_step(pretrain_run, ('top1', 'top5'))


MASKED_EVAL = ('loss', 'zero_loss', 'mean_loss')  # a masked pre-training's held-out losses


def masked_loss_by_step(pretrain_run: str) -> dict[int, dict[str, float]]:
  """Held-out masked MSE and its two references (``MASKED_EVAL``) per step of a masked
  pre-training (``eval_by_step``)."""
  return eval_by_step(pretrain_run, MASKED_EVAL)
