"""Non-gait MoVi-style activities (standing, squats, arm waving, throwing, kicks, hopping,
jumping jacks, turns) and ACTIVITIES, the name -> plan table of the corpus."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from data_prep.synthetic import dynamics as dyn
from data_prep.synthetic.anthropometry import Subject
from data_prep.synthetic.gait import gait_plan
from data_prep.synthetic.kinematics import MotionPlan, rot_z
from data_prep.synthetic.motion_paths import (
  D2R,
  _adapted_plan,
  _Stance,
  _yaw_dir,
  bump,
  smooth_noise,
)


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
