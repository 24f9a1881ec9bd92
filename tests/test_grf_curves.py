"""Whole GRF curves as targets (issue 27 step 3a): the synthetic force plate's curves obey the
model's dynamics, the records carry them behind an option, and the default records stay as they
were.

Frame and units of the curves: ``generate.CURVE_FRAME`` (ML + right, AP + forward, V + up; the
ground's force on the body; BW). Every check below is an impulse over an interval of whole
output samples at 100 Hz, in BW·s; ``_deviations`` names what each one compares.
"""

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_prep import gait_events as ge
from data_prep import records
from data_prep.builders import synthetic as sb
from data_prep.synthetic import gait, generate, sensors
from ssl_imu_jax.data import input_pipeline

FS = 100.0
EDGE = 40                     # output samples kept clear of the trial ends (filter edges)
G = 9.81
# Tolerances, in BW·s (module docstring of each test says why).
NEWTON_REL = 0.005            # |∫V dt - T - Δv_z/g| / T
STEADY_REL = {'walk': 0.015, 'run': 0.04}   # |∫V dt / T - 1|
HORIZONTAL_BW_S = 0.005       # |∫AP dt|, |∫ML dt| over a stride
HALF_STANCE_BW_S = 0.002      # |∫F_h dt - Δv_h/g| over the first half of each right stance
ALIGN_RMS_BW = 0.025          # RMS of V - the internal-rate force plate at the output instants


def _trial(mode, speed, i, seed, strike=None):
  sub = generate.subjects('grf_curves', 0, i + 1)[i]
  q = generate.internal_factor(FS, generate.WALKING_INTERNAL_HZ if mode == 'walk'
                               else generate.LABELLED_INTERNAL_HZ)
  plan = gait.gait_plan(sub, mode, speed, 5.0, FS * q, np.random.default_rng(seed), strike=strike)
  rng = np.random.default_rng(seed)
  spec = sensors.SensorSpec().ideal()
  sim = generate.simulate(sub, plan, sensors.sample_mounts(('RightLeg',), sub.body, rng, spec),
                          FS, q, rng, spec)
  curves = {s: generate.grf_curve(sim, sub.body, s) for s in ('r', 'l')}
  # Whole-body CoM velocity of the kinematics (internal rate), for Newton's law.
  vel = np.gradient(sim.kin.body_com, sim.plan.dt, axis=0)
  stances = ge.detect_stances(sim.plan.grf['r'][:, 2], FS * q)
  plate = {s: sim.plan.grf[s][::q] / sub.body.weight_n for s in ('r', 'l')}
  return {'mode': mode, 'curves': curves, 'vel': vel, 'q': q, 'stances': stances,
          'n': sim.acc.shape[1], 'plate': plate}


TRIALS = {
    'walk 1.3 m/s': ('walk', 1.3, 0, 10),
    'walk 1.8 m/s': ('walk', 1.8, 1, 11),
    'run 3.2 m/s rear': ('run', 3.2, 2, 12, 'rear'),
    'run 2.6 m/s fore': ('run', 2.6, 3, 13, 'fore'),
}


@pytest.fixture(scope='module')
def trials():
  return {k: _trial(*v) for k, v in TRIALS.items()}


def _deviations(tr, curves=None):
  """Worst deviation of each check over the trial's interior strides (right heel strike to the
  next), with ``curves`` (default: the trial's own) as the force plate."""
  c = tr['curves'] if curves is None else curves
  tot = c['r'] + c['l']
  q, vel = tr['q'], tr['vel']
  hs = [int(round(s / q)) for s, _ in tr['stances']]
  inner = slice(EDGE, tr['n'] - EDGE)
  out = {'newton_rel': 0.0, 'steady_rel': 0.0, 'ap': 0.0, 'ml': 0.0, 'half_stance': 0.0,
         'strides': 0,
         'align_rms': max(float(np.sqrt(np.mean((c[s][inner, 2] - tr['plate'][s][inner, 2]) ** 2)))
                          for s in c)}
  for a, b in zip(hs[:-1], hs[1:], strict=True):
    if a < EDGE or b > tr['n'] - EDGE:
      continue
    span = (b - a) / FS
    imp = tot[a:b].sum(0) / FS                       # BW·s, axes (ML, AP, V)
    dv = (vel[b * q] - vel[a * q]) / G               # m Δv / W, BW·s
    out['newton_rel'] = max(out['newton_rel'], abs(imp[2] - span - dv[2]) / span)
    out['steady_rel'] = max(out['steady_rel'], abs(imp[2] / span - 1.0))
    out['ap'] = max(out['ap'], abs(imp[1]))
    out['ml'] = max(out['ml'], abs(imp[0]))
    out['strides'] += 1
  for s, e in tr['stances']:
    a, m = int(round(s / q)), int(round(0.5 * (s + e) / q))
    if a < EDGE or m > tr['n'] - EDGE:
      continue
    imp = tot[a:m].sum(0) / FS
    dv = (vel[m * q] - vel[a * q]) / G
    out['half_stance'] = max(out['half_stance'], *np.abs(imp[:2] - dv[:2]))
  return out


def _passes(d, mode):
  return (d['newton_rel'] <= NEWTON_REL and d['steady_rel'] <= STEADY_REL[mode]
          and d['ap'] <= HORIZONTAL_BW_S and d['ml'] <= HORIZONTAL_BW_S
          and d['half_stance'] <= HALF_STANCE_BW_S and d['align_rms'] <= ALIGN_RMS_BW)


@pytest.mark.parametrize('name', list(TRIALS))
def test_stride_vertical_impulse_is_body_weight_times_stride_time(trials, name):
  """Newton over a stride: ∫(F_z - W) dt = m Δv_z, i.e. ∫V dt = T + Δv_z / g (V in BW).

  (a) The identity itself, Δv_z from the kinematics' whole-body CoM, within 0.5 % of T: what
  is left is discretisation (100 Hz sums of a curve decimated from 200 / 400 Hz by the FIR
  filter), largest where a stride's ends cut through a heel-strike transient that the anti-
  alias filter spreads across the boundary (measured 0.26 % in rear-foot running, ≤ 0.06 %
  otherwise).
  (b) A steady stride: ∫V dt = BW × T within 1.5 % (walking) / 4 % (running). By (a) the gap is
  Δv_z / (g T), the change of the vertical CoM velocity between two right heel strikes. Running:
  touchdown ends a ballistic flight (dv_z/dt = -g), so a touchdown δt off the steady rhythm
  changes v_z by g δt, a relative gap of δt / T; the model's step-time jitter is CV 2 % of a
  step, ~1 % of a stride, and the gap is a difference of two touchdowns, so 3σ · √2 · 1 % ≈
  4 %. Walking: at heel strike |dv_z/dt| = |F/W - 1| g ≲ 0.4 g (the total force is 1.1-1.4
  BW there, the hand-over being centred in double support) with jitter CV 1.5 % of a step:
  0.4 · 3 · √2 · 0.75 % ≈ 1.3 %. Measured
  (these four trials: 0.35 % and 2.3 %; a survey of 18 trials): walking ≤ 0.5 %, running ≤ 3.0 %.
  """
  tr = trials[name]
  d = _deviations(tr)
  assert d['strides'] >= 2
  assert d['newton_rel'] <= NEWTON_REL
  assert d['steady_rel'] <= STEADY_REL[tr['mode']]


@pytest.mark.parametrize('name', list(TRIALS))
def test_curve_is_the_force_plate_at_the_imu_instants(trials, name):
  """Sample i of the curve is the force at the IMU's sample i: the zero-phase anti-alias
  filter only rounds the fast transients off (RMS of V against the internal-rate force plate
  taken at the output instants: measured ≤ 0.013 BW, rear-foot running; a one-sample shift
  gives 0.05-0.16 BW), so the impulse laws above, blind to a time shift, are complemented."""
  assert _deviations(trials[name])['align_rms'] <= ALIGN_RMS_BW


@pytest.mark.parametrize('name', list(TRIALS))
def test_horizontal_impulse_over_a_steady_stride_is_zero(trials, name):
  """∫AP dt and ∫ML dt over a stride ≈ 0 (steady speed, straight line), within 0.005 BW·s.

  Each contact's AP force is -B sin(2πs) over its stance (zero impulse per contact); each
  foot's ML force pushes the body towards the other side, ±M sin(πs), and the two feet cancel.
  What a stride leaves is the other foot's two contacts cut by the stride's ends (double
  support): ≈ 0.11 B t_c ≈ 0.01 BW·s at each end in walking, equal up to the per-contact
  amplitude (5 % sd) and duration jitter, so ≲ 0.003 BW·s; and for ML the two feet's contact
  durations differ (asymmetry, jitter) by a few % of 2 M t_c / π ≈ 0.02 BW·s. Measured:
  AP ≤ 0.0026, ML ≤ 0.0017 BW·s. A missing foot leaves one foot's ML impulse (0.009-0.034
  BW·s), a sign error on one foot twice that; AP sign errors are caught by Newton over half a
  stance: ∫F_h dt = m Δv_h of the kinematic CoM within 0.002 BW·s (braking impulses are
  0.01-0.035 BW·s; measured gap ≤ 0.0009, the pelvis follows the CoM target to mm).
  """
  tr = trials[name]
  d = _deviations(tr)
  assert d['ap'] <= HORIZONTAL_BW_S and d['ml'] <= HORIZONTAL_BW_S
  assert d['half_stance'] <= HALF_STANCE_BW_S
  # Force on the body, AP + forward: each right stance brakes first (impulse < 0 to mid-stance)
  # and its ML force points to the body's left (the midline is to the right foot's left).
  r = tr['curves']['r']
  for s, e in tr['stances']:
    a, m, b = (int(round(x / tr['q'])) for x in (s, 0.5 * (s + e), e))
    if EDGE <= a and b <= tr['n'] - EDGE:
      assert r[a:m, 1].sum() < 0 < r[m:b, 1].sum()
      assert r[a:b, 0].sum() < 0


def test_the_physics_checks_fail_on_broken_curves(trials):
  """The checks above are not vacuous: each way of breaking the curves fails at least one."""
  for name, tr in trials.items():
    c = tr['curves']
    assert _passes(_deviations(tr), tr['mode']), name
    broken = {
        'left foot missing': {'r': c['r'], 'l': 0 * c['l']},
        'V sign flipped': {s: c[s] * [1, 1, -1] for s in c},
        'right ML sign flipped': {'r': c['r'] * [-1, 1, 1], 'l': c['l']},
        'AP sign flipped': {s: c[s] * [1, -1, 1] for s in c},
        'N instead of BW': {s: c[s] * 70 * G for s in c},
        'one sample late': {s: np.roll(c[s], 1, axis=0) for s in c},
    }
    for what, cur in broken.items():
      assert not _passes(_deviations(tr, cur), tr['mode']), (name, what)


def test_curve_option_leaves_the_generated_windows_as_they_were():
  """Same acc / gyr / label / start with and without curves (one subject of each set)."""
  for name in generate.LABELLED:
    sites = {'synthetic_running_valr': ('LeftLeg',),
             'synthetic_walking_grf': ('Spine1', 'RightLeg'),
             'synthetic_walking_kfm': ('Hip', 'RightLeg')}[name]
    plain = generate.labelled_subject(name, 0, 1, sites, FS, 32, 4)
    with_c = generate.labelled_subject(name, 0, 1, sites, FS, 32, 4, curves=True)
    assert len(plain) == len(with_c) == 4
    for a, b in zip(plain, with_c, strict=True):
      assert len(a) == 6 and len(b) == 7
      for x, y in zip(a, b[:6], strict=True):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes(), name
      curve = b[6]
      assert curve.shape == (32, 3) and curve.dtype == np.float32
      assert curve[:, 2].max() > 0.5, name        # the labelled foot is loaded in its window


def test_records_carry_curves_only_with_the_option(tmp_path):
  """Builder level: the default config's name, features and metadata have no curve; with
  ``curves=True`` the records add ``grf_curve`` and nothing else changes."""
  plain_cfg = records.make_config('tiny', FS, 32)
  curve_cfg = records.make_config('tiny', FS, 32, options={'curves': True})
  assert plain_cfg.name == 'tiny_100hz_t32'            # the folder name is the fingerprint
  assert curve_cfg.name == 'tiny_100hz_t32_curves-True'
  d0 = records.build(sb.SyntheticWalkingGrf, str(tmp_path), plain_cfg)
  d1 = records.build(sb.SyntheticWalkingGrf, str(tmp_path), curve_cfg)
  b0, b1 = tfds.builder_from_directory(d0), tfds.builder_from_directory(d1)
  assert 'grf_curve' not in b0.info.features and 'curves' not in b0.info.metadata
  assert input_pipeline.curve_specs(d0) == {}
  spec = b1.info.metadata['curves']['grf_curve']
  assert spec['axes'] == ['ML', 'AP', 'V'] and spec['present'] == [True] * 3
  assert spec['unit'] == 'BW' and spec['foot'] == 'right'
  meta0 = json.loads((tmp_path / 'synthetic_walking_grf' / plain_cfg.name / '1.2.0' /
                      'metadata.json').read_text())
  meta1 = json.loads(json.dumps(dict(b1.info.metadata)))
  del meta1['curves']
  # The same subjects (source id), a build with one more option.
  assert meta1['source'].pop('options') == {'curves': True} and meta0['source'].pop('options') == {}
  assert meta1 == meta0
  s0, s1 = b0.as_data_source()['train'], b1.as_data_source()['train']
  assert len(s0) == len(s1) > 0
  for i in range(len(s0)):
    e0, e1 = s0[i], s1[i]
    assert set(e1) - set(e0) == {'grf_curve'}
    for k in e0:
      assert np.asarray(e0[k]).tobytes() == np.asarray(e1[k]).tobytes(), k
  # load_curves: record order, [n, T, 3]; the window's peak V is the step's peak vGRF label
  # (measured at the internal rate; the 100 Hz anti-aliased curve rounds the peak off a little).
  ws = input_pipeline.load_split(d1, 'train')
  cur, spec2 = input_pipeline.load_curves(d1, 'train')
  assert spec2 == spec and cur.shape == (len(ws), 32, 3)
  np.testing.assert_allclose(cur[:, :, 2].max(1), ws.targets[:, 0], rtol=0.03)
  with pytest.raises(Exception, match='no curve label'):
    input_pipeline.load_curves(d0, 'train')


class _CurveBuilder(records.ImuWindowBuilder):
  """A minimal builder with a vertical-only curve (validation only, never built)."""

  SITES = ('Hip',)
  WITH_GYR = False

  def curves(self):
    return {'grf_curve': records.curve_spec('BW', 'test', present=(False, False, True))}

  def _split_generators(self, dl_manager):
    return {}

  def _generate_examples(self):
    yield from ()


def test_example_validates_curves(tmp_path):
  b = _CurveBuilder(config=records.make_config('tiny', FS, 8), data_dir=str(tmp_path))
  acc = np.zeros((1, 8, 3))
  good = np.zeros((8, 3))
  ex = b.example(acc, None, 0, 0, curves={'grf_curve': good}, where='w')
  assert np.isnan(ex['grf_curve'][:, :2]).all() and (ex['grf_curve'][:, 2] == 0).all()
  with pytest.raises(ValueError, match=r'curve .grf_curve. has shape'):
    b.example(acc, None, 0, 0, curves={'grf_curve': np.zeros((8, 1))}, where='w')
  bad = good.copy()
  bad[3, 2] = np.nan
  with pytest.raises(ValueError, match='NaN/Inf'):
    b.example(acc, None, 0, 0, curves={'grf_curve': bad}, where='w')
  with pytest.raises(ValueError, match='declares'):
    b.example(acc, None, 0, 0, where='w')
  with pytest.raises(ValueError, match='at least one'):
    records.curve_spec('BW', 'x', present=(False, False, False))


def test_movi_refuses_curves(tmp_path):
  with pytest.raises(ValueError, match='option curves is for the labelled sets'):
    records.build(sb.SyntheticMovi, str(tmp_path), records.make_config(
        'tiny', FS, 32, options={'curves': True}))
