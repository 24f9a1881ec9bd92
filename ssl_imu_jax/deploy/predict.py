r"""A fine-tuned model as a plain JAX function, and the ``predict`` / ``evaluate`` stages on it.

  predict_fn, params, info = ssl_imu_jax.load_regressor('runs/ft/finetune')
  y = jax.jit(predict_fn)(params, acc, gyr)  # [B, N, T, 3] m/s^2, rad/s -> [B, K] label units

  python main.py --config=configs/predict.py --workdir=runs/pred \
      --config.checkpoint=runs/ft/finetune --config.data.seed=1

The stage converts the data with the model's rate and window (the converter resamples), keeps
the model's sites by name, predicts every window and writes ``<workdir>/<stage>/``:
predictions.csv, predictions.json (columns, units, provenance) and, where the data carry the
model's labels, metrics.json, summary.md, scatter.png and bland_altman.png; trial.png shows one
trial's predictions over its IMU signal. The folder is written whole or not at all.

A model fine-tuned on a curve target (a GRF curve per window, ``info['curve']``) predicts
[batch, T, A]; the stage then writes predictions.csv long (one row per window and time step:
``time_s`` in the trial, ``pred_<axis>`` [, ``true_<axis>``] per present axis), curves.npz (the
arrays [n, T, A] with subject_id, trial, start_s), where the data carry the curve metrics.json
and summary.md (``metrics.curve_metrics`` per subject, mean ± sd over subjects), and trial.png
draws the predicted curves over the measured ones (``plot_trial_curves``).

Held out means held out: the model's checkpoint records its training (and validation) subjects
and the source of its training records (data_prep/source.py: ``id`` names whose subjects they
are, the resolved folder of files, or a generated set's size / seed / options). Subject ids of
two sources are different people even when the numbers collide; of the same source, the same.
Metrics on windows of subjects the model was trained on are refused, naming them, unless
``allow_training_subjects`` is set; then every output says it is a training-set score.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pandas as pd

from ssl_imu_jax import files, metrics, stats
from ssl_imu_jax.data import input_pipeline
from ssl_imu_jax.deploy.encoder_api import apply_in_batches, check_window_shape
from ssl_imu_jax.errors import ConfigError, MissingInputError
from ssl_imu_jax.models.sequence import regression_model
from ssl_imu_jax.models.ssl_imu import dtype_from_name
from ssl_imu_jax.training import checkpointing


def load_regressor(checkpoint_dir: str, step: int | None = None
                   ) -> tuple[Callable[..., jax.Array], dict[str, Any], dict[str, Any]]:
  """Loads a fine-tuned model as ``(predict_fn, params, info)``.

  Args:
    checkpoint_dir: a fine-tuning run directory (``<workdir>/finetune``, a sweep cell, a final
      model), its ``checkpoints`` directory or one ``checkpoints/<step>`` directory.
    step: which step (default: the step directory given, else the latest).

  Returns:
    predict_fn: ``predict_fn(params, acc, gyr=None)``, pure and jit-able. ``acc`` / ``gyr`` are
      [batch, n_sites, T, 3] windows in physical units (m/s^2, rad/s) of ``info['sites']`` in
      that order; normalisation is applied inside. Returns [batch, K] in the labels' units
      (``info['targets']``, ``info['units']``). BatchNorm runs in inference mode, so each window
      is predicted independently of the rest of the batch. A wrong shape is a ValueError.
      A curve model (``info['curve']`` set) returns [batch, T, A] in the curve's unit, axes
      ``info['curve']['axes']`` (absent axes are meaningless: the model never saw them).
    params: the Flax variables ({'params', 'batch_stats'}) of encoder and head.
    info: 'checkpoint_dir', 'step', 'dataset', 'sites', 'sample_rate_hz', 'window_length',
      'frame', 'use_gyr', 'input_units', 'targets', 'units', 'normalization',
      'target_normalization', 'protocol', 'init_from', 'train_subjects', 'test_subjects',
      'final', 'config' (the fine-tuning config as a dict), 'validation_subjects', 'source'
      (where its training records came from: data set, id, hash, folder).
  """
  try:
    ckpt_dir, dir_step = checkpointing.resolve_checkpoint(checkpoint_dir)
  except FileNotFoundError as e:
    raise MissingInputError(f'config key checkpoint: {e}') from None
  step, meta = checkpointing.read_meta(ckpt_dir, dir_step if step is None else int(step))
  where = f'{ckpt_dir}/{step}'
  if meta.get('kind') != 'finetune':
    raise ConfigError(f'config key checkpoint: {where} is a {meta.get("kind")!r} checkpoint; '
                      f'predict needs a fine-tuned model (a pre-trained encoder has no head: '
                      f'fine-tune it first, or use load_encoder)')
  cfg = meta['config']
  norm = {k: float(v) for k, v in meta['normalization'].items()}
  use_gyr = bool(meta.get('use_gyr', 'gyr_mean' in norm))
  targets = list(meta['targets'])
  sites = meta.get('sites') or list(cfg['data'].get('imu_sites') or []) or None
  info = {
      'checkpoint_dir': ckpt_dir, 'step': int(step), 'dataset': cfg['data']['dataset'],
      'sites': sites, 'sample_rate_hz': float(meta.get('sample_rate_hz',
                                                       cfg['data']['sample_rate_hz'])),
      'window_length': int(meta.get('window_length', cfg['data']['window_length'])),
      'frame': meta.get('frame', 'unknown'), 'use_gyr': use_gyr,
      'input_units': {'acc': 'm/s^2', 'gyr': 'rad/s'}, 'targets': targets,
      'units': list(meta.get('units') or [''] * len(targets)), 'normalization': norm,
      'target_normalization': meta['target_normalization'], 'protocol': meta.get('protocol'),
      'init_from': meta.get('init_from', ''), 'train_subjects': meta.get('train_subjects', []),
      'test_subjects': meta.get('test_subjects', []), 'final': bool(meta.get('final')),
      'config': cfg, 'validation_subjects': meta.get('validation_subjects', []),
      'source': meta.get('source') or recorded_source(cfg['data']),
      'curve': meta.get('curve'),
  }
  curve = info['curve']
  model = regression_model(ml_collections.ConfigDict(meta['encoder']),
                           head_dims=tuple(cfg['model']['head_dims']),
                           num_targets=len(curve['axes']) if curve else len(targets),
                           curve=bool(curve),
                           use_gyr=use_gyr, dropout_rate=float(cfg['model']['dropout_rate']),
                           dtype=dtype_from_name(cfg['train'].get('compute_dtype', 'float32')))
  n_sites = len(sites) if sites else 1
  x = jax.ShapeDtypeStruct((1, n_sites, info['window_length'], 3), jnp.float32)
  abstract = jax.eval_shape(lambda k, a, g: model.init(k, a, g, False), jax.random.key(0), x, x)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
                        dict(abstract))
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32),
                        dict(checkpointing.restore_subtrees(ckpt_dir, step, target)))
  y_mean = jnp.asarray(info['target_normalization']['mean'], jnp.float32)
  y_std = jnp.asarray(info['target_normalization']['std'], jnp.float32)
  t, rate = info['window_length'], info['sample_rate_hz']

  def predict_fn(params, acc, gyr=None):
    """[batch, n_sites, T, 3] acc (m/s^2) [, gyr (rad/s)] -> [batch, K] in label units (a
    curve model: [batch, T, A])."""
    acc = jnp.asarray(acc, jnp.float32)
    check_window_shape('acc', acc.shape, t, rate)
    if sites and acc.shape[1] != len(sites):
      raise ValueError(f'acc: the model takes {len(sites)} sites {sites}, got shape '
                       f'{tuple(acc.shape)}')
    acc = (acc - norm['acc_mean']) / norm['acc_std']
    if use_gyr:
      if gyr is None:
        raise ValueError('gyr: this model was fine-tuned with the gyroscope; pass gyr windows '
                         f'[batch, n_sites, {t}, 3] in rad/s')
      gyr = jnp.asarray(gyr, jnp.float32)
      if gyr.shape != acc.shape:
        raise ValueError(f'gyr: shape {tuple(gyr.shape)} differs from acc {tuple(acc.shape)}')
      gyr = (gyr - norm['gyr_mean']) / norm['gyr_std']
    else:
      gyr = jnp.zeros_like(acc[..., :0])
    return model.apply(params, acc, gyr, train=False) * y_std + y_mean

  return predict_fn, params, info


def recorded_source(data: dict[str, Any]) -> dict[str, Any]:
  """The training source of a model saved before checkpoints recorded it, from its data config
  (a relative manual_dir is taken from the current directory)."""
  from data_prep import source  # noqa: PLC0415

  try:
    sid = source.subject_source_id(data['dataset'], data.get('manual_dir') or None,
                                   data.get('size', ''), int(data.get('seed', 0)),
                                   dict(data.get('options') or {}))
  except (KeyError, NotImplementedError):
    sid = ''
  return {'dataset': data['dataset'], 'id': sid, 'hash': '', 'manual_dir': '', 'records': ''}


def training_overlap(ws: input_pipeline.WindowSet, info: dict[str, Any]) -> list[int]:
  """Subject ids of ``ws`` the model was trained (or early-stopped) on: none when the windows
  come from another source (another folder, another generator seed), whatever the numbers."""
  mine, theirs = info.get('source') or {}, ws.metadata.get('source') or {}
  same = (mine.get('id') == theirs.get('id') if mine.get('id') and theirs.get('id')
          else mine.get('dataset') == theirs.get('dataset'))
  if not same:
    return []
  trained = {int(s) for s in [*info.get('train_subjects', []),
                              *info.get('validation_subjects', [])]}
  return sorted(trained & set(ws.subject_id.tolist()))


def scope_of(overlap: list[int]) -> str:
  """How the scores of a run read: held out, or a training-set score."""
  if overlap:
    return (f'TRAINING-SET SCORE: subjects {overlap} are subjects the model was trained on '
            f'(allow_training_subjects=True); not a held-out estimate')
  return 'held out: no subject the model was trained on'


def data_config(config: ml_collections.ConfigDict, info: dict[str, Any],
                workdir: str) -> ml_collections.ConfigDict:
  """The data to predict on: the model's training data config, with what the user named.

  Left empty, ``data.dataset`` is the model's own data set (all its splits); another data set
  starts from the builder defaults. Rate and window are always the model's (the converter
  resamples); an explicit other value is an error naming both.
  """
  model = info['config']['data']
  want = config.data
  d = ml_collections.ConfigDict(model)
  if config.get('recording'):
    if want.dataset not in ('', 'lab_files'):
      raise ConfigError(f'config keys recording and data.dataset={want.dataset!r} exclude each '
                        f'other: a single recording is read with its schema as lab_files')
    want = want.copy_and_resolve_references()
    want.dataset = 'lab_files'
    want.manual_dir, want.options = single_recording_input(config, workdir)
  if want.dataset and want.dataset != model['dataset']:
    d.dataset = want.dataset
    d.options, d.manual_dir, d.seed, d.window_stride = {}, '', 0, 0
  for key in ('size', 'manual_dir'):
    if want[key]:
      d[key] = want[key]
  if want.options:
    d.options = dict(want.options)
  if int(want.seed) >= 0:
    d.seed = int(want.seed)
  if int(want.window_stride) >= 0:
    d.window_stride = int(want.window_stride)
  for key, have in (('sample_rate_hz', info['sample_rate_hz']),
                    ('window_length', info['window_length'])):
    value = want[key]
    if value and abs(float(value) - float(have)) > 1e-6:
      raise ConfigError(f'config key data.{key}={value}, but the model in '
                        f'{info["checkpoint_dir"]} takes {have}; leave it at 0 (the data are '
                        f'converted at the model\'s value)')
    d[key] = type(d[key])(have)
  d.split = want.split
  d.imu_sites, d.targets, d.use_gyr = (), (), True
  return d


def single_recording_input(config, workdir: str) -> tuple[str, dict[str, str]]:
  """(manual_dir, builder options) that make lab_files read one recording with its schema."""
  from data_prep.builders import lab_files  # noqa: PLC0415

  rec = os.path.abspath(config.recording)
  if not os.path.isfile(rec):
    raise MissingInputError(f'config key recording: {rec} is not a file')
  if not config.get('schema'):
    raise ConfigError('config key schema is required with config.recording: the schema file '
                      '(docs/bring_your_own_data.md) that describes its columns and rate')
  schema = lab_files.load_schema(config.schema)
  schema['subjects'] = [{'id': 0, 'name': os.path.basename(rec),
                         'files': [os.path.basename(rec)]}]
  schema.pop('targets', None)  # one recording: windows to predict, no labels of its own
  schema.pop('force', None)
  path = os.path.join(workdir, 'input', 'schema.json')
  files.write_json_atomic(path, schema)
  return os.path.dirname(rec), {'schema': path}


def check_inputs(ws: input_pipeline.WindowSet, info: dict[str, Any],
                 check_frame: bool) -> input_pipeline.WindowSet:
  """The windows the model takes, or a clear error naming both sides."""
  where = ws.path
  if abs(ws.sample_rate_hz - info['sample_rate_hz']) > 1e-6 or (
      ws.window_length != info['window_length']):
    raise ConfigError(f'{where}: {ws.sample_rate_hz:g} Hz / {ws.window_length}-sample windows, '
                      f'the model takes {info["sample_rate_hz"]:g} Hz / {info["window_length"]}')
  sites = info['sites'] or list(ws.sites)
  missing = [s for s in sites if s not in ws.sites]
  if missing:
    raise ConfigError(f'{where}: sites {missing} of the model are missing; the model takes '
                      f'{sites}, the data have {list(ws.sites)} (rename the sites in the '
                      f'schema, or fine-tune on the sites you have)')
  if info['use_gyr'] and ws.gyr is None:
    raise ConfigError(f'{where}: accelerometer-only data, but the model in '
                      f'{info["checkpoint_dir"]} was fine-tuned with the gyroscope')
  frame = input_pipeline.axis_frame(ws.metadata)
  if check_frame and frame != info['frame']:
    raise ConfigError(f'{where}: windows in the {frame}, the model was trained in the '
                      f'{info["frame"]} (map the axes in the schema, or set '
                      f'--config.check_frame=False if they agree)')
  return input_pipeline.select_sites(ws, sites)


def load_windows(config, info, workdir: str) -> input_pipeline.WindowSet:
  """All windows of the requested split(s), converted and checked against the model."""
  import tensorflow_datasets as tfds  # noqa: PLC0415

  d = data_config(config, info, workdir)
  path = input_pipeline.ensure_built(d, input_pipeline.resolve_data_dir(config, workdir))
  names = [d.split] if d.split else list(tfds.builder_from_directory(path).info.splits)
  parts = [input_pipeline.load_split(path, name, use_gyr=info['use_gyr']) for name in names]
  curve = (info.get('curve') or {}) and info['targets'][0]
  if curve and curve in input_pipeline.curve_specs(path):  # the measured curves, to score
    parts = [input_pipeline.with_curve_target(ws, name, curve)
             for ws, name in zip(parts, names, strict=True)]
  ws = parts[0] if len(parts) == 1 else input_pipeline.concatenate(parts)
  ws = dataclasses.replace(ws, metadata={**ws.metadata,
                                         'source': input_pipeline.source_summary(ws, d)})
  src = ws.metadata.get('source_rate_hz')
  print(f'predict: {d.dataset} ({", ".join(names)}): {len(ws)} windows at the model\'s '
        f'{info["sample_rate_hz"]:g} Hz / {info["window_length"]} samples'
        + (f' (source {float(src):g} Hz, resampled by the converter)'
           if src and abs(float(src) - info['sample_rate_hz']) > 1e-6 else ''), flush=True)
  return check_inputs(ws, info, bool(config.get('check_frame', True)))


def prediction_frame(ws: input_pipeline.WindowSet, y_pred: np.ndarray, info: dict[str, Any],
                     overlap: list[int] = ()) -> tuple[pd.DataFrame, list[str]]:
  """One row per window: subject, trial, start_s, window, trained_on, pred_<label>
  [, true_<label>]."""
  subjects = ws.metadata.get('subjects') or {}
  names = [str((subjects.get(str(s)) or {}).get('name') or s) if isinstance(subjects, dict)
           else str(s) for s in ws.subject_id]
  df = pd.DataFrame({'subject_id': ws.subject_id, 'subject': names, 'trial': ws.trial,
                     'start_s': ws.start_s if ws.start_s is not None else np.nan,
                     'window': np.arange(len(ws)),
                     'trained_on': np.isin(ws.subject_id, np.asarray(list(overlap), np.int64))})
  labelled = [t for t in info['targets'] if t in ws.target_names]
  for k, t in enumerate(info['targets']):
    df[f'pred_{t}'] = y_pred[:, k]
    if t in labelled:
      df[f'true_{t}'] = ws.targets[:, ws.target_names.index(t)]
  return df.sort_values(['subject_id', 'trial', 'start_s', 'window'], kind='stable'), labelled


def score(df: pd.DataFrame, labelled: list[str], info: dict[str, Any],
          overlap: list[int] = ()) -> dict[str, Any]:
  """Pooled and within-subject metrics per label, and per subject; each says its scope."""
  out: dict[str, Any] = {}
  for t in labelled:
    unit = info['units'][info['targets'].index(t)]
    per = []
    for s, g in df.groupby('subject_id', sort=True):
      m = metrics.regression_metrics(g[f'true_{t}'], g[f'pred_{t}'])
      per.append({'subject_id': int(s), 'subject': str(g.subject.iloc[0]), 'n': len(g),
                  'trained_on': int(s) in overlap, **m})
    rows = pd.DataFrame({'subject': [p['subject_id'] for p in per],
                         'pearson_r': [p['pearson_r'] for p in per],
                         'n_test': [p['n'] for p in per]})
    w = stats.within_subject_r(rows)
    out[t] = {'scope': scope_of(list(overlap)), 'training_set_score': bool(overlap),
              'training_subjects_scored': list(overlap),
              'unit': unit, 'n_windows': len(df), 'n_subjects': len(per),
              'pooled': metrics.regression_metrics(df[f'true_{t}'], df[f'pred_{t}']),
              'within_subject_r': w.mean, 'within_subject_r_sd': w.sd,
              'within_subject_n': w.n_subjects, 'per_subject': per}
  return out


def summary_markdown(scores: dict[str, Any], info: dict[str, Any], data_name: str) -> str:
  lines = [f'# Predictions of {info["checkpoint_dir"]} on {data_name}', '']
  first = next(iter(scores.values()), {})
  if first.get('training_set_score'):
    lines += [f'**{first["scope"]}**', '']
  for t, s in scores.items():
    u = f' ({s["unit"]})' if s['unit'] else ''
    p = s['pooled']
    lines += [f'## {t}{u}', '',
              f'- within-subject r {s["within_subject_r"]:.3f} ± {s["within_subject_r_sd"]:.3f} '
              f'over {s["within_subject_n"]} subjects (subjects with >= '
              f'{stats.MIN_SUBJECT_WINDOWS} windows)',
              f'- pooled: r {p["pearson_r"]:.3f}, RMSE {p["rmse"]:.4g}{u}, relative RMSE '
              f'{p["rrmse"]:.1f} % of the range, {s["n_windows"]} windows', '',
              '| subject | windows | r | RMSE | rRMSE % |', '|---|---|---|---|---|']
    lines += [f'| {q["subject"]} | {q["n"]} | {q["pearson_r"]:.3f} | {q["rmse"]:.4g} | '
              f'{q["rrmse"]:.1f} |' for q in s['per_subject']]
    lines.append('')
  return '\n'.join(lines)


def plot_agreement(df: pd.DataFrame, labelled: list[str], info: dict[str, Any], out_dir: str
                   ) -> list[str]:
  """scatter.png (predicted vs true) and bland_altman.png (difference vs mean, bias ± 1.96 sd)."""
  from ssl_imu_jax.evaluation.report import pyplot  # noqa: PLC0415

  plt = pyplot()
  paths = []
  for kind in ('scatter', 'bland_altman'):
    fig, axes = plt.subplots(1, len(labelled), squeeze=False, figsize=(4 * len(labelled), 3.6))
    for ax, t in zip(axes[0], labelled, strict=True):
      unit = info['units'][info['targets'].index(t)]
      u = f' ({unit})' if unit else ''
      yt, yp = df[f'true_{t}'].to_numpy(float), df[f'pred_{t}'].to_numpy(float)
      if kind == 'scatter':
        ax.scatter(yt, yp, s=6, alpha=0.5)
        lo, hi = float(min(yt.min(), yp.min())), float(max(yt.max(), yp.max()))
        ax.plot([lo, hi], [lo, hi], 'k--', lw=0.8)
        ax.set_xlabel(f'true {t}{u}', fontsize=8)
        ax.set_ylabel(f'predicted {t}{u}', fontsize=8)
      else:
        mean, diff = (yt + yp) / 2, yp - yt
        bias, sd = float(diff.mean()), float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
        ax.scatter(mean, diff, s=6, alpha=0.5)
        for y, style in ((bias, '-'), (bias - 1.96 * sd, '--'), (bias + 1.96 * sd, '--')):
          ax.axhline(y, color='k', lw=0.8, linestyle=style)
        ax.set_title(f'bias {bias:.3g}, limits of agreement ±{1.96 * sd:.3g}', fontsize=8)
        ax.set_xlabel(f'mean of predicted and true {t}{u}', fontsize=8)
        ax.set_ylabel(f'predicted - true{u}', fontsize=8)
      ax.grid(True, alpha=0.3)
    fig.tight_layout()
    paths.append(os.path.join(out_dir, f'{kind}.png'))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
  return paths


def plot_trial(ws: input_pipeline.WindowSet, df: pd.DataFrame, info: dict[str, Any],
               subject_id: int, trial: int, path: str) -> None:
  """One trial: |acc| of each window's first site over time, the predictions below it."""
  from ssl_imu_jax.evaluation.report import pyplot  # noqa: PLC0415

  plt = pyplot()
  df = df.sort_values('window')  # row i = window i of ws
  sel = np.flatnonzero((ws.subject_id == subject_id) & (ws.trial == trial))
  fs, t_len = ws.sample_rate_hz, ws.window_length
  starts = df.start_s.to_numpy(float)[sel]
  known = bool(np.isfinite(starts).all())
  if not known:  # pre-segmented steps: end to end, in record order
    starts = np.arange(len(sel)) * t_len / fs
  order = np.argsort(starts, kind='stable')
  sel, starts = sel[order], starts[order]
  fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 5))
  for i, st in zip(sel, starts, strict=True):
    top.plot(st + np.arange(t_len) / fs, np.linalg.norm(ws.acc[i, 0], axis=-1), lw=0.7,
             color='tab:blue', alpha=0.6)
  top.set_ylabel(f'|acc| {ws.sites[0]} (m/s^2)', fontsize=8)
  centre = starts + t_len / fs / 2
  for k, t in enumerate(info['targets']):
    unit = info['units'][k]
    bottom.plot(centre, df[f'pred_{t}'].to_numpy()[sel], 'o-', ms=3,
                label=f'predicted {t}' + (f' ({unit})' if unit else ''))
    if f'true_{t}' in df:
      bottom.plot(centre, df[f'true_{t}'].to_numpy()[sel], 'x', ms=4, color='k',
                  label=f'true {t}')
  bottom.set_xlabel('time in trial (s)' if known else
                    'windows placed end to end (s; the records carry no start times)', fontsize=8)
  bottom.legend(fontsize=7)
  bottom.grid(True, alpha=0.3)
  top.set_title(f'subject {df.subject.iloc[sel[0]]}, trial {trial}: {len(sel)} windows', fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def run(config: ml_collections.ConfigDict, workdir: str, require_labels: bool = False
        ) -> dict[str, str]:
  """The ``predict`` stage (``evaluate``: ``require_labels``); returns {name: path}."""
  stage = 'evaluate' if require_labels else 'predict'
  predict_fn, params, info = load_regressor(config.checkpoint)
  ws = load_windows(config, info, workdir)
  labelled = [t for t in info['targets'] if t in ws.target_names]
  if require_labels and not labelled:
    raise ConfigError(f'{ws.path}: evaluate needs the labels {info["targets"]}, the data carry '
                      f'{list(ws.target_names) or "none"} (use stage predict for unlabelled data)')
  overlap = training_overlap(ws, info)
  if overlap and labelled and not config.get('allow_training_subjects', False):
    raise ConfigError(
        f'{stage}: subjects {overlap} of {ws.metadata["source"]["dataset"]} (source '
        f'{ws.metadata["source"]["id"]}) are subjects the model in {info["checkpoint_dir"]} was '
        f'trained on; score other subjects (data.manual_dir, data.seed) or set '
        f'--config.allow_training_subjects=True for a training-set score')
  y_pred = apply_in_batches(predict_fn, params, ws.acc, ws.gyr if info['use_gyr'] else None,
                            int(config.batch_size))
  if info.get('curve'):
    df, labelled = curve_frame(ws, y_pred, info, overlap)
    write = functools.partial(_write_curve_outputs, y_pred=y_pred)
  else:
    df, labelled = prediction_frame(ws, y_pred, info, overlap)
    write = _write_outputs
  out_dir = os.path.join(workdir, stage)
  tmp = f'{out_dir}.tmp.{os.getpid()}'
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    paths, scores = write(config, ws, df, labelled, info, tmp, overlap)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)  # a partial folder never replaces a complete one
    raise
  shutil.rmtree(out_dir, ignore_errors=True)
  os.replace(tmp, out_dir)
  paths = {k: os.path.join(out_dir, os.path.basename(v)) for k, v in paths.items()}
  if scores and overlap:
    print(scope_of(overlap), flush=True)
  for t, s in scores.items():
    tag = 'training-set ' if overlap else ''
    if info.get('curve'):
      print(f'{tag}{t}: ' + '; '.join(
          f'{a} RMSE {m["rmse"]["mean"]:.4g} ± {m["rmse"]["sd"]:.4g} {s["unit"]}, r '
          f'{m["pearson_r"]["mean"]:.3f}' for a, m in s['summary'].items())
          + f' (mean ± sd over {s["n_subjects"]} subjects)', flush=True)
      continue
    print(f'{tag}{t}: within-subject r {s["within_subject_r"]:.3f} ± '
          f'{s["within_subject_r_sd"]:.3f} ({s["within_subject_n"]} subjects), '
          f'pooled r {s["pooled"]["pearson_r"]:.3f}, '
          f'RMSE {s["pooled"]["rmse"]:.4g} {s["unit"]}', flush=True)
  print(f'{stage}: {len(ws)} windows -> {out_dir}', flush=True)
  return paths


def _write_outputs(config, ws, df, labelled, info, tmp, overlap=()
                   ) -> tuple[dict[str, str], dict[str, Any]]:
  """Every output file into the folder ``tmp``; returns ({name: path}, scores)."""
  paths = {'predictions': os.path.join(tmp, 'predictions.csv')}
  scores: dict[str, Any] = {}
  df.to_csv(paths['predictions'], index=False, float_format='%.8g')
  columns = {'subject_id': 'subject id in the data set', 'subject': 'subject name',
             'trial': 'trial index within the subject',
             'start_s': 'window start in its trial, s (empty: unknown)',
             'window': 'row index in the data set',
             'trained_on': 'the model was trained (or early-stopped) on this subject'}
  for t, u in zip(info['targets'], info['units'], strict=True):
    columns[f'pred_{t}'] = f'predicted {t}' + (f', {u}' if u else '')
    if t in labelled:
      columns[f'true_{t}'] = f'true {t}' + (f', {u}' if u else '')
  paths['description'] = os.path.join(tmp, 'predictions.json')
  files.write_json_atomic(paths['description'], {
      'columns': columns, 'checkpoint_dir': info['checkpoint_dir'], 'step': info['step'],
      'data': ws.path, 'sites': list(ws.sites), 'sample_rate_hz': ws.sample_rate_hz,
      'window_length': ws.window_length, 'n_windows': len(ws), 'scope': scope_of(list(overlap)),
      'training_set_score': bool(overlap and labelled),
      'training_subjects_scored': list(overlap), 'data_source': ws.metadata.get('source'),
      'model_source': info.get('source')})
  if labelled:
    scores = score(df, labelled, info, overlap)
    paths['metrics'] = os.path.join(tmp, 'metrics.json')
    files.write_json_atomic(paths['metrics'], scores)
    paths['summary'] = os.path.join(tmp, 'summary.md')
    text = summary_markdown(scores, info, os.path.basename(os.path.dirname(ws.path)) or ws.path)
    files.write_text_atomic(paths['summary'], text)
    if config.get('plot', True):
      for p in plot_agreement(df, labelled, info, tmp):
        paths[os.path.splitext(os.path.basename(p))[0]] = p
  if config.get('plot', True) and len(ws):
    subject_id, trial = plot_trial_choice(config, ws)
    paths['trial_plot'] = os.path.join(tmp, 'trial.png')
    plot_trial(ws, df, info, subject_id, trial, paths['trial_plot'])
  return paths, scores


def plot_trial_choice(config, ws: input_pipeline.WindowSet) -> tuple[int, int]:
  """(subject id, trial) of ``config.plot_trial`` ('<subject_id>/<trial>'; '' = the first)."""
  spec = str(config.get('plot_trial', '') or '')
  if not spec:
    return min(zip(ws.subject_id.tolist(), ws.trial.tolist(), strict=True))
  try:
    s, t = (int(x) for x in spec.split('/'))
  except ValueError:
    raise ConfigError(f"config key plot_trial={spec!r}; expected '<subject_id>/<trial>'") from None
  if not ((ws.subject_id == s) & (ws.trial == t)).any():
    pairs = sorted(set(zip(ws.subject_id.tolist(), ws.trial.tolist(), strict=True)))[:10]
    raise ConfigError(f'config key plot_trial={spec!r}: no such subject/trial in {ws.path}; '
                      f'some that exist: {[f"{a}/{b}" for a, b in pairs]}')
  return s, t


def curve_frame(ws: input_pipeline.WindowSet, y_pred: np.ndarray, info: dict[str, Any],
                overlap: list[int] = ()) -> tuple[pd.DataFrame, list[str]]:
  """The predictions of a curve model, long: one row per window and time step (subject_id,
  subject, trial, start_s, window, trained_on, step, time_s = start_s + step / rate (NaN when
  the start is unknown), pred_<axis> [, true_<axis>] for the curve's present axes). Returns
  (frame, [the curve's name] when the windows carry its measured curve, else [])."""
  name, curve = info['targets'][0], info['curve']
  n, t_len, _ = y_pred.shape
  subjects = ws.metadata.get('subjects') or {}
  names = np.asarray([str((subjects.get(str(s)) or {}).get('name') or s)
                      if isinstance(subjects, dict) else str(s) for s in ws.subject_id])
  start = (ws.start_s if ws.start_s is not None else np.full(n, np.nan)).astype(np.float64)
  step = np.tile(np.arange(t_len), n)
  rep = lambda a: np.repeat(np.asarray(a), t_len)  # noqa: E731
  df = pd.DataFrame({'subject_id': rep(ws.subject_id), 'subject': rep(names),
                     'trial': rep(ws.trial), 'start_s': rep(start), 'window': rep(np.arange(n)),
                     'trained_on': rep(np.isin(ws.subject_id, np.asarray(list(overlap),
                                                                          np.int64))),
                     'step': step, 'time_s': rep(start) + step / float(ws.sample_rate_hz)})
  labelled = [name] if ws.curve is not None and ws.target_names == (name,) else []
  for a, (axis, present) in enumerate(zip(curve['axes'], curve['present'], strict=True)):
    if not present:
      continue
    df[f'pred_{axis}'] = y_pred[:, :, a].ravel()
    if labelled:
      df[f'true_{axis}'] = ws.targets[:, :, a].ravel()
  return df, labelled


def score_curves(ws: input_pipeline.WindowSet, y_pred: np.ndarray, info: dict[str, Any],
                 overlap: list[int] = ()) -> dict[str, Any]:
  """``metrics.curve_metrics`` of the windows' measured curves (per subject over the samples
  where the true vertical force exceeds 0.02 BW; mean ± sd over subjects), with its scope."""
  name, curve = info['targets'][0], info['curve']
  m = metrics.curve_metrics(ws.targets, y_pred, ws.subject_id, axes=tuple(curve['axes']),
                            present=tuple(bool(p) for p in curve['present']))
  return {name: {'scope': scope_of(list(overlap)), 'training_set_score': bool(overlap),
                 'training_subjects_scored': list(overlap), 'unit': curve.get('unit', ''),
                 'n_windows': len(ws), 'n_subjects': len(set(ws.subject_id.tolist())), **m}}


def curve_summary_markdown(scores: dict[str, Any], info: dict[str, Any], data_name: str) -> str:
  lines = [f'# Curve predictions of {info["checkpoint_dir"]} on {data_name}', '']
  for t, s in scores.items():
    if s.get('training_set_score'):
      lines += [f'**{s["scope"]}**', '']
    u = f' ({s["unit"]})' if s['unit'] else ''
    lines += [f'## {t}{u}', '',
              f'Per subject over the samples where the true vertical force exceeds '
              f'{metrics.STANCE_THRESHOLD_BW} BW, then mean ± sd over {s["n_subjects"]} '
              f'subjects ({s["n_windows"]} windows):', '',
              '| axis | RMSE | rRMSE % | R² | r |', '|---|---|---|---|---|']
    for axis, m in s['summary'].items():
      lines.append(f'| {axis} | {m["rmse"]["mean"]:.4g} ± {m["rmse"]["sd"]:.4g} | '
                   f'{m["rrmse"]["mean"]:.1f} ± {m["rrmse"]["sd"]:.1f} | '
                   f'{m["r2"]["mean"]:.3f} ± {m["r2"]["sd"]:.3f} | '
                   f'{m["pearson_r"]["mean"]:.3f} ± {m["pearson_r"]["sd"]:.3f} |')
    lines += ['', '| subject | axis | samples | RMSE | rRMSE % | R² | r |',
              '|---|---|---|---|---|---|---|']
    lines += [f'| {q["subject"]} | {q["axis"]} | {q["n_samples"]} | {q["rmse"]:.4g} | '
              f'{q["rrmse"]:.1f} | {q["r2"]:.3f} | {q["pearson_r"]:.3f} |'
              for q in s['per_subject']]
    lines.append('')
  return '\n'.join(lines)


def plot_trial_curves(ws: input_pipeline.WindowSet, y_pred: np.ndarray, info: dict[str, Any],
                      subject_id: int, trial: int, path: str) -> None:
  """One trial: |acc| of the first site over time, and below it every window's predicted curve
  (solid) over the measured one (dashed, where the data carry it), per present axis; windows
  placed at their start in the trial (end to end when the records carry no start)."""
  from ssl_imu_jax.evaluation.report import pyplot  # noqa: PLC0415

  plt = pyplot()
  curve = info['curve']
  sel = np.flatnonzero((ws.subject_id == subject_id) & (ws.trial == trial))
  fs, t_len = ws.sample_rate_hz, ws.window_length
  starts = (ws.start_s[sel].astype(float) if ws.start_s is not None
            else np.full(len(sel), np.nan))
  known = bool(np.isfinite(starts).all())
  if not known:
    starts = np.arange(len(sel)) * t_len / fs
  order = np.argsort(starts, kind='stable')
  sel, starts = sel[order], starts[order]
  measured = ws.curve is not None and ws.target_names == (info['targets'][0],)
  fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 5.5))
  colours = ('tab:blue', 'tab:orange', 'tab:green', 'tab:red')
  for j, (i, st) in enumerate(zip(sel, starts, strict=True)):
    t = st + np.arange(t_len) / fs
    top.plot(t, np.linalg.norm(ws.acc[i, 0], axis=-1), lw=0.7, color='tab:gray', alpha=0.7)
    for a, (axis, present) in enumerate(zip(curve['axes'], curve['present'], strict=True)):
      if not present:
        continue
      c = colours[a % len(colours)]
      bottom.plot(t, y_pred[i, :, a], '-', lw=1.0, color=c,
                  label=f'predicted {axis}' if j == 0 else None)
      if measured:
        bottom.plot(t, ws.targets[i, :, a], '--', lw=1.0, color=c, alpha=0.8,
                    label=f'measured {axis}' if j == 0 else None)
  unit = curve.get('unit', '')
  top.set_ylabel(f'|acc| {ws.sites[0]} (m/s^2)', fontsize=8)
  bottom.set_ylabel(f'{info["targets"][0]}' + (f' ({unit})' if unit else ''), fontsize=8)
  bottom.set_xlabel('time in trial (s)' if known else
                    'windows placed end to end (s; the records carry no start times)', fontsize=8)
  bottom.legend(fontsize=7, ncol=2)
  bottom.grid(True, alpha=0.3)
  top.set_title(f'subject {subject_id}, trial {trial}: {len(sel)} windows, predicted (solid)'
                + (' over measured (dashed)' if measured else ''), fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _write_curve_outputs(config, ws, df, labelled, info, tmp, overlap=(), *, y_pred
                         ) -> tuple[dict[str, str], dict[str, Any]]:
  """A curve model's output files into the folder ``tmp``; returns ({name: path}, scores)."""
  paths = {'predictions': os.path.join(tmp, 'predictions.csv')}
  df.to_csv(paths['predictions'], index=False, float_format='%.8g')
  curve, unit = info['curve'], info['curve'].get('unit', '')
  u = f', {unit}' if unit else ''
  columns = {'subject_id': 'subject id in the data set', 'subject': 'subject name',
             'trial': 'trial index within the subject',
             'start_s': 'window start in its trial, s (empty: unknown)',
             'window': 'row index in the data set (the window)',
             'trained_on': 'the model was trained (or early-stopped) on this subject',
             'step': 'time step within the window', 'time_s': 'start_s + step / rate, s'}
  for axis, present in zip(curve['axes'], curve['present'], strict=True):
    if present:
      columns[f'pred_{axis}'] = f'predicted {info["targets"][0]} {axis}{u}'
      if labelled:
        columns[f'true_{axis}'] = f'measured {info["targets"][0]} {axis}{u}'
  arrays = {'y_pred': y_pred.astype(np.float32), 'subject_id': ws.subject_id,
            'trial': ws.trial, 'start_s': (ws.start_s if ws.start_s is not None
                                           else np.full(len(ws), np.nan, np.float32))}
  if labelled:
    arrays['y_true'] = ws.targets.astype(np.float32)
  paths['curves'] = os.path.join(tmp, 'curves.npz')
  files.write_npz_atomic(paths['curves'], **arrays)
  paths['description'] = os.path.join(tmp, 'predictions.json')
  files.write_json_atomic(paths['description'], {
      'columns': columns, 'curve': curve, 'axes': list(curve['axes']),
      'curves_file': 'curves.npz: y_pred [, y_true] [windows, T, axes], subject_id, trial, start_s',
      'checkpoint_dir': info['checkpoint_dir'], 'step': info['step'], 'data': ws.path,
      'sites': list(ws.sites), 'sample_rate_hz': ws.sample_rate_hz,
      'window_length': ws.window_length, 'n_windows': len(ws), 'scope': scope_of(list(overlap)),
      'training_set_score': bool(overlap and labelled),
      'training_subjects_scored': list(overlap), 'data_source': ws.metadata.get('source'),
      'model_source': info.get('source')})
  scores: dict[str, Any] = {}
  if labelled:
    scores = score_curves(ws, y_pred, info, overlap)
    paths['metrics'] = os.path.join(tmp, 'metrics.json')
    files.write_json_atomic(paths['metrics'], scores)
    paths['summary'] = os.path.join(tmp, 'summary.md')
    files.write_text_atomic(paths['summary'], curve_summary_markdown(
        scores, info, os.path.basename(os.path.dirname(ws.path)) or ws.path))
  if config.get('plot', True) and len(ws):
    subject_id, trial = plot_trial_choice(config, ws)
    paths['trial_plot'] = os.path.join(tmp, 'trial.png')
    plot_trial_curves(ws, y_pred, info, subject_id, trial, paths['trial_plot'])
  return paths, scores
