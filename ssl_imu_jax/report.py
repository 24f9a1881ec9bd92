"""What a person reads after fine-tuning: a tidy results.csv, summary.md and figures.

A *cell record* is one trained model: the cell keys (task, init, protocol, fraction, fold, steps)
plus the part of ``finetune.train_and_evaluate``'s result the report needs (test-set predictions
in label units, targets, units, window and subject counts). ``make_record`` builds one from a
result; ``write_results`` turns any list of them (a whole sweep, or the demo's single run) into
``results.csv`` and ``summary.md``; ``write_report`` adds the figures per data set.

results.csv is tidy: one row per (cell, target, test subject) plus one pooled row per (cell,
target) with ``subject='all'``, so "one row per trained model" is the subset subject == 'all'.
Metrics are computed by ``metrics.regression_metrics`` on the rows' windows: a subject row on
that subject's test windows, the pooled row on all test windows of the cell; ``n_test`` is the
number of windows the row's metrics were computed on.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ssl_imu_jax import metrics as metrics_lib
from ssl_imu_jax import stats

COLUMNS = ('task', 'target', 'unit', 'init', 'protocol', 'fraction', 'fold', 'subject',
           'pearson_r', 'r2', 'rmse', 'rrmse', 'n_train', 'n_test', 'n_train_subjects', 'steps')
RESULT_KEYS = ('predictions', 'targets', 'units', 'n_train', 'n_test', 'train_subjects',
               'test_subjects')
INIT_ORDER = ('pretrained', 'random')
PROTOCOL_ORDER = ('linear_probe', 'full')
ALL = 'all'
# A subject's r from fewer windows is left out of the paired test over subjects (with 2 windows
# r is always +-1).
MIN_SUBJECT_WINDOWS = 3


def make_record(result: Mapping[str, Any], *, task: str, init: str, protocol: str,
                fraction: float, fold: int, steps: int | None = None) -> dict[str, Any]:
  """A JSON-serialisable cell record from one ``train_and_evaluate`` result (checked)."""
  missing = [k for k in RESULT_KEYS if k not in result]
  if missing:
    raise ValueError(f'fine-tune result of {task} fold{fold} frac{fraction:g} {init}_{protocol} '
                     f'lacks key(s) {missing}; expected {list(RESULT_KEYS)}')
  pred = result['predictions']
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
  train_s = sorted(int(s) for s in result['train_subjects'])
  test_s = sorted(int(s) for s in result['test_subjects'])
  overlap = set(train_s) & set(test_s)
  if overlap:
    raise ValueError(f'{task} fold{fold}: subject(s) {sorted(overlap)} are in both the training '
                     f'and the test set')
  return {
      'task': str(task), 'init': str(init), 'protocol': str(protocol),
      'fraction': float(fraction), 'fold': int(fold),
      'steps': None if steps is None else int(steps),
      'targets': targets, 'units': units,
      'n_train': int(result['n_train']), 'n_test': int(result['n_test']),
      'train_subjects': train_s, 'test_subjects': test_s,
      'predictions': {'subject_id': sid.tolist(), 'y_true': y_true.tolist(),
                      'y_pred': y_pred.tolist()},
  }


def results_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
  """The tidy table (columns COLUMNS) of a list of cell records."""
  rows = []
  for rec in records:
    pred = rec['predictions']
    sid = np.asarray(pred['subject_id'], dtype=np.int64)
    y_true = np.asarray(pred['y_true'], dtype=np.float64).reshape(len(sid), -1)
    y_pred = np.asarray(pred['y_pred'], dtype=np.float64).reshape(len(sid), -1)
    base = {k: rec[k] for k in ('task', 'init', 'protocol', 'fraction', 'fold', 'n_train',
                                'steps')}
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
  return df


def _order(values: Iterable[str], preferred: Sequence[str]) -> list[str]:
  vals = set(values)
  return [v for v in preferred if v in vals] + sorted(vals - set(preferred))


def _fmt(x: float | None, digits: int = 3) -> str:
  if x is None or not math.isfinite(x):
    return '—'
  return f'{x:.{digits}f}'


def _fmt_p(p: float | None) -> str:
  if p is None:
    return '—'
  return f'{p:.3g}' if p >= 0.001 else f'{p:.2e}'


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


def metric_table(df: pd.DataFrame, task: str, target: str, metric: str = 'pearson_r',
                 digits: int = 3) -> str:
  """Markdown table of mean ± sd over folds of the pooled metric: fraction x (init, protocol)."""
  pooled = df[(df.task == task) & (df.target == target) & (df.subject == ALL)]
  n_folds = pooled.fold.nunique()
  combos = [(i, p) for i in _order(pooled.init, INIT_ORDER)
            for p in _order(pooled.protocol, PROTOCOL_ORDER)
            if ((pooled.init == i) & (pooled.protocol == p)).any()]
  rows = []
  for frac in sorted(pooled.fraction.unique()):
    row = [f'{frac:.0%}' if frac * 100 == round(frac * 100) else f'{frac:.1%}']
    for i, p in combos:
      sel = pooled[(pooled.fraction == frac) & (pooled.init == i) & (pooled.protocol == p)]
      row.append(_mean_sd_text(sel[metric].to_numpy(), n_folds, digits))
    rows.append(row)
  return _markdown(['fraction'] + [f'{i} / {p}' for i, p in combos], rows)


def paired_test_rows(df: pd.DataFrame, task: str, target: str,
                     metric: str = 'pearson_r') -> list[list[str]]:
  """Pre-trained vs random per protocol and fraction, paired over folds and over subjects."""
  sel = df[(df.task == task) & (df.target == target)]
  rows = []
  for protocol in _order(sel.protocol, PROTOCOL_ORDER):
    for frac in sorted(sel.fraction.unique()):
      cell = sel[(sel.protocol == protocol) & (sel.fraction == frac)]
      for over, part in (('folds', cell[cell.subject == ALL]),
                         ('subjects', cell[cell.subject != ALL])):
        key = ['fold'] if over == 'folds' else ['fold', 'subject']
        values = part[metric].where(part.n_test >= MIN_SUBJECT_WINDOWS)
        wide = part.assign(**{metric: values}).pivot(index=key, columns='init', values=metric)
        if not {'pretrained', 'random'} <= set(wide.columns):
          continue
        wil, tt = stats.paired_tests(wide['pretrained'].to_numpy(), wide['random'].to_numpy(),
                                     over)
        note = '; '.join(n for n in dict.fromkeys([wil.note, tt.note]) if n)
        rows.append([f'{frac:g}', protocol, over, str(wil.n), _fmt(wil.mean_diff),
                     _fmt(wil.statistic, 1), _fmt_p(wil.p_value), _fmt(tt.statistic, 2),
                     _fmt_p(tt.p_value), note])
  return rows


def efficiency_results(df: pd.DataFrame, task: str,
                       target: str) -> dict[str, stats.DataEfficiency]:
  """The data-efficiency figure per protocol (pre-trained vs random init, same protocol)."""
  pooled = df[(df.task == task) & (df.target == target) & (df.subject == ALL)]
  out = {}
  for protocol in _order(pooled.protocol, PROTOCOL_ORDER):
    means = (pooled[pooled.protocol == protocol]
             .groupby(['fraction', 'init'])['pearson_r'].mean().unstack('init'))
    if not {'pretrained', 'random'} <= set(means.columns):
      continue
    out[protocol] = stats.data_efficiency(means.index.to_numpy(),
                                          means['pretrained'].to_numpy(),
                                          means['random'].to_numpy())
  return out


def summary_markdown(df: pd.DataFrame, title: str = 'Results',
                     notes: Sequence[str] = (), figures: Mapping[str, Sequence[str]] | None = None
                     ) -> tuple[str, str]:
  """(summary.md text, the plain table to print: mean ± sd r per fraction x init x protocol)."""
  md = [f'# {title}', '']
  md += [f'- {n}' for n in notes]
  steps = sorted({int(s) for s in df.steps.dropna().unique()}) if len(df) else []
  if len(steps) > 1:
    md.append(f'- WARNING: cells trained different numbers of steps: {steps}')
  elif steps:
    md.append(f'- Every cell trained {steps[0]} steps.')
  md += [
      '- r: Pearson r over all test windows of a fold (pooled); mean ± sd (ddof=1) across folds.',
      "- results.csv: one row per cell, target and test subject, plus a pooled row per cell "
      "(subject = 'all'); rrmse = RMSE / (max - min of the true values in those rows) x 100.",
      '- Paired tests are two-sided, pre-trained minus random init with the same protocol and '
      'fraction; over folds they pair the pooled r of each fold, over subjects the r of each '
      f"test subject's windows (subjects with < {MIN_SUBJECT_WINDOWS} test windows left out). "
      'Subjects of one fold share a trained model, so the subject-paired p values treat '
      'correlated pairs as independent and are optimistic; the fold-paired test is the '
      'conservative one.',
      '',
  ]
  printed = []
  for task in sorted(df.task.unique()):
    tdf = df[df.task == task]
    for target in list(dict.fromkeys(tdf.target)):
      unit = tdf[tdf.target == target].unit.iloc[0]
      heading = f'{task}: {target}' + (f' ({unit})' if unit else '')
      subj = tdf[(tdf.target == target) & (tdf.subject != ALL)]
      n_sub = subj.subject.nunique()
      per_subject = subj.drop_duplicates(['fold', 'subject']).n_test
      windows = (f' Test windows per subject: min {per_subject.min()}, median '
                 f'{per_subject.median():g}, max {per_subject.max()}.' if n_sub else '')
      r_table = metric_table(df, task, target)
      md += [f'## {heading}', '',
             f'{tdf.fold.nunique()} fold(s), {n_sub} test subject(s).{windows}', '',
             '### Pearson r (mean ± sd over folds)', '', r_table, '',
             f'### RMSE in {unit or "label units"} (mean ± sd over folds)', '',
             metric_table(df, task, target, 'rmse', 4), '']
      printed += [heading, r_table, '']
      tests = paired_test_rows(df, task, target)
      md += ['### Paired tests of r: pre-trained vs random init', '']
      if tests:
        md += [_markdown(['fraction', 'protocol', 'paired over', 'n', 'mean Δr',
                          'Wilcoxon signed-rank W', 'p', 'paired t', 'p', 'note'], tests), '']
      else:
        md += ['Not computed: needs cells of both inits (pretrained and random).', '']
      md += ['### Data efficiency', '']
      eff = efficiency_results(df, task, target)
      if not eff:
        md += ['Not computed: needs cells of both inits (pretrained and random).', '']
      for protocol, de in eff.items():
        line = (f'- {protocol}: {de.text()}; Δr at {de.full_fraction:.0%} = '
                f'{_fmt(de.delta_r_full)} (pre-trained {_fmt(de.pretrained_full_r)} vs random '
                f'{_fmt(de.target_r)}).')
        md.append(line)
        printed.append(f'data efficiency, {protocol}: {de.text()}; '
                       f'Δr at {de.full_fraction:.0%} = {_fmt(de.delta_r_full)}')
      md.append('')
      for fig in (figures or {}).get(task, ()):
        md += [f'![{os.path.basename(fig)}]({os.path.basename(fig)})', '']
      printed.append('')
  return '\n'.join(md).rstrip() + '\n', '\n'.join(printed).rstrip() + '\n'


def _atomic_write(path: str, text: str) -> None:
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w', encoding='utf-8') as f:
    f.write(text)
  os.replace(tmp, path)


def write_results(records: Sequence[Mapping[str, Any]], report_dir: str,
                  title: str = 'Fine-tuning results', notes: Sequence[str] = (),
                  figures: Mapping[str, Sequence[str]] | None = None) -> str:
  """Writes results.csv and summary.md into report_dir; returns the printed table text.

  Works for a single fine-tune run (one record) as well as a sweep.
  """
  if not records:
    raise ValueError('write_results: no cell records to report')
  os.makedirs(report_dir, exist_ok=True)
  df = results_frame(records)
  _atomic_write(os.path.join(report_dir, 'results.csv'), df.to_csv(index=False))
  md, table = summary_markdown(df, title, notes, figures)
  _atomic_write(os.path.join(report_dir, 'summary.md'), md)
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


def _pyplot():
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  return plt


_COLORS = {'pretrained': 'tab:blue', 'random': 'tab:orange'}
_STYLES = {'full': '-', 'linear_probe': '--'}


def plot_data_efficiency(df: pd.DataFrame, task: str, path: str) -> None:
  """Mean r vs training fraction (log x), one line per init x protocol, error bars sd over folds."""
  plt = _pyplot()
  pooled = df[(df.task == task) & (df.subject == ALL)]
  targets = list(dict.fromkeys(pooled.target))
  fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 4), squeeze=False)
  for ax, target in zip(axes[0], targets, strict=True):
    sel = pooled[pooled.target == target]
    for init in _order(sel.init, INIT_ORDER):
      for protocol in _order(sel.protocol, PROTOCOL_ORDER):
        g = sel[(sel.init == init) & (sel.protocol == protocol)]
        if not len(g):
          continue
        agg = g.groupby('fraction')['pearson_r'].agg(['mean', 'std']).sort_index()
        ax.errorbar(agg.index, agg['mean'], yerr=agg['std'].fillna(0.0), capsize=3, marker='o',
                    color=_COLORS.get(init), linestyle=_STYLES.get(protocol, ':'),
                    label=f'{init} / {protocol}')
    fracs = sorted(sel.fraction.unique())
    ax.set_xscale('log')
    ax.set_xticks(fracs)
    ax.set_xticklabels([f'{f:.0%}' if f >= 0.01 else f'{f:.1%}' for f in fracs])
    ax.minorticks_off()
    unit = sel.unit.iloc[0]
    ax.set_title(f'{task}: {target}' + (f' ({unit})' if unit else ''))
    ax.set_xlabel('fraction of training windows')
    ax.set_ylabel('Pearson r (mean ± sd over folds)')
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_scatter(records: Sequence[Mapping[str, Any]], path: str) -> None:
  """Predicted vs true of the full-data cells (largest fraction), pooled over folds."""
  plt = _pyplot()
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
