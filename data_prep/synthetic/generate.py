"""From subjects to IMU recordings and step labels: the generator's public entry points.

``simulate`` turns a motion plan into measured IMU signals at the output rate (kinematics at the
internal rate, sensors, anti-alias decimation). ``step_labels`` derives the per-step labels from
the simulated force plate with the shared ``data_prep.gait_events`` module, exactly as the
real-data converters do. ``subjects`` draws a data set's subjects from its seed.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from data_prep import gait_events as ge
from data_prep.synthetic import activities, anthropometry, gait, kinematics, sensors

GENERATOR_VERSION = '1.2'
LABELLED_INTERNAL_HZ = 400.0   # force plate / kinematics rate of running (impact ramps ~20 ms)
WALKING_INTERNAL_HZ = 200.0    # walking: loading ramps last ~100 ms


def internal_factor(fs_out: float, min_internal_hz: float) -> int:
  """Integer decimation factor q >= 2 with q * fs_out >= min_internal_hz."""
  if not 20.0 <= fs_out <= 1000.0:
    raise ValueError(f'sample_rate_hz = {fs_out}: expected 20..1000 Hz (100 or 200 typical)')
  return max(2, int(np.ceil(min_internal_hz / fs_out - 1e-9)))


def dataset_rng(name: str, seed: int, *keys: int) -> np.random.Generator:
  """Independent, reproducible stream per (data set, seed, keys...)."""
  return np.random.default_rng([zlib.crc32(name.encode()), int(seed), *[int(k) for k in keys]])


def subjects(name: str, seed: int, n: int) -> list[anthropometry.Subject]:
  """The n subjects of a data set (ids 0..n-1); each from its own stream, so n can grow."""
  return [anthropometry.sample_subject(dataset_rng(name, seed, 1, i), i) for i in range(n)]


@dataclasses.dataclass
class SimResult:
  acc: np.ndarray          # [S, T_out, 3] float32, m/s^2
  gyr: np.ndarray          # [S, T_out, 3] float32, rad/s
  fs_out: float
  q: int
  plan: kinematics.MotionPlan
  kin: kinematics.Kinematics


def simulate(subject: anthropometry.Subject, plan: kinematics.MotionPlan,
             mounts: list[sensors.Mount], fs_out: float, q: int, rng: np.random.Generator,
             spec: sensors.SensorSpec = sensors.DEFAULT_SPEC) -> SimResult:
  """Kinematics -> true IMU -> soft tissue -> anti-alias decimation -> sensor errors."""
  cached = plan.info.get('_final_kin')
  if cached is not None and cached[0] is subject.body and plan.world_yaw is None:
    kin = cached[1]
  else:
    kin = kinematics.forward_kinematics(plan, subject.body)
  acc, gyr = sensors.true_imu(kin, mounts, soft=spec.soft_tissue)
  acc, gyr = sensors.measure(acc, gyr, mounts, fs_out * q, q, rng, spec)
  return SimResult(acc=acc, gyr=gyr, fs_out=fs_out, q=q, plan=plan, kin=kin)


def step_labels(sim: SimResult, body: anthropometry.Body, side: str) -> list[dict]:
  """Per-stance labels of one foot from the simulated force plate (internal rate).

  Stances come from ``gait_events.detect_stances`` on that foot's vGRF (20 N threshold), so
  incomplete contacts at the trial edges are dropped just like in the real data sets.
  Returns dicts with internal-rate ``start`` / ``end``, output-rate ``hs_out`` (heel strike) and
  ``peak_out`` (sample of peak vGRF), and the labels ``peak_vgrf`` (BW), ``valr`` (BW/s) and
  ``peak_kfm`` (%BW*BH, right foot only: the knee-moment data set's side).
  """
  plan = sim.plan
  if plan.grf is None:
    raise ValueError(f'{plan.name}: this motion has no force plate')
  fs_int = 1.0 / plan.dt
  vgrf = plan.grf[side][:, 2]
  stances = ge.detect_stances(vgrf, fs_int, threshold_n=20.0)
  knee_m = None
  if plan.cop is not None:
    knee_m = ge.knee_moment_lever_arm(plan.grf[side], plan.cop[side],
                                      sim.kin.joints[f'{side}_knee'], body.mass_kg, body.height_m)
  out = []
  for s, e in stances:
    peak_i = s + int(np.argmax(vgrf[s:e]))
    rec = {'start': int(s), 'end': int(e), 'hs_out': int(round(s / sim.q)),
           'peak_out': int(round(peak_i / sim.q)),
           'peak_vgrf': ge.peak_vgrf_bw(vgrf, s, e, body.mass_kg)}
    try:
      rec['valr'] = ge.valr_bw_per_s(vgrf, s, e, fs_int, body.mass_kg)
    except ValueError:
      rec['valr'] = float('nan')
    if knee_m is not None:
      rec['peak_kfm'] = ge.peak_in_first_half(knee_m[:, 0], s, e)
    out.append(rec)
  return out


# What a GRF curve of the synthetic force plate is (records.curve_spec; docs/synthetic_data.md).
CURVE_FRAME = ('walking-heading frame of the trial (the subject walks or runs straight along '
               'it): ML + to the subject\'s right, AP + forward (direction of travel), V + up '
               '(against gravity); the force of the ground on the body (on the foot), so V >= 0 '
               'in stance')


def grf_curve(sim: SimResult, body: anthropometry.Body, side: str) -> np.ndarray:
  """One foot's ground reaction force at the output rate: float32 [T_out, 3] in body weights,
  axes (ML, AP, V) of ``CURVE_FRAME``, sample i at the time of the IMU's sample i.

  The force plate of the simulation (``plan.grf``, internal rate, N, world frame x right,
  y forward, z up) divided by body weight and band-limited and decimated exactly like the IMU
  signals (``sensors.measure``: zero-phase FIR anti-alias filter, factor q), so inputs and
  targets share one time base and bandwidth. The filter's ringing leaves a few hundredths of
  a BW around contact edges (swing is then not exactly 0; the metric's 0.02 BW mask is
  applied to the curve, as to measured data).
  """
  plan = sim.plan
  if plan.grf is None:
    raise ValueError(f'{plan.name}: this motion has no force plate')
  if plan.world_yaw is not None or np.any(plan.heading != 0.0):
    raise ValueError(f'{plan.name}: the heading turns; the world frame is not the walking-'
                     'heading frame of CURVE_FRAME')
  f = np.asarray(plan.grf[side], np.float64) / body.weight_n
  if sim.q > 1:
    from scipy import signal as sps  # noqa: PLC0415 (scipy: ~1.5 s to import; loaded where used)
    f = sps.decimate(f, sim.q, ftype='fir', axis=0, zero_phase=True)
  if f.shape[0] != sim.acc.shape[1]:
    raise AssertionError(f'GRF curve has {f.shape[0]} samples, the IMU {sim.acc.shape[1]}')
  return f.astype(np.float32)


def movi_activity(subject, activity: str, duration_s: float, fs_out: float, q: int, rng,
                  mounts, spec: sensors.SensorSpec = sensors.DEFAULT_SPEC) -> SimResult:
  """One MoVi-style activity trial (see ``activities.ACTIVITIES``)."""
  if activity not in activities.ACTIVITIES:
    raise ValueError(f'unknown activity {activity!r}; known: {sorted(activities.ACTIVITIES)}')
  plan = activities.ACTIVITIES[activity](subject, duration_s, fs_out * q, rng)
  return simulate(subject, plan, mounts, fs_out, q, rng, spec)


# ------------------------------------------------------------------------------------------------
# Per-subject jobs of the four data sets (top-level functions, so a process pool can run them).

MOVI_ACTIVITIES = ('stand', 'walk_slow', 'walk', 'walk_fast', 'jog', 'run', 'hop', 'jumping_jacks',
                   'squat', 'kick', 'arm_wave', 'throw', 'turn')
EDGE_S = 0.4   # seconds at each trial end never used for windows (integration / filter edges)


def _with_traits(subject: anthropometry.Subject, **changes) -> anthropometry.Subject:
  return dataclasses.replace(subject, traits={**subject.traits, **changes})


def movi_subject(name: str, seed: int, sid: int, sites: tuple[str, ...], fs_out: float,
                 window: int, stride: int, duration_s: float, drop_static: bool
                 ) -> list[tuple[int, np.ndarray, np.ndarray]]:
  """Windows [(trial, acc [S,T,3], gyr [S,T,3])] of one subject performing every activity once.

  Trial index = position in ``MOVI_ACTIVITIES``. Windows are non-overlapping by default
  (``stride`` = T) and taken from the trial interior. With ``drop_static`` the reference rule is
  applied: keep a window only if the mean over accelerometer channels of its std is >= 0.2 g.
  """
  subject = subjects(name, seed, sid + 1)[sid]
  q = internal_factor(fs_out, 2 * fs_out)
  rng = dataset_rng(name, seed, 2, sid)
  mounts = sensors.sample_mounts(sites, subject.body, rng)
  edge = int(round(EDGE_S * fs_out))
  out = []
  for trial, act in enumerate(MOVI_ACTIVITIES):
    dur = duration_s + 2 * EDGE_S + window / fs_out
    sim = movi_activity(subject, act, dur, fs_out, q, rng, mounts)
    n = sim.acc.shape[1]
    for start in range(edge, n - edge - window + 1, stride):
      acc = sim.acc[:, start:start + window]
      if drop_static and acc.std(axis=1).mean() < 0.2 * sensors.G:
        continue
      out.append((trial, acc, sim.gyr[:, start:start + window]))
  return out


LABELLED = {
    # name: (mode, foot side, label key, n_subjects)
    'synthetic_running_valr': ('run', 'l', 'valr', 15),
    'synthetic_walking_grf': ('walk', 'r', 'peak_vgrf', 21),
    'synthetic_walking_kfm': ('walk', 'r', 'peak_kfm', 17),
}


def _conditions(name: str, subject, k: int, rng) -> tuple[anthropometry.Subject, float, str | None]:
  """Trial condition k of a labelled data set: (modified subject, speed, strike)."""
  tr = subject.traits
  if name == 'synthetic_running_valr':
    # Tan et al. 2021: strike pattern x step rate (90-110 %) x speed (2.4 / 2.8 m/s) x shoes.
    styles = ['rear', 'mid', 'fore']
    strike = tr['strike_habit'] if k % 2 == 0 else styles[(styles.index(tr['strike_habit'])
                                                             + 1 + (k // 2) % 2) % 3]
    speed = (2.4, 2.8)[(k // 2) % 2] * rng.normal(1.0, 0.02)
    sub = _with_traits(subject,
                       cadence_factor_run=tr['cadence_factor_run'] * (0.9, 1.0, 1.1)[k % 3],
                       heel_pad_tau_s=tr['heel_pad_tau_s'] * (1.0, 0.8)[(k // 3) % 2])
    return sub, speed, strike
  if name == 'synthetic_walking_grf':
    # Camargo et al. 2021: treadmill 0.5-1.85 m/s and level ground at three speeds.
    speed = float(np.clip((0.8, 1.0, 1.2, 1.4, 1.6, 1.8)[k % 6] * rng.normal(1.0, 0.04), 0.8, 1.85))
    return subject, speed, None
  if name == 'synthetic_walking_kfm':
    # Tan et al. 2022: treadmill walking, baseline / foot progression / step width / trunk sway.
    cond = k % 4
    speed = 1.2 * rng.normal(1.0, 0.06)
    if cond == 1:
      sub = _with_traits(subject, toe_out_deg=tr['toe_out_deg'] + rng.choice([-10.0, 10.0]))
    elif cond == 2:
      sub = _with_traits(subject, step_width_m=float(np.clip(tr['step_width_m']
                                                           + rng.choice([-0.05, 0.08]), 0.03, 0.3)))
    elif cond == 3:
      sub = _with_traits(subject, trunk_sway_deg=8.0)
    else:
      sub = subject
    return sub, speed, None
  raise ValueError(f'unknown labelled data set {name!r}')


def labelled_subject(name: str, seed: int, sid: int, sites: tuple[str, ...], fs_out: float,
                     window: int, n_steps: int, curves: bool = False
                     ) -> list[tuple]:
  """Step windows [(trial, step, acc, gyr, label, start)] of one subject of a labelled data set
  (``start``: the window's first sample in its trial at ``fs_out``). With ``curves`` each tuple
  ends with the window's GRF curve of the labelled foot (``grf_curve``: [window, 3], BW); the
  curve draws no random numbers, so every other field is the same with and without it.

  Windows are aligned to steps like the real sets (datasets.md section 5): VALR - the window
  starts min(0.05 s, T/4) before the left foot's contact; peak vGRF - the right foot's peak
  vGRF falls in the window's central quarter; KFM - the window starts min(0.2 s, T/4) (20
  samples at 100 Hz) before the right heel strike.
  """
  if name not in LABELLED:
    raise ValueError(f'unknown labelled data set {name!r}; known: {sorted(LABELLED)}')
  mode, side, key, _ = LABELLED[name]
  subject = subjects(name, seed, sid + 1)[sid]
  q = internal_factor(fs_out, LABELLED_INTERNAL_HZ if mode == 'run' else WALKING_INTERNAL_HZ)
  rng = dataset_rng(name, seed, 2, sid)
  mounts = sensors.sample_mounts(sites, subject.body, rng)
  edge = int(round(EDGE_S * fs_out))
  per_trial = 12
  out = []
  k = 0
  while len(out) < n_steps and k < 4 * (n_steps // per_trial + 2):
    sub, speed, strike = _conditions(name, subject, k, rng)
    want = min(per_trial, n_steps - len(out))
    stride_s = 2 * (0.37 if mode == 'run' else 0.55)
    dur = 2 * EDGE_S + (want + 2) * stride_s + window / fs_out
    plan = gait.gait_plan(sub, mode, speed, dur, fs_out * q, rng, strike=strike)
    sim = simulate(sub, plan, mounts, fs_out, q, rng)
    n = sim.acc.shape[1]
    curve = None
    for j, st in enumerate(step_labels(sim, subject.body, side)):
      if key == 'valr':
        start = st['hs_out'] - min(int(round(0.05 * fs_out)), window // 4)
      elif key == 'peak_vgrf':
        start = st['peak_out'] - window // 2 + int(rng.integers(-(window // 8), window // 8 + 1))
      else:
        start = st['hs_out'] - min(int(round(0.2 * fs_out)), window // 4)
      label = st[key]
      if start < edge or start + window > n - edge or not np.isfinite(label):
        continue
      item = (k, j, sim.acc[:, start:start + window], sim.gyr[:, start:start + window],
              float(label), int(start))
      if curves:
        if curve is None:
          curve = grf_curve(sim, subject.body, side)
        item += (curve[start:start + window],)
      out.append(item)
      if len(out) >= n_steps:
        break
    k += 1
  return out
