"""Rigid multi-segment kinematics: rotations, two-link leg IK, forward kinematics, CoM solve.

Everything is vectorised over time: rotations are [T, 3, 3], positions [T, 3]. World frame:
x right, y forward (direction of travel at heading 0), z up; gravity is -9.81 m/s^2 along z.

The legs are placed by inverse kinematics from the hip to a prescribed ankle trajectory (the feet
are what touches the ground, so they are prescribed in the world). The pelvis is either
prescribed, or solved so that the whole-body centre of mass follows a target trajectory (the one
the ground reaction force dictates, see ``dynamics``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_prep.synthetic.anthropometry import Body

EZ = np.array([0.0, 0.0, 1.0])


def rot_x(a: np.ndarray) -> np.ndarray:
  a = np.asarray(a, dtype=np.float64)
  c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
  return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1),
                   np.stack([z, s, c], -1)], -2)


def rot_y(a: np.ndarray) -> np.ndarray:
  a = np.asarray(a, dtype=np.float64)
  c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
  return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1),
                   np.stack([-s, z, c], -1)], -2)


def rot_z(a: np.ndarray) -> np.ndarray:
  a = np.asarray(a, dtype=np.float64)
  c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
  return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1),
                   np.stack([z, z, o], -1)], -2)


def axis_angle_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
  """Rotation matrix of ``angle`` rad about unit ``axis`` (Rodrigues)."""
  k = np.asarray(axis, dtype=np.float64)
  k = k / np.linalg.norm(k)
  kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
  return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def mv(r: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Batched matrix-vector product: r [T,3,3], v [3] or [T,3] -> [T,3]."""
  return np.einsum('tij,tj->ti', r, np.broadcast_to(v, r.shape[:-1]))


def log_so3(r: np.ndarray) -> np.ndarray:
  """Rotation vectors (axis * angle) of rotation matrices [..., 3, 3]."""
  cos = np.clip((np.trace(r, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
  ang = np.arccos(cos)
  w = 0.5 * np.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0],
                      r[..., 1, 0] - r[..., 0, 1]], -1)
  sin = np.sin(ang)
  scale = np.where(sin > 1e-9, ang / np.maximum(sin, 1e-12), 1.0)
  return w * scale[..., None]


def exp_so3(w: np.ndarray) -> np.ndarray:
  """Rotation matrices of rotation vectors [..., 3]."""
  ang = np.linalg.norm(w, axis=-1)
  safe = np.maximum(ang, 1e-12)
  k = w / safe[..., None]
  kx = np.zeros(w.shape[:-1] + (3, 3))
  kx[..., 0, 1], kx[..., 0, 2] = -k[..., 2], k[..., 1]
  kx[..., 1, 0], kx[..., 1, 2] = k[..., 2], -k[..., 0]
  kx[..., 2, 0], kx[..., 2, 1] = -k[..., 1], k[..., 0]
  s, c = np.sin(ang)[..., None, None], np.cos(ang)[..., None, None]
  return np.eye(3) + s * kx + (1 - c) * (kx @ kx)


def body_angular_velocity(r: np.ndarray, dt: float) -> np.ndarray:
  """Angular velocity in the body frame of a rotation trajectory [T,3,3] (central differences)."""
  w = np.empty(r.shape[:-1])
  w[1:-1] = log_so3(np.swapaxes(r[:-2], -1, -2) @ r[2:]) / (2 * dt)
  w[0] = log_so3(r[0].T @ r[1]) / dt
  w[-1] = log_so3(r[-2].T @ r[-1]) / dt
  return w


def second_derivative(x: np.ndarray, dt: float) -> np.ndarray:
  """Central second difference along axis 0 (edges copied from their neighbours)."""
  a = np.empty_like(x)
  a[1:-1] = (x[2:] - 2 * x[1:-1] + x[:-2]) / dt ** 2
  a[0], a[-1] = a[1], a[-2]
  return a


def _unit(v: np.ndarray) -> np.ndarray:
  return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def soft_reach(d: np.ndarray, l_thigh: float, l_shank: float, knee_lo_deg: float = 20.0,
               knee_min_deg: float = 6.0) -> np.ndarray:
  """Hip-ankle distance the leg realises for a target distance d.

  Up to the reach at ``knee_lo_deg`` of knee flexion, d itself; beyond, a tanh saturation
  towards the reach at ``knee_min_deg`` (C2-smooth). Two-link IK is singular at full extension
  (the knee's offset from the hip-ankle line grows like sqrt(L - d)), so letting targets reach
  full length would turn tiny path variations into huge knee accelerations.
  """
  full2 = l_thigh ** 2 + l_shank ** 2
  reach = lambda deg: np.sqrt(full2 + 2 * l_thigh * l_shank * np.cos(np.deg2rad(deg)))
  d0, d_cap = reach(knee_lo_deg), reach(knee_min_deg)
  span = d_cap - d0
  out = np.where(d > d0, d0 + span * np.tanh((d - d0) / span), d)
  return np.maximum(out, abs(l_thigh - l_shank) + 1e-3)


def soft_reach_inverse(d_real: np.ndarray, l_thigh: float, l_shank: float,
                       knee_lo_deg: float = 20.0, knee_min_deg: float = 6.0) -> np.ndarray:
  """Target distance that ``soft_reach`` maps to ``d_real`` (which must be below its cap)."""
  full2 = l_thigh ** 2 + l_shank ** 2
  reach = lambda deg: np.sqrt(full2 + 2 * l_thigh * l_shank * np.cos(np.deg2rad(deg)))
  d0, d_cap = reach(knee_lo_deg), reach(knee_min_deg)
  span = d_cap - d0
  x = np.maximum((d_real - d0) / span, 0.0)
  # atanh up to x1, then its C2 quadratic continuation: finite and smooth up to (and past) the
  # cap, where the IK then lands a little short of d_real.
  x1 = 0.9
  a0, a1, a2 = np.arctanh(x1), 1 / (1 - x1 ** 2), 2 * x1 / (1 - x1 ** 2) ** 2
  ext = a0 + a1 * (x - x1) + 0.5 * a2 * (x - x1) ** 2
  inv = np.where(x <= x1, np.arctanh(np.minimum(x, x1)), ext)
  return np.where(d_real > d0, d0 + span * inv, d_real)


def leg_ik(hip: np.ndarray, ankle: np.ndarray, knee_fwd: np.ndarray, l_thigh: float,
           l_shank: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Two-link IK: knee position in the plane of hip-ankle and the knee's forward direction.

  Returns knee [T,3], the ankle actually reached [T,3] (pulled in when out of reach), thigh and
  shank rotations [T,3,3] (z = proximal direction, x = flexion axis to the right) and a boolean
  [T] mask of samples that were out of reach.
  """
  d_vec = ankle - hip
  d = np.linalg.norm(d_vec, axis=-1)
  u = d_vec / np.maximum(d, 1e-12)[:, None]
  dc = soft_reach(d, l_thigh, l_shank)
  clamped = d - dc > 0.002   # the foot misses its target by more than 2 mm
  reached = hip + u * dc[:, None]
  a = (l_thigh ** 2 - l_shank ** 2 + dc ** 2) / (2 * dc)
  h = np.sqrt(np.maximum(l_thigh ** 2 - a ** 2, 0.0))
  e = _unit(knee_fwd - np.sum(knee_fwd * u, -1, keepdims=True) * u)
  knee = hip + a[:, None] * u + h[:, None] * e
  n = _unit(np.cross(u, e))  # flexion axis, points to the right
  zt = _unit(hip - knee)
  zs = _unit(knee - reached)
  r_thigh = np.stack([n, np.cross(zt, n), zt], -1)
  r_shank = np.stack([n, np.cross(zs, n), zs], -1)
  return knee, reached, r_thigh, r_shank, clamped


@dataclasses.dataclass
class MotionPlan:
  """Everything that drives the forward kinematics of one trial, at the internal rate.

  Angles in rad. ``pelvis_pos`` (prescribed) or ``com_target`` (whole-body CoM to follow) must be
  given. Trunk and head angles are world-referenced (lean / bend / axial rotation relative to the
  heading); the pelvis angles too. Arm angles per side: shoulder flexion, abduction, internal
  rotation, elbow flexion, wrist flexion (relative to the torso / parent segment).
  """

  name: str
  dt: float
  heading: np.ndarray
  pelvis_ang: np.ndarray            # [T, 3] anterior tilt, obliquity (right up), rotation
  trunk_ang: np.ndarray             # [T, 3] lean forward, bend right, axial rotation left
  head_ang: np.ndarray              # [T, 3]
  arm_ang: dict[str, np.ndarray]    # side -> [T, 5]
  ankle: dict[str, np.ndarray]      # side -> [T, 3] world
  foot_pitch: dict[str, np.ndarray]  # side -> [T] toe up positive
  foot_yaw: dict[str, np.ndarray]   # side -> [T] world yaw of the foot
  pelvis_pos: np.ndarray | None = None
  com_target: np.ndarray | None = None
  contact: dict[str, np.ndarray] | None = None   # side -> [T] bool (feet carrying load)
  reach_mask: dict[str, np.ndarray] | None = None  # samples that set the CoM height (see FK)
  min_knee_flex: float = np.deg2rad(5.0)          # reach constraint when solving the CoM height
  reach_percentile: float = 0.0                   # 0 = strict (no sample over-stretched)
  solve_height: bool = True                       # False: com_target's height is final
  grf: dict[str, np.ndarray] | None = None        # side -> [T, 3] N, ground on the foot
  cop: dict[str, np.ndarray] | None = None        # side -> [T, 3] m
  stances: dict[str, np.ndarray] | None = None    # side -> [n, 2] prescribed stance spans
  world_yaw: np.ndarray | None = None             # optional rigid turn applied after FK
  world_shift: np.ndarray | None = None           # [T, 3] with world_yaw
  info: dict = dataclasses.field(default_factory=dict)

  @property
  def n(self) -> int:
    return len(self.heading)


@dataclasses.dataclass
class Kinematics:
  """Segment poses of one trial. ``origin`` is each segment's frame origin (proximal joint)."""

  dt: float
  rot: dict[str, np.ndarray]
  origin: dict[str, np.ndarray]
  com: dict[str, np.ndarray]
  joints: dict[str, np.ndarray]
  body_com: np.ndarray
  clamped_frac: float
  stance_clamped_frac: float


SIDES = ('r', 'l')


def _upper_body(plan: MotionPlan, body: Body, pelvis: np.ndarray):
  """Poses of pelvis, torso, head, shoulder girdles and arms for a given pelvis origin."""
  L = body.length
  rot, origin, com, joints = {}, {}, {}, {}
  pa, ta, ha = plan.pelvis_ang, plan.trunk_ang, plan.head_ang
  rp = rot_z(plan.heading + pa[:, 2]) @ rot_y(-pa[:, 1]) @ rot_x(-pa[:, 0])
  rt = rot_z(plan.heading + ta[:, 2]) @ rot_y(ta[:, 1]) @ rot_x(-ta[:, 0])
  rh = rot_z(plan.heading + ha[:, 2]) @ rot_y(ha[:, 1]) @ rot_x(-ha[:, 0])
  rot['pelvis'], origin['pelvis'] = rp, pelvis
  com['pelvis'] = pelvis + mv(rp, EZ * body.com_frac['pelvis'] * L['pelvis'])
  lumbar = pelvis + mv(rp, EZ * L['pelvis'])
  rot['torso'], origin['torso'] = rt, lumbar
  com['torso'] = lumbar + mv(rt, EZ * body.com_frac['torso'] * L['torso'])
  neck = lumbar + mv(rt, EZ * L['torso'])
  rot['head'], origin['head'] = rh, neck
  com['head'] = neck + mv(rh, EZ * body.com_frac['head'] * L['head'])
  for side, sgn in (('r', 1.0), ('l', -1.0)):
    ang = plan.arm_ang[side]
    sh = lumbar + mv(rt, np.array([sgn * L['shoulder_half_width'], 0.0,
                                   L['torso'] - L['shoulder_drop']]))
    joints[f'{side}_shoulder'] = sh
    rot[f'{side}_girdle'] = rt @ rot_y(-sgn * 0.3 * ang[:, 1]) @ rot_x(0.15 * ang[:, 0])
    origin[f'{side}_girdle'] = sh
    rua = rt @ rot_y(-sgn * ang[:, 1]) @ rot_x(ang[:, 0]) @ rot_z(sgn * ang[:, 2])
    rfa = rua @ rot_x(ang[:, 3])
    rha = rfa @ rot_x(ang[:, 4])
    elbow = sh + mv(rua, -EZ * L['upperarm'])
    wrist = elbow + mv(rfa, -EZ * L['forearm'])
    for seg, r, o in (('upperarm', rua, sh), ('forearm', rfa, elbow), ('hand', rha, wrist)):
      key = f'{side}_{seg}'
      rot[key], origin[key] = r, o
      com[key] = o + mv(r, -EZ * body.com_frac[key] * L[seg])
    joints[f'{side}_elbow'], joints[f'{side}_wrist'] = elbow, wrist
  return rot, origin, com, joints


def _legs(plan: MotionPlan, body: Body, rp: np.ndarray, pelvis: np.ndarray):
  L = body.length
  rot, origin, com, joints, clamped = {}, {}, {}, {}, {}
  for side, sgn in (('r', 1.0), ('l', -1.0)):
    hip = pelvis + mv(rp, np.array([sgn * L['hip_half_width'], 0.0, 0.0]))
    yaw = 0.5 * (plan.foot_yaw[side] + plan.heading)
    fwd = np.stack([-np.sin(yaw), np.cos(yaw), np.zeros_like(yaw)], -1)
    knee, ankle, rth, rsh, cl = leg_ik(hip, plan.ankle[side], fwd, L['thigh'], L['shank'])
    rf = rot_z(plan.foot_yaw[side]) @ rot_x(plan.foot_pitch[side])
    joints.update({f'{side}_hip': hip, f'{side}_knee': knee, f'{side}_ankle': ankle})
    rot[f'{side}_thigh'], origin[f'{side}_thigh'] = rth, hip
    rot[f'{side}_shank'], origin[f'{side}_shank'] = rsh, knee
    rot[f'{side}_foot'], origin[f'{side}_foot'] = rf, ankle
    com[f'{side}_thigh'] = hip + body.com_frac[f'{side}_thigh'] * (knee - hip)
    com[f'{side}_shank'] = knee + body.com_frac[f'{side}_shank'] * (ankle - knee)
    com[f'{side}_foot'] = ankle + mv(rf, np.array(
        [0.0, body.com_frac[f'{side}_foot'] * L['foot'] - L['heel_to_ankle'],
         -0.5 * L['ankle_height']]))
    clamped[side] = cl
  return rot, origin, com, joints, clamped


def _whole_com(body: Body, com: dict[str, np.ndarray]) -> np.ndarray:
  return sum(body.seg_mass[k] * com[k] for k in body.seg_mass) / body.mass_kg


def knee_reach(body: Body, knee_flex: float) -> float:
  """Hip-ankle distance (m) at a knee flexion of ``knee_flex`` rad."""
  lt, ls = body.length['thigh'], body.length['shank']
  return float(np.sqrt(lt ** 2 + ls ** 2 + 2 * lt * ls * np.cos(knee_flex)))


def _reach_shift(plan: MotionPlan, body: Body, pelvis: np.ndarray, rp: np.ndarray) -> float | None:
  """Vertical shift making the most stretched leg over ``plan.reach_mask`` reach d_max."""
  d_max = knee_reach(body, plan.min_knee_flex)
  masks = plan.reach_mask if plan.reach_mask is not None else plan.contact
  shifts = []
  for side, sgn in (('r', 1.0), ('l', -1.0)):
    mask = masks[side] if masks is not None else np.ones(plan.n, bool)
    if not mask.any():
      continue
    hip = pelvis[mask] + mv(rp[mask], np.array([sgn * body.length['hip_half_width'], 0.0, 0.0]))
    v = hip - plan.ankle[side][mask]
    horiz = np.minimum(np.sum(v[:, :2] ** 2, -1), d_max ** 2)
    shifts.append(np.sqrt(d_max ** 2 - horiz) - v[:, 2])
  if not shifts:
    return None
  # A low percentile rather than the minimum: the odd over-stretched step is then placed closer
  # by the motion's reach adaptation instead of crouching every other step.
  return float(np.percentile(np.concatenate(shifts), plan.reach_percentile))


def _leg_moment_fn(plan: MotionPlan, body: Body, rp: np.ndarray):
  """Fast sum of m * CoM over both legs as a function of the pelvis origin (for the CoM solve).

  Same geometry as ``_legs`` / ``leg_ik`` without building rotation matrices.
  """
  L = body.length
  lt, ls = L['thigh'], L['shank']
  pre = []
  for side, sgn in (('r', 1.0), ('l', -1.0)):
    hip_off = mv(rp, np.array([sgn * L['hip_half_width'], 0.0, 0.0]))
    yaw = 0.5 * (plan.foot_yaw[side] + plan.heading)
    fwd = np.stack([-np.sin(yaw), np.cos(yaw), np.zeros_like(yaw)], -1)
    rf = rot_z(plan.foot_yaw[side]) @ rot_x(plan.foot_pitch[side])
    foot_off = mv(rf, np.array([0.0, body.com_frac[f'{side}_foot'] * L['foot']
                                - L['heel_to_ankle'], -0.5 * L['ankle_height']]))
    pre.append((hip_off, fwd, plan.ankle[side], foot_off, body.seg_mass[f'{side}_thigh'],
                body.seg_mass[f'{side}_shank'], body.seg_mass[f'{side}_foot'],
                body.com_frac[f'{side}_thigh'], body.com_frac[f'{side}_shank']))

  def moment(pelvis: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
    out = np.zeros_like(pelvis)
    for hip_off, fwd, ankle, foot_off, mt, ms, mf, ct, cs in pre:
      if idx is not None:
        hip_off, fwd, ankle, foot_off = hip_off[idx], fwd[idx], ankle[idx], foot_off[idx]
      hip = pelvis + hip_off
      dv = ankle - hip
      d = np.sqrt(np.einsum('ij,ij->i', dv, dv))
      u = dv / np.maximum(d, 1e-12)[:, None]
      dc = soft_reach(d, lt, ls)
      a = (lt ** 2 - ls ** 2 + dc ** 2) / (2 * dc)
      h = np.sqrt(np.maximum(lt ** 2 - a ** 2, 0.0))
      e = fwd - np.einsum('ij,ij->i', fwd, u)[:, None] * u
      e /= np.maximum(np.sqrt(np.einsum('ij,ij->i', e, e)), 1e-12)[:, None]
      knee = hip + a[:, None] * u + h[:, None] * e
      reached = hip + u * dc[:, None]
      out += mt * (hip + ct * (knee - hip)) + ms * (knee + cs * (reached - knee))
      out += mf * (reached + foot_off)
    return out

  return moment


def forward_kinematics(plan: MotionPlan, body: Body, com_iters: int = 6) -> Kinematics:
  """Segment poses; with ``plan.com_target`` the pelvis is solved so the CoM follows it.

  With a CoM target the target's height is a free constant (the force fixes only its
  accelerations): it is set so that over ``plan.reach_mask`` (default: the contact samples) the
  most stretched leg has a knee flexion of ``plan.min_knee_flex``.
  """
  if (plan.pelvis_pos is None) == (plan.com_target is None):
    raise ValueError(f'{plan.name}: give exactly one of pelvis_pos and com_target')
  if '_upper_body' not in plan.info:   # depends on the plan's angles only: reuse across passes
    plan.info['_upper_body'] = _upper_body(plan, body, np.zeros((plan.n, 3)))
  rot, origin, com, joints = (dict(d) for d in plan.info['_upper_body'])  # pelvis at 0
  if plan.pelvis_pos is not None:
    pelvis = plan.pelvis_pos
  else:
    target = plan.com_target.copy()
    leg_keys = [f'{s}_{g}' for s in SIDES for g in ('thigh', 'shank', 'foot')]
    m_legs = sum(body.seg_mass[k] for k in leg_keys)
    m_up = body.mass_kg - m_legs
    up_moment = sum(body.seg_mass[k] * com[k] for k in com)   # sum m r, pelvis at 0
    gain = 1.0 / (m_up + 0.25 * m_legs)
    leg_moment = _leg_moment_fn(plan, body, rot['pelvis'])
    pelvis = target - np.array([0.0, 0.0, 0.03 * body.height_m])
    for outer in range(3):
      for _ in range(com_iters):
        resid = body.mass_kg * target - up_moment - m_up * pelvis - leg_moment(pelvis, None)
        pelvis = pelvis + gain * resid
      if outer == 2 or not plan.solve_height:
        # Polish the samples still off (where a leg's IK switches between reach and clamp the
        # map is only piecewise smooth): damped steps on that subset only.
        idx = np.arange(plan.n)
        for it in range(60):
          resid = (body.mass_kg * target[idx] - up_moment[idx] - m_up * pelvis[idx]
                   - leg_moment(pelvis[idx], idx))
          bad = np.abs(resid).max(axis=1) > 1e-9 * body.mass_kg
          if not bad.any():
            break
          idx, resid = idx[bad], resid[bad]
          pelvis[idx] += (gain if it < 5 else 0.6 * gain) * resid
        break
      shift = _reach_shift(plan, body, pelvis, rot['pelvis'])
      if shift is None:
        break
      target[:, 2] += shift
      pelvis = pelvis + np.array([0.0, 0.0, shift])
  for k in list(origin):
    origin[k] = origin[k] + pelvis
  for k in list(com):
    com[k] = com[k] + pelvis
  for k in list(joints):
    joints[k] = joints[k] + pelvis
  r2, o2, c2, j2, clamped = _legs(plan, body, rot['pelvis'], pelvis)
  rot.update(r2)
  origin.update(o2)
  com.update(c2)
  joints.update(j2)
  body_com = _whole_com(body, com)
  all_cl = np.concatenate([clamped['r'], clamped['l']])
  if plan.contact is not None:
    st = np.concatenate([clamped['r'] & plan.contact['r'], clamped['l'] & plan.contact['l']])
    st_frac = float(st.sum() / max(1, plan.contact['r'].sum() + plan.contact['l'].sum()))
  else:
    st_frac = float(all_cl.mean())
  kin = Kinematics(dt=plan.dt, rot=rot, origin=origin, com=com, joints=joints, body_com=body_com,
                   clamped_frac=float(all_cl.mean()), stance_clamped_frac=st_frac)
  if plan.world_yaw is not None:
    kin = _apply_world_turn(kin, plan.world_yaw, plan.world_shift)
  return kin


def _apply_world_turn(kin: Kinematics, yaw: np.ndarray, shift: np.ndarray) -> Kinematics:
  """Rigid, time-varying planar transform of every pose: p -> Rz(yaw) p + shift."""
  rz = rot_z(yaw)
  tf = lambda p: mv(rz, p) + shift
  return Kinematics(dt=kin.dt, rot={k: rz @ r for k, r in kin.rot.items()},
                    origin={k: tf(p) for k, p in kin.origin.items()},
                    com={k: tf(p) for k, p in kin.com.items()},
                    joints={k: tf(p) for k, p in kin.joints.items()}, body_com=tf(kin.body_com),
                    clamped_frac=kin.clamped_frac, stance_clamped_frac=kin.stance_clamped_frac)
