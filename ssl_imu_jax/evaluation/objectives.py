"""Pre-training objectives compared under one protocol (stage ``objectives``; issue 27).

``run`` pre-trains every arm of ``config.arms`` (NCE on the ResNet, the masked Transformer at
several mask ratios, ...) on the same corpus and budget into ``<workdir>/pretrain_<arm>/``, then,
for every group of ``config.groups`` (a sweep config: peaks, curves), fine-tunes each arm's
pre-trained encoder (``<workdir>/<group>/<arm>/``) and the random init of each backbone with the
feature baseline (``<workdir>/<group>/random_<backbone>/``) on the same folds, fractions and
seeds. Every part resumes. With ``config.interleave`` the fine-tuning goes round by round (one
fraction and fold of every sweep, smallest fraction first) and writes ``report_partial/`` after
each round, so a run stopped part-way has compared every arm on the same cells. The comparison,
``<workdir>/report/objectives.csv`` and ``objectives.md``, puts each arm beside the random init
of its own backbone (paired over test subjects), beside the feature baseline, and the masked arms
side by side by mask ratio.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import pandas as pd

from ssl_imu_jax import files, metrics, stats
from ssl_imu_jax.data import input_pipeline
from ssl_imu_jax.errors import ConfigError
from ssl_imu_jax.evaluation import report
from ssl_imu_jax.training import interrupt

# What every arm must share: the corpus and the budget (config keys under arms.<name>.).
# What every arm shares: one corpus (its windows) and one budget. data.use_gyr may differ: a
# masked arm may leave out the corpus's gyroscopes to fine-tune on an accelerometer-only task
# (NCE cannot: it pairs acc with gyr).
SHARED_KEYS = ('data.dataset', 'data.size', 'data.sample_rate_hz', 'data.window_length',
               'data.imu_sites', 'data.options', 'train.steps', 'train.batch_size', 'seed')
COLUMNS = ('group', 'task', 'target', 'axis', 'metric', 'protocol', 'fraction', 'arm',
           'objective', 'backbone', 'mask_ratio', 'value', 'sd', 'n_subjects', 'versus',
           'delta', 'delta_low', 'delta_high', 'p', 'n_pairs', 'value_features',
           'delta_vs_features', 'delta_vs_features_low', 'delta_vs_features_high')
# Curve metrics reported (metrics.CURVE_METRICS): lower is better for rmse / rrmse.
CURVE_METRICS = metrics.CURVE_METRICS


def _get(cfg: ml_collections.ConfigDict, dotted: str) -> Any:
  for part in dotted.split('.'):
    cfg = cfg.get(part) if hasattr(cfg, 'get') else None
  return cfg


def objective(pcfg: ml_collections.ConfigDict) -> str:
  return str(pcfg.ssl.get('objective', 'nce'))


def backbone(pcfg: ml_collections.ConfigDict) -> str:
  """The backbone an arm pre-trains: the masked objective's Transformer, else model.backbone
  (the ResNet unless set)."""
  if objective(pcfg) == 'masked':
    return 'transformer'
  return str(pcfg.model.get('backbone', 'resnet'))


def architecture(pcfg: ml_collections.ConfigDict) -> str:
  """What a random-init baseline must match: the backbone, and for the Transformer how a window
  becomes tokens ('transformer_separate': an NCE Transformer's acc and gyr tokens apart)."""
  b = backbone(pcfg)
  if b == 'transformer' and objective(pcfg) == 'nce' and (
      pcfg.model.transformer.get('modalities', 'joint') == 'separate'):
    return 'transformer_separate'
  return b


def baseline_name(arch: str) -> str:
  return f'random_{arch}'


def validate(config: ml_collections.ConfigDict) -> None:
  """Clear errors (naming the key) for a comparison that cannot run or would not be fair,
  before any data is built."""
  from ssl_imu_jax.evaluation import sweep  # noqa: PLC0415

  for key in ('arms', 'groups', 'task'):
    if key not in config:
      raise ConfigError(f'objectives config lacks key config.{key}')
  arms = list(config.arms.keys())
  if not arms:
    raise ConfigError('config.arms is empty: name at least one pre-training arm')
  first = arms[0]
  for name in arms:
    pcfg = config.arms[name]
    input_pipeline.check_dataset(pcfg.data.dataset, f'arms.{name}.data.dataset')
    if objective(pcfg) not in ('nce', 'masked'):
      raise ConfigError(f"config.arms.{name}.ssl.objective must be 'nce' or 'masked', got "
                        f'{objective(pcfg)!r}')
    for key in SHARED_KEYS:
      a, b = _get(config.arms[first], key), _get(pcfg, key)
      if a != b:
        raise ConfigError(f'config.arms.{name}.{key} = {b!r} differs from config.arms.{first}.'
                          f'{key} = {a!r}: the arms compare on one corpus and one budget')
  if not list(config.groups.keys()):
    raise ConfigError('config.groups is empty: name at least one fine-tuning sweep')
  for group, names in (config.get('group_arms', None) or {}).items():
    if group not in config.groups:
      raise ConfigError(f'config.group_arms.{group}: not a group; expected one of '
                        f'{list(config.groups.keys())}')
    bad = [n for n in names if n not in arms]
    if bad:
      raise ConfigError(f'config.group_arms.{group} names {bad}, not arms; expected some of '
                        f'{arms}')
  for group in config.groups.keys():
    g = config.groups[group]
    sweep.validate_config(g, prefix=f'groups.{group}.', init_from=False)
    sweep.check_dataset_names(g, prefix=f'groups.{group}.')
    if 'pretrained' not in g.inits:
      raise ConfigError(f"config.groups.{group}.inits must hold 'pretrained' (the arms), got "
                        f'{tuple(g.inits)}')


def pretrain_dir(workdir: str, arm: str) -> str:
  return os.path.join(workdir, f'pretrain_{arm}')


def arm_sweep(group_cfg: ml_collections.ConfigDict, ckpt: str, data_dir: str
              ) -> ml_collections.ConfigDict:
  """The sweep of one arm: its pre-trained encoder only (the baselines run once per backbone)."""
  c = group_cfg.copy_and_resolve_references()
  c.unlock()
  c.inits = ('pretrained',)
  c.init_from = ckpt
  c.final_model = False
  c.finetune.data_dir = data_dir
  return c


def baseline_sweep(group_cfg: ml_collections.ConfigDict, pcfg: ml_collections.ConfigDict,
                   data_dir: str, with_features: bool) -> ml_collections.ConfigDict:
  """Random init of ``pcfg``'s architecture, with the feature baseline if asked."""
  c = group_cfg.copy_and_resolve_references()
  c.unlock()
  c.inits = ('random',) + (('features',) if with_features and 'features' in group_cfg.inits
                           else ())
  c.init_from = ''
  c.final_model = False
  c.finetune.data_dir = data_dir
  c.finetune.model.backbone = backbone(pcfg)
  if backbone(pcfg) == 'transformer':
    c.finetune.model.transformer = pcfg.model.transformer.copy_and_resolve_references()
  else:
    c.finetune.model.encoder = pcfg.model.encoder.copy_and_resolve_references()
  return c


def group_arms(config: ml_collections.ConfigDict, group: str) -> list[str]:
  """The arms fine-tuned in ``group``: ``config.group_arms.<group>``, or every arm when that is
  absent or empty (e.g. the masking-ratio curve on one target only)."""
  names = tuple((config.get('group_arms', None) or {}).get(group, ()) or ())
  return [a for a in config.arms.keys() if not names or a in names]


def plan(config: ml_collections.ConfigDict, workdir: str, data_dir: str
         ) -> list[tuple[str, str, str, ml_collections.ConfigDict]]:
  """(group, label, sweep dir, sweep config) of every sweep, arms first, then the baselines;
  ``label`` is the arm name or ``random_<architecture>`` (one per architecture of the group's
  arms)."""
  out = []
  for group in config.groups.keys():
    g = config.groups[group]
    arms = group_arms(config, group)
    for arm in arms:
      ckpt = os.path.join(pretrain_dir(workdir, arm), 'checkpoints')
      out.append((group, arm, os.path.join(workdir, group, arm), arm_sweep(g, ckpt, data_dir)))
    seen = []
    for arm in arms:
      b = architecture(config.arms[arm])
      if b in seen or 'random' not in g.inits:
        continue
      seen.append(b)
      label = baseline_name(b)
      out.append((group, label, os.path.join(workdir, group, label),
                  baseline_sweep(g, config.arms[arm], data_dir, with_features=len(seen) == 1)))
  return out


def rounds(sweeps: Sequence[tuple[str, str, str, ml_collections.ConfigDict]]
           ) -> list[tuple[float, int]]:
  """The (fraction, fold) rounds of ``sweeps``' cells, smallest fraction first, then fold."""
  from ssl_imu_jax.evaluation import sweep  # noqa: PLC0415

  out = {(float(f), int(k)) for *_, s in sweeps for f in s.fractions
         for k in sweep.folds_to_run(s)}
  return sorted(out)


def restricted(scfg: ml_collections.ConfigDict, fraction: float, fold: int
               ) -> ml_collections.ConfigDict | None:
  """``scfg`` cut to one round (its cells of that fraction and fold; a cell's config names its
  own fraction and fold, so they are the cells the whole sweep would train), None if it has none."""
  from ssl_imu_jax.evaluation import sweep  # noqa: PLC0415

  if fraction not in [float(f) for f in scfg.fractions] or fold not in sweep.folds_to_run(scfg):
    return None
  c = scfg.copy_and_resolve_references()
  c.unlock()
  c.fractions, c.folds = (fraction,), (fold,)
  return c


def relabel(records: Sequence[Mapping[str, Any]], label: str, group: str) -> list[dict[str, Any]]:
  """A sweep's records with 'pretrained' / 'random' renamed to the arm / baseline ``label``
  (the feature baseline keeps its name), tagged with the group."""
  out = []
  for rec in records:
    r = dict(rec)
    if r['init'] in report.DEEP_INITS:
      r['init'] = label
    r['group'] = group
    out.append(r)
  return out


def run(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Pre-trains every arm, fine-tunes every group's sweeps, writes the comparison; returns the
  report directory."""
  from ssl_imu_jax.evaluation import sweep  # noqa: PLC0415
  from ssl_imu_jax.training import pretrain  # noqa: PLC0415

  validate(config)
  data_dir = input_pipeline.resolve_data_dir(config, workdir)
  report_only = bool(config.get('report_only', False))
  os.makedirs(workdir, exist_ok=True)
  files.write_json_atomic(os.path.join(workdir, 'config.json'),
                          json.loads(config.to_json_best_effort()))
  arms = list(config.arms.keys())
  for i, arm in enumerate(arms, start=1):
    if report_only:
      break
    pcfg = config.arms[arm]
    out = pretrain_dir(workdir, arm)
    print(f'== pre-training {i}/{len(arms)}: {arm} ({objective(pcfg)}, {backbone(pcfg)}; '
          f'{pcfg.train.steps} steps x {pcfg.train.batch_size} windows) -> {out}',
          file=sys.stderr, flush=True)
    with interrupt.activity(f'pre-training {i}/{len(arms)} ({arm})'):
      pretrain.run(pcfg, out, data_dir)
  sweeps = plan(config, workdir, data_dir)
  if config.get('interleave', False) and not report_only:
    todo = rounds(sweeps)
    for n, (fraction, fold) in enumerate(todo, start=1):
      for group, label, sdir, scfg in sweeps:
        cut = restricted(scfg, fraction, fold)
        if cut is not None:
          print(f'== round {n}/{len(todo)} (fraction {fraction:g}, fold {fold}), fine-tuning '
                f'{group}: {label} -> {sdir}', file=sys.stderr, flush=True)
          sweep.run(cut, sdir, write_report=False)
      write_report(config, sweeps, os.path.join(workdir, 'report_partial'), quiet=True,
                   only=todo[:n])
  for group, label, sdir, scfg in ([] if report_only else sweeps):  # each whole: what is left,
    print(f'== fine-tuning {group}: {label} -> {sdir}', file=sys.stderr, flush=True)  # its report
    sweep.run(scfg, sdir)
  return write_report(config, sweeps,
                      os.path.join(workdir, 'report_partial' if report_only else 'report'))


def write_report(config: ml_collections.ConfigDict,
                 sweeps: Sequence[tuple[str, str, str, ml_collections.ConfigDict]],
                 report_dir: str, quiet: bool = False,
                 only: Sequence[tuple[float, int]] | None = None) -> str:
  """The comparison of every finished cell of ``sweeps`` in ``report_dir``: objectives.csv / .md,
  the per-subject rows behind them and convergence.csv (per group, arm, protocol and fraction:
  epochs run, cells stopped early or still improving at the budget); returns ``report_dir``.
  ``only``: the (fraction, fold) rounds to report (the finished ones), so that a cell trained
  ahead of its round by an earlier plan does not stand alone in the comparison."""
  from ssl_imu_jax.evaluation import sweep  # noqa: PLC0415

  records = []
  for group, label, sdir, scfg in sweeps:
    records += relabel(sweep.done_records(scfg, sdir), label, group)
  if only is not None:
    keep = {(float(f), int(k)) for f, k in only}
    records = [r for r in records if (float(r['fraction']), int(r['fold'])) in keep]
  arms = list(config.arms.keys())
  frame = comparison_frame(records, {a: config.arms[a] for a in arms})
  os.makedirs(report_dir, exist_ok=True)
  files.write_text_atomic(os.path.join(report_dir, 'objectives.csv'), frame.to_csv(index=False))
  for name, rows in subject_frames(records).items():  # the per-subject rows behind the table
    files.write_text_atomic(os.path.join(report_dir, f'{name}.csv'), rows.to_csv(index=False))
  conv = [report.convergence_frame([r for r in records if r['group'] == g]).assign(group=g)
          for g in dict.fromkeys(r['group'] for r in records)]  # did every arm train to a stop?
  if conv:
    files.write_text_atomic(os.path.join(report_dir, 'convergence.csv'),
                            pd.concat(conv, ignore_index=True).to_csv(index=False))
  text = comparison_markdown(frame)
  from ssl_imu_jax.training.finetune import split_unit  # noqa: PLC0415

  trials = [g for g in config.groups.keys() if split_unit(config.groups[g].finetune) == 'trial']
  if trials:  # say it where the numbers are read
    head, _, rest = text.partition('\n\n')
    text = (f'{head}\n\nGroup(s) {", ".join(trials)}: the units are the trials of one subject '
            '(split.unit=trial), not subjects: the means, intervals and pairs run over held-out '
            'trials of the same person (within-subject).\n\n' + rest)
  files.write_text_atomic(os.path.join(report_dir, 'objectives.md'), text)
  if not quiet:
    print(text, flush=True)
  return report_dir


def subject_frames(records: Sequence[Mapping[str, Any]]) -> dict[str, pd.DataFrame]:
  """{'results': scalar rows (report.results_frame), 'curves': curve rows (report.curves_frame)}
  of every group, arm and baseline, each row tagged with its ``group`` (``init`` is the arm)."""
  out = {}
  for name, make, want in (('results', report.results_frame, False),
                           ('curves', report.curves_frame, True)):
    parts = []
    for group in dict.fromkeys(r['group'] for r in records):
      recs = [r for r in records if r['group'] == group and bool(r.get('curve')) == want]
      if recs:
        parts.append(make(recs).assign(group=group))
    if parts:
      out[name] = pd.concat(parts, ignore_index=True)
  return out


def _per_subject(records: Sequence[Mapping[str, Any]]
                 ) -> dict[tuple[str, str, str, str, str, str, float], dict[str, pd.Series]]:
  """{(group, task, target, axis, metric, protocol, fraction): {init: value per subject}}: peaks
  as the within-subject r (``report.within_subject_results``), curves as each curve metric per
  subject (``report.curves_frame``), a subject's value the mean over its fine-tuning seeds."""
  out: dict = {}
  by_group: dict[str, list] = {}
  for rec in records:
    by_group.setdefault(rec['group'], []).append(rec)
  for group, recs in by_group.items():
    scalar = [r for r in recs if not r.get('curve')]
    if scalar:
      df = report.results_frame(scalar)
      for task, target in report.task_targets(df):
        for (p, f, init), w in report.within_subject_results(df, task, target).items():
          out.setdefault((group, task, target, '', 'pearson_r', p, f), {})[init] = w.per_subject
    curves = report.curves_frame([r for r in recs if r.get('curve')])
    for task, target, axis in report.curve_axes(curves):
      for m in CURVE_METRICS:
        for (p, f, init), w in report.curve_within(curves, task, target, axis, m).items():
          out.setdefault((group, task, target, axis, m, p, f), {})[init] = w.per_subject
  return out


def _pair(a: pd.Series, b: pd.Series) -> stats.PairedTest:
  subjects = a.index.union(b.index)
  return stats.paired_tests(a.reindex(subjects).to_numpy(), b.reindex(subjects).to_numpy(),
                            'subjects')[1]


def comparison_frame(records: Sequence[Mapping[str, Any]],
                     arms: Mapping[str, ml_collections.ConfigDict]) -> pd.DataFrame:
  """objectives.csv: one row per (group, task, target, axis, metric, protocol, fraction, arm).

  value / sd / n_subjects: the metric's mean and sd over test subjects; delta: value minus the
  random init of the arm's backbone (``versus``), its 95 % paired-t interval over subjects
  (delta_low / _high) and p; *_features: the feature baseline (peaks) and the arm against it.
  Rows of the baselines themselves carry their value only.
  """
  rows = []
  per = _per_subject(records)
  for key, by_init in per.items():
    group, task, target, axis, metric, protocol, frac = key
    # the feature baseline's cells have their own protocol, 'ridge'
    feats = per.get((group, task, target, axis, metric, report.RIDGE, frac), {}).get(
        report.FEATURES)
    for init, series in by_init.items():
      if init == report.FEATURES:
        continue
      pcfg = arms.get(init)
      versus = baseline_name(architecture(pcfg)) if pcfg is not None else ''
      row = {'group': group, 'task': task, 'target': target, 'axis': axis, 'metric': metric,
             'protocol': protocol, 'fraction': frac, 'arm': init,
             'objective': objective(pcfg) if pcfg is not None else 'none',
             'backbone': (backbone(pcfg) if pcfg is not None
                          else init.removeprefix('random_').split('_')[0]),
             'mask_ratio': float(pcfg.ssl.mask_ratio) if (
                 pcfg is not None and objective(pcfg) == 'masked') else math.nan,
             'versus': versus}
      row['value'], row['sd'], row['n_subjects'] = stats.mean_sd(series.dropna())
      nan = {k: math.nan for k in ('delta', 'delta_low', 'delta_high', 'p', 'n_pairs')}
      row.update(nan)
      if versus in by_init:
        t = _pair(series, by_init[versus])
        lo, hi = t.ci95 or (math.nan, math.nan)
        row.update(delta=t.mean_diff, delta_low=lo, delta_high=hi, n_pairs=t.n,
                   p=math.nan if t.p_value is None else t.p_value)
      row.update(value_features=math.nan, delta_vs_features=math.nan,
                 delta_vs_features_low=math.nan, delta_vs_features_high=math.nan)
      if feats is not None:
        t = _pair(series, feats)
        lo, hi = t.ci95 or (math.nan, math.nan)
        row.update(value_features=stats.mean_sd(feats.dropna())[0],
                   delta_vs_features=t.mean_diff, delta_vs_features_low=lo,
                   delta_vs_features_high=hi)
      rows.append(row)
  return pd.DataFrame(rows, columns=list(COLUMNS))


def _cell(row) -> str:
  text = f'{row.value:.3f}'
  if math.isfinite(row.delta):
    text += f' ({row.delta:+.3f} [{row.delta_low:+.3f}, {row.delta_high:+.3f}])'
  return text


def comparison_markdown(frame: pd.DataFrame) -> str:
  """objectives.md: per group, target (and curve axis), metric and protocol, a table of arms x
  fractions: mean over test subjects (difference from the random init of the arm's backbone,
  95 % paired-t interval over subjects); the feature baseline's row where it ran."""
  out = ['# Pre-training objectives compared under one protocol', '',
         'Each cell: the metric\'s mean over test subjects (its difference from the random init '
         'of the same backbone, 95 % paired-t interval over subjects). Peaks: within-subject r. '
         'Curves: per test subject over samples with true vertical force > '
         f'{metrics.STANCE_THRESHOLD_BW} BW (RMSE in BW, rRMSE in %: lower is better).', '']
  if frame.empty:
    return '\n'.join(out + ['No finished cells yet.', ''])
  keys = ['group', 'task', 'target', 'axis', 'metric', 'protocol']
  shown = frame[(frame.axis == '') | (frame.metric.isin(('rrmse', 'pearson_r')))]
  for key, g in shown.groupby(keys, sort=False):
    group, task, target, axis, metric, protocol = key
    fracs = sorted(g.fraction.unique())
    title = f'## {group}: {task} {target}' + (f' axis {axis}' if axis else '')
    out += [f'{title}, {metric}, {protocol}', '',
            '| arm | ' + ' | '.join(f'{f:.0%}' for f in fracs) + ' |',
            '|---|' + '---|' * len(fracs)]
    order = g.assign(_k=g.objective.map({'nce': 0, 'masked': 1}).fillna(2)).sort_values(
        ['_k', 'mask_ratio', 'arm'], kind='stable')
    for arm, a in order.groupby('arm', sort=False):
      cells = [_cell(a[a.fraction == f].iloc[0]) if (a.fraction == f).any() else 'n/a'
               for f in fracs]
      out.append(f'| {arm} | ' + ' | '.join(cells) + ' |')
    if g.value_features.notna().any():
      vals = [g[g.fraction == f].value_features.dropna() for f in fracs]
      out.append('| features (ridge) | ' + ' | '.join(
          f'{v.iloc[0]:.3f}' if len(v) else 'n/a' for v in vals) + ' |')
    out.append('')
  return '\n'.join(out)
