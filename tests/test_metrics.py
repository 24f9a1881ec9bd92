import numpy as np

from ssl_imu_jax import metrics


def test_metrics_against_hand_computation():
  y = np.array([1.0, 2.0, 3.0, 4.0])
  p = np.array([1.5, 2.0, 2.5, 4.0])
  m = metrics.regression_metrics(y, p)
  # errors 0.5, 0, -0.5, 0 -> mse 0.125; ss_tot 5.0
  np.testing.assert_allclose(m['rmse'], np.sqrt(0.125))
  np.testing.assert_allclose(m['r2'], 1 - 0.5 / 5.0)
  np.testing.assert_allclose(m['rrmse'], np.sqrt(0.125) / 3.0 * 100)
  np.testing.assert_allclose(m['pearson_r'], np.corrcoef(y, p)[0, 1])


def test_perfect_and_constant_predictions():
  y = np.linspace(0, 1, 10)
  assert metrics.regression_metrics(y, 2 * y + 1)['pearson_r'] == 1.0
  assert np.isnan(metrics.regression_metrics(y, np.zeros(10))['pearson_r'])
