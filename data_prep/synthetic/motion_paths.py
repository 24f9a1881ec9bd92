"""Shared pieces of every motion plan: smooth trajectories (quintic Hermite, bumps, band-limited
noise), the foot-stance model (heel / ball rockers, C2 swings between contacts) and the
plan assembly that fits the legs and pelvis to the feet."""

from __future__ import annotations

import numpy as np

from data_prep.synthetic import dynamics as dyn
from data_prep.synthetic.anthropometry import Subject
from data_prep.synthetic.kinematics import MotionPlan

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
