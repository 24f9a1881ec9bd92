"""Walking, kinematics-first in the vertical (see gait.py for the shared gait planner): pelvis
height from the stance legs, pre-swing heel rise, joint-space swings on normative curves."""

from __future__ import annotations

import numpy as np

from data_prep.synthetic import dynamics as dyn
from data_prep.synthetic.anthropometry import Subject
from data_prep.synthetic.kinematics import MotionPlan
from data_prep.synthetic.motion_paths import D2R, _set_feet, _Stance, _stance_samples, hermite5


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
