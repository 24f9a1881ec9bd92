"""Tests of data_prep.preprocess and data_prep.axes: hand computations and physical checks."""

import numpy as np
import pytest

from data_prep import axes, preprocess


def test_unit_conversion_factors():
  np.testing.assert_allclose(preprocess.to_si([1.0, -2.0], 'g', 'acc'), [9.81, -19.62])
  np.testing.assert_allclose(preprocess.to_si([500.0], 'mg', 'acc'), [4.905])
  np.testing.assert_allclose(preprocess.to_si([180.0], 'deg/s', 'gyr'), [np.pi])
  np.testing.assert_allclose(preprocess.to_si([180.0], 'Deg/Sec', 'gyr'), [np.pi])
  np.testing.assert_allclose(preprocess.to_si([2.0], 'kN', 'force'), [2000.0])
  with pytest.raises(ValueError, match="'furlong/s' is not a known gyr unit"):
    preprocess.to_si([1.0], 'furlong/s', 'gyr', where='schema.yaml')


def test_resample_linear_matches_reference_interp():
  # Reference (datasets.md 5.1): interp1d over a normalised time axis, n_out = round(n*to/from).
  t = np.arange(120) / 120.0
  x = np.stack([np.sin(2 * np.pi * t), t], axis=1)
  y = preprocess.resample(x, 120, 100, 'linear')
  assert y.shape == (100, 2)
  u = np.linspace(0, 1, 100)
  np.testing.assert_allclose(y[:, 1], np.interp(u, np.linspace(0, 1, 120), x[:, 1]))
  np.testing.assert_allclose(y[[0, -1]], x[[0, -1]])


def test_resample_polyphase_keeps_a_slow_sine_and_decimate_takes_every_kth():
  fs = 1000.0
  t = np.arange(2000) / fs
  x = np.sin(2 * np.pi * 3 * t)
  y = preprocess.resample(x, fs, 200.0, method='polyphase')
  assert y.shape == (400,)
  np.testing.assert_allclose(y[20:-20], np.sin(2 * np.pi * 3 * t[::5])[20:-20], atol=1e-3)
  np.testing.assert_array_equal(preprocess.resample(x, fs, 200.0, method='decimate'), x[::5])
  with pytest.raises(ValueError, match='integer rate ratio'):
    preprocess.resample(x, 1000, 300, method='decimate')


def test_downsampling_is_anti_aliased_by_default():
  # MoVi's 120 -> 100 Hz: 58 Hz is above the new 50 Hz Nyquist rate (linear interpolation folds
  # it to 42 Hz); scipy's Kaiser FIR has its transition band just above 50 Hz.
  fs, t = 120.0, np.arange(1200) / 120.0
  alias = np.sin(2 * np.pi * 58 * t)      # above 100 Hz's Nyquist: must be filtered, not folded
  slow = np.sin(2 * np.pi * 2 * t)        # gait band: must be kept
  auto = preprocess.resample(alias + slow, fs, 100.0)
  lin = preprocess.resample(alias + slow, fs, 100.0, 'linear')
  t100 = np.arange(1000) / 100.0
  inner = slice(50, -50)
  err_auto = np.abs(auto - np.sin(2 * np.pi * 2 * t100))[inner].max()
  err_lin = np.abs(lin - np.sin(2 * np.pi * 2 * t100))[inner].max()
  assert err_auto < 0.01 and err_lin > 0.5
  up = np.arange(10.0)
  np.testing.assert_allclose(preprocess.resample(up, 100, 200), preprocess.resample(
      up, 100, 200, 'linear'))  # upsampling stays linear


def test_windows_and_starts():
  x = np.arange(10 * 2).reshape(10, 2)
  w = preprocess.windows(x, 4, 3)
  assert w.shape == (3, 4, 2)  # starts 0, 3, 6
  np.testing.assert_array_equal(w[1], x[3:7])
  assert preprocess.windows(x, 4).shape == (2, 4, 2)  # stride 0 = non-overlapping
  assert preprocess.windows(x, 11).shape == (0, 11, 2)
  np.testing.assert_array_equal(preprocess.take_windows(x, np.array([1, 5]), 3)[1], x[5:8])
  with pytest.raises(ValueError, match='do not fit'):
    preprocess.take_windows(x, np.array([8]), 3)


def test_dynamic_mask_threshold_in_g():
  rng = np.random.default_rng(0)
  still = np.tile([0.0, 9.81, 0.0], (2, 64, 1))  # [imu, T, 3]
  moving = still + rng.normal(0, 0.5 * 9.81, still.shape)  # std 0.5 g on every channel
  w = np.stack([still, moving])  # [n_win, imu, T, 3]
  np.testing.assert_array_equal(preprocess.dynamic_mask(w, 0.2), [False, True])
  # Same data in g units give the same decision.
  np.testing.assert_array_equal(preprocess.dynamic_mask(w / 9.81, 0.2, unit='g'), [False, True])
  # Mean channel std of 0.5 g is below a 0.6 g threshold.
  assert not preprocess.dynamic_mask(w, 0.6)[1]


def test_sample_rate_check():
  t = np.arange(50) / 200.0
  assert preprocess.check_sample_rate(t, 200.0, 'x') == pytest.approx(200.0)
  with pytest.raises(ValueError, match='implies 200.000 Hz, expected 100 Hz'):
    preprocess.check_sample_rate(t, 100.0, 'trial.mat')


def test_check_finite_names_line_and_column():
  x = np.zeros((5, 3))
  x[3, 1] = np.nan
  x[4, 2] = np.inf
  with pytest.raises(ValueError, match=r"f\.csv: line 6, column 'ay' is NaN/Inf \(2 NaN/Inf "
                     r"value\(s\) in \['ay', 'az'\]\)"):
    preprocess.check_finite(x, 'acc', 'f.csv', ['ax', 'ay', 'az'], np.arange(5) + 3)
  with pytest.raises(ValueError, match=r"f\.h5: row 4 \(counting from 1\), column 'acc\[1\]'"):
    preprocess.check_finite(x, 'acc', 'f.h5', row_name='row')


def _walk(fs=100.0, seconds=6.0):
  t = np.arange(int(fs * seconds)) / fs
  moving = t > 2.0
  acc = np.zeros((t.size, 3))
  acc[:, 1] = 9.81
  acc[moving, 0] = 12.0 * np.sin(2 * np.pi * 1.0 * t[moving])
  gyr = np.zeros((t.size, 3))
  gyr[moving, 2] = 4.0 * np.sin(2 * np.pi * 1.0 * t[moving])
  return acc, gyr


def test_unit_plausibility_accepts_consistent_units_and_catches_contradictions():
  acc, gyr = _walk()
  out = preprocess.check_imu_units(acc, gyr, 100.0, 'ok')
  assert out['still_acc_norm'] == pytest.approx(9.81)
  assert out['still_start'] < 200  # found in the still first two seconds
  # Data in g declared as m/s^2.
  with pytest.raises(ValueError, match='the data look like g'):
    preprocess.check_imu_units(acc / 9.81, gyr, 100.0, 'lab.csv', acc_unit='m/s^2')
  # Data in m/s^2 declared as g (converted once more).
  with pytest.raises(ValueError, match='the data look like m/s\\^2'):
    preprocess.check_imu_units(acc * 9.81, gyr, 100.0, 'lab.csv', acc_unit='g')
  # Gyro in deg/s declared rad/s.
  with pytest.raises(ValueError, match='look like deg/s'):
    preprocess.check_imu_units(acc, np.degrees(gyr), 100.0, 'lab.csv')
  # Gyro in rad/s declared deg/s (so converted to tiny values).
  with pytest.raises(ValueError, match='look like rad/s'):
    preprocess.check_imu_units(acc, np.radians(gyr), 100.0, 'lab.csv', gyr_unit='deg/s')


def test_fill_counter_gaps_interpolates_and_flags_long_gaps():
  counter = np.array([10, 11, 13, 14, 30, 31])
  x = np.stack([counter * 2.0, -counter], axis=1)
  grid, y, ok = preprocess.fill_counter_gaps(counter, x, max_gap=5)
  np.testing.assert_array_equal(grid, np.arange(10, 32))
  np.testing.assert_allclose(y[:, 0], grid * 2.0)  # linear data reconstructed exactly
  assert ok[2] and ok[4]  # short gap (one sample) accepted
  np.testing.assert_array_equal(ok[5:20], False)  # 15 missing samples flagged
  assert ok[4] and ok[20]
  # Wrap-around of the 16-bit counter.
  grid, _, _ = preprocess.fill_counter_gaps(np.array([65534, 65535, 0, 1]), np.zeros((4, 1)))
  assert len(grid) == 4
  with pytest.raises(ValueError, match='not increasing'):  # a repeat with other values
    preprocess.fill_counter_gaps(np.array([1, 2, 2]), np.array([[0.0], [1.0], [2.0]]), period=0)
  # The same packet written twice (identical values): the copy is dropped.
  grid, y, _ = preprocess.fill_counter_gaps(np.array([1, 2, 2, 3]),
                                            np.array([[0.0], [1.0], [1.0], [2.0]]), period=0)
  np.testing.assert_array_equal(grid, [1, 2, 3])
  np.testing.assert_array_equal(y[:, 0], [0.0, 1.0, 2.0])
  with pytest.raises(ValueError, match='not increasing'):  # a step back
    preprocess.fill_counter_gaps(np.array([1, 3, 2]), np.zeros((3, 1)), period=0)


def test_split_subjects_disjoint():
  s = preprocess.split_subjects(range(1, 11))
  assert s == {'train': list(range(1, 10)), 'validation': [10]}
  s = preprocess.split_subjects([1, 2, 3, 81, 82], validation='81-88')
  assert s['validation'] == [81, 82] and not set(s['train']) & set(s['validation'])
  assert preprocess.parse_id_list('1-3,7') == [1, 2, 3, 7]


def test_fan_out_generator_path_and_beam_absent():
  gen = preprocess.fan_out([1, 2], lambda i: [(f'{i}/{j}', {'v': j}) for j in range(i)])
  assert [k for k, _ in gen] == ['1/0', '2/0', '2/1']
  try:
    import apache_beam  # noqa: F401
  except ImportError:
    with pytest.raises(ImportError, match=r"pip install -e '\.\[beam\]'"):
      preprocess.fan_out([1], lambda i: [], use_beam=True)


def test_axis_maps_are_proper_rotations_and_map_gravity():
  for name, table in axes.DATASETS.items():
    for site, m in table.items():
      r = m.matrix
      assert np.allclose(r @ r.T, np.eye(3)) and np.isclose(np.linalg.det(r), 1.0), (name, site)
  # IPOL lower back: gravity on sensor +x maps to body +y (up).
  m = axes.IPOL['LowerBack']
  np.testing.assert_allclose(m.apply([9.81, 0, 0]), [0, 9.81, 0])
  np.testing.assert_allclose(m.apply([0, 0, 1.0]), [-1.0, 0, 0])  # case z points backwards
  assert axes.check_up_axis(np.array([[0.0, 9.81, 1.0]]), 'trunk', 'x') < 10
  with pytest.raises(ValueError, match='axis mapping of this site is wrong'):
    axes.check_up_axis(np.array([[9.81, 0.0, 0.0]]), 'trunk', 'rec.txt')
  with pytest.raises(ValueError, match='mirror image'):
    axes.from_spec({'forward': '+x', 'up': '+y', 'right': '-z'}, 'schema.yaml')
  with pytest.raises(ValueError, match='uses a sensor axis twice'):
    axes.from_spec({'forward': '+x', 'up': '+x', 'right': '+z'}, 'schema.yaml')
