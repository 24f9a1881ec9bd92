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

import numpy as np

from data_prep.synthetic import dynamics as dyn
from data_prep.synthetic.anthropometry import Subject
from data_prep.synthetic.kinematics import MotionPlan
from data_prep.synthetic.motion_paths import (
  D2R,
  WALK_REACH_END,
  _adapted_plan,
  _extrapolated_phase,
  _Stance,
  _yaw_dir,
  bump,
)
from data_prep.synthetic.walking import _walking_plan


def gait_plan(subject: Subject, mode: str, speed: float, duration_s: float, fs: float,
              rng: np.random.Generator, strike: str | None = None) -> MotionPlan:
  """Walking (``mode='walk'``) or running (``'run'``) at ``speed`` m/s on a straight line.

  ``strike`` ('rear' | 'mid' | 'fore') sets the running foot strike (walking is always rear).
  The plan's ``info`` holds the contacts and the trial parameters. Steps, in the order they draw
  from ``rng``: timing, heel strikes, contact forces (-> GRF and CoM), stances (foot placement),
  upper-body templates; then walking.py (walking) or the force-first fit (running).
  """
  if mode not in ('walk', 'run'):
    raise ValueError(f"mode must be 'walk' or 'run', got {mode!r}")
  body, tr = subject.body, subject.traits
  H, M, W = body.height_m, body.mass_kg, body.weight_n
  dt = 1.0 / fs
  n = int(round(duration_s * fs))
  t = np.arange(n) * dt
  trial = lambda sd: float(rng.normal(1.0, sd))
  g = _timing(mode, speed, strike, body, tr, trial)
  hs, sides = _heel_strikes(g, duration_s, tr, rng)
  contacts = _contacts(mode, speed, g, hs, sides, tr, M, W, trial, rng)
  dyn.balance_impulses(t, contacts, W, M)
  grf, _, mask = dyn.contact_forces(t, contacts, W)
  com = dyn.com_from_force(grf['r'] + grf['l'], M, dt, np.array([0.0, speed, 0.0]))
  com[:, 2] += 0.55 * H
  stances, pitch_p, toe_out = _stances(mode, speed, g, contacts, com, t, body, tr, rng)
  clear = tr['swing_clearance_m'] * (1.0 if mode == 'walk' else 2.2 * (speed / 3.0))
  ab = (2.0, 4.5) if mode == 'walk' else (3.0, 4.5)
  clear_fn = lambda s, a, b: clear * bump(s, *ab)
  foot_yaw = {'r': np.full(n, -toe_out), 'l': np.full(n, toe_out)}
  ph = _extrapolated_phase(t, hs[np.array(sides) == 'r'])
  pelvis_ang, trunk_ang, head_ang, arm_ang = _upper_body(mode, speed, ph, n, tr, trial)
  min_knee = (tr['min_knee_flex_deg_walk'] if mode == 'walk' else tr['min_knee_flex_deg_run'])
  # Walking: the flat-foot phase sets the CoM height (knee nearly straight in midstance);
  # running: touchdown does (knee ~10-20 deg), midstance flexion then follows from the force.
  reach_range = (pitch_p[1], WALK_REACH_END) if mode == 'walk' else (0.0, 0.5)
  plan = MotionPlan(
      name=mode, dt=dt, heading=np.zeros(n), pelvis_ang=pelvis_ang, trunk_ang=trunk_ang,
      head_ang=head_ang, arm_ang=arm_ang, ankle={}, foot_pitch={}, foot_yaw=foot_yaw,
      com_target=com, contact=mask, min_knee_flex=min_knee * D2R, grf=grf, reach_percentile=5.0,
      info={'mode': mode, 'speed': float(speed), 'strike': g['strike'],
            'step_time_s': float(g['step_t']), 'contact_time_s': float(g['t_c']),
            'step_length_m': float(g['step_len']), 'contacts': contacts,
            'right_hs_times': hs[np.array(sides) == 'r']})
  if mode == 'walk':
    return _walking_plan(plan, stances, clear_fn, subject, t, reach_range)
  return _adapted_plan(plan, stances, clear_fn, subject, t, reach_range)


def _timing(mode, speed, strike, body, tr, trial) -> dict:
  """Step length and time, contact time, strike and step-to-step variability of the trial."""
  H = body.height_m
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
  return {'strike': strike, 'step_len': step_len, 'step_t': step_t, 't_c': t_c, 'cv': cv}


def _heel_strikes(g, duration_s, tr, rng) -> tuple[np.ndarray, list[str]]:
  """Heel-strike times and sides (alternating, asymmetric, with step-to-step jitter) covering
  the trial and a margin on both ends."""
  step_t, cv = g['step_t'], g['cv']
  hs, sides = [], []
  tcur, side = -2.5 * step_t * (0.5 + rng.random()), 'r'
  while tcur < duration_s + 3 * step_t:
    hs.append(tcur)
    sides.append(side)
    asym = 1 + (tr['asymmetry'] if side == 'r' else -tr['asymmetry'])
    tcur += step_t * asym * rng.normal(1.0, cv)
    side = 'l' if side == 'r' else 'r'
  return np.array(hs), sides


def _contacts(mode, speed, g, hs, sides, tr, M, W, trial, rng) -> list:
  """One dyn.Contact per heel strike: duration, force shape, impact and shear parameters."""
  step_t, t_c, cv, strike = g['step_t'], g['t_c'], g['cv'], g['strike']
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
  return contacts


def _stances(mode, speed, g, contacts, com, t, body, tr, rng):
  """Foot placement and stance geometry: ({side: [_Stance]}, pitch template, toe-out)."""
  step_len, t_c, strike = g['step_len'], g['t_c'], g['strike']
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
  return stances, pitch_p, toe_out


def _upper_body(mode, speed, ph, n, tr, trial):
  """Pelvis, trunk, head and arm angle templates in the gait phase ``ph``."""
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
  return pelvis_ang, trunk_ang, head_ang, arm_ang
