"""Motion plans: force-driven gait (walking, running) and non-gait MoVi-style activities.

Gait is built force-first. Contact timing (cadence, duty factor, contact time) follows speed
through normative relations with subject traits on top; each contact's vertical force follows
``dynamics``; the CoM follows from the force; each foot is placed ahead of the CoM, rolls over
heel / forefoot rockers during stance (a pitch template, pivoting about the heel while toe-up and
about the ball while heel-up), and swings to its next contact along a C2 quintic path with
clearance. The legs are then solved by IK and the pelvis so that the whole-body CoM follows the
force (``kinematics.forward_kinematics``). Upper-body angles are smooth periodic templates in the
gait phase (Fourier terms approximating the normative curves of Winter 2009 / Perry 1992 in
sign, timing and amplitude).

Non-gait activities prescribe the pelvis and the feet directly (feet fixed on the floor unless
the activity moves them); hopping activities use the same force-first machinery as running.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from data_prep.synthetic import dynamics as dyn
from data_prep.synthetic.anthropometry import Subject
from data_prep.synthetic.kinematics import MotionPlan, rot_z

D2R = np.pi / 180.0
# Walking: the CoM height is set so that the leg is at its straightest allowed knee angle over
# the early flat-foot phase (16-28 % of stance).
WALK_REACH_END = 0.28
EY = np.array([0.0, 1.0, 0.0])


def hermite5(p0, v0, a0, p1, v1, a1, s: np.ndarray, dur: float) -> np.ndarray:
  """Quintic Hermite on s in [0, 1] matching position, velocity and acceleration at both ends."""
  s = s[:, None]
  s2, s3, s4, s5 = s ** 2, s ** 3, s ** 4, s ** 5
  h0 = 1 - 10 * s3 + 15 * s4 - 6 * s5
  h1 = s - 6 * s3 + 8 * s4 - 3 * s5
  h2 = 0.5 * s2 - 1.5 * s3 + 1.5 * s4 - 0.5 * s5
  h3 = 0.5 * s3 - s4 + 0.5 * s5
  h4 = -4 * s3 + 7 * s4 - 3 * s5
  h5 = 10 * s3 - 15 * s4 + 6 * s5
  return (h0 * p0 + h1 * dur * v0 + h2 * dur ** 2 * a0 + h3 * dur ** 2 * a1 + h4 * dur * v1
          + h5 * p1)


def bump(s: np.ndarray, a: float = 3.0, b: float = 3.0) -> np.ndarray:
  """C2 bump s^a (1-s)^b on [0, 1] scaled to a peak of 1 (zero outside)."""
  s = np.clip(s, 0.0, 1.0)
  peak = (a / (a + b)) ** a * (b / (a + b)) ** b
  return s ** a * (1 - s) ** b / peak


def smooth_noise(rng: np.random.Generator, n: int, dt: float, cutoff_hz: float,
                 sd: float, dims: int = 1) -> np.ndarray:
  """Gaussian noise low-passed (FFT brick wall at ``cutoff_hz``), scaled to standard dev ``sd``."""
  x = rng.normal(size=(n, dims))
  f = np.fft.rfftfreq(n, dt)
  spec = np.fft.rfft(x, axis=0)
  spec[f > cutoff_hz] = 0
  y = np.fft.irfft(spec, n=n, axis=0)
  y /= max(float(y.std()), 1e-12)
  return (y * sd)[:, 0] if dims == 1 else y * sd


def _yaw_dir(yaw: float) -> np.ndarray:
  return np.array([-np.sin(yaw), np.cos(yaw), 0.0])


class _Stance:
  """Foot geometry of one contact: heel / ball rockers, compression, CoP path."""

  def __init__(self, c: dyn.Contact, heel: np.ndarray, yaw: float, body, pitch: tuple,
               cop: tuple, sgn: float):
    self.c, self.heel, self.yaw, self.sgn = c, heel, yaw, sgn
    L = body.length
    self.l_h, self.h_a, self.l_b, self.l_f = (L['heel_to_ankle'], L['ankle_height'],
                                              L['heel_to_ball'], L['foot'])
    self.th_hs, self.s_flat, self.s_ho, self.th_to = pitch
    self.u0, self.u1 = cop
    self.fwd = _yaw_dir(yaw)
    self.ball = heel + self.l_b * self.fwd
    self.corr_t: np.ndarray | None = None   # extra heel rise (rad, <= 0) on a time grid
    self.corr_v: np.ndarray | None = None

  def move_back(self, dist: float) -> None:
    self.heel = self.heel - dist * self.fwd
    self.ball = self.ball - dist * self.fwd

  def template_pitch(self, tt: np.ndarray) -> np.ndarray:
    s = (tt - self.c.t0) / (self.c.t1 - self.c.t0)
    early = self.th_hs * (1 - dyn.smooth5(s / self.s_flat))
    late = self.th_to * np.clip((s - self.s_ho) / (1 - self.s_ho), 0, None) ** 2
    return np.where(s < self.s_flat, early, np.where(s < self.s_ho, 0.0, late))

  def pitch(self, tt: np.ndarray) -> np.ndarray:
    th = self.template_pitch(tt)
    if self.corr_t is not None:
      th = th + np.interp(tt, self.corr_t, self.corr_v, left=0.0, right=self.corr_v[-1])
    return th

  def heel_rise_for_reach(self, hip: np.ndarray, d_max: float, near: np.ndarray) -> np.ndarray:
    """Pitch (rad) about the ball, nearest to ``near``, putting the ankle d_max from ``hip``.

    The ankle circles the ball at radius r in the foot's sagittal plane; solving
    |hip - ball - v(theta)| = d_max gives A cos(theta) + B sin(theta) = C, two roots.
    """
    a_, h_a = self.l_h - self.l_b, self.h_a
    w = hip - self.ball
    wf, wz = w @ self.fwd, w[:, 2]
    big_a, big_b = wf * a_ + wz * h_a, wz * a_ - wf * h_a
    c = (np.sum(w * w, -1) + a_ ** 2 + h_a ** 2 - d_max ** 2) / 2
    r = np.hypot(big_a, big_b)
    phi = np.arctan2(big_b, big_a)
    half = np.arccos(np.clip(c / r, -1.0, 1.0))
    roots = np.stack([phi - half, phi + half], -1)
    roots = (roots - near[:, None] + np.pi) % (2 * np.pi) - np.pi + near[:, None]
    pick = np.argmin(np.abs(roots - near[:, None]), axis=-1)
    return np.take_along_axis(roots, pick[:, None], -1)[:, 0]

  def ankle(self, tt: np.ndarray) -> np.ndarray:
    th = self.pitch(tt)
    c, s = np.cos(th), np.sin(th)
    heel_up = th > 0   # toe up: pivot on the heel, else on the ball
    base = np.where(heel_up[:, None], self.heel, self.ball)
    fy = np.where(heel_up, self.l_h, self.l_h - self.l_b)   # ankle offset from the pivot
    along = fy * c - self.h_a * s                            # R_z(yaw) R_x(pitch) (0, fy, h_a)
    up = fy * s + self.h_a * c
    a = base + along[:, None] * self.fwd + up[:, None] * np.array([0.0, 0.0, 1.0])
    x = np.clip((tt - self.c.t0) / self.c.tau, 0.0, 1.0)
    a[:, 2] -= self.c.v_td * self.c.tau * (x - x ** 3 + 0.5 * x ** 4)
    return a

  def cop(self, tt: np.ndarray) -> np.ndarray:
    s = np.clip((tt - self.c.t0) / (self.c.t1 - self.c.t0), 0, 1)
    u = self.u0 + (self.u1 - self.u0) * (1 - (1 - s) ** 1.6)  # fast to midfoot, then slower
    lat = self.sgn * (0.012 - 0.02 * s) * self.l_f / 0.27
    fwd, right = _yaw_dir(self.yaw), np.array([np.cos(self.yaw), np.sin(self.yaw), 0.0])
    p = self.heel + u[:, None] * self.l_f * fwd + lat[:, None] * right
    p[:, 2] = 0.0
    return p


def _feet_from_stances(t: np.ndarray, stances: dict[str, list[_Stance]], clear_fn,
                       body) -> tuple[dict, dict, dict]:
  """Ankle [T,3], pitch [T], CoP [T,3] per side: stance rockers joined by quintic swings."""
  n, dt = len(t), float(t[1] - t[0])
  ankle = {s: np.zeros((n, 3)) for s in stances}
  pitch = {s: np.zeros(n) for s in stances}
  cop = {s: np.zeros((n, 3)) for s in stances}
  h = 0.004   # over a few samples: the stance pitch correction is piecewise linear
  for side, sts in stances.items():
    for k, st in enumerate(sts):
      i0 = max(0, int(np.ceil((st.c.t0 - t[0]) / dt - 1e-9)))
      i1 = min(n, int(np.ceil((st.c.t1 - t[0]) / dt - 1e-9)))
      if i1 > i0:
        tt = t[i0:i1]
        ankle[side][i0:i1] = st.ankle(tt)
        pitch[side][i0:i1] = st.pitch(tt)
        cop[side][i0:i1] = st.cop(tt)
      if k + 1 == len(sts):
        continue
      nxt = sts[k + 1]
      j0 = max(0, int(np.ceil((st.c.t1 - t[0]) / dt - 1e-9)))
      j1 = min(n, int(np.ceil((nxt.c.t0 - t[0]) / dt - 1e-9)))
      if j1 <= j0:
        continue
      te = np.array([st.c.t1 - 2 * h, st.c.t1 - h, st.c.t1])
      pe, the = st.ankle(te), st.pitch(te)
      p0 = pe[2]
      v0 = (3 * pe[2] - 4 * pe[1] + pe[0]) / (2 * h)
      a0 = (pe[2] - 2 * pe[1] + pe[0]) / h ** 2
      # Swing pitch starts from the toe-off angle and rate (rate capped at 12 rad/s, angular
      # acceleration not matched: a quintic fed the rocker's end acceleration overshoots wildly).
      q0 = the[2]
      w0 = float(np.clip((3 * the[2] - 4 * the[1] + the[0]) / (2 * h), -12.0, 12.0))
      b0 = 0.0
      a0_norm = np.linalg.norm(a0)
      if a0_norm > 50.0:
        a0 = a0 * (50.0 / a0_norm)
      p1 = nxt.ankle(np.array([nxt.c.t0]))[0]
      v1 = np.array([0.0, 0.0, -nxt.c.v_td])
      dur = nxt.c.t0 - st.c.t1
      s = (t[j0:j1] - st.c.t1) / dur
      path = hermite5(p0, v0, a0, p1, v1, np.zeros(3), s, dur)
      path[:, 2] += clear_fn(s, st, nxt)
      ankle[side][j0:j1] = path
      pitch[side][j0:j1] = hermite5(np.array([q0]), np.array([w0]), np.array([b0]),
                                    np.array([nxt.th_hs]), np.zeros(1), np.zeros(1), s, dur)[:, 0]
  return ankle, pitch, cop


def _phase(t: np.ndarray, hs_times: np.ndarray) -> np.ndarray:
  """Gait phase in rad, 0 at each right heel strike, growing 2 pi per stride."""
  k = np.arange(len(hs_times), dtype=np.float64)
  return 2 * np.pi * np.interp(t, hs_times, k, left=np.nan, right=np.nan)


def _extrapolated_phase(t, hs_times):
  ph = _phase(t, hs_times)
  per = np.mean(np.diff(hs_times))
  lo, hi = t < hs_times[0], t > hs_times[-1]
  ph[lo] = 2 * np.pi * (t[lo] - hs_times[0]) / per
  ph[hi] = 2 * np.pi * (len(hs_times) - 1 + (t[hi] - hs_times[-1]) / per)
  return ph


def gait_plan(subject: Subject, mode: str, speed: float, duration_s: float, fs: float,
              rng: np.random.Generator, strike: str | None = None) -> MotionPlan:
  """Walking (``mode='walk'``) or running (``'run'``) at ``speed`` m/s on a straight line.

  ``strike`` ('rear' | 'mid' | 'fore') sets the running foot strike (walking is always rear).
  The plan's ``info`` holds the contacts and the trial parameters.
  """
  if mode not in ('walk', 'run'):
    raise ValueError(f"mode must be 'walk' or 'run', got {mode!r}")
  body, tr = subject.body, subject.traits
  H, M, W = body.height_m, body.mass_kg, body.weight_n
  dt = 1.0 / fs
  n = int(round(duration_s * fs))
  t = np.arange(n) * dt
  trial = lambda sd: float(rng.normal(1.0, sd))
  if mode == 'walk':
    strike = 'rear'
    step_len = 0.40 * H * (speed / 1.3) ** 0.55 * tr['step_length_factor'] * trial(0.02)
    step_t = step_len / speed
    duty = np.clip(0.62 - 0.06 * (speed - 1.3) + tr['duty_offset'], 0.55, 0.68)
    t_c = duty * 2 * step_t
    cv = 0.015
  else:
    strike = strike or tr['strike_habit']
    cadence = (166 + 6 * (speed - 3.0)) * tr['cadence_factor_run'] * trial(0.03)
    step_t = 60.0 / cadence
    step_len = speed * step_t
    t_c = float(np.clip((0.275 - 0.035 * (speed - 3.0)) * tr['contact_time_factor_run']
                        * trial(0.03), 0.17, 0.36))
    t_c = min(t_c, 0.85 * step_t)
    cv = 0.02
  # Heel-strike sequence (alternating, asymmetric, with step-to-step jitter) covering the grid.
  hs, sides = [], []
  tcur, side = -2.5 * step_t * (0.5 + rng.random()), 'r'
  while tcur < duration_s + 3 * step_t:
    hs.append(tcur)
    sides.append(side)
    asym = 1 + (tr['asymmetry'] if side == 'r' else -tr['asymmetry'])
    tcur += step_t * asym * rng.normal(1.0, cv)
    side = 'l' if side == 'r' else 'r'
  hs = np.array(hs)
  # Per-contact force parameters.
  contacts = []
  v_fac = tr['touchdown_v_factor'] * trial(0.05)
  tau0 = tr['heel_pad_tau_s'] * trial(0.05)
  m_eff = tr['impact_mass_frac'] * M
  if mode == 'walk':
    valley = float(np.clip(0.78 - 0.32 * (speed - 0.8) + tr['grf_valley_k'], 0.3, 0.95))
    skew = float(np.clip(tr['grf_skew_j'] * trial(0.2), -0.1, 0.2))
    shape = (1 + skew, valley, 1 - skew)   # peak positions: the double supports, below
    ap = (0.14 + 0.08 * (speed - 1.3)) * tr['ap_force_factor']
    ml = 0.05 * tr['ml_force_factor']
    v_td0, tau_mult = 0.35 * v_fac, 1.6
  else:
    shape = (1.8, 2.3)
    ap = (0.30 + 0.06 * (speed - 3.0)) * tr['ap_force_factor']
    ml = 0.06 * tr['ml_force_factor']
    v_td0 = {'rear': 1.8, 'mid': 1.3, 'fore': 0.9}[strike] * (speed / 3.0) ** 0.5 * v_fac
    tau_mult = {'rear': 1.9, 'mid': 3.5, 'fore': 5.5}[strike]
  for i, (t0, sd) in enumerate(zip(hs[:-1], sides[:-1], strict=True)):
    asym = 1 + (tr['asymmetry'] if sd == 'r' else -tr['asymmetry'])
    c_shape = shape
    if mode == 'walk':  # toe-off follows the other foot's heel strike by the double support
      tc = hs[i + 1] - t0 + (t_c - step_t) * asym * rng.normal(1.0, 0.03)
      # Loading ramp = the double support after this heel strike (to the other foot's toe-off),
      # unloading ramp = the one before this toe-off (from the other foot's heel strike).
      ds_in = contacts[-1].t1 - t0 if contacts else t_c - step_t
      c_shape = shape[:3] + (float(np.clip(ds_in / tc, 0.08, 0.3)),
                             float(np.clip((hs[i + 1] - t0) / tc, 0.7, 0.92)))
    else:
      tc = t_c * asym * rng.normal(1.0, cv)
    contacts.append(dyn.Contact(
        side=sd, t0=t0, t1=t0 + tc, impulse=W * (hs[i + 1] - t0), kind=mode, shape=c_shape,
        m_eff=m_eff, v_td=v_td0 * rng.normal(1.0, 0.08), tau=tau0 * tau_mult * rng.normal(1, 0.05),
        ap_bw=ap * rng.normal(1, 0.05), ml_bw=ml))
  dyn.balance_impulses(t, contacts, W, M)
  grf, _, mask = dyn.contact_forces(t, contacts, W)
  com = dyn.com_from_force(grf['r'] + grf['l'], M, dt, np.array([0.0, speed, 0.0]))
  com[:, 2] += 0.55 * H
  # Foot placement and stance geometry.
  toe_out = tr['toe_out_deg'] * D2R
  width = tr['step_width_m'] * (1.0 if mode == 'walk' else 0.5)
  if mode == 'walk':
    ahead = tr['foot_ahead_frac'] * step_len
  else:  # fraction of the stance's CoM travel (v * t_c) that lies ahead of the ball at contact
    ahead = ({'rear': 0.55, 'mid': 0.5, 'fore': 0.45}[strike] * tr['foot_ahead_factor_run']
             * speed * t_c)
  hs_pitch, to_pitch = tr['heel_strike_pitch_deg'] * D2R, tr['toe_off_pitch_deg'] * D2R
  if mode == 'walk':
    pitch_p = (hs_pitch, 0.16, 0.55, to_pitch)
    cop_p = (tr['cop_start_frac'], tr['cop_end_frac'])
  else:
    pitch_p = {'rear': (0.75 * hs_pitch, 0.22, 0.45, 0.8 * to_pitch),
               'mid': (2.0 * D2R, 0.08, 0.45, 0.8 * to_pitch),
               'fore': (-12.0 * D2R, 0.25, 0.42, 0.8 * to_pitch)}[strike]
    cop_p = {'rear': (tr['cop_start_frac'], tr['cop_end_frac']),
             'mid': (0.40, tr['cop_end_frac']), 'fore': (0.68, tr['cop_end_frac'])}[strike]
  stances = {'r': [], 'l': []}
  y_at = lambda tq: np.interp(tq, t, com[:, 1], left=np.nan, right=np.nan)
  for c in contacts:
    sgn = 1.0 if c.side == 'r' else -1.0
    yc = y_at(c.t0)
    if np.isnan(yc):
      yc = speed * c.t0 + com[0, 1] - speed * t[0]
    yaw = -sgn * toe_out
    contact_pt = np.array([sgn * width / 2 + rng.normal(0, 0.01),
                           yc + ahead + rng.normal(0, 0.005), 0.0])
    if mode == 'walk':  # the heel lands ``ahead`` of the CoM
      heel = contact_pt
    else:  # the ball lands ``ahead`` of the CoM; rear-foot strikers overstride the most
      heel = contact_pt - body.length['heel_to_ball'] * _yaw_dir(yaw)
    c.yaw = 0.0
    stances[c.side].append(_Stance(c, heel, yaw, body, pitch_p, cop_p, sgn))
  clear = tr['swing_clearance_m'] * (1.0 if mode == 'walk' else 2.2 * (speed / 3.0))
  ab = (3.0, 3.0) if mode == 'walk' else (3.0, 4.5)
  clear_fn = lambda s, a, b: clear * bump(s, *ab)
  foot_yaw = {'r': np.full(n, -toe_out), 'l': np.full(n, toe_out)}
  # Upper body templates in the gait phase.
  ph = _extrapolated_phase(t, hs[np.array(sides) == 'r'])
  vig = tr['movement_vigour'] * trial(0.08)
  rot_amp = tr['pelvis_rot_amp_deg'] * D2R * vig * (1.0 if mode == 'walk' else 1.4)
  obl_amp = tr['pelvis_obl_amp_deg'] * D2R * vig
  pelvis_ang = np.stack([
      tr['pelvis_tilt_deg'] * D2R + 1.5 * D2R * np.cos(2 * ph),
      obl_amp * np.sin(ph + np.pi / 3),
      rot_amp * np.cos(ph)], -1)
  lean = (tr['trunk_lean_deg'] + (6.0 if mode == 'run' else 0.0)) * D2R
  sway = (1.5 + tr.get('trunk_sway_deg', 0.0)) * D2R   # lateral trunk sway (KFM trial type)
  trunk_ang = np.stack([lean + 1.5 * D2R * np.cos(2 * ph - 0.5),
                        sway * np.sin(ph), -0.6 * rot_amp * np.cos(ph)], -1)
  head_ang = np.stack([-0.3 * (trunk_ang[:, 0] - lean), -0.3 * trunk_ang[:, 1],
                       -0.2 * trunk_ang[:, 2]], -1)
  if mode == 'walk':
    arm_amp = (10 + 15 * (speed - 0.8)) * D2R * tr['arm_swing_factor'] * vig
    elbow, elbow_amp, abd = tr['elbow_flex_deg'] * D2R, 8 * D2R, 8 * D2R
  else:
    arm_amp = (25 + 5 * (speed - 3.0)) * D2R * tr['arm_swing_factor'] * vig
    elbow, elbow_amp, abd = tr['run_elbow_flex_deg'] * D2R, 15 * D2R, 14 * D2R
  arm_ang = {}
  for side, sgn in (('r', -1.0), ('l', 1.0)):
    swing = sgn * arm_amp * np.cos(ph)
    arm_ang[side] = np.stack([swing, np.full(n, abd), np.full(n, 10 * D2R),
                              elbow + 0.5 * elbow_amp * (swing / max(arm_amp, 1e-6) + 1),
                              np.full(n, 5 * D2R)], -1)
  min_knee = (tr['min_knee_flex_deg_walk'] if mode == 'walk' else tr['min_knee_flex_deg_run'])
  # Walking: the flat-foot phase sets the CoM height (knee nearly straight in midstance);
  # running: touchdown does (knee ~10-20 deg), midstance flexion then follows from the force.
  reach_range = (pitch_p[1], WALK_REACH_END) if mode == 'walk' else (0.0, 0.5)
  plan = MotionPlan(
      name=mode, dt=dt, heading=np.zeros(n), pelvis_ang=pelvis_ang, trunk_ang=trunk_ang,
      head_ang=head_ang, arm_ang=arm_ang, ankle={}, foot_pitch={}, foot_yaw=foot_yaw,
      com_target=com, contact=mask, min_knee_flex=min_knee * D2R, grf=grf, reach_percentile=5.0,
      info={'mode': mode, 'speed': float(speed), 'strike': strike, 'step_time_s': float(step_t),
            'contact_time_s': float(t_c), 'step_length_m': float(step_len),
            'contacts': contacts, 'right_hs_times': hs[np.array(sides) == 'r']})
  return _adapted_plan(plan, stances, clear_fn, subject, t, reach_range)


def _stance_samples(st: _Stance, t: np.ndarray) -> tuple[int, int]:
  dt = float(t[1] - t[0])
  i0 = max(0, int(np.ceil((st.c.t0 - t[0]) / dt - 1e-9)))
  i1 = min(len(t), int(np.ceil((st.c.t1 - t[0]) / dt - 1e-9)))
  return i0, i1


def _set_feet(plan: MotionPlan, stances, clear_fn, body, t, reach_range) -> None:
  plan.ankle, plan.foot_pitch, plan.cop = _feet_from_stances(t, stances, clear_fn, body)
  plan.reach_mask = {}
  plan.stances = {}
  for side, sts in stances.items():
    m = np.zeros(len(t), bool)
    spans = []
    for st in sts:
      i0, i1 = _stance_samples(st, t)
      spans.append([int(np.ceil((st.c.t0 - t[0]) / plan.dt - 1e-9)),
                    int(np.ceil((st.c.t1 - t[0]) / plan.dt - 1e-9))])
      if i1 > i0:
        s = (t[i0:i1] - st.c.t0) / (st.c.t1 - st.c.t0)
        m[i0:i1] = (s >= reach_range[0]) & (s < reach_range[1])
    edge = int(round(0.4 / plan.dt))  # trial edges carry integration-constant artefacts
    m[:edge] = False
    m[-edge:] = False
    plan.reach_mask[side] = m
    plan.stances[side] = np.array(spans, dtype=np.int64).reshape(-1, 2)


def _adapted_plan(plan: MotionPlan, stances, clear_fn, subject: Subject, t, reach_range,
                  straight_knee_deg: float = 9.0, rounds: int = 2) -> MotionPlan:
  """Two passes: template feet -> FK -> per-step reach adaptation -> feet again.

  Where a loaded leg would have to be longer than (nearly) straight, a person either places the
  foot a little closer (early stance) or lifts the heel earlier (late stance). Pass 1 gives the hip
  paths; each stance is then moved back by the least distance that keeps early stance reachable,
  and gets the least extra heel rise (pitch about the ball, kept monotone) that keeps late stance
  reachable. Swings are rebuilt between the adapted stances, so the feet stay C1/C2-continuous.
  """
  from data_prep.synthetic.kinematics import forward_kinematics, knee_reach  # local: no cycle
  body = subject.body
  _set_feet(plan, stances, clear_fn, body, t, reach_range)
  kin = forward_kinematics(plan, body)
  # Freeze the CoM height found in pass 1: re-solving it after moving feet would undo the
  # adaptation (the hips would rise into the freed reach).
  plan.com_target[:, 2] += float(np.median(kin.body_com[:, 2] - plan.com_target[:, 2]))
  plan.solve_height = False
  d_max = knee_reach(body, straight_knee_deg * D2R)
  n_moved, n_rise = 0, 0
  for rnd in range(rounds):
    if rnd:
      _set_feet(plan, stances, clear_fn, body, t, reach_range)
      kin = forward_kinematics(plan, body)
    for side, sts in stances.items():
      hip = kin.joints[f'{side}_hip']
      for st in sts:
        i0, i1 = _stance_samples(st, t)
        if i1 - i0 < 3:
          continue
        tt = t[i0:i1]
        s = (tt - st.c.t0) / (st.c.t1 - st.c.t0)
        v = hip[i0:i1] - st.ankle(tt)
        early = (s < st.s_flat) & (np.linalg.norm(v, axis=-1) > d_max)
        if early.any():
          vf = v[early] @ st.fwd
          rest = np.sum(v[early] ** 2, -1) - vf ** 2
          back = float(np.max(-np.sqrt(np.maximum(d_max ** 2 - rest, 0.0)) - vf))
          if back > 0:
            st.move_back(back)
            n_moved += 1
            v = hip[i0:i1] - st.ankle(tt)
        late = (s >= st.s_flat) & (np.linalg.norm(v, axis=-1) > d_max)
        if late.any():
          # Earlier heel-off (same smooth rocker shape): the least change that keeps the
          # loaded leg within reach; per-sample corrections would put kinks into the foot path.
          for s_ho in np.arange(st.s_ho - 0.03, st.s_flat + 0.019, -0.03):
            st.s_ho = float(s_ho)
            v = hip[i0:i1] - st.ankle(tt)
            if np.all(np.linalg.norm(v[s >= st.s_flat], axis=-1) <= d_max):
              break
          n_rise += 1
  _set_feet(plan, stances, clear_fn, body, t, reach_range)
  _pull_swing_into_reach(plan, kin, body)
  plan.info.update({'n_steps_moved_back': n_moved, 'n_heel_rise_adapted': n_rise})
  return plan


def _pull_swing_into_reach(plan: MotionPlan, kin, body, sigma_s: float = 0.015) -> None:
  """Bends swing-foot paths that leave the leg's reach back inside it, smoothly.

  Early swing can start beyond what a nearly straight leg reaches from the (estimated) hip.
  Leaving that to the IK's saturation makes the knee swing through the two-link singularity in a
  few milliseconds (acceleration spikes of hundreds of m/s^2); instead the path is pulled towards
  the hip with a wide soft limit and the pull is Gaussian-smoothed (sigma 15 ms).
  """
  from scipy.ndimage import gaussian_filter1d

  from data_prep.synthetic.kinematics import soft_reach  # local: no import cycle
  lt, ls = body.length['thigh'], body.length['shank']
  for side in plan.ankle:
    hip = kin.joints[f'{side}_hip']
    v = plan.ankle[side] - hip
    d = np.linalg.norm(v, axis=-1)
    d_soft = soft_reach(d, lt, ls, knee_lo_deg=40.0, knee_min_deg=12.0)
    pull = v * (d_soft / np.maximum(d, 1e-9) - 1.0)[:, None]
    pull[plan.contact[side]] = 0.0
    plan.ankle[side] = plan.ankle[side] + gaussian_filter1d(pull, sigma_s / plan.dt, axis=0)


# ------------------------------------------------------------------------------------------------
# Non-gait activities (pre-training corpus only: no labels are derived from them).


def _standing_feet(body, n, width, stagger=0.0):
  h_a = body.length['ankle_height']
  ankle = {'r': np.tile([width / 2, stagger / 2, h_a], (n, 1)),
           'l': np.tile([-width / 2, -stagger / 2, h_a], (n, 1))}
  zeros = np.zeros(n)
  return ankle, {'r': zeros.copy(), 'l': zeros.copy()}, {'r': zeros.copy(), 'l': zeros.copy()}


def _stand_pelvis_height(body, width, knee_deg=3.0):
  lt, ls = body.length['thigh'], body.length['shank']
  d = np.sqrt(lt ** 2 + ls ** 2 + 2 * lt * ls * np.cos(knee_deg * D2R))
  horiz = abs(width / 2 - body.length['hip_half_width'])
  return body.length['ankle_height'] + np.sqrt(d ** 2 - horiz ** 2)


def _rest_arms(n, rng, dt, fidget=1.5):
  arms = {}
  for side in ('r', 'l'):
    base = np.array([0.0, 6.0, 10.0, 12.0, 5.0]) * D2R
    arms[side] = base + smooth_noise(rng, n, dt, 0.4, fidget * D2R, dims=5)
  return arms


def _posture(n, rng, dt, tr, lean_extra=None):
  pel = np.stack([np.full(n, tr['pelvis_tilt_deg'] * D2R), np.zeros(n), np.zeros(n)], -1)
  pel += smooth_noise(rng, n, dt, 0.3, 1.0 * D2R, dims=3)
  trunk = np.stack([np.full(n, tr['trunk_lean_deg'] * 0.5 * D2R), np.zeros(n), np.zeros(n)], -1)
  trunk += smooth_noise(rng, n, dt, 0.3, 1.5 * D2R, dims=3)
  if lean_extra is not None:
    trunk[:, 0] += lean_extra
  head = smooth_noise(rng, n, dt, 0.3, 1.5 * D2R, dims=3)
  return pel, trunk, head


def standing_plan(subject: Subject, duration_s: float, fs: float, rng) -> MotionPlan:
  """Quiet standing with postural sway (a few mm, < 1 Hz) and small arm fidgets."""
  body, tr = subject.body, subject.traits
  n, dt = int(round(duration_s * fs)), 1.0 / fs
  width = 0.2 * body.height_m / 1.75
  ankle, pitch, yaw = _standing_feet(body, n, width)
  z = _stand_pelvis_height(body, width)
  sway = smooth_noise(rng, n, dt, 0.6, 0.004, dims=3)
  pelvis = np.array([0.0, 0.02, z]) + sway * np.array([1.0, 1.0, 0.2])
  pel, trunk, head = _posture(n, rng, dt, tr)
  return MotionPlan(name='stand', dt=dt, heading=np.zeros(n), pelvis_ang=pel, trunk_ang=trunk,
                    head_ang=head, arm_ang=_rest_arms(n, rng, dt), ankle=ankle, foot_pitch=pitch,
                    foot_yaw=yaw, pelvis_pos=pelvis)


def squat_plan(subject: Subject, duration_s: float, fs: float, rng) -> MotionPlan:
  """Repeated squats: feet fixed, knee flexion to 70-110 deg, trunk leans, arms reach forward."""
  body, tr = subject.body, subject.traits
  n, dt = int(round(duration_s * fs)), 1.0 / fs
  t = np.arange(n) * dt
  width = 0.3 * body.height_m / 1.75
  ankle, pitch, yaw = _standing_feet(body, n, width)
  period = rng.uniform(2.0, 3.2)
  depth = rng.uniform(70, 110) * D2R * tr['movement_vigour']
  kappa = 3 * D2R + depth * 0.5 * (1 - np.cos(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)))
  beta = 0.42 * kappa                          # shank forward inclination (ankle dorsiflexion)
  lt, ls = body.length['thigh'], body.length['shank']
  hip_y = ls * np.sin(beta) - lt * np.sin(kappa - beta)
  hip_z = body.length['ankle_height'] + ls * np.cos(beta) + lt * np.cos(kappa - beta)
  pelvis = np.stack([np.zeros(n), hip_y, hip_z], -1)
  pelvis[:, 2] -= 1e-3  # stay just inside reach
  pel, trunk, head = _posture(n, rng, dt, tr, lean_extra=0.5 * kappa)
  pel[:, 0] += 0.25 * kappa
  head[:, 0] -= 0.3 * kappa
  arms = _rest_arms(n, rng, dt)
  for side in arms:
    arms[side][:, 0] += 0.9 * kappa
    arms[side][:, 3] += 0.2 * kappa
  return MotionPlan(name='squat', dt=dt, heading=np.zeros(n), pelvis_ang=pel, trunk_ang=trunk,
                    head_ang=head, arm_ang=arms, ankle=ankle, foot_pitch=pitch, foot_yaw=yaw,
                    pelvis_pos=pelvis)


def arm_wave_plan(subject: Subject, duration_s: float, fs: float, rng) -> MotionPlan:
  """Standing and waving one or both raised arms at 1.5-2.5 Hz."""
  plan = standing_plan(subject, duration_s, fs, rng)
  t = np.arange(plan.n) * plan.dt
  f = rng.uniform(1.5, 2.5)
  both = rng.random() < 0.4
  for side in (('r', 'l') if both else (rng.choice(['r', 'l']),)):
    ph = 2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)
    raise_ = dyn.smooth5(t / 0.8) * dyn.smooth5((t[-1] - t) / 0.8)
    amp = rng.uniform(15, 30) * D2R * subject.traits['movement_vigour']
    a = plan.arm_ang[side]
    a[:, 1] += raise_ * (rng.uniform(110, 150) * D2R + amp * np.sin(ph))
    a[:, 3] += raise_ * (rng.uniform(20, 50) * D2R + 0.8 * amp * np.sin(ph + 0.6))
  return _renamed(plan, 'arm_wave')


def _renamed(plan: MotionPlan, name: str) -> MotionPlan:
  plan.name = name
  return plan


def throw_plan(subject: Subject, duration_s: float, fs: float, rng) -> MotionPlan:
  """Repeated overarm throws: trunk rotation, shoulder wind-up and a fast internal rotation."""
  plan = standing_plan(subject, duration_s, fs, rng)
  n, dt = plan.n, plan.dt
  t = np.arange(n) * dt
  period = rng.uniform(2.4, 3.4)
  side = 'r' if rng.random() < 0.85 else 'l'
  sgn = 1.0 if side == 'r' else -1.0
  vig = subject.traits['movement_vigour']
  ph = ((t + rng.uniform(0, period)) % period) / period
  cock = dyn.smooth5(ph / 0.45) - dyn.smooth5((ph - 0.8) / 0.2)         # wind-up then rest
  fire_dur = rng.uniform(0.05, 0.08) / 1.0 * (1.0 / vig)
  fire = dyn.smooth5((ph - 0.55) / (fire_dur * 3 / period)) - dyn.smooth5((ph - 0.8) / 0.2)
  a = plan.arm_ang[side]
  a[:, 1] += cock * 85 * D2R
  a[:, 2] += (-cock * rng.uniform(70, 100) + fire * rng.uniform(100, 140)) * D2R
  a[:, 3] += (cock * 80 - fire * 70) * D2R
  plan.trunk_ang[:, 2] += sgn * (-cock * 35 + fire * 70) * D2R * vig
  plan.trunk_ang[:, 0] += fire * 20 * D2R
  plan.pelvis_ang[:, 2] += sgn * (-cock * 15 + fire * 30) * D2R
  plan.arm_ang['l' if side == 'r' else 'r'][:, 0] += cock * 60 * D2R - fire * 40 * D2R
  return _renamed(plan, 'throw')


def kick_plan(subject: Subject, duration_s: float, fs: float, rng) -> MotionPlan:
  """Standing on one leg and kicking with the other: wind-up, fast swing, return."""
  body, tr = subject.body, subject.traits
  n, dt = int(round(duration_s * fs)), 1.0 / fs
  t = np.arange(n) * dt
  side = 'r' if rng.random() < 0.8 else 'l'
  sgn = 1.0 if side == 'r' else -1.0
  width = 0.18 * body.height_m / 1.75
  ankle, pitch, yaw = _standing_feet(body, n, width)
  period = rng.uniform(1.8, 2.6)
  ph = ((t + rng.uniform(0, period)) % period) / period
  vig = tr['movement_vigour']
  wind = dyn.smooth5(ph / 0.3) - dyn.smooth5((ph - 0.3) / 0.08)
  swing = dyn.smooth5((ph - 0.3) / (0.1 / vig)) - dyn.smooth5((ph - 0.55) / 0.35)
  hip_flex = (-20 * wind + rng.uniform(55, 80) * swing) * D2R
  knee = (5 + 85 * wind + 30 * (1 - swing) * (ph > 0.3) * (ph < 0.5)) * D2R
  pelvis_shift = -sgn * body.length['hip_half_width'] * 0.8
  z = _stand_pelvis_height(body, width, knee_deg=6.0)
  pelvis = np.stack([np.full(n, pelvis_shift), np.full(n, 0.0), np.full(n, z)], -1)
  pelvis += smooth_noise(rng, n, dt, 0.8, 0.006, dims=3) * np.array([1, 1, 0.3])
  hip = pelvis + np.array([sgn * body.length['hip_half_width'], 0, 0])
  lt, ls = body.length['thigh'], body.length['shank']
  ky = lt * np.sin(hip_flex)
  kz = -lt * np.cos(hip_flex)
  ay = ky + ls * np.sin(hip_flex - knee)
  az = kz - ls * np.cos(hip_flex - knee)
  ankle[side] = hip + np.stack([np.zeros(n), ay, az], -1) * 0.999
  floor = body.length['ankle_height'] + 0.02
  ankle[side][:, 2] = np.maximum(ankle[side][:, 2], floor)
  pitch[side] = -(25 * swing + 30 * wind) * D2R
  pel, trunk, head = _posture(n, rng, dt, tr, lean_extra=-10 * D2R * swing)
  arms = _rest_arms(n, rng, dt)
  other = 'l' if side == 'r' else 'r'
  arms[other][:, 0] += 40 * D2R * swing
  arms[other][:, 1] += 25 * D2R
  arms[side][:, 0] -= 30 * D2R * swing
  return MotionPlan(name='kick', dt=dt, heading=np.zeros(n), pelvis_ang=pel, trunk_ang=trunk,
                    head_ang=head, arm_ang=arms, ankle=ankle, foot_pitch=pitch, foot_yaw=yaw,
                    pelvis_pos=pelvis)


def hop_plan(subject: Subject, duration_s: float, fs: float, rng, jacks: bool = False
             ) -> MotionPlan:
  """Two-footed hopping in place (or jumping jacks), force-first like running: ballistic flights."""
  body, tr = subject.body, subject.traits
  W, M = body.weight_n, body.mass_kg
  n, dt = int(round(duration_s * fs)), 1.0 / fs
  t = np.arange(n) * dt
  period = rng.uniform(0.45, 0.6) if not jacks else rng.uniform(0.5, 0.65)
  duty = rng.uniform(0.45, 0.6)
  t_first = -period * rng.uniform(1.0, 2.0)
  starts = np.arange(t_first, duration_s + 2 * period, period)
  starts = starts + rng.normal(0, 0.01, len(starts))
  contacts = []
  for i, t0 in enumerate(starts[:-1]):
    tc = duty * period * rng.normal(1.0, 0.03)
    for side in ('r', 'l'):
      contacts.append(dyn.Contact(
          side=side, t0=t0, t1=t0 + tc, impulse=0.5 * W * (starts[i + 1] - t0), kind='hop',
          shape=(2.0, 2.0), m_eff=0.5 * tr['impact_mass_frac'] * M, v_td=0.5, tau=0.06,
          ap_bw=0.0, ml_bw=0.02, load_share=0.5))
  dyn.balance_impulses(t, contacts, W, M)
  grf, _, mask = dyn.contact_forces(t, contacts, W)
  com = dyn.com_from_force(grf['r'] + grf['l'], M, dt, np.zeros(3))
  com[:, 2] += 0.55 * body.height_m
  stances = {'r': [], 'l': []}
  for k, c in enumerate(contacts):
    sgn = 1.0 if c.side == 'r' else -1.0
    wide = jacks and (k // 2) % 2 == 1
    half_w = (0.28 if wide else 0.09) * body.height_m / 1.75
    yaw = -sgn * 6 * D2R
    ball = np.array([sgn * half_w, 0.06, 0.0])
    heel = ball - body.length['heel_to_ball'] * _yaw_dir(yaw)
    stances[c.side].append(_Stance(c, heel, yaw, body, (-15 * D2R, 0.3, 0.62, -35 * D2R),
                                   (0.7, 0.8), sgn))
  rise = float(np.ptp(com[:, 2])) + 0.02
  pel, trunk, head = _posture(n, rng, dt, tr)
  arms = _rest_arms(n, rng, dt)
  hop_ph = 2 * np.pi * (t - starts[0]) / period
  if jacks:
    up = 0.5 * (1 - np.cos(hop_ph / 2 + np.pi))  # alternates every hop
    for side in arms:
      arms[side][:, 1] += up * rng.uniform(120, 150) * D2R
  else:
    for side in arms:
      arms[side][:, 0] += 25 * D2R * (1 - np.cos(hop_ph)) / 2
  plan = MotionPlan(name='jumping_jacks' if jacks else 'hop', dt=dt, heading=np.zeros(n),
                    pelvis_ang=pel, trunk_ang=trunk, head_ang=head, arm_ang=arms, ankle={},
                    foot_pitch={}, foot_yaw={'r': np.full(n, -6 * D2R), 'l': np.full(n, 6 * D2R)},
                    com_target=com, contact=mask, min_knee_flex=12 * D2R, grf=grf)
  return _adapted_plan(plan, stances, lambda s, a, b: rise * bump(s, 3, 3), subject, t,
                       (0.0, 0.08))


def turn_plan(subject: Subject, duration_s: float, fs: float, rng) -> MotionPlan:
  """Slow walking along a curve (40-90 deg/s): the straight gait bent by a rigid planar turn.

  The bending is applied to the finished poses, so the feet slide a little during stance and
  the GRF of the straight plan no longer matches; the plan drops its forces.
  """
  speed = rng.uniform(0.7, 1.1)
  plan = gait_plan(subject, 'walk', speed, duration_s, fs, rng)
  t = np.arange(plan.n) * plan.dt
  rate = rng.choice([-1.0, 1.0]) * rng.uniform(40, 90) * D2R
  yaw = rate * (t - t[-1] / 2)
  path = np.stack([-np.cumsum(np.sin(yaw)), np.cumsum(np.cos(yaw)), np.zeros_like(yaw)], -1)
  path *= speed * plan.dt
  straight = np.stack([np.zeros_like(t), speed * t, np.zeros_like(t)], -1)
  rz = rot_z(yaw)
  plan.world_yaw = yaw
  plan.world_shift = path - np.einsum('tij,tj->ti', rz, straight)
  plan.name, plan.grf, plan.cop = 'turn', None, None
  return plan


ACTIVITIES: dict[str, Callable] = {
    'stand': standing_plan,
    'walk_slow': lambda s, d, fs, rng: gait_plan(s, 'walk', rng.uniform(0.8, 1.1), d, fs, rng),
    'walk': lambda s, d, fs, rng: gait_plan(s, 'walk', rng.uniform(1.1, 1.5), d, fs, rng),
    'walk_fast': lambda s, d, fs, rng: gait_plan(s, 'walk', rng.uniform(1.5, 1.8), d, fs, rng),
    'jog': lambda s, d, fs, rng: gait_plan(s, 'run', rng.uniform(2.2, 3.2), d, fs, rng),
    'run': lambda s, d, fs, rng: gait_plan(s, 'run', rng.uniform(3.2, 4.5), d, fs, rng),
    'hop': hop_plan,
    'jumping_jacks': lambda s, d, fs, rng: hop_plan(s, d, fs, rng, jacks=True),
    'squat': squat_plan,
    'kick': kick_plan,
    'arm_wave': arm_wave_plan,
    'throw': throw_plan,
    'turn': turn_plan,
}
