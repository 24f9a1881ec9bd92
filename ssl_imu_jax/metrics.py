"""Regression metrics in the label's units (after de-normalisation)."""

from __future__ import annotations

import numpy as np


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
