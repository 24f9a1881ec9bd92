"""Motion plans: gait (walking, running) and non-gait MoVi-style activities.

Running (and hopping) is force-first. Contact timing (cadence, contact time) follows speed
through normative relations with subject traits on top; each contact's vertical force follows
``dynamics``; the CoM follows from the force; each foot is placed ahead of the CoM, rolls over
heel / forefoot rockers during stance (a pitch template, pivoting about the heel while toe-up and
about the ball while heel-up), and swings to its next contact along a C2 quintic path with
clearance. The legs are then solved by IK and the pelvis so that the whole-body CoM follows the
force (``kinematics.forward_kinematics``).

Walking is kinematics-first in the vertical (``_walking_plan``): the duty factor follows from the
step length and the foot's roll, each heel lands a fraction of the step ahead of the hip, the
pelvis height comes from the stance legs (knees on a normative stance curve, smooth hand-overs in
double support, excursion as measured), pre-swing rolls onto the toes, swings follow normative
thigh and knee curves in joint space, and the vertical GRF is derived from the resulting CoM,
F = m (z'' + g). Upper-body angles are smooth periodic templates in the gait phase (Fourier terms
approximating the normative curves of Winter 2009 / Perry 1992 in sign, timing and amplitude).

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
    self.l_t = self.l_f - self.l_b   # toes, ball to toe tip
    self.toe_to = 0.0                # toe angle at toe-off (rad): pre-swing MTP pivot (walking)
    self.s_mtp = 0.75                # stance fraction where the ball starts to lift
    self.pre: tuple | None = None           # pre-swing heel rise (see _preswing_heel_rise)

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
    if self.pre is not None:   # pre-swing heel rise: sum_k c_k x^k, x = 0 at s_c, 1 at toe-off
      s_c, coef = self.pre
      x = np.clip(((tt - self.c.t0) / (self.c.t1 - self.c.t0) - s_c) / (1 - s_c), 0, None)
      th = th + sum(ck * x ** k for k, ck in coef)
    return th

  def heel_rise_for_reach(self, tt: np.ndarray, hip: np.ndarray, d_max, near: np.ndarray
                          ) -> np.ndarray:
    """Pitch (rad) about the ball, nearest to ``near``, putting the ankle d_max from ``hip``.

    The ankle circles the ball at radius r in the foot's sagittal plane; solving
    |hip - ball - v(theta)| = d_max gives A cos(theta) + B sin(theta) = C, two roots.
    """
    a_, h_a = self.l_h - self.l_b, self.h_a
    w = hip - self._ball(tt) + self._drop(tt)[:, None] * np.array([0.0, 0.0, 1.0])
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

  def _ball(self, tt: np.ndarray) -> np.ndarray:
    """Ball of the foot [T,3]; in pre-swing it lifts as the toes roll about their tip."""
    ball = np.broadcast_to(self.ball, (len(tt), 3))
    if self.toe_to:
      u = (tt - self.c.t0) / (self.c.t1 - self.c.t0)
      phi = self.toe_to * np.clip((u - self.s_mtp) / (1 - self.s_mtp), 0, None) ** 2
      ball = ball + (self.l_t * (1 - np.cos(phi)))[:, None] * self.fwd
      ball = ball + (self.l_t * np.sin(phi))[:, None] * np.array([0.0, 0.0, 1.0])
    return ball

  def _drop(self, tt: np.ndarray) -> np.ndarray:
    """Heel-pad compression after touchdown (m): stops the foot at v_td within tau."""
    x = np.clip((tt - self.c.t0) / self.c.tau, 0.0, 1.0)
    return self.c.v_td * self.c.tau * (x - x ** 3 + 0.5 * x ** 4)

  def ankle(self, tt: np.ndarray) -> np.ndarray:
    th = self.pitch(tt)
    c, s = np.cos(th), np.sin(th)
    heel_up = th > 0   # toe up: pivot on the heel, else on the ball
    base = np.where(heel_up[:, None], self.heel, self._ball(tt))
    fy = np.where(heel_up, self.l_h, self.l_h - self.l_b)   # ankle offset from the pivot
    along = fy * c - self.h_a * s                            # R_z(yaw) R_x(pitch) (0, fy, h_a)
    up = fy * s + self.h_a * c
    a = base + along[:, None] * self.fwd + up[:, None] * np.array([0.0, 0.0, 1.0])
    a[:, 2] -= self._drop(tt)
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
                       body, swings: bool = True) -> tuple[dict, dict, dict]:
  """Ankle [T,3], pitch [T], CoP [T,3] per side: stance rockers joined by quintic swings
  (``swings=False``: stances only, for callers that build the swings themselves)."""
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
      if k + 1 == len(sts) or not swings:
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
    # The stance foot stays down while the hip travels one step length plus the ankle's own
    # forward roll over the heel, ball and toes: duty = 1/2 + roll / (2 * step length).
    roll = tr['stance_roll_frac'] * body.length['heel_to_ball']
    duty = float(np.clip(0.5 + roll / (2 * step_len) * trial(0.03), 0.55, 0.7))
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
  if mode == 'walk':  # the ankle lands a fraction of the step ahead of the hip (see below)
    th = tr['heel_strike_pitch_deg'] * D2R
    heel_back = body.length['heel_to_ankle'] * np.cos(th) - body.length['ankle_height'] * np.sin(th)
    ahead = tr['hs_ahead_step_frac'] * step_len - heel_back
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
    st = _Stance(c, heel, yaw, body, pitch_p, cop_p, sgn)
    if mode == 'walk':
      st.toe_to = 50.0 * D2R
    stances[c.side].append(st)
  clear = tr['swing_clearance_m'] * (1.0 if mode == 'walk' else 2.2 * (speed / 3.0))
  ab = (2.0, 4.5) if mode == 'walk' else (3.0, 4.5)
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
  if mode == 'walk':
    return _walking_plan(plan, stances, clear_fn, subject, t, reach_range)
  return _adapted_plan(plan, stances, clear_fn, subject, t, reach_range)


def _stance_samples(st: _Stance, t: np.ndarray) -> tuple[int, int]:
  dt = float(t[1] - t[0])
  i0 = max(0, int(np.ceil((st.c.t0 - t[0]) / dt - 1e-9)))
  i1 = min(len(t), int(np.ceil((st.c.t1 - t[0]) / dt - 1e-9)))
  return i0, i1


def _set_feet(plan: MotionPlan, stances, clear_fn, body, t, reach_range, swings: bool = True
              ) -> None:
  plan.ankle, plan.foot_pitch, plan.cop = _feet_from_stances(t, stances, clear_fn, body, swings)
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
        n_rise += _earlier_heel_off(st, hip[i0:i1], tt, d_max)
  _set_feet(plan, stances, clear_fn, body, t, reach_range)
  _pull_swing_into_reach(plan, kin, body)
  plan.info.update({'n_steps_moved_back': n_moved, 'n_heel_rise_adapted': n_rise})
  return plan


def _earlier_heel_off(st: _Stance, hip: np.ndarray, tt: np.ndarray, d_max: float) -> bool:
  """Moves heel-off earlier (same smooth rocker shape) until the late-stance ankle is in reach.

  The least change that keeps the loaded leg within ``d_max`` of ``hip``; per-sample corrections
  would put kinks into the foot path. Returns whether the stance was changed.
  """
  s = (tt - st.c.t0) / (st.c.t1 - st.c.t0)
  late = s >= st.s_flat
  if np.all(np.linalg.norm(hip[late] - st.ankle(tt)[late], axis=-1) <= d_max):
    return False
  for s_ho in np.arange(st.s_ho - 0.03, st.s_flat + 0.019, -0.03):
    st.s_ho = float(s_ho)
    if np.all(np.linalg.norm(hip[late] - st.ankle(tt)[late], axis=-1) <= d_max):
      break
  return True


def _preswing_heel_rise(st: _Stance, hip: np.ndarray, tt: np.ndarray, lt: float, ls: float,
                        knee_to: float, lowest: float = -70 * D2R) -> None:
  """Extra heel rise in pre-swing so the trailing knee flexes to ``knee_to`` at toe-off.

  From the other foot's heel strike (the contact's s2) the knee target grows from its current
  value like x^2 (rate highest at toe-off, as measured); the pitch about the ball that puts the
  ankle at the matching hip distance is solved per sample, and kept only where it raises the
  heel further than the template. Stored as the stance's pitch correction.
  """
  s = (tt - st.c.t0) / (st.c.t1 - st.c.t0)
  s_c = st.c.shape[4]
  pre = s >= s_c
  if pre.sum() < 3:
    return
  ank = st.ankle(tt)
  d = np.linalg.norm(hip - ank, axis=-1)
  knee_now = np.arccos(np.clip((d ** 2 - lt ** 2 - ls ** 2) / (2 * lt * ls), -1.0, 1.0))
  k_c = float(knee_now[pre][0])
  if knee_to <= k_c:
    return
  x = (s[pre] - s_c) / (1 - s_c)
  k = k_c + (knee_to - k_c) * x ** 2
  d_t = np.sqrt(lt ** 2 + ls ** 2 + 2 * lt * ls * np.cos(k))
  base = st.template_pitch(tt[pre])
  th = st.heel_rise_for_reach(tt[pre], hip[pre], d_t, base)
  th = np.clip(np.minimum(th, base), lowest, None)
  # One smooth term A x^3 (C2 at s_c, defined past toe-off too), least squares, bounded so the
  # pitch at toe-off stays above ``lowest`` (beyond, the ankle would sink again about the ball).
  amp = float(np.sum(x ** 3 * (th - base)) / np.sum(x ** 6))
  amp = float(np.clip(amp, lowest - st.template_pitch(np.array([st.c.t1]))[0], 0.0))
  st.pre = (s_c, ((3, amp),))


def _stance_knee_curve(tr: dict, speed: float):
  """Normative stance knee flexion (rad) as a function of stance fraction s: heel strike,
  loading-response peak, mid-stance extension (Winter 2009 / Perry 1992, speed-scaled)."""
  from scipy.interpolate import PchipInterpolator
  k_lr = tr['lr_knee_deg'] * (0.6 + 0.4 * speed / 1.3)
  curve = PchipInterpolator([0.0, 0.2, 0.55, 1.0],
                            np.deg2rad([tr['hs_knee_deg'], k_lr, tr['min_knee_flex_deg_walk'],
                                        tr['min_knee_flex_deg_walk']]))
  return lambda s: curve(np.clip(s, 0.0, 1.0))


def _walking_plan(plan: MotionPlan, stances, clear_fn, subject: Subject, t, reach_range,
                  rounds: int = 1, cutoff_steps: float = 1.3, trans_steps: float = 1.0,
                  z_cutoff_steps: float = 1.0, impact_s: float = 0.02, com_hz: float = 12.0
                  ) -> MotionPlan:
  """Walking, kinematics-first: the pelvis path is fitted to the legs, the vGRF derived last.

  The force-first pass gives the horizontal CoM target (AP / ML forces), the hip offsets and the
  contacts' load profiles. Then, for ``rounds``: the pelvis height comes from the stance legs
  (``_pelvis_height``: knees on the normative stance curve, hand-overs in double support,
  low-passed at ``z_cutoff_steps`` x the step frequency); pre-swing raises the trailing heel
  so its knee flexes towards toe-off; swings are rebuilt in joint space; the horizontal pelvis
  path is nudged (low-passed at ``cutoff_steps`` x the step frequency) so the whole-body CoM
  follows the target. Finally the pelvis follows the CoM target exactly (mm from that path),
  the vertical force is F = m (z_com'' + g) and is split between the feet (slow part by the
  load profiles, the heel-strike transient of ``impact_s`` to the landing foot).
  """
  from scipy import ndimage, signal

  from data_prep.synthetic.kinematics import forward_kinematics, second_derivative
  body, tr = subject.body, subject.traits
  speed = plan.info['speed']
  n, dt = len(t), plan.dt
  lt, ls = body.length['thigh'], body.length['shank']
  _set_feet(plan, stances, clear_fn, body, t, reach_range)
  # A first pose (no CoM solve): the pelvis a little below the force-first CoM.
  target = plan.com_target
  plan.com_target, plan.pelvis_pos = None, target - np.array([0.0, 0.0, 0.03 * body.height_m])
  kin = forward_kinematics(plan, body)
  # The feet were placed relative to the CoM; the leg angle at heel strike is about the hip,
  # which trails the CoM by the trunk's lean: shift every stance by the mean offset.
  lead = []
  for side, sts in stances.items():
    for st in sts:
      i0, i1 = _stance_samples(st, t)
      if i1 > i0:
        lead.append(float((kin.body_com[i0] - kin.joints[f'{side}_hip'][i0]) @ st.fwd))
  for sts in stances.values():
    for st in sts:
      st.move_back(float(np.median(lead)))
  b, a = signal.butter(2, cutoff_steps / plan.info['step_time_s'] * 2 * dt)
  lowpass = lambda x: signal.filtfilt(b, a, x, axis=0)
  bz, az = signal.butter(2, z_cutoff_steps / plan.info['step_time_s'] * 2 * dt)
  lowpass_z = lambda x: signal.filtfilt(bz, az, x)
  target_xy = target[:, :2].copy()
  pelvis = kin.origin['pelvis'].copy()
  pelvis[:, :2] += lowpass(target_xy - kin.body_com[:, :2])
  off = {s: kin.joints[f'{s}_hip'] - kin.origin['pelvis'] for s in stances}
  f_old = {s: plan.grf[s][:, 2].copy() for s in stances}
  tot = f_old['r'] + f_old['l']
  share = {s: np.where(tot > 0, f_old[s] / np.maximum(tot, 1e-9), 0.0) for s in stances}
  for rnd in range(rounds):
    if rnd:   # nudge the horizontal pelvis path so the whole-body CoM follows the target
      pelvis[:, :2] += lowpass(target_xy - kin.body_com[:, :2])
    pelvis[:, 2] = _pelvis_height(plan, stances, t, pelvis, off, body, tr, speed,
                                  trans_steps * plan.info['step_time_s'], lowpass_z)
    for side, sts in stances.items():
      hip = pelvis + off[side]
      for st in sts:
        i0, i1 = _stance_samples(st, t)
        if i1 - i0 >= 3:
          st.pre = None
          _preswing_heel_rise(st, hip[i0:i1], t[i0:i1], lt, ls, tr['toe_off_knee_deg'] * D2R)
    _set_feet(plan, stances, clear_fn, body, t, reach_range, swings=False)
    _joint_space_swings(plan, stances, t, pelvis, off, body, tr, speed)
    plan.pelvis_pos = pelvis.copy()
    kin = forward_kinematics(plan, body)
  # The swings hang from the hips: rebuild them about the nudged horizontal path the final solve
  # will (nearly) reproduce, so that solve moves the hips by millimetres only.
  pelvis[:, :2] += lowpass(target_xy - kin.body_com[:, :2])
  _joint_space_swings(plan, stances, t, pelvis, off, body, tr, speed)
  # Last, the pelvis follows the CoM target exactly: the horizontal forces stay the force-first
  # ones, the vertical one is m (z'' + g) of the legs' geometry.
  # The CoM height is the legs' one below ``com_hz`` (the pelvis absorbs the millimetre-level,
  # high-frequency remainder of the leg motion, as the trunk does).
  bh, ah = signal.butter(2, min(com_hz * 2 * dt, 0.9))
  plan.pelvis_pos = None
  plan.com_target = np.column_stack([target_xy, signal.filtfilt(bh, ah, kin.body_com[:, 2])])
  plan.solve_height = False
  kin = forward_kinematics(plan, body)
  plan.info['_final_kin'] = (body, kin)   # the plan is final: simulate() reuses these poses
  fz = body.mass_kg * (second_derivative(kin.body_com[:, 2], dt) + dyn.G)
  # Split between the feet: the slow part of the force in proportion to the force-first
  # contact profiles (the double-support hand-over), the fast part (the heel-strike transient,
  # the deceleration of the landing leg) to the foot that just landed.
  fz_slow = ndimage.gaussian_filter1d(fz, impact_s / dt, mode='nearest')
  landing = {side: np.zeros(n, bool) for side in stances}
  for side, sts in stances.items():
    for st in sts:
      i0, i1 = _stance_samples(st, t)
      landing[side][i0:min(i1, i0 + int(round(3 * impact_s / dt)))] = True
  fast_to = np.where(landing['r'], 1.0, np.where(landing['l'], 0.0, share['r']))
  f = {'r': share['r'] * fz_slow + fast_to * (fz - fz_slow),
       'l': share['l'] * fz_slow + (1 - fast_to) * (fz - fz_slow)}
  f = {side: np.where(plan.contact[side], np.maximum(v, 0.0), 0.0) for side, v in f.items()}
  scale = np.maximum(fz, 0.0) / np.maximum(f['r'] + f['l'], 1e-9)   # the feet sum to m (z'' + g)
  for side in stances:
    plan.grf[side][:, 2] = f[side] * scale
  return plan


def _pelvis_height(plan: MotionPlan, stances, t, pelvis, off, body, tr, speed, trans_s: float,
                   lowpass, ds_centre: float = 0.5) -> np.ndarray:
  """Pelvis height [T] from the stance legs: each step belongs to the leg that landed last.

  Each loaded leg defines the pelvis height at which its knee follows the normative stance
  curve over its foot (``_stance_knee_curve``). The height hands over from one leg's curve to
  the next on quintics of ``trans_s`` centred in each double support (where measured vGRF
  peaks, shared by both feet), matching height, rate and acceleration at both ends. The result
  is low-passed (heel rocker and toe roll stay in the knees, not in the body), its excursion
  held to the measured one, and dented smoothly wherever it would over-stretch a loaded leg.
  """
  from scipy import ndimage
  lt, ls = body.length['thigh'], body.length['shank']
  n, dt = len(t), plan.dt
  knee_curve = _stance_knee_curve(tr, speed)
  pz = pelvis[:, 2]

  def path(side, st, tq):   # pelvis height at which this stance leg's knee is on the curve
    d2 = lt ** 2 + ls ** 2 + 2 * lt * ls * np.cos(knee_curve((tq - st.c.t0) / (st.c.t1 - st.c.t0)))
    hip = np.stack([np.interp(tq, t, pelvis[:, j] + off[side][:, j]) for j in range(3)], -1)
    ank = st.ankle(tq)
    h2 = np.sum((hip[:, :2] - ank[:, :2]) ** 2, -1)
    return ank[:, 2] + np.sqrt(np.maximum(d2 - h2, 0.25 * d2)) - hip[:, 2] + np.interp(tq, t, pz)

  owners = sorted(((st.c.t0, side, st) for side, sts in stances.items() for st in sts),
                  key=lambda x: x[0])
  h = 0.004
  z, limit = np.full(n, np.nan), np.full(n, np.inf)
  for k, (t0, side, st) in enumerate(owners):
    t_end = owners[k + 1][0] if k + 1 < len(owners) else t[-1] + dt
    sel = (t >= t0) & (t < t_end)
    if sel.any():
      limit[sel] = path(side, st, t[sel])
  centres = [owners[k + 1][0] + ds_centre * max(owners[k][2].c.t1 - owners[k + 1][0], 0.0)
             for k in range(len(owners) - 1)]
  # Hand-overs may not overlap (steps vary): at most 95 % of the shortest spacing.
  trans_s = min(trans_s, 0.95 * float(np.min(np.diff(centres)))) if len(centres) > 1 else trans_s
  half = 0.5 * trans_s
  for k, (t0, side, st) in enumerate(owners):   # between hand-overs: the owner's own curve
    lo_t = centres[k - 1] + half if k else t0
    hi_t = centres[k] - half if k < len(centres) else t[-1] + dt
    sel = (t >= lo_t) & (t < hi_t)
    if sel.any():
      z[sel] = path(side, st, t[sel])
  for k, tc in enumerate(centres):
    (_, side, st), (_, side_b, st_b) = owners[k], owners[k + 1]
    sel = (t >= tc - half) & (t < tc + half)
    if not sel.any():
      continue
    za = path(side, st, tc - half + np.array([-h, 0.0, h]))
    zb = path(side_b, st_b, tc + half + np.array([-h, 0.0, h]))
    ends = [(x[1], (x[2] - x[0]) / (2 * h), (x[2] - 2 * x[1] + x[0]) / h ** 2) for x in (za, zb)]
    u = (t[sel] - (tc - half)) / trans_s
    z[sel] = hermite5(*(np.array([v]) for v in ends[0]), *(np.array([v]) for v in ends[1]),
                      u, trans_s)[:, 0]
  ok = np.flatnonzero(np.isfinite(z))
  z = np.interp(np.arange(n), ok, z[ok])   # trial edges: hold
  z = lowpass(z)
  # People lower mid-stance (knees a little more flexed) rather than vault as high as straight
  # legs allow: the excursion is held to the measured one (Orendurff et al. 2004: 2.7 cm at
  # 0.7 m/s to 4.8 cm at 1.6 m/s, linear between), keeping the double-support lows.
  step_n = max(3, int(round(plan.info['step_time_s'] / dt)))
  lo = ndimage.gaussian_filter1d(ndimage.minimum_filter1d(z, step_n), step_n / 4, mode='nearest')
  hi = ndimage.gaussian_filter1d(ndimage.maximum_filter1d(z, step_n), step_n / 4, mode='nearest')
  exc = float(np.clip(0.027 + 0.0233 * (speed - 0.7), 0.02, 0.05)) * tr['com_excursion_factor']
  z = lo + np.minimum(1.0, exc / np.maximum(hi - lo, 1e-6)) * (z - lo)
  # Where that still over-stretches a loaded leg, a smooth dent takes the pelvis under.
  w = max(3, int(round(half / dt)))
  excess = ndimage.maximum_filter1d(np.maximum(z - limit, 0.0), w)
  return z - 1.2 * ndimage.gaussian_filter1d(excess, w / 3)


def _sagittal_angles(hip: np.ndarray, ankle: np.ndarray, fwd: np.ndarray, lt: float, ls: float):
  """Thigh angle from vertical (+ = knee ahead) and knee flexion of a two-link leg, sagittal.

  The ankle is first mapped as the IK maps it (``soft_reach``), so a swing built from these
  angles meets the stance exactly where the IK puts the stance foot.
  """
  from data_prep.synthetic.kinematics import soft_reach  # local: no import cycle
  v = ankle - hip
  d3 = np.linalg.norm(v, axis=-1, keepdims=True)
  v = v * soft_reach(d3, lt, ls) / np.maximum(d3, 1e-12)
  along, down = v @ fwd, -v[..., 2]
  d = np.hypot(along, down)
  knee = np.arccos(np.clip((d ** 2 - lt ** 2 - ls ** 2) / (2 * lt * ls), -1.0, 1.0))
  alpha = np.arccos(np.clip((lt ** 2 + d ** 2 - ls ** 2) / (2 * lt * d), -1.0, 1.0))
  return np.arctan2(along, down) + alpha, knee


# Normative swing curves (deg) on swing fraction u (62-100 % of the gait cycle), approximating
# Winter (2009) at natural cadence: knee flexion and thigh segment angle (+ = knee ahead).
SWING_U = (0.0, 0.08, 0.16, 0.26, 0.34, 0.42, 0.53, 0.61, 0.68, 0.76, 0.84, 0.92, 1.0)
SWING_KNEE_DEG = (38, 47, 55, 61, 62, 59, 50, 42, 32, 21, 12, 6, 4)
SWING_THIGH_DEG = (-8, -4, 1, 7, 13, 17, 21, 24, 26, 27, 27, 26, 25)


END_EPS = 1e-4
END_POINTS = np.array([0.0, END_EPS, 2 * END_EPS, 1 - 2 * END_EPS, 1 - END_EPS, 1.0])


def _with_end_states(u: np.ndarray, dur: float, desired, ends: tuple, width: float = 0.25,
                     width_end: float = 0.25) -> np.ndarray:
  """``desired`` (a C2 function of u with the right end values, or its values at
  ``concat(u, END_POINTS)``) bent to the end rates and accelerations
  ``ends = ((p0, v0, a0), (p1, v1, a1))`` (a1 None: rate only) within ``width`` /
  ``width_end`` of each end: quintic Hermite corrections that vanish with their rate and
  acceleration inside. Returns the bent curve at ``concat(u, END_POINTS)``."""
  (_, v0, a0), (_, v1, a1) = ends
  eps = END_EPS
  x = np.concatenate([u, END_POINTS])
  out = np.array(desired(x) if callable(desired) else desired, dtype=np.float64)
  e0, e1, e2, f2, f1, f0 = out[len(u):]
  dv0 = v0 - (e1 - e0) / (eps * dur)
  da0 = a0 - (e2 - 2 * e1 + e0) / (eps * dur) ** 2
  dv1 = v1 - (f0 - f1) / (eps * dur)
  da1 = 0.0 if a1 is None else a1 - (f0 - 2 * f1 + f2) / (eps * dur) ** 2
  z1 = np.zeros(1)
  head = x < width
  out[head] += hermite5(z1, np.array([dv0]), np.array([da0]), z1, z1, z1, x[head] / width,
                        width * dur)[:, 0]
  tail = x > 1 - width_end
  out[tail] += hermite5(z1, z1, z1, z1, np.array([dv1]), np.array([da1]),
                        (x[tail] - 1 + width_end) / width_end, width_end * dur)[:, 0]
  return out


def _joint_space_swings(plan: MotionPlan, stances, t, pelvis, off, body, tr, speed) -> None:
  """Walking swings built from thigh and knee angles instead of an ankle path.

  Each swing joins the toe-off and heel-strike states (angle, rate and acceleration from the
  stance feet and the hip path, so the legs stay C2 and the derived forces free of spikes) and
  otherwise follows the normative swing curves, stretched to those end angles; the knee's hump
  is scaled to the subject's ``swing_knee_peak_deg``. The foot pitch is fitted the same way to
  a dorsiflexion reaching the heel-strike angle by 55 % of the swing. The ankle follows by
  forward kinematics, so the knee never passes the two-link singularity.
  """
  from scipy.interpolate import CubicSpline

  from data_prep.synthetic.kinematics import soft_reach_inverse  # local: no import cycle
  lt, ls = body.length['thigh'], body.length['shank']
  dt, h = plan.dt, 0.003
  knee_n = CubicSpline(SWING_U, np.deg2rad(SWING_KNEE_DEG))
  thigh_n = CubicSpline(SWING_U, np.deg2rad(SWING_THIGH_DEG))
  hump = tr['swing_knee_peak_deg'] * (0.85 + 0.15 * speed / 1.3) / max(SWING_KNEE_DEG)
  ez = np.array([0.0, 0.0, 1.0])

  def shaped(curve, a, b, scale=1.0):   # the normative curve stretched to the end values
    n0, n1 = float(curve(0.0)), float(curve(1.0))
    return lambda u: a + (b - a) * u + scale * (curve(u) - n0 - (n1 - n0) * u)

  def states(x):   # value, rate, acceleration at the middle of three samples h apart
    return x[1], (x[2] - x[0]) / (2 * h), (x[2] - 2 * x[1] + x[0]) / h ** 2

  for side, sts in stances.items():
    hip_at = lambda tq, sd=side: np.stack(
        [np.interp(tq, t, pelvis[:, k] + off[sd][:, k]) for k in range(3)], -1)
    yaw = 0.5 * plan.foot_yaw[side][0]
    fwd = np.array([-np.sin(yaw), np.cos(yaw), 0.0])
    lat = np.cross(fwd, ez)
    for st, nxt in zip(sts[:-1], sts[1:], strict=True):
      j0 = max(0, int(np.ceil((st.c.t1 - t[0]) / dt - 1e-9)))
      j1 = min(len(t), int(np.ceil((nxt.c.t0 - t[0]) / dt - 1e-9)))
      if j1 <= j0:
        continue
      ta = st.c.t1 + np.array([-h, 0.0, h])     # stance formulas extend smoothly past t1 / t0
      tb = nxt.c.t0 + np.array([-h, 0.0, h])
      ank_a, ank_b = st.ankle(ta), nxt.ankle(tb)
      ank_b0 = ank_b[1].copy()
      ank_b[0, 2] += nxt.c.v_td * h   # the stance formula holds still before t0
      hip_a, hip_b = hip_at(ta), hip_at(tb)
      th_a, kn_a = _sagittal_angles(hip_a, ank_a, fwd, lt, ls)
      th_b, kn_b = _sagittal_angles(hip_b, ank_b, fwd, lt, ls)
      dur = nxt.c.t0 - st.c.t1
      u = (t[j0:j1] - st.c.t1) / dur
      # C2 at toe-off; at heel strike value and rate only (the impact steps the acceleration).
      ka, kb, ta_, tb_ = states(kn_a), states(kn_b)[:2] + (None,), states(th_a), states(th_b)[
          :2] + (None,)
      knee_x = _with_end_states(u, dur, shaped(knee_n, ka[0], kb[0], hump), (ka, kb))
      thigh_x = _with_end_states(u, dur, shaped(thigh_n, ta_[0], tb_[0]), (ta_, tb_))
      # The foot follows the shank with an ankle angle that goes from the toe-off plantarflexion
      # to its heel-strike value by mid-swing (the foot swings with the shank in terminal swing).
      pa, pb = states(st.pitch(ta)), states(nxt.pitch(tb))
      shank_x = thigh_x - knee_x
      off_a, off_b = pa[0] - shank_x[len(u)], pb[0] - shank_x[-1]
      x = np.concatenate([u, END_POINTS])
      foot = shank_x + off_b + (off_a - off_b) * (1 - dyn.smooth5(x / 0.5))
      plan.foot_pitch[side][j0:j1] = _with_end_states(u, dur, foot, (pa, pb))[:len(u)]
      knee, thigh = knee_x[:len(u)], thigh_x[:len(u)]
      hip = pelvis[j0:j1] + off[side][j0:j1]
      x0, x1 = (ank_a[1] - hip_a[1]) @ lat, (ank_b0 - hip_b[1]) @ lat
      side_off = x0 + (x1 - x0) * dyn.smooth5(u)
      shank = thigh - knee
      v = ((lt * np.sin(thigh) + ls * np.sin(shank))[:, None] * fwd
           - (lt * np.cos(thigh) + ls * np.cos(shank))[:, None] * ez + side_off[:, None] * lat)
      d = np.linalg.norm(v, axis=-1, keepdims=True)   # a target the IK maps onto this ankle
      plan.ankle[side][j0:j1] = hip + v * soft_reach_inverse(d, lt, ls) / d


def _pull_swing_into_reach(plan: MotionPlan, kin, body, sigma_s: float = 0.015,
                           knee_lo_deg: float = 40.0, knee_min_deg: float = 12.0) -> None:
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
    d_soft = soft_reach(d, lt, ls, knee_lo_deg=knee_lo_deg, knee_min_deg=knee_min_deg)
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
