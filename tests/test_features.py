"""The feature baseline: hand features checked by hand, the penalty choice against a numpy ridge
loop, and its split against the deep arms' (no statistic from validation or test windows)."""

import dataclasses
import json
import os

import numpy as np
import pytest
from conftest import tiny_finetune_config
from sklearn.model_selection import GroupKFold

from ssl_imu_jax.data import splits
from ssl_imu_jax.evaluation import features
from ssl_imu_jax.training import finetune

FS, T = 100.0, 128


def sine(freq_hz, offset, amp, t=T, fs=FS):
  return offset + amp * np.sin(2 * np.pi * freq_hz * np.arange(t) / fs)


def test_window_features_of_a_sine_by_hand():
  # One axis carries a positive sine, so |a| is that sine: 12.5 Hz = bin 16 of 128 samples at
  # 100 Hz, 8 samples a cycle (the peaks are sampled: range = 2 x amplitude).
  acc = np.zeros((2, 2, T, 3))
  acc[0, 0, :, 2] = sine(12.5, 10.0, 2.0)
  acc[1, 0, :, 2] = sine(25.0, 10.0, 1.0)
  acc[:, 1, :, 0] = 3.0  # flat: no dominant frequency
  gyr = np.zeros_like(acc)
  gyr[:, 0, :, 1] = sine(6.25, 4.0, 0.5)  # bin 8
  x, names = features.window_features(acc, gyr, FS, sites=('trunk', 'shank'))
  assert x.shape == (2, 2 * 2 * 11) and len(names) == x.shape[1]
  assert names[:5] == ['trunk/acc/mag_mean', 'trunk/acc/mag_sd', 'trunk/acc/mag_range',
                       'trunk/acc/mag_dom_freq_hz', 'trunk/acc/mag_dom_power_share']
  f = dict(zip(names, x[0], strict=True))
  assert f['trunk/acc/mag_mean'] == pytest.approx(10.0)
  assert f['trunk/acc/mag_sd'] == pytest.approx(2.0 / np.sqrt(2))
  assert f['trunk/acc/mag_range'] == pytest.approx(4.0)
  assert f['trunk/acc/mag_dom_freq_hz'] == pytest.approx(12.5)
  assert f['trunk/acc/mag_dom_power_share'] == pytest.approx(1.0)
  assert f['trunk/acc/mean_z'] == pytest.approx(10.0) and f['trunk/acc/mean_x'] == 0.0
  assert f['trunk/acc/sd_z'] == pytest.approx(np.sqrt(2)) and f['trunk/acc/sd_y'] == 0.0
  assert f['trunk/gyr/mag_dom_freq_hz'] == pytest.approx(6.25)
  assert f['trunk/gyr/mag_mean'] == pytest.approx(4.0)
  assert f['shank/acc/mag_mean'] == pytest.approx(3.0) and f['shank/acc/mag_sd'] == 0.0
  assert f['shank/acc/mag_dom_freq_hz'] == 0.0 and f['shank/acc/mag_dom_power_share'] == 0.0
  g = dict(zip(names, x[1], strict=True))  # every window its own spectrum
  assert g['trunk/acc/mag_dom_freq_hz'] == pytest.approx(25.0)
  assert g['trunk/acc/mag_range'] == pytest.approx(2.0)
  # A noisy sine: its frequency still dominates, with less than all of the power.
  noisy = acc[:1].copy()
  noisy[0, 0, :, 2] += np.random.default_rng(0).normal(0, 0.3, T)
  xn, _ = features.window_features(noisy, None, FS)
  share = xn[0, 4]
  assert xn.shape == (1, 2 * 11) and xn[0, 3] == pytest.approx(12.5) and 0.5 < share < 0.99


def numpy_ridge(x_fit, y_fit, x_eval, alpha):
  """Closed-form ridge on features and targets standardised with the fit rows (population sd)."""
  mu, sd = x_fit.mean(0), x_fit.std(0)
  ym, ys = y_fit.mean(0), y_fit.std(0)
  a, b = (x_fit - mu) / sd, (y_fit - ym) / ys
  w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ b)
  return ((x_eval - mu) / sd) @ w * ys + ym


def toy_problem(n=90, f=30, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, f)) * rng.uniform(0.5, 5, f) + rng.normal(size=f)
  w = rng.normal(size=(f, 2)) * (rng.uniform(size=(f, 1)) < 0.3)
  y = x @ w + rng.normal(0, 3.0, (n, 2)) + [5.0, -2.0]
  groups = np.repeat(np.arange(9), n // 9)
  return x, y, groups


def test_the_penalty_is_the_grid_point_with_the_lowest_validation_mse():
  x, y, groups = toy_problem()
  fit, val = np.flatnonzero(groups < 6), np.flatnonzero((groups >= 6) & (groups < 8))
  alphas = np.logspace(-2, 4, 13)
  rf = features.fit_ridge(x, y, fit, val, groups, alphas)
  mse = np.array([np.mean((numpy_ridge(x[fit], y[fit], x[val], a) - y[val]) ** 2, axis=0)
                  for a in alphas])
  np.testing.assert_allclose(rf.mse_grid, mse, rtol=1e-6)
  np.testing.assert_array_equal(rf.alpha, alphas[mse.argmin(0)])
  assert 0 < mse.argmin(0).min() and mse.argmin(0).max() < len(alphas) - 1  # an inner optimum
  np.testing.assert_allclose(rf.validation_mse, mse.min(0), rtol=1e-6)
  assert rf.selection == 'validation subjects'
  # The final model: fitted on the fit rows only, each target with its own penalty.
  test = np.flatnonzero(groups == 8)
  want = np.stack([numpy_ridge(x[fit], y[fit], x[test], a)[:, k]
                   for k, a in enumerate(rf.alpha)], axis=1)
  np.testing.assert_allclose(rf.model.predict(x[test]), want, rtol=1e-6, atol=1e-9)


def test_without_validation_subjects_the_penalty_comes_from_grouped_cv():
  x, y, groups = toy_problem(seed=1)
  fit = np.flatnonzero(groups < 7)
  alphas = np.logspace(-2, 4, 7)
  rf = features.fit_ridge(x, y, fit, np.zeros(0, int), groups, alphas, cv_folds=3)
  sse = np.zeros((len(alphas), 2))
  for tr, ev in GroupKFold(n_splits=3).split(x[fit], y[fit], groups[fit]):
    for i, a in enumerate(alphas):
      pred = numpy_ridge(x[fit][tr], y[fit][tr], x[fit][ev], a)
      sse[i] += np.sum((pred - y[fit][ev]) ** 2, axis=0)
      # no held-out subject inside its own training part
      assert not set(groups[fit][tr]) & set(groups[fit][ev])
  np.testing.assert_allclose(rf.mse_grid, sse / len(fit), rtol=1e-6)
  np.testing.assert_array_equal(rf.alpha, alphas[sse.argmin(0)])
  assert rf.selection == 'grouped 3-fold CV'
  with pytest.raises(ValueError, match='1 fit subject'):
    features.fit_ridge(x, y, np.flatnonzero(groups == 0), np.zeros(0, int), groups, alphas)


def features_config(fold=0, fraction=1.0):
  c = tiny_finetune_config()
  c.split.fold = fold
  c.split.fraction = fraction
  c.protocol = 'full'  # the deep arm compared with: no probe, no embedding cache
  c.split.validation_fraction = 0.2  # as the default size: validation subjects on both arms
  return c


def test_the_ridge_arm_tests_the_deep_arms_subjects_on_their_windows(tmp_path, toy_dirs):
  cfg = features_config(fold=1)
  res = features.train_and_evaluate(cfg, str(tmp_path / 'feat'), toy_dirs['data_dir'])
  cell = finetune.prepare(cfg, str(tmp_path / 'deep'), toy_dirs['data_dir'])
  assert res['init'] == 'features' and res['protocol'] == 'ridge'
  assert res['test_subjects'] == cell.meta['test_subjects']
  np.testing.assert_array_equal(res['predictions']['subject_id'],
                                cell.ws.subject_id[cell.test_idx])
  np.testing.assert_allclose(res['predictions']['y_true'], cell.ws.targets[cell.test_idx])
  # Both arms fit on the same subjects and hold out the same validation subjects.
  assert res['train_subjects'] == cell.meta['train_subjects']
  assert res['validation_subjects'] == cell.meta['validation_subjects']
  assert res['validation_subjects'] and not set(res['train_subjects']) & set(
      res['validation_subjects'])
  for name in ('folds.json',):
    with open(tmp_path / 'feat' / name) as a, open(tmp_path / 'deep' / name) as b:
      assert json.load(a) == json.load(b)
  with open(tmp_path / 'feat' / 'result.json') as f:
    saved = json.load(f)
  assert saved['metrics']['y']['pearson_r'] > 0.9  # y = 1 + amplitude: a feature of the sine
  assert set(saved['alpha']) == {'y'} and saved['alpha_selection'] == 'validation subjects'
  assert (saved['n_train'], saved['n_validation']) == (len(cell.train_idx), len(cell.val_idx))
  # A fraction keeps the deep arm's test subjects and draws the fit windows as splits does.
  cfg = features_config(fold=1, fraction=0.5)
  half = features.train_and_evaluate(cfg, str(tmp_path / 'half'), toy_dirs['data_dir'])
  ws = finetune.load_windows(cfg, toy_dirs['data_dir'])
  fit, val, test, _ = features.cell_indices(cfg, ws)
  folds = splits.assign_folds(ws.subject_id, 5, 0)
  train_idx, test_idx = splits.fold_indices(ws.subject_id, folds, 1)
  want_fit, want_val = splits.train_validation_indices(ws.subject_id, train_idx, 0.5, 0.2, 0, 0)
  np.testing.assert_array_equal(fit, want_fit)
  np.testing.assert_array_equal(val, want_val)
  np.testing.assert_array_equal(test, test_idx)
  assert half['n_train'] == len(want_fit) and half['test_subjects'] == res['test_subjects']


def _model(path):
  with open(os.path.join(path, features.MODEL_FILE)) as f:
    return json.load(f)


def test_no_training_statistic_reads_validation_or_test_windows(tmp_path, toy_dirs):
  cfg = features_config(fold=2)
  ws = finetune.load_windows(cfg, toy_dirs['data_dir'])
  fit, val, test, _ = features.cell_indices(cfg, ws)
  base = features.train_and_evaluate(cfg, str(tmp_path / 'a'), ws=ws)
  ref = _model(tmp_path / 'a')
  x_fit, _ = features.windowset_features(ws, fit)
  np.testing.assert_allclose(ref['feature_mean'], x_fit.mean(0))
  np.testing.assert_allclose(ref['target_mean'], ws.targets[fit].mean(0), rtol=1e-6)

  def perturbed(idx):
    acc, gyr, y = ws.acc.copy(), ws.gyr.copy(), ws.targets.copy()
    acc[idx] = acc[idx] * 3.0 + 5.0
    gyr[idx] = -gyr[idx]
    y[idx] = y[idx] * 10.0
    return dataclasses.replace(ws, acc=acc, gyr=gyr, targets=y)

  moved = features.train_and_evaluate(cfg, str(tmp_path / 'b'), ws=perturbed(test))
  assert _model(tmp_path / 'b') == ref  # scalers, penalty, its grid and the weights
  assert not np.allclose(moved['predictions']['y_pred'], base['predictions']['y_pred'])
  features.train_and_evaluate(cfg, str(tmp_path / 'c'), ws=perturbed(val))
  other = _model(tmp_path / 'c')
  for key in ('feature_mean', 'feature_scale', 'target_mean', 'target_scale'):
    assert other[key] == ref[key], key
  assert other['mse_grid'] != ref['mse_grid']  # the validation windows choose the penalty only
