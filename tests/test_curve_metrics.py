"""Curve metrics (issue 27): per subject over loaded samples, then mean ± sd, by hand."""

import numpy as np
import pytest

from ssl_imu_jax import metrics


def _toy():
  """2 subjects (ids 7 and 3), 3 windows of T = 4, axes (ML, AP, V); V <= 0.02 in places."""
  rng = np.random.default_rng(0)
  v = np.array([[0.0, 0.5, 1.0, 0.02],     # 0.02 is not > 0.02: dropped
                [0.8, 1.2, 0.01, 0.0],
                [0.3, 0.9, 1.1, 0.6]])
  true = np.stack([rng.normal(0, 0.05, (3, 4)), rng.normal(0, 0.2, (3, 4)), v], -1)
  pred = true + rng.normal(0, 0.1, true.shape)
  sid = np.array([7, 3, 7])
  return true, pred, sid


def _by_hand(t, p):
  err = p - t
  rmse = np.sqrt(np.mean(err ** 2))
  return {'rmse': rmse, 'rrmse': rmse / (t.max() - t.min()) * 100,
          'r2': 1 - np.sum(err ** 2) / np.sum((t - t.mean()) ** 2),
          'pearson_r': np.corrcoef(t, p)[0, 1]}


def test_curve_metrics_against_a_hand_computation():
  true, pred, sid = _toy()
  out = metrics.curve_metrics(true, pred, sid)
  # Subject 7: windows 0 and 2, loaded samples (V > 0.02): (0,1) (0,2) (2,0) (2,1) (2,2) (2,3).
  # Subject 3: window 1, samples 0 and 1 only.
  idx = {7: [(0, 1), (0, 2), (2, 0), (2, 1), (2, 2), (2, 3)], 3: [(1, 0), (1, 1)]}
  rows = {(r['subject'], r['axis']): r for r in out['per_subject']}
  assert sorted(rows) == sorted((s, a) for s in (3, 7) for a in ('ML', 'AP', 'V'))
  for s, where in idx.items():
    w, k = np.array(where).T
    for a, name in enumerate(('ML', 'AP', 'V')):
      want = _by_hand(true[w, k, a], pred[w, k, a])
      got = rows[(s, name)]
      assert got['n_samples'] == len(where)
      for m in metrics.CURVE_METRICS:
        np.testing.assert_allclose(got[m], want[m], rtol=1e-12)
  # Mean ± sd (ddof 1) over the two subjects.
  for name in ('ML', 'AP', 'V'):
    for m in metrics.CURVE_METRICS:
      vals = [rows[(s, name)][m] for s in (3, 7)]
      summ = out['summary'][name][m]
      np.testing.assert_allclose(summ['mean'], np.mean(vals), rtol=1e-12)
      np.testing.assert_allclose(summ['sd'], np.std(vals, ddof=1), rtol=1e-12)
      assert summ['n'] == 2


def test_missing_axes_are_skipped_and_nan_where_scored_is_an_error():
  true, pred, sid = _toy()
  true[:, :, :2] = np.nan                 # a vertical-only source (the real running file)
  pred[:, :, :2] = 0.0
  out = metrics.curve_metrics(true, pred, sid)
  assert set(out['summary']) == {'V'} and {r['axis'] for r in out['per_subject']} == {'V'}
  full = metrics.curve_metrics(*_toy())
  assert out['summary']['V'] == full['summary']['V']
  bad = pred.copy()
  bad[0, 1, 2] = np.nan                   # a loaded sample: scored, so not silently dropped
  with pytest.raises(ValueError, match='NaN in the kept samples'):
    metrics.curve_metrics(true, bad, sid)
  bad = pred.copy()
  bad[0, 0, 2] = np.nan                   # an unloaded sample (V = 0): never scored
  metrics.curve_metrics(true, bad, sid)
  with pytest.raises(ValueError, match='vertical axis'):
    metrics.curve_metrics(true, pred, sid, present=(True, True, False))
  with pytest.raises(ValueError, match=r'\[n, T, A\]'):
    metrics.curve_metrics(true[0], pred[0], sid)


def test_perfect_prediction_scores_perfectly():
  true, _, sid = _toy()
  out = metrics.curve_metrics(true, true.copy(), sid)
  for name in ('ML', 'AP', 'V'):
    assert out['summary'][name]['rmse']['mean'] == 0.0
    assert out['summary'][name]['r2']['mean'] == 1.0
    np.testing.assert_allclose(out['summary'][name]['pearson_r']['mean'], 1.0)
