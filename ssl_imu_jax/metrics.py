"""Regression metrics in the label's units (after de-normalisation)."""

from __future__ import annotations

import numpy as np

from ssl_imu_jax import stats


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
  """Pearson r, R^2, RMSE and relative RMSE (% of the true range) of 1-D arrays."""
  y_true = np.asarray(y_true, dtype=np.float64).ravel()
  y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
  if y_true.shape != y_pred.shape:
    raise ValueError(f'y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape')
  if len(y_true) < 2:
    nan = float('nan')
    return {'pearson_r': nan, 'r2': nan, 'rmse': nan, 'rrmse': nan}
  err = y_pred - y_true
  rmse = float(np.sqrt(np.mean(err**2)))
  ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
  r2 = 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else float('nan')
  if np.std(y_true) > 0 and np.std(y_pred) > 0:
    r = float(np.corrcoef(y_true, y_pred)[0, 1])
  else:
    r = float('nan')
  span = float(y_true.max() - y_true.min())
  rrmse = rmse / span * 100.0 if span > 0 else float('nan')
  return {'pearson_r': r, 'r2': r2, 'rmse': rmse, 'rrmse': rrmse}


# Curve targets (issue 27): whole GRF curves, [windows, T, axes], scored as the masked-
# reconstruction reference does (../shared/docs/masked-recipe.md section 7).
GRF_AXES = ('ML', 'AP', 'V')
CURVE_METRICS = ('rmse', 'rrmse', 'r2', 'pearson_r')
STANCE_THRESHOLD_BW = 0.02


def curve_metrics(y_true: np.ndarray, y_pred: np.ndarray, subject_id: np.ndarray,
                  axes: tuple[str, ...] = GRF_AXES, vertical: str = 'V',
                  threshold: float = STANCE_THRESHOLD_BW,
                  present: tuple[bool, ...] | None = None) -> dict:
  """Per test subject, then mean ± sd over subjects, metrics of GRF curves.

  ``y_true``, ``y_pred``: [n, T, A] (windows, time steps, axes in the order ``axes``), in the
  label's units (BW for GRF; de-normalised); ``subject_id``: [n]. For each subject its windows
  are pooled (flattened to [n_s * T, A]); only the samples where the true ``vertical`` axis
  exceeds ``threshold`` (0.02 BW: the foot is loaded) are kept; per axis RMSE, rRMSE = RMSE /
  range of the kept truth × 100 %, R² = 1 - SSE / SS_tot and Pearson r
  (``regression_metrics``). An axis the source lacks (``present`` False, or a truth that is NaN
  throughout) is skipped: it gets no rows and no summary. A NaN truth on a present axis, or a
  NaN prediction where it is scored, is an error (the metric would silently drop it).

  (The reference keeps |true vGRF| > 0.02 BW; for a force on the body V >= 0 in stance, so the
  two differ only for samples below -0.02 BW, i.e. measurement noise or filter ringing.)

  Returns ``{'per_subject': [{'subject', 'axis', 'n_samples', 'rmse', 'rrmse', 'r2',
  'pearson_r'}, ...], 'summary': {axis: {metric: {'mean', 'sd', 'n'}}}}``, sd with ddof = 1
  (``stats.mean_sd``; NaN for one subject), n = subjects with a finite value.
  """
  y_true = np.asarray(y_true, dtype=np.float64)
  y_pred = np.asarray(y_pred, dtype=np.float64)
  subject_id = np.asarray(subject_id).ravel()
  if y_true.ndim != 3 or y_true.shape != y_pred.shape:
    raise ValueError(f'curves must be [n, T, A] and alike: y_true {y_true.shape}, '
                     f'y_pred {y_pred.shape}')
  if y_true.shape[2] != len(axes) or len(subject_id) != y_true.shape[0]:
    raise ValueError(f'curves {y_true.shape}: expected {len(axes)} axes {axes} and one subject '
                     f'id per window (got {len(subject_id)})')
  if vertical not in axes:
    raise ValueError(f'vertical axis {vertical!r} not among {axes}')
  v = axes.index(vertical)
  if present is None:
    present = tuple(bool(np.isfinite(y_true[:, :, a]).any()) for a in range(len(axes)))
  if not present[v]:
    raise ValueError(f'the vertical axis {vertical!r} is needed for the stance mask')
  rows = []
  for s in np.unique(subject_id):
    t = y_true[subject_id == s].reshape(-1, len(axes))
    p = y_pred[subject_id == s].reshape(-1, len(axes))
    keep = np.isfinite(t[:, v]) & (t[:, v] > threshold)
    for a, name in enumerate(axes):
      if not present[a]:
        continue
      ta, pa = t[keep, a], p[keep, a]
      if not (np.isfinite(ta).all() and np.isfinite(pa).all()):
        raise ValueError(f'subject {s}, axis {name}: NaN in the kept samples (truth '
                         f'{int((~np.isfinite(ta)).sum())}, prediction '
                         f'{int((~np.isfinite(pa)).sum())})')
      m = regression_metrics(ta, pa)
      rows.append({'subject': s.item(), 'axis': name, 'n_samples': int(keep.sum()),
                   **{k: m[k] for k in CURVE_METRICS}})
  summary = {}
  for a, name in enumerate(axes):
    if present[a]:
      mine = [r for r in rows if r['axis'] == name]
      summary[name] = {}
      for k in CURVE_METRICS:
        mean, sd, n = stats.mean_sd([r[k] for r in mine])
        summary[name][k] = {'mean': mean, 'sd': sd, 'n': n}
  return {'per_subject': rows, 'summary': summary}
