"""Gait events and step labels vs hand-computed values and a real runner's vGRF."""

from pathlib import Path

import numpy as np
import pytest

from data_prep import gait_events as ge

SHARED = Path(__file__).resolve().parents[1].parent / 'shared' / 'data'
FS = 1000.0
MASS = 70.0
BW = MASS * 9.81


def _trapezoids(n_steps=3, flight=100, ramp=50, plateau=100, peak_n=1000.0):
  """Flight, linear ramp 0 -> peak over `ramp` samples, plateau, ramp down; repeated."""
  up = peak_n * np.arange(ramp) / ramp
  one = np.concatenate([np.zeros(flight), up, np.full(plateau, peak_n), up[::-1]])
  return np.concatenate([np.tile(one, n_steps), np.zeros(flight)])


def test_detect_stances_trapezoid_closed_form():
  f = _trapezoids()
  st = ge.detect_stances(f, FS, threshold_n=20.0)
  # Ramp step = 20 N per sample: sample k of the ramp is 20 k N, first > 20 N at k = 2; on the
  # way down the last sample > 20 N is k = 2 again, so the contact is 200 - 2 * 2 = 196 samples.
  period = 100 + 50 + 100 + 50
  expected_starts = 100 + 2 + period * np.arange(3)
  np.testing.assert_array_equal(st[:, 0], expected_starts)
  np.testing.assert_array_equal(st[:, 1] - st[:, 0], 196)


def test_detect_stances_drops_edges_short_and_bridges_gaps():
  f = np.zeros(3000)
  f[:300] = 800.0            # touches the start: incomplete
  f[500:800] = 800.0         # a full contact ...
  f[600:605] = 0.0           # ... with a 5 ms dropout that must be bridged
  f[1000:1050] = 800.0       # 50 ms: shorter than min_duration_s = 0.1
  f[1500:1800] = 800.0       # full contact
  f[2800:] = 800.0           # touches the end: incomplete
  st = ge.detect_stances(f, FS)
  np.testing.assert_array_equal(st, [[500, 800], [1500, 1800]])
  assert ge.detect_stances(np.zeros(100), FS).shape == (0, 2)


def test_peak_and_valr_trapezoid_fall_back_to_13_percent():
  f = _trapezoids(n_steps=1)
  (s, e), = ge.detect_stances(f, FS)
  assert ge.peak_vgrf_bw(f, s, e, MASS) == pytest.approx(1000.0 / BW)
  # Plateau centre lies at 50 % of stance, so there is no distinct impact peak: 13 % of stance is
  # still on the ramp, whose slope is 20 N per ms = 20000 N/s.
  idx, distinct = ge.impact_peak_index(f, s, e, MASS)
  assert not distinct and idx == s + round(0.13 * (e - s))
  assert ge.valr_bw_per_s(f, s, e, FS, MASS) == pytest.approx(20000.0 / BW, rel=1e-9)


def _double_hump():
  """Running-like vGRF (BW units): impact peak 1.6 BW at 30 ms, dip 1.3 at 50, active 2.5 at 110."""
  t_ms = np.arange(400.0)
  f = np.interp(t_ms, [0, 100, 130, 150, 210, 350, 400], [0, 0, 1.6, 1.3, 2.5, 0, 0])
  return f * BW


def test_valr_double_hump_closed_form():
  f = _double_hump()
  (s, e), = ge.detect_stances(f, FS)
  idx, distinct = ge.impact_peak_index(f, s, e, MASS)
  assert distinct and idx == 130
  # 20 % and 80 % of 1.6 BW lie on the linear 0 -> 1.6 BW ramp of 30 ms: 53.33 BW/s.
  assert ge.valr_bw_per_s(f, s, e, FS, MASS) == pytest.approx(1.6 / 0.030, rel=1e-9)
  assert ge.peak_vgrf_bw(f, s, e, MASS) == pytest.approx(2.5)
  # Stance [101, 350): the first half ends at sample 225, after the active peak at 210 ms, but
  # a span of 101..129 stays on the impact ramp.
  assert ge.peak_in_first_half(f / BW, s, e) == pytest.approx(2.5)
  assert ge.peak_in_first_half(f / BW, s, s + 58) == pytest.approx(f[129] / BW)


def test_peak_in_first_half_hand_values():
  x = np.array([0, 5, 1, 2, 9, 3, 0, 0], dtype=float)
  assert ge.peak_in_first_half(x, 1, 7) == 5.0          # samples 1..3
  assert ge.peak_in_first_half(x, 2, 8) == 9.0          # samples 2..4
  assert ge.peak_in_first_half(x, 2, 7) == 2.0          # samples 2..3
  with pytest.raises(ValueError, match='stance span'):
    ge.peak_in_first_half(x, 5, 3)


def test_knee_moment_hand_computed():
  f = np.array([[0.0, 0.0, 800.0], [10.0, -100.0, 800.0]])
  cop = np.array([[0.0, -0.05, 0.0], [0.02, -0.05, 0.0]])
  knee = np.array([[0.0, 0.0, 0.5], [0.0, 0.0, 0.5]])
  m = ge.knee_moment_lever_arm(f, cop, knee, 80.0, 1.8)
  norm = 80.0 * 9.81 * 1.8 / 100.0
  # Row 0: r = (0, -.05, -.5); r x F = (-40, 0, 0); x flipped -> +40 N m (GRF behind the knee).
  np.testing.assert_allclose(m[0], np.array([40.0, 0.0, 0.0]) / norm, atol=1e-12)
  # Row 1: r = (.02, -.05, -.5): x = -.05*800 - (-.5)(-100) = -90 -> 90; y = -.5*10 - .02*800 = -21;
  # z = .02*(-100) - (-.05)*10 = -1.5.
  np.testing.assert_allclose(m[1], np.array([90.0, -21.0, -1.5]) / norm, atol=1e-12)


def test_bad_inputs_raise_clear_errors():
  with pytest.raises(ValueError, match='vgrf must be 1-D'):
    ge.detect_stances(np.zeros((3, 3)), FS)
  with pytest.raises(ValueError, match='body_mass_kg'):
    ge.peak_vgrf_bw(np.ones(10), 0, 5, 0.0)
  with pytest.raises(ValueError, match='expected metres'):
    ge.knee_moment_lever_arm(np.full((2, 3), 100.0), np.full((2, 3), 500.0), np.zeros((2, 3)),
                             70, 1.7)
  # An unloaded sample with a zeroed CoP far from the knee is fine: its moment is zero.
  m = ge.knee_moment_lever_arm(np.array([[0.0, 0, 0], [0, 0, 700]]), np.zeros((2, 3)),
                               np.array([[50.0, 0, 0.5], [0, 0.1, 0.5]]), 70, 1.7)
  assert m[0].tolist() == [0.0, 0.0, 0.0] and m[1, 0] == pytest.approx(70 / (70 * 9.81 * 1.7) * 100)
  with pytest.raises(ValueError, match='same shape'):
    ge.knee_moment_lever_arm(np.zeros((2, 3)), np.zeros((3, 3)), np.zeros((2, 3)), 70, 1.7)


def _real_runner():
  d = SHARED / 'real_running_grf'
  if not (d / 'GRF_one_sub.csv').exists():
    pytest.skip(f'real running GRF not found at {d} (only present in the shared workplace)')
  import pandas as pd
  grf_bw = np.loadtxt(d / 'GRF_one_sub.csv', delimiter=',')
  info = pd.read_csv(d / 'Sub_Info_one_sub.csv')
  return grf_bw, info


def test_real_runner_steps_peaks_and_valr():
  grf_bw, info = _real_runner()
  mass = float(info['Mass'].iloc[0])
  fs = 500.0
  assert grf_bw.shape == (31, 2480)
  rows = []
  for i, row in enumerate(grf_bw):
    f = row * mass * 9.81
    st = ge.detect_stances(f, fs)
    # 4.96 s at a cadence of 150-200 steps/min holds 12-17 steps; the two edge contacts may go.
    assert 10 <= len(st) <= 19, (i, len(st))
    dur = (st[:, 1] - st[:, 0]) / fs
    assert np.all((dur > 0.17) & (dur < 0.38)), (i, dur)
    for s, e in st:
      _, distinct = ge.impact_peak_index(f, s, e, mass)
      rows.append((i, ge.peak_vgrf_bw(f, s, e, mass), ge.valr_bw_per_s(f, s, e, fs, mass),
                   distinct, info['RFS'].iloc[i]))
  rows = np.array(rows, dtype=float)
  peak, valr, distinct, rfs = rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]
  assert np.all((peak > 1.8) & (peak < 3.5))          # README: peaks up to about 3.4 BW
  assert np.all((valr > 5) & (valr < 200))
  # Rear-foot strikers show a distinct impact peak more often, and load faster, than the others.
  assert distinct[rfs == 100].mean() > distinct[rfs == 0].mean() + 0.3
  assert np.median(valr[rfs == 100]) > np.median(valr[rfs == 0])
  assert 30 < np.median(valr[rfs == 100]) < 150
