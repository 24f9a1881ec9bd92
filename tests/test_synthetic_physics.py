"""Physics of the synthetic generator: each test checks a law or a published range."""

from pathlib import Path

import numpy as np
import pytest

from data_prep import gait_events as ge
from data_prep import records
from data_prep.synthetic import (
  activities,
  anthropometry,
  dynamics,
  gait,
  generate,
  kinematics,
  sensors,
)

FS_OUT = 100.0
Q = 4          # 400 Hz internal
FS_INT = FS_OUT * Q
IDEAL = sensors.SensorSpec().ideal()


def _subject(i=0, name='physics'):
  return generate.subjects(name, 0, i + 1)[i]


def _sim(subject, plan, sites, spec=IDEAL, seed=0):
  rng = np.random.default_rng(seed)
  mounts = sensors.sample_mounts(sites, subject.body, rng, spec)
  return generate.simulate(subject, plan, mounts, FS_OUT, Q, rng, spec), mounts


@pytest.fixture(scope='module')
def walk():
  sub = _subject(0)
  plan = gait.gait_plan(sub, 'walk', 1.3, 6.0, FS_INT, np.random.default_rng(1))
  sim, mounts = _sim(sub, plan, ('Spine1', 'RightLeg', 'RightFoot'))
  return sub, sim, mounts


@pytest.fixture(scope='module')
def run():
  sub = _subject(1)
  plan = gait.gait_plan(sub, 'run', 3.2, 5.0, FS_INT, np.random.default_rng(2), strike='rear')
  sim, mounts = _sim(sub, plan, ('LeftLeg',))
  return sub, sim, mounts


def test_anthropometry_masses_sum_and_lengths_scale():
  body = anthropometry.make_body(1.80, 80.0, 'm')
  assert sum(body.seg_mass.values()) == pytest.approx(80.0, rel=1e-9)
  # de Leva male thigh 14.16 %, Drillis-Contini thigh 0.245 H.
  assert body.seg_mass['r_thigh'] == pytest.approx(0.1416 * 80.0, rel=1e-3)
  assert body.length['thigh'] == pytest.approx(0.245 * 1.80)
  with pytest.raises(ValueError, match='height_m'):
    anthropometry.make_body(180.0, 80.0, 'm')


def test_still_subject_accelerometer_reads_gravity():
  sub = _subject(2)
  plan = activities.standing_plan(sub, 4.0, FS_INT, np.random.default_rng(3))
  sim, _ = _sim(sub, plan, records.MOVI_SITES, spec=IDEAL)
  mag = np.linalg.norm(sim.acc[:, 50:-50], axis=-1)
  assert np.all(np.abs(np.median(mag, axis=1) - 9.81) < 0.1)   # sway and small arm fidgets only
  noisy, _ = _sim(sub, plan, records.MOVI_SITES, spec=sensors.SensorSpec())
  mag = np.linalg.norm(noisy.acc[:, 50:-50], axis=-1)
  # bias (0.08 m/s^2 sd per axis), 1 % scale error and white noise: within a few tenths.
  assert np.all(np.abs(np.median(mag, axis=1) - 9.81) < 0.4)
  assert np.all(mag.std(axis=1) < 0.3)
  # The gyroscope of a still subject reads almost nothing (slow head turns, arm fidgets).
  assert np.percentile(np.abs(sim.gyr[:, 50:-50]), 95) < 0.15
  assert np.abs(sim.gyr[0, 50:-50]).max() < 0.05                     # the pelvis sensor


def test_integrated_gyroscope_reproduces_orientation_change(walk):
  sub, sim, mounts = walk
  i = [m.site for m in mounts].index('RightLeg')
  m = mounts[i]
  r_ws = sim.kin.rot[m.segment] @ m.rot                  # true sensor orientation, internal rate
  # The 0.4 s interior stretch (output samples) over which the shank turns the most.
  turns = [np.linalg.norm(kinematics.log_so3(r_ws[k * Q].T @ r_ws[(k + 40) * Q]))
           for k in range(100, 400, 5)]
  k0 = 100 + 5 * int(np.argmax(turns))
  k1 = k0 + 40
  r_est = r_ws[k0 * Q].copy()
  for k in range(k0, k1):
    w = 0.5 * (sim.gyr[i, k] + sim.gyr[i, k + 1]).astype(np.float64)
    r_est = r_est @ kinematics.exp_so3(w / FS_OUT)
  err = np.linalg.norm(kinematics.log_so3(r_est.T @ r_ws[k1 * Q]))
  turned = np.linalg.norm(kinematics.log_so3(r_ws[k0 * Q].T @ r_ws[k1 * Q]))
  assert turned > np.deg2rad(30)            # the shank really rotated over that stretch
  assert np.rad2deg(err) < 3.0


@pytest.mark.parametrize('which', ['walk', 'run'])
def test_vertical_force_is_mass_times_com_acceleration(which, walk, run):
  sub, sim, _ = walk if which == 'walk' else run
  plan, kin = sim.plan, sim.kin
  acc = kinematics.second_derivative(kin.body_com, plan.dt)
  fz = plan.grf['r'][:, 2] + plan.grf['l'][:, 2]
  resid = fz - sub.body.mass_kg * (acc[:, 2] + 9.81)
  assert np.abs(resid[2:-2]).max() < 0.01 * sub.body.weight_n


@pytest.mark.parametrize('which', ['walk', 'run'])
def test_stride_impulse_balances_body_weight(which, walk, run):
  sub, sim, _ = walk if which == 'walk' else run
  plan = sim.plan
  fz = plan.grf['r'][:, 2] + plan.grf['l'][:, 2]
  st = ge.detect_stances(plan.grf['r'][:, 2], FS_INT)
  assert len(st) >= 3
  for (s0, _), (s1, _) in zip(st[:-1], st[1:], strict=True):
    ratio = fz[s0:s1].sum() / (sub.body.weight_n * (s1 - s0))
    assert ratio == pytest.approx(1.0, abs=0.02)


def test_running_has_flight_with_zero_force_and_free_fall(run):
  sub, sim, _ = run
  plan = sim.plan
  fz = plan.grf['r'][:, 2] + plan.grf['l'][:, 2]
  flight = ~(plan.contact['r'] | plan.contact['l'])
  flight[:10] = flight[-10:] = False
  assert flight.sum() > 0.15 * len(fz)       # flight phases exist (> 15 % of the time)
  assert np.all(fz[flight] == 0.0)
  acc = kinematics.second_derivative(sim.kin.body_com, plan.dt)
  inner = flight & np.roll(flight, 1) & np.roll(flight, -1)
  np.testing.assert_allclose(acc[inner, 2], -9.81, atol=0.05)


def test_foot_contact_timing_matches_foot_kinematics(walk):
  sub, sim, _ = walk
  plan = sim.plan
  foot = sim.kin.joints['r_ankle']
  speed = np.linalg.norm(np.gradient(foot, plan.dt, axis=0)[:, :2], axis=1)
  st = ge.detect_stances(plan.grf['r'][:, 2], FS_INT)
  for s, e in st:
    flat = slice(s + (e - s) // 6, s + (e - s) * 3 // 10)   # foot flat: the ankle stays put
    assert np.median(speed[flat]) < 0.2
  swing = np.zeros(len(speed), bool)
  for (_, e0), (s1, _) in zip(st[:-1], st[1:], strict=True):
    swing[e0 + (s1 - e0) // 3: s1 - (s1 - e0) // 3] = True
  assert np.median(speed[swing]) > 2.0             # mid swing: the foot travels fast


def _labels(sub, mode, speed, strike, seed, side='r', dur=5.0):
  plan = gait.gait_plan(sub, mode, speed, dur, FS_INT, np.random.default_rng(seed),
                           strike=strike)
  sim, _ = _sim(sub, plan, ('RightLeg',))
  return generate.step_labels(sim, sub.body, side)


def test_label_ranges_plausible():
  peaks_w, peaks_r, valr, kfm = [], [], [], []
  for i in range(3):
    sub = _subject(i, 'ranges')
    for speed in (1.0, 1.5):
      labs = _labels(sub, 'walk', speed, None, 10 * i + int(speed * 10))[1:-1]
      peaks_w += [d['peak_vgrf'] for d in labs]
      kfm += [d['peak_kfm'] for d in labs]
    labs = _labels(sub, 'run', 3.0, 'rear', 100 + i, side='l')[1:-1]
    peaks_r += [d['peak_vgrf'] for d in labs]
    valr += [d['valr'] for d in labs]
  assert 1.0 <= min(peaks_w) and max(peaks_w) <= 1.4
  assert 2.0 <= min(peaks_r) and max(peaks_r) <= 3.2
  assert 30.0 <= min(valr) and max(valr) <= 150.0
  assert 1.0 <= min(kfm) and max(kfm) <= 8.0


def test_subject_label_means_differ():
  from scipy import stats
  groups = []
  for i in range(4):
    sub = _subject(i, 'variability')
    groups.append([d['peak_kfm'] for d in _labels(sub, 'walk', 1.3, None, 7, dur=10.0)])
  # Same speed, same trial seed: differences between subjects come from the subjects.
  assert stats.f_oneway(*groups).pvalue < 0.01


def test_same_seed_same_data_and_different_seed_different_data():
  a = generate.labelled_subject('synthetic_running_valr', 0, 3, ('LeftLeg',), FS_OUT, 64, 3)
  b = generate.labelled_subject('synthetic_running_valr', 0, 3, ('LeftLeg',), FS_OUT, 64, 3)
  c = generate.labelled_subject('synthetic_running_valr', 1, 3, ('LeftLeg',), FS_OUT, 64, 3)
  assert len(a) == len(b) == 3
  for x, y in zip(a, b, strict=True):
    np.testing.assert_array_equal(x[2], y[2])
    assert x[4] == y[4]
  assert not np.allclose(a[0][2], c[0][2])
  assert a[0][4] != c[0][4]


def test_soft_tissue_filter_keeps_dc_and_rings_after_an_impulse():
  x = np.zeros((800, 1))
  x[100:] = 5.0                                     # a step: DC gain must be 1
  y = sensors.soft_tissue(x, 400.0, 20.0, 0.25)
  assert y[-1, 0] == pytest.approx(5.0, rel=1e-6)
  assert y[100:200, 0].max() > 5.5                  # overshoot: a damped wobble, not a lag


def test_balance_impulses_regulates_com_height():
  t = np.arange(0, 8, 1 / FS_INT)
  rng = np.random.default_rng(0)
  m, w = 70.0, 70.0 * 9.81
  cs, t0, side = [], -0.5, 'r'
  while t0 < 8.5:
    cs.append(dynamics.Contact(side, t0, t0 + 0.25 * rng.normal(1, 0.03), w * 0.37, 'run',
                               (1.8, 2.3), 8.0, 1.5, 0.05, 0.3, 0.05))
    t0 += 0.37 * rng.normal(1, 0.02)
    side = 'l' if side == 'r' else 'r'
  dynamics.balance_impulses(t, cs, w, m)
  grf, _, _ = dynamics.contact_forces(t, cs, w)
  com = dynamics.com_from_force(grf['r'] + grf['l'], m, 1 / FS_INT, np.zeros(3))
  z_td = [com[int(np.ceil(c.t0 * FS_INT)), 2] for c in cs if 1.0 < c.t0 < 7.0]
  assert np.ptp(z_td) < 0.05             # touchdown heights stay within a few cm over 20 steps
  v = np.diff(com[:, 2]) * FS_INT
  v_td = [v[int(np.ceil(c.t0 * FS_INT))] for c in cs if 1.0 < c.t0 < 7.0]
  assert np.ptp(v_td) < 0.25             # and so do the touchdown velocities (m/s)


def test_walking_double_support_force_and_com_excursion_are_normative(walk):
  # The leading foot loads while the trailing foot unloads over the same double support, so the
  # summed vGRF stays near the single-foot peaks (~1.1-1.3 BW with the heel-strike transient)
  # and the CoM rises and falls by ~3-5 cm per step at 1.3 m/s (Orendurff et al. 2004, J Rehabil
  # Res Dev 41:829, approximate). Independently shaped ramps summed to ~1.6 BW and ~6 cm.
  # The heel-strike transient (impact of the foot's effective mass, first ~50 ms) is left out.
  sub, sim, _ = walk
  plan = sim.plan
  inner = slice(int(0.5 * FS_INT), -int(0.5 * FS_INT))
  fz = (plan.grf['r'][:, 2] + plan.grf['l'][:, 2]) / sub.body.weight_n
  both = plan.contact['r'] & plan.contact['l']
  for side in 'rl':
    for s in np.flatnonzero(np.diff(plan.contact[side].astype(int)) == 1) + 1:
      both[s:s + int(0.06 * FS_INT)] = False
  fz, both = fz[inner], both[inner]
  assert both.sum() > 0.1 * FS_INT
  assert fz[both].max() < 1.3
  assert 0.025 < np.ptp(sim.kin.body_com[inner, 2]) < 0.05


REAL_XSENS = (Path(__file__).resolve().parents[1].parent / 'shared' / 'data' / 'real_imu'
              / 'walking_xsens_lowerLeg.txt')


@pytest.mark.xfail(strict=True, reason=(
    'known limit (docs/synthetic_data.md): in generator 1.2 the KFM median is in range, the '
    'shank |acc| 99th percentile sits at its bound (~40) and the shank swings at up to ~9.4 '
    'rad/s (short subjects, 1.3-1.5 m/s); remove this marker once it passes'))
def test_walking_shank_signals_and_kfm_within_published_ranges():
  # Published / measured ranges for healthy walking at 1.0-1.5 m/s: shank sagittal gyroscope
  # peak (mid swing) ~3.5-7 rad/s; shank |acc| 99th percentile well under 40 m/s^2 (the real
  # Xsens shank walk in ../shared/data reads 16.4 / 19.3 m/s^2 at the 90th / 99th percentile,
  # max 27); peak knee flexion moment median 2-5 %BW*BH.
  gyr_peaks, acc_mag, kfm = [], [], []
  for i in range(2):
    sub = _subject(i, 'shank_ranges')
    for speed in (1.0, 1.3, 1.5):
      rng = np.random.default_rng(50 + 10 * i + int(10 * speed))
      plan = gait.gait_plan(sub, 'walk', speed, 5.0, FS_INT, rng)
      sim, _ = _sim(sub, plan, ('RightLeg',), spec=sensors.SensorSpec(), seed=i)
      inner = slice(int(0.5 * FS_OUT), -int(0.5 * FS_OUT))
      gyr_peaks.append(np.abs(sim.gyr[0, inner, 2]).max())   # z = skin normal = medio-lateral
      acc_mag.append(np.linalg.norm(sim.acc[0, inner], axis=-1))
      kfm += [d['peak_kfm'] for d in generate.step_labels(sim, sub.body, 'r')[1:-1]]
  acc_mag = np.concatenate(acc_mag)
  msg = (f'gyro peaks {np.round(gyr_peaks, 1)}, |acc| p90/p99 '
         f'{np.percentile(acc_mag, [90, 99]).round(1)}, KFM median {np.median(kfm):.2f}')
  assert 3.5 <= np.median(gyr_peaks) and max(gyr_peaks) <= 7.0, msg
  assert np.percentile(acc_mag, 99) < 40.0, msg
  assert 2.0 <= np.median(kfm) <= 5.0, msg


def test_real_xsens_shank_reference_figures():
  # The reference numbers quoted above are measured here, not copied.
  if not REAL_XSENS.exists():
    pytest.skip(f'real Xsens shank file absent: {REAL_XSENS}')
  from data_prep.readers import xsens
  e = xsens.read_xsens_txt(REAL_XSENS)
  acc, gyr = e.acc(), e.gyr()
  mag = np.linalg.norm(acc, axis=1)
  p90, p99 = np.percentile(mag, [90, 99])
  assert 15.0 < p90 < 18.0 and 18.0 < p99 < 21.0 and mag.max() < 30.0
  assert 4.0 < np.abs(gyr[:, 2]).max() < 7.0   # the real shank's swing peaks, ~5-5.5 rad/s
