"""The paper's protocol in one resumable command: per-task pre-training, then the sweep.

The reference pre-trains once per downstream task, at that task's sample rate and window length.
``run`` finds the distinct (rate, window) pairs of the sweep's data sets, pre-trains one encoder
for each (``<workdir>/pretrain_<rate>hz_<T>/``; data sets with equal rate and window share it),
then runs the sweep with all of them as ``init_from``, so every data set fine-tunes from the
checkpoint that matches it. Every part resumes: finished pre-trainings and cells are skipped.

Variance over pre-training seeds: ``config.pretrain_seeds`` (the first = ``pretrain.seed``, the
main one) and ``config.seed_datasets``. Each further seed k pre-trains the (rate, window) pairs of
``seed_datasets`` again with seed k (``pretrain_<rate>hz_<T>_seed<k>/``) and, after the main
sweep, fine-tunes their pre-trained arm from it (first fine-tuning seed) in
``<workdir>/pretrain_seed<k>/``; ``report.write_seed_variance`` then writes variance.csv / .md
into the main report.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import ml_collections

from ssl_imu_jax import files
from ssl_imu_jax.data import input_pipeline
from ssl_imu_jax.errors import ConfigError
from ssl_imu_jax.training import checkpointing, interrupt


def pretrain_key(data_cfg: ml_collections.ConfigDict) -> tuple[float, int]:
  return float(data_cfg.sample_rate_hz), int(data_cfg.window_length)


def pretrain_dir(workdir: str, key: tuple[float, int]) -> str:
  return os.path.join(workdir, f'pretrain_{key[0]:g}hz_{key[1]}')


def pretrain_configs(config: ml_collections.ConfigDict, datasets: Sequence[str] | None = None,
                     seed: int | None = None) -> dict[tuple[float, int], Any]:
  """One pre-training config per distinct (rate, window) of the sweep's data sets (or of
  ``datasets``), with ``seed`` as the pre-training seed if given."""
  from ssl_imu_jax.evaluation import sweep

  out = {}
  for dataset in config.sweep.datasets if datasets is None else datasets:
    key = pretrain_key(sweep.task_data(config.sweep, dataset))
    if key not in out:
      c = config.pretrain.copy_and_resolve_references()
      c.unlock()
      c.data.sample_rate_hz, c.data.window_length = key
      if seed is not None:
        c.seed = int(seed)
      out[key] = c
  return out


def seed_pretrain_dir(workdir: str, key: tuple[float, int], seed: int) -> str:
  """``<workdir>/pretrain_<rate>hz_<T>_seed<k>``: a further pre-training seed's run."""
  return f'{pretrain_dir(workdir, key)}_seed{int(seed)}'


def seed_sweep_dir(workdir: str, seed: int) -> str:
  """``<workdir>/pretrain_seed<k>``: the sweep fine-tuned from pre-training seed k."""
  return os.path.join(workdir, f'pretrain_seed{int(seed)}')


def _ints(value: Any, key: str) -> list[int]:
  """``value`` as a list of distinct integers (a ConfigError naming ``key`` otherwise)."""
  items = list(value) if isinstance(value, (list, tuple)) else [value]
  if any(isinstance(v, bool) or not isinstance(v, int) for v in items) or (
      len(set(items)) != len(items)):
    raise ConfigError(f'config.{key} must be distinct integers, got {value!r}')
  return [int(v) for v in items]


def seed_plan(config: ml_collections.ConfigDict) -> tuple[int, list[int], list[str]]:
  """(main pre-training seed, further seeds, seed_datasets), checked before any work.

  The main seed is ``pretrain_seeds[0]`` and must equal ``pretrain.seed``; further seeds need
  ``seed_datasets`` (a subset of ``sweep.datasets``), the pre-trained arm in ``sweep.inits`` and
  a pre-training here (not released weights). Each error names the key.
  """
  seeds = _ints(config.get('pretrain_seeds', (int(config.pretrain.seed),)), 'pretrain_seeds')
  if not seeds:
    raise ConfigError('config.pretrain_seeds is empty: give at least the main pre-training seed '
                      f'(config.pretrain.seed = {config.pretrain.seed})')
  if seeds[0] != int(config.pretrain.seed):
    raise ConfigError(f'config.pretrain_seeds[0] = {seeds[0]} is the main pre-training seed and '
                      f'must equal config.pretrain.seed = {config.pretrain.seed}; set both alike')
  datasets = config.get('seed_datasets', ())
  datasets = [datasets] if isinstance(datasets, str) else list(datasets)
  bad = [d for d in datasets if d not in config.sweep.datasets]
  if bad or len(set(datasets)) != len(datasets):
    raise ConfigError(f'config.seed_datasets must be distinct data sets of config.sweep.datasets '
                      f'{tuple(config.sweep.datasets)}, got {tuple(datasets)}')
  further = seeds[1:]
  if further and not datasets:
    raise ConfigError(f'config.pretrain_seeds has further seeds {further} but config.seed_datasets '
                      f'is empty: name the data set(s) to fine-tune from them')
  if further and not bool(config.get('pretrain_from_scratch', True)):
    raise ConfigError(f'config.pretrain_seeds has further seeds {further}, but '
                      f'config.pretrain_from_scratch=False fine-tunes from the released weights, '
                      f'one pre-training only; set --config.pretrain_from_scratch=True or '
                      f'--config.pretrain_seeds="({seeds[0]},)"')
  if further and 'pretrained' not in config.sweep.inits:
    raise ConfigError(f"config.pretrain_seeds has further seeds {further}, but 'pretrained' is "
                      f'not in config.sweep.inits {tuple(config.sweep.inits)}')
  return seeds[0], further, datasets


def seed_sweep_config(sweep_cfg: ml_collections.ConfigDict, datasets: Sequence[str],
                      ckpts: Sequence[str]) -> ml_collections.ConfigDict:
  """The sweep of a further pre-training seed: the pre-trained arm of ``datasets`` only, at the
  first fine-tuning seed, fine-tuned from ``ckpts``."""
  c = sweep_cfg.copy_and_resolve_references()
  c.unlock()
  c.datasets = tuple(datasets)
  c.inits = ('pretrained',)
  c.seeds = (int(list(sweep_cfg.get('seeds', (0,)))[0]),)
  c.init_from = ','.join(ckpts)
  c.final_model = False
  return c


def run(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Pre-trains what the sweep needs, then runs the sweep (and the further pre-training seeds'
  sweeps, then the variance over seeds); returns the report directory."""
  from ssl_imu_jax.evaluation import report, sweep
  from ssl_imu_jax.training import pretrain

  main_seed, further, seed_datasets = seed_plan(config)
  # Every config mistake shows before the first pre-training, not hours later at the sweep.
  input_pipeline.check_dataset(config.pretrain.data.dataset, 'pretrain.data.dataset')
  sweep.validate_config(config.sweep, prefix='sweep.', init_from=False)
  sweep.check_dataset_names(config.sweep, prefix='sweep.')
  data_dir = input_pipeline.resolve_data_dir(config, workdir)
  plans = pretrain_configs(config)
  seed_plans = {k: pretrain_configs(config, seed_datasets, k) for k in further}
  report_only = bool(config.sweep.get('report_only', False))
  from_scratch = bool(config.get('pretrain_from_scratch', True))
  if from_scratch:
    ckpts = [os.path.join(pretrain_dir(workdir, key), 'checkpoints') for key in plans]
  else:
    ckpts = released_checkpoints(plans)
    print('== fine-tuning from the released weights ' + ', '.join(
        os.path.basename(c) for c in ckpts) + ' (--config.pretrain_from_scratch=True pre-trains '
          'here instead)', file=sys.stderr, flush=True)
  for i, (key, pcfg) in enumerate(plans.items(), start=1):
    if report_only or not from_scratch:  # report what the sweep has finished / released weights
      break
    out_dir = pretrain_dir(workdir, key)
    print(f'== pre-training {i}/{len(plans)} on {pcfg.data.dataset} at {key[0]:g} Hz / {key[1]} '
          f'samples ({pcfg.train.steps} steps x {pcfg.train.batch_size} windows) -> {out_dir}',
          file=sys.stderr, flush=True)
    with interrupt.activity(f'pre-training {i}/{len(plans)} ({os.path.basename(out_dir)})'):
      pretrain.run(pcfg, out_dir, data_dir)
  seed_ckpts = {k: [os.path.join(seed_pretrain_dir(workdir, key, k), 'checkpoints')
                    for key in kplans] for k, kplans in seed_plans.items()}
  for k, kplans in seed_plans.items():
    for key, pcfg in kplans.items():
      if report_only:
        break
      out_dir = seed_pretrain_dir(workdir, key, k)
      print(f'== pre-training seed {k} on {pcfg.data.dataset} at {key[0]:g} Hz / {key[1]} '
            f'samples (for {", ".join(seed_datasets)}) -> {out_dir}', file=sys.stderr, flush=True)
      with interrupt.activity(f'pre-training seed {k} ({os.path.basename(out_dir)})'):
        pretrain.run(pcfg, out_dir, data_dir)
  if config.get('pretrain_only', False):
    ckpts = ckpts + [c for k in further for c in seed_ckpts[k]]
    print('pre-training only (config key pretrain_only): ' + ', '.join(ckpts), flush=True)
    return os.path.dirname(ckpts[0]) if len(ckpts) == 1 else workdir
  sweep_cfg = config.sweep.copy_and_resolve_references()
  sweep_cfg.unlock()
  sweep_cfg.init_from = ','.join(ckpts)
  sweep_cfg.finetune.data_dir = data_dir
  report_dir = sweep.run(sweep_cfg, workdir)

  table = paper_comparison(report_dir)
  if report_only:
    table = ('PARTIAL (sweep.report_only): the cells finished so far; see summary.md for how many '
             'are missing.\n\n' + table)
  files.write_text_atomic(os.path.join(report_dir, 'paper_comparison.md'), table)
  print(table, flush=True)
  records = {main_seed: sweep.done_records(sweep_cfg, workdir)}
  for k in further:
    kcfg = seed_sweep_config(sweep_cfg, seed_datasets, seed_ckpts[k])
    kdir = seed_sweep_dir(workdir, k)
    if report_only and not sweep.done_records(kcfg, kdir):
      continue  # nothing of this seed finished yet
    print(f'== fine-tuning {", ".join(seed_datasets)} from pre-training seed {k} -> {kdir}',
          file=sys.stderr, flush=True)
    sweep.run(kcfg, kdir)
    records[k] = sweep.done_records(kcfg, kdir)
  if len(records) > 1 or len(sweep_cfg.get('seeds', (0,))) > 1:
    print(report.write_seed_variance(records, report_dir, int(list(sweep_cfg.seeds)[0])),
          flush=True)
  return report_dir


def released_checkpoints(plans: dict[tuple[float, int], Any]) -> list[str]:
  """The released weights (``weights/<dataset>_<rate>hz_<T>``) for each planned pre-training."""
  out = []
  for key, pcfg in plans.items():
    mix = input_pipeline.mix_config(pcfg.data)
    name = checkpointing.release_name(pcfg.data.dataset, *key, mix.dataset if mix else '')
    path = os.path.join(checkpointing.weights_root(), name)
    if not os.path.isdir(os.path.join(path, 'checkpoints')):
      raise ConfigError(f'no released weights weights/{name} for {pcfg.data.dataset} at '
                        f'{key[0]:g} Hz / {key[1]} samples (released: '
                        f'{", ".join(checkpointing.released_names()) or "none"}); set '
                        f'--config.pretrain_from_scratch=True to pre-train here')
    out.append(path)
  return out


BUDGET_COLUMNS = ('step', 'windows_seen', 'retrieval_top1', 'retrieval_top5', 'task', 'target',
                  'protocol', 'fraction', 'within_r_pretrained', 'within_r_random', 'delta_r',
                  'p')


def budget_curve(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Downstream Δr and held-out retrieval against pre-training steps; returns the report dir.

  Uses the intermediate checkpoints of one pre-training run (``config.pretrain_run``): one
  pre-trained-only sweep per saved step (``<workdir>/budget/step<k>``) and one random-init sweep
  shared by all steps (``<workdir>/budget/random``). Writes ``<workdir>/report/budget.csv`` and
  ``budget_curve.png``.
  """
  import pandas as pd

  from ssl_imu_jax.evaluation import report, sweep
  from ssl_imu_jax.training import checkpointing

  if not config.pretrain_run:
    raise ConfigError('config.pretrain_run is required: the pre-training run whose intermediate '
                      'checkpoints to evaluate (set --config.pretrain_run=DIR)')
  sweep.validate_config(config.sweep, prefix='sweep.', init_from=False)
  sweep.check_dataset_names(config.sweep, prefix='sweep.')
  run = os.path.abspath(config.pretrain_run)
  ckpt_dir = checkpointing.find_checkpoint_dir(run)
  saved = sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit())
  steps = [int(s) for s in config.steps] or saved
  missing = [s for s in steps if s not in saved]
  if missing:
    raise ConfigError(f'config.steps {missing} have no checkpoint in {ckpt_dir} (saved: {saved}; '
                      f'raise the pre-training max_to_keep to keep intermediate steps)')
  _, meta = checkpointing.read_meta(ckpt_dir, steps[-1])
  checkpointing.require_nce(meta, f'config.pretrain_run: {ckpt_dir}', 'the budget curve')
  batch = int(meta['config']['train']['batch_size'])
  base = config.sweep.copy_and_resolve_references()
  base.unlock()
  base.finetune.data_dir = input_pipeline.resolve_data_dir(config, workdir)
  rnd = base.copy_and_resolve_references()
  rnd.inits, rnd.init_from = ('random',), ''
  rnd.finetune.model.encoder = ml_collections.ConfigDict(meta['encoder'])  # the same network
  rnd_dir = os.path.join(workdir, 'budget', 'random')
  sweep.run(rnd, rnd_dir)
  random_records = sweep.done_records(rnd, rnd_dir)
  retrieval = report.retrieval_by_step(run)
  rows = []
  for step in steps:
    pre = base.copy_and_resolve_references()
    pre.inits, pre.init_from = ('pretrained',), os.path.join(ckpt_dir, str(step))
    step_dir = os.path.join(workdir, 'budget', f'step{step}')
    print(f'== budget: pre-training step {step}', file=sys.stderr, flush=True)
    sweep.run(pre, step_dir)
    df = report.results_frame(sweep.done_records(pre, step_dir) + random_records)
    head = report.headline_frame(df)
    r = retrieval.get(step, {})
    for h in head.itertuples():
      rows.append({'step': step, 'windows_seen': step * batch, 'retrieval_top1': r.get('top1'),
                   'retrieval_top5': r.get('top5'), 'task': h.task, 'target': h.target,
                   'protocol': h.protocol, 'fraction': h.fraction,
                   'within_r_pretrained': h.within_r_pretrained,
                   'within_r_random': h.within_r_random, 'delta_r': h.delta_r, 'p': h.p})
  out = pd.DataFrame(rows, columns=list(BUDGET_COLUMNS))
  report_dir = os.path.join(workdir, 'report')
  os.makedirs(report_dir, exist_ok=True)
  files.write_text_atomic(os.path.join(report_dir, 'budget.csv'), out.to_csv(index=False))
  _plot_budget(out, os.path.join(report_dir, 'budget_curve.png'))
  print(out.to_string(index=False, float_format=lambda v: f'{v:.3f}'), flush=True)
  return report_dir


def _plot_budget(df, path: str) -> None:
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
  ret = df.drop_duplicates('step').sort_values('step')
  ax1.plot(ret.step, ret.retrieval_top1, 'o-', label='top-1')
  ax1.plot(ret.step, ret.retrieval_top5, 's--', label='top-5')
  ax1.set_xlabel('pre-training steps')
  ax1.set_ylabel('held-out retrieval accuracy')
  ax1.set_title('acc -> gyr retrieval, held-out subjects')
  ax1.grid(True, alpha=0.3)
  ax1.legend(fontsize=8)
  for (task, protocol, frac), g in df.groupby(['task', 'protocol', 'fraction']):
    g = g.sort_values('step')
    ax2.plot(g.step, g.delta_r, 'o-' if protocol != 'linear_probe' else 's--',
             label=f'{task} {protocol} {frac:.0%}')
  ax2.axhline(0.0, color='k', lw=0.8)
  ax2.set_xlabel('pre-training steps')
  ax2.set_ylabel('Δ within-subject r (pre-trained - random)')
  ax2.set_title('downstream gain')
  ax2.grid(True, alpha=0.3)
  ax2.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


# Tan, Shull, Chaudhari (ASB 2023): within-subject r of random init -> pre-trained at 100 % of
# the labelled data, and how much less labelled data the pre-trained model needed for the same r.
PAPER = {
    'loading rate': {'random': 0.87, 'pretrained': 0.91, 'percent_less': 90},
    'peak vGRF': {'random': 0.79, 'pretrained': 0.83, 'percent_less': 60},
    'peak KFM': {'random': 0.87, 'pretrained': 0.90, 'percent_less': 75},
}
PAPER_TASK = {'synthetic_running_valr': 'loading rate', 'running_valr': 'loading rate',
              'synthetic_walking_grf': 'peak vGRF', 'camargo2021': 'peak vGRF',
              'synthetic_walking_kfm': 'peak KFM', 'knee_moment': 'peak KFM'}
# The issue's targets for the paper protocol (within-subject r, full_from_probe).
TARGET_DELTA_R, TARGET_FRACTION, TARGET_P = 0.03, 0.25, 0.05


def paper_comparison(report_dir: str, protocol: str = 'full_from_probe') -> str:
  """Markdown: this run's within-subject r beside the paper's, per task, with the targets.

  Reads ``headline.csv`` and ``efficiency.csv`` of a sweep report. A task meets the targets when
  Δr at 100 % >= 0.03 with paired-t p < 0.05 over subjects, and the pre-trained r at some
  fraction <= 25 % reaches random init's r at 100 %. With feature-baseline cells, its r follows
  the two arms' and a column gives the pre-trained arm's Δr against it at 100 %.
  """
  import pandas as pd

  head = pd.read_csv(os.path.join(report_dir, 'headline.csv'))
  eff = pd.read_csv(os.path.join(report_dir, 'efficiency.csv'))
  head, eff = head[head.protocol == protocol], eff[eff.protocol == protocol]
  feats = 'within_r_features' in head and bool(head.within_r_features.notna().any())
  fracs = sorted(head.fraction.unique())
  ceiling = max(fracs) / min(fracs) if fracs else 1.0  # no extrapolation below the grid

  def times(v: float) -> str:
    return f'{"≥ " if v >= ceiling - 1e-9 else ""}{v:.1f}×'

  lines = [f'Within-subject Pearson r, `{protocol}`, pre-trained / random init'
           + (' / feature baseline (ridge)' if feats else '')
           + ' at each fraction of the training windows:', '',
           '| task | ' + ' | '.join(f'{f:.0%}' for f in fracs) + ' |',
           '|---|' + '---|' * len(fracs)]
  for (task, target), g in head.groupby(['task', 'target'], sort=False):
    cells = []
    for f in fracs:
      row = g[g.fraction == f]
      cells.append('—' if row.empty else
                   f'{row.within_r_pretrained.iloc[0]:.3f} / {row.within_r_random.iloc[0]:.3f}'
                   + (f' / {row.within_r_features.iloc[0]:.3f}' if feats else ''))
    lines.append(f'| {task} ({target}) | ' + ' | '.join(cells) + ' |')
  lines += ['', '| task | paper: random → pre-trained (Δr) | here: random → pre-trained (Δr '
            '[95 % CI over subjects]) | '
            'p (paired t, subjects) | paper: less data | here: less data (grid; interpolated, '
            '95 % CI) | targets |' + (' here: pre-trained vs feature baseline (Δr [95 % CI], '
                                      'p) |' if feats else ''),
            '|---|---|---|---|---|---|---|' + ('---|' if feats else '')]
  for (task, target), g in head.groupby(['task', 'target'], sort=False):
    full = g[g.fraction == g.fraction.max()].iloc[0]
    e = eff[(eff.task == task) & (eff.target == target)]
    e = e.iloc[0] if len(e) else None
    paper = PAPER.get(PAPER_TASK.get(task, ''))
    paper_txt = (f'{paper["random"]:.2f} → {paper["pretrained"]:.2f} '
                 f'({paper["pretrained"] - paper["random"]:+.2f})' if paper else '—')
    ci = ('' if pd.isna(full.get('delta_r_low', float('nan'))) else
          f' [{full.delta_r_low:+.3f}, {full.delta_r_high:+.3f}]')
    here = (f'{full.within_r_random:.3f} → {full.within_r_pretrained:.3f} '
            f'({full.delta_r:+.3f}{ci})')
    grid = None if e is None or pd.isna(e.grid_fraction) else float(e.grid_fraction)
    if e is None or len(fracs) < 2:
      less = '— (one fraction swept)' if len(fracs) < 2 else '—'
    else:
      interp = 'not reached' if pd.isna(e.times_less_interp) else times(e.times_less_interp)
      lo = 'not reached' if pd.isna(e.ci_low) else times(e.ci_low)
      hi = 'not reached' if pd.isna(e.ci_high) else times(e.ci_high)
      grid_txt = 'not reached' if grid is None else f'{e.percent_less:.0f} % less'
      less = f'{grid_txt}; {interp} ({lo} to {hi})'
    met = [full.delta_r >= TARGET_DELTA_R and full.p < TARGET_P,
           grid is not None and grid <= TARGET_FRACTION + 1e-9]
    names = (f'Δr ≥ {TARGET_DELTA_R} with p < {TARGET_P}',
             f'pre-trained at ≤ {TARGET_FRACTION:.0%} ≥ random at 100 %')
    if len(fracs) < 2:  # data efficiency needs several fractions: only the Δr target is judged
      targets = (f'{names[0]}: {"met" if met[0] else "missed"}; data efficiency not judged '
                 f'(one fraction)')
    else:
      targets = ('met' if all(met) else 'missed: ' + ', '.join(
          name for ok, name in zip(met, names, strict=True) if not ok))
    vs = ''
    if feats:
      vs = ('— |' if pd.isna(full.delta_r_vs_features) else
            f'{full.within_r_features:.3f} → {full.within_r_pretrained:.3f} '
            f'({full.delta_r_vs_features:+.3f} [{full.delta_r_vs_features_low:+.3f}, '
            f'{full.delta_r_vs_features_high:+.3f}]), p = {full.p_vs_features:.3g} |')
    lines.append(f'| {task} ({target}) | {paper_txt} | {here} | {full.p:.3g} | '
                 f'{str(paper["percent_less"]) + " % less" if paper else "—"} | {less} | '
                 f'{targets} |' + (f' {vs}' if vs else ''))
  return '\n'.join(lines) + '\n'
