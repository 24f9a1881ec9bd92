"""The feature baseline: ridge regression on hand-computed per-window features of every site.

A reader of the sweep needs to know what the deep models add over a standard, cheap model. This
arm (init 'features', protocol 'ridge') uses the same folds, fractions, seeds, test subjects and
metric as the two deep arms, and is trained in seconds.

Features (``window_features``), for every site, for the accelerometer and then the gyroscope
(the gyroscope skipped when the data set has none or ``data.use_gyr`` is False), 11 each:

- of the magnitude |x| per sample (m/s^2 or rad/s): ``mag_mean``, ``mag_sd`` (population sd),
  ``mag_range`` (max - min), ``mag_dom_freq_hz`` (the frequency of the largest bin of
  |rfft(|x| - mean)|^2 above DC, in Hz, no taper) and ``mag_dom_power_share`` (that bin's share
  of the power above DC); a flat magnitude (sd ~ 0) gives 0 for both;
- per axis: ``mean_x``, ``mean_y``, ``mean_z``, ``sd_x``, ``sd_y``, ``sd_z``.

Model (``fit_ridge``): scikit-learn ``StandardScaler`` + ``Ridge`` on standardised targets
(``TransformedTargetRegressor``); both scalers are fitted on the fit windows only. The penalty is
chosen per target from ``ALPHAS`` by the mean squared error on the validation windows (the
validation subjects held out inside the fold's training subjects,
``splits.train_validation_indices``); with no validation subjects (``split.validation_fraction``
= 0), by subject-grouped K-fold CV (``GroupKFold``, ``CV_FOLDS``) within the fit windows. The final
model is fitted on the fit windows only (not on the validation windows, as the deep arms) and
predicts the test windows.

A curve target (``grf_curve`` [n, T, A], issue 27) gets the same kind of model per time step
(``step_features``): the window's channels (every site's acc x, y, z, then gyr) at the lags
``CURVE_LAGS`` around the step (clamped at the window's ends), and each channel's window mean.
That is a linear FIR filter of the IMU signals plus the window's mean (posture and gravity), one
output per present axis. It fits on at most ``CURVE_FIT_ROWS`` (window, step) rows of the fit
windows (and scores its penalty on as many of the validation windows), drawn at random with the
cell's seed, and predicts every step of the test windows; absent axes are predicted as 0 and
not scored.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np
from sklearn.compose import TransformedTargetRegressor
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ssl_imu_jax import files, metrics
from ssl_imu_jax.data import input_pipeline, splits

INIT = 'features'
PROTOCOL = 'ridge'
RESULT_FILE = 'result.json'
MODEL_FILE = 'ridge_model.json'
MAG_FEATURES = ('mag_mean', 'mag_sd', 'mag_range', 'mag_dom_freq_hz', 'mag_dom_power_share')
AXIS_FEATURES = ('mean_x', 'mean_y', 'mean_z', 'sd_x', 'sd_y', 'sd_z')
SENSOR_FEATURES = MAG_FEATURES + AXIS_FEATURES
# The penalty grid (half-decade steps; on standardised features and targets).
ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 17))
CV_FOLDS = 5          # subject-grouped folds when there are no validation subjects
VALIDATION_FRACTION = 0.2  # split.validation_fraction when the config lacks the key
_CHUNK = 4096         # windows per feature batch (bounds memory on large sets)
# Curve targets: the lags (samples) of the per-step model (+-80 ms at 100 Hz) and its row budget.
CURVE_LAGS = (-8, -4, -2, -1, 0, 1, 2, 4, 8)
CURVE_FIT_ROWS = 100_000


def sensor_features(x: np.ndarray, sample_rate_hz: float) -> np.ndarray:
  """[n, N, 11] features (SENSOR_FEATURES) of one sensor's windows ``x`` [n, N, T, 3]."""
  x = np.asarray(x, dtype=np.float64)
  t = x.shape[2]
  mag = np.sqrt(np.sum(x**2, axis=-1))  # [n, N, T]
  mean = mag.mean(-1)
  sd = mag.std(-1)
  power = np.abs(np.fft.rfft(mag - mean[..., None], axis=-1)) ** 2
  power = power[..., 1:]  # above DC
  flat = (sd <= 1e-9 * np.maximum(1.0, np.abs(mean))) | (power.shape[-1] == 0)
  if power.shape[-1]:
    k = power.argmax(-1)
    total = power.sum(-1)
    dom = (k + 1) * sample_rate_hz / t
    share = power.max(-1) / np.where(total > 0, total, 1.0)
  else:
    dom = share = np.zeros_like(mean)
  dom = np.where(flat, 0.0, dom)
  share = np.where(flat, 0.0, share)
  mag_f = np.stack([mean, sd, mag.max(-1) - mag.min(-1), dom, share], axis=-1)
  return np.concatenate([mag_f, x.mean(2), x.std(2)], axis=-1)


def feature_names(sites: Sequence[str], use_gyr: bool) -> list[str]:
  """'<site>/<acc|gyr>/<feature>' in the column order of ``window_features``."""
  sensors = ('acc', 'gyr') if use_gyr else ('acc',)
  return [f'{s}/{m}/{f}' for s in sites for m in sensors for f in SENSOR_FEATURES]


def window_features(acc: np.ndarray, gyr: np.ndarray | None, sample_rate_hz: float,
                    sites: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
  """(X [n, F], names): the module's feature set per site, acc then gyr, for windows
  ``acc`` / ``gyr`` [n, N, T, 3] (``gyr`` None: accelerometer only). ``sites`` name the N sites
  in ``names`` (default 'site0', ...)."""
  acc = np.asarray(acc)
  n, n_sites = acc.shape[:2]
  sites = list(sites) if sites is not None else [f'site{i}' for i in range(n_sites)]
  if len(sites) != n_sites:
    raise ValueError(f'window_features: {len(sites)} site names for {n_sites} sites')
  parts = [sensor_features(acc, sample_rate_hz)]
  if gyr is not None:
    parts.append(sensor_features(gyr, sample_rate_hz))
  x = np.stack(parts, axis=2)  # [n, N, sensors, F]
  return x.reshape(n, -1), feature_names(sites, gyr is not None)


def windowset_features(ws: input_pipeline.WindowSet,
                       idx: np.ndarray) -> tuple[np.ndarray, list[str]]:
  """``window_features`` of the windows ``idx`` of ``ws``, computed in chunks."""
  idx = np.asarray(idx, dtype=np.int64)
  names = feature_names(ws.sites, ws.gyr is not None)
  out = np.zeros((len(idx), len(names)), np.float64)
  for lo in range(0, len(idx), _CHUNK):
    part = idx[lo:lo + _CHUNK]
    gyr = None if ws.gyr is None else ws.gyr[part]
    out[lo:lo + len(part)] = window_features(ws.acc[part], gyr, ws.sample_rate_hz, ws.sites)[0]
  return out, names


def step_features(ws: input_pipeline.WindowSet, windows: np.ndarray, steps: np.ndarray,
                  lags: Sequence[int] = CURVE_LAGS) -> tuple[np.ndarray, list[str]]:
  """(X [rows, F], names): the per-step features of the (window, step) rows ``windows[i]``,
  ``steps[i]`` of ``ws``: every channel (sites' acc x, y, z, then gyr) at ``step + lag`` for
  each lag (clamped to the window), then each channel's mean over the window."""
  windows, steps = np.asarray(windows, np.int64), np.asarray(steps, np.int64)
  sensors = [('acc', ws.acc)] + ([('gyr', ws.gyr)] if ws.gyr is not None else [])
  channels = [f'{site}/{m}/{a}' for site in ws.sites for m, _ in sensors for a in 'xyz']
  names = [f'{c}@{lag}' for lag in lags for c in channels] + [f'{c}/mean' for c in channels]
  t = ws.acc.shape[2]
  at = np.clip(steps[:, None] + np.asarray(lags, np.int64)[None, :], 0, t - 1)  # [rows, L]
  if not len(windows):
    return np.zeros((0, len(names)), np.float64), names
  uniq, inverse = np.unique(windows, return_inverse=True)
  means = np.stack([np.asarray(x[uniq], np.float64).mean(axis=2) for _, x in sensors],
                   axis=2).reshape(len(uniq), -1)                        # [windows, N * S * 3]
  out = np.zeros((len(windows), len(names)), np.float64)
  for lo in range(0, len(windows), _CHUNK):
    w, a = windows[lo:lo + _CHUNK], at[lo:lo + _CHUNK]
    lagged = np.stack([x[w[:, None], :, a] for _, x in sensors], axis=3)  # [rows, L, N, S, 3]
    out[lo:lo + len(w)] = np.concatenate([lagged.reshape(len(w), -1),
                                          means[inverse[lo:lo + len(w)]]], axis=1)
  return out, names


def sample_steps(windows: np.ndarray, t: int, budget: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
  """(window, step) rows: every step of ``windows`` when they hold at most ``budget`` rows,
  else ``budget`` of them drawn without replacement (sorted)."""
  windows = np.asarray(windows, np.int64)
  total = len(windows) * t
  pick = np.arange(total) if total <= budget else np.sort(rng.choice(total, budget,
                                                                    replace=False))
  return windows[pick // t], pick % t


def make_model(alpha) -> TransformedTargetRegressor:
  """StandardScaler + Ridge(alpha) on standardised targets (``alpha``: one per target, or one)."""
  return TransformedTargetRegressor(
      regressor=make_pipeline(StandardScaler(), Ridge(alpha=alpha)),
      transformer=StandardScaler())


def _grid_sse(x_fit, y_fit, x_eval, y_eval, alphas) -> np.ndarray:
  """[len(alphas), K] summed squared error on the eval windows (label units) per penalty."""
  out = np.zeros((len(alphas), y_fit.shape[1]))
  for i, a in enumerate(alphas):
    pred = make_model(float(a)).fit(x_fit, y_fit).predict(x_eval).reshape(y_eval.shape)
    out[i] = np.sum((pred - y_eval) ** 2, axis=0)
  return out


@dataclasses.dataclass
class RidgeFit:
  """A fitted feature model and how its penalty was chosen.

  Attributes:
    model: the fitted TransformedTargetRegressor (fit windows only).
    alpha: [K] chosen penalty per target.
    validation_mse: [K] mean squared error at that penalty (label units squared).
    mse_grid: [len(alphas), K] that error for every penalty of the grid.
    alphas: the grid.
    selection: 'validation subjects' or 'grouped <k>-fold CV' (how the error was measured).
  """

  model: TransformedTargetRegressor
  alpha: np.ndarray
  validation_mse: np.ndarray
  mse_grid: np.ndarray
  alphas: np.ndarray
  selection: str


def fit_ridge(x: np.ndarray, y: np.ndarray, fit_idx: np.ndarray, val_idx: np.ndarray,
              groups: np.ndarray, alphas: Sequence[float] = ALPHAS,
              cv_folds: int = CV_FOLDS) -> RidgeFit:
  """Chooses each target's penalty on the validation windows ``val_idx`` (or, with none, by
  GroupKFold over ``groups`` within the fit windows) and fits the model on ``fit_idx`` only.

  ``x`` [n, F] features, ``y`` [n, K] targets, ``groups`` [n] subject ids; rows outside
  ``fit_idx`` and ``val_idx`` are never read.
  """
  alphas = np.asarray(alphas, dtype=np.float64)
  fit_idx, val_idx = np.asarray(fit_idx), np.asarray(val_idx)
  y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
  xf, yf = x[fit_idx], y[fit_idx]
  if len(val_idx):
    sse = _grid_sse(xf, yf, x[val_idx], y[val_idx], alphas)
    count = len(val_idx)
    selection = 'validation subjects'
  else:
    g = np.asarray(groups)[fit_idx]
    k = min(int(cv_folds), len(np.unique(g)))
    if k < 2:
      raise ValueError(f'fit_ridge: no validation windows and {k} fit subject(s): the penalty '
                       f'cannot be chosen subject-wise (needs >= 2 subjects)')
    sse = np.zeros((len(alphas), y.shape[1]))
    for tr, ev in GroupKFold(n_splits=k).split(xf, yf, g):
      sse += _grid_sse(xf[tr], yf[tr], xf[ev], yf[ev], alphas)
    count = len(fit_idx)
    selection = f'grouped {k}-fold CV'
  mse = sse / count
  best = mse.argmin(0)
  alpha = alphas[best]
  model = make_model(alpha).fit(xf, yf)
  return RidgeFit(model, alpha, mse[best, np.arange(mse.shape[1])], mse, alphas, selection)


def write_model(workdir: str, rf: RidgeFit, names: Sequence[str], targets: Sequence[str],
                **extra: Any) -> None:
  """ridge_model.json: the features, both scalers, the coefficients and the penalty choice."""
  scaler, reg = rf.model.regressor_[0], rf.model.regressor_[-1]
  t_scaler = rf.model.transformer_
  files.write_json_atomic(os.path.join(workdir, MODEL_FILE), {
      'feature_names': list(names), 'feature_mean': scaler.mean_,
      'feature_scale': scaler.scale_, 'target_mean': t_scaler.mean_,
      'target_scale': t_scaler.scale_, 'targets': list(targets),
      'coef': np.asarray(reg.coef_).reshape(len(targets), -1),
      'intercept': np.atleast_1d(reg.intercept_), 'alphas': rf.alphas, 'mse_grid': rf.mse_grid,
      'alpha': rf.alpha, 'selection': rf.selection, **extra})


def cell_indices(config: ml_collections.ConfigDict, ws: input_pipeline.WindowSet
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, int] | None]:
  """(fit, validation, test) window indices and the fold assignment of a cell: the folds of
  ``finetune.prepare`` (``assign_folds`` / ``fold_indices``), then the validation subjects and
  the fraction (``splits.train_validation_indices``). Fold -1: every window fits, none tested."""
  from ssl_imu_jax.training.finetune import FINAL_FOLD  # noqa: PLC0415

  s = config.split
  if int(s.fold) == FINAL_FOLD:
    folds = None
    train_idx, test_idx = np.arange(len(ws)), np.zeros(0, np.int64)
  else:
    folds = splits.assign_folds(ws.subject_id, s.num_folds, s.fold_seed)
    train_idx, test_idx = splits.fold_indices(ws.subject_id, folds, s.fold)
  fit, val = splits.train_validation_indices(
      ws.subject_id, train_idx, float(s.fraction),
      float(s.get('validation_fraction', VALIDATION_FRACTION)), int(s.fraction_seed),
      int(s.get('validation_seed', 0)))
  sides = [set(ws.subject_id[i].tolist()) for i in (fit, val, test_idx)]
  assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
  return fit, val, test_idx, folds


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       data_dir: str | None = None,
                       ws: input_pipeline.WindowSet | None = None) -> dict[str, Any]:
  """Fits the feature model of one cell and evaluates its test subjects; writes result.json
  (the shape of ``finetune.finish``'s) and ridge_model.json (features, scalers, coefficients)."""
  from ssl_imu_jax.training import finetune  # noqa: PLC0415

  os.makedirs(workdir, exist_ok=True)
  data_dir = data_dir or input_pipeline.resolve_data_dir(config, workdir)
  ws = ws if ws is not None else finetune.load_windows(config, data_dir)
  fit, val, test, folds = cell_indices(config, ws)
  if folds is not None:
    files.write_json_atomic(os.path.join(workdir, 'folds.json'), folds)
  if ws.curve is not None:
    return _curve_cell(config, workdir, ws, fit, val, test, folds is None)
  used = np.concatenate([fit, val, test])
  x, names = windowset_features(ws, used)  # rows: the fit, then validation, then test windows
  y = ws.targets[used].astype(np.float64)
  n_fit, n_val = len(fit), len(val)
  fit_l, val_l = np.arange(n_fit), np.arange(n_fit, n_fit + n_val)
  test_l = np.arange(n_fit + n_val, len(used))
  ridge = config.get('ridge', None) or {}
  rf = fit_ridge(x, y, fit_l, val_l, ws.subject_id[used], ridge.get('alphas', ALPHAS),
                 int(ridge.get('cv_folds', CV_FOLDS)))
  targets = list(ws.target_names)
  y_pred = rf.model.predict(x[test_l]).reshape(len(test), len(targets)) if len(test) else (
      np.zeros((0, len(targets))))
  y_true = y[test_l]
  t_scaler = rf.model.transformer_
  z_err = (rf.model.predict(x[fit_l]).reshape(n_fit, -1) - y[fit_l]) / t_scaler.scale_
  final = folds is None
  result = {
      'final': final,
      'dataset': config.data.dataset,
      'targets': targets,
      'units': list(ws.target_units),
      'init': INIT,
      'protocol': PROTOCOL,
      'use_gyr': ws.gyr is not None,
      'norm_policy': 'train_subjects',
      'seed': int(config.seed),
      'fold': int(config.split.fold),
      'fraction': float(config.split.fraction),
      'split_unit': finetune.split_unit(config),
      'n_train': int(len(fit)),
      'n_validation': int(len(val)),
      'n_test': int(len(test)),
      'train_subjects': sorted(set(ws.subject_id[fit].tolist())),
      'validation_subjects': sorted(set(ws.subject_id[val].tolist())),
      'test_subjects': sorted(set(ws.subject_id[test].tolist())),
      'train_loss': float(np.mean(z_err**2)),
      'n_features': len(names),
      'alpha': dict(zip(targets, rf.alpha.tolist(), strict=True)),
      'validation_mse': dict(zip(targets, rf.validation_mse.tolist(), strict=True)),
      'alpha_selection': rf.selection,
      'metrics': {} if final else {
          t: metrics.regression_metrics(y_true[:, k], y_pred[:, k])
          for k, t in enumerate(targets)},
      'predictions': {'subject_id': ws.subject_id[test].tolist(),
                      'y_true': y_true.tolist(), 'y_pred': y_pred.tolist()},
  }
  write_model(workdir, rf, names, targets)
  files.write_json_atomic(os.path.join(workdir, RESULT_FILE), result)
  result['predictions'] = {k: np.asarray(v) for k, v in result['predictions'].items()}
  return result


def _curve_cell(config: ml_collections.ConfigDict, workdir: str, ws: input_pipeline.WindowSet,
                fit: np.ndarray, val: np.ndarray, test: np.ndarray, final: bool) -> dict[str, Any]:
  """``train_and_evaluate`` of a curve target: the per-step model (``step_features``) on the
  present axes, its penalty per axis chosen as for scalars; result.json in the fields of a
  fine-tuned curve cell (``finetune.curve_result``) and ridge_model.json."""
  from ssl_imu_jax.training import finetune  # noqa: PLC0415

  spec = ws.curve
  axes = [i for i, p in enumerate(spec['present']) if p]
  t = ws.targets.shape[1]
  rng = np.random.default_rng(int(config.seed))
  ridge = config.get('ridge', None) or {}
  budget = int(ridge.get('curve_fit_rows', CURVE_FIT_ROWS))
  lags = tuple(int(k) for k in ridge.get('curve_lags', CURVE_LAGS))
  rows = [sample_steps(fit, t, budget, rng), sample_steps(val, t, budget, rng)]
  xs, ys, groups = [], [], []
  for w, st in rows:
    xi, names = step_features(ws, w, st, lags)
    xs.append(xi)
    ys.append(ws.targets[w, st][:, axes].astype(np.float64))
    groups.append(ws.subject_id[w])
  x, y = np.concatenate(xs), np.concatenate(ys)
  n_fit = len(xs[0])
  if not np.isfinite(y).all():
    raise ValueError(f'{ws.path}: a present curve axis holds NaN in the fit windows')
  rf = fit_ridge(x, y, np.arange(n_fit), np.arange(n_fit, len(x)), np.concatenate(groups),
                 ridge.get('alphas', ALPHAS), int(ridge.get('cv_folds', CV_FOLDS)))
  y_pred = np.zeros((len(test), t, ws.targets.shape[2]), np.float32)
  for lo in range(0, len(test), max(1, _CHUNK // t)):
    part = test[lo:lo + max(1, _CHUNK // t)]
    xt = step_features(ws, np.repeat(part, t), np.tile(np.arange(t), len(part)), lags)[0]
    y_pred[lo:lo + len(part)][..., axes] = rf.model.predict(xt).reshape(len(part), t, len(axes))
  y_true = ws.targets[test]
  t_scaler = rf.model.transformer_
  z_err = (rf.model.predict(x[:n_fit]).reshape(n_fit, -1) - y[:n_fit]) / t_scaler.scale_
  axis_names = [spec['axes'][i] for i in axes]
  result = {
      'final': final, 'dataset': config.data.dataset, 'targets': list(ws.target_names),
      'units': list(ws.target_units), 'init': INIT, 'protocol': PROTOCOL,
      'use_gyr': ws.gyr is not None, 'norm_policy': 'train_subjects', 'seed': int(config.seed),
      'fold': int(config.split.fold), 'fraction': float(config.split.fraction),
      'split_unit': finetune.split_unit(config), 'n_train': int(len(fit)),
      'n_validation': int(len(val)), 'n_test': int(len(test)),
      'n_fit_rows': int(n_fit), 'n_validation_rows': int(len(x) - n_fit),
      'train_subjects': sorted(set(ws.subject_id[fit].tolist())),
      'validation_subjects': sorted(set(ws.subject_id[val].tolist())),
      'test_subjects': sorted(set(ws.subject_id[test].tolist())),
      'train_loss': float(np.mean(z_err**2)), 'n_features': len(names),
      'alpha': dict(zip(axis_names, rf.alpha.tolist(), strict=True)),
      'validation_mse': dict(zip(axis_names, rf.validation_mse.tolist(), strict=True)),
      'alpha_selection': rf.selection, 'metrics': {},
  }
  result.update(finetune.curve_result(workdir, ws, test, y_true, y_pred))
  write_model(workdir, rf, names, axis_names, lags=list(lags))
  files.write_json_atomic(os.path.join(workdir, RESULT_FILE), result)
  result['predictions'] = {'subject_id': np.asarray(result['predictions']['subject_id']),
                           'file': result['predictions']['file'], 'y_true': y_true,
                           'y_pred': y_pred}
  return result
