"""Sensor axes -> one body-fixed convention, per data set and site.

The project convention (``BODY``), the same for every site and both body sides, ISB-like:

  +x forward (anterior), +y up (superior; along the segment towards the head when standing),
  +z to the subject's right.  Right-handed: x cross y = z.

So, standing still, every upright segment (trunk, pelvis, thigh, shank) reads acc close to
(0, +9.81, 0) m/s^2 and a flat foot as well; sagittal-plane rotation is about +z (positive when a
segment's lower end swings forward, e.g. the shank and foot in mid-swing).

A mapping says, for one site, which signed sensor axis points forward, up and right, e.g.
``AxisMap('-z', '+x', '-y')``; it is applied as ``v_body = R @ v_sensor`` to acc and gyr alike.
Only proper rotations (signed permutations with determinant +1) are accepted: a mirror means a
typo. Mappings marked ``verified=False`` are inferences from the mounting described in the data
set's paper; ``check_up_axis`` tests the up axis against gravity at run time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

BODY = {'x': 'forward (anterior)', 'y': 'up (superior)', 'z': 'right (lateral on the right side)'}
_AX = {'x': 0, 'y': 1, 'z': 2}


def _parse(spec: str) -> tuple[int, int]:
  s = str(spec).strip().lower()
  sign = -1 if s.startswith('-') else 1
  s = s.lstrip('+-')
  if s not in _AX:
    raise ValueError(f'axis spec {spec!r}: expected one of +x, -x, +y, -y, +z, -z')
  return sign, _AX[s]


@dataclasses.dataclass(frozen=True)
class AxisMap:
  """Which signed sensor axis points forward, up and right for one site."""

  forward: str = '+x'
  up: str = '+y'
  right: str = '+z'
  verified: bool = False
  note: str = ''

  @property
  def matrix(self) -> np.ndarray:
    """R with v_body = R @ v_sensor; a ValueError unless R is a proper rotation."""
    r = np.zeros((3, 3))
    for row, spec in enumerate((self.forward, self.up, self.right)):
      sign, col = _parse(spec)
      r[row, col] = sign
    if sorted(np.abs(r).argmax(axis=1)) != [0, 1, 2]:
      raise ValueError(f'axis map {self.spec()} uses a sensor axis twice')
    if not np.isclose(np.linalg.det(r), 1.0):
      raise ValueError(f'axis map {self.spec()} is a mirror image (left-handed); check the signs')
    return r

  def spec(self) -> dict[str, str]:
    return {'forward': self.forward, 'up': self.up, 'right': self.right}

  def to_json(self) -> dict[str, object]:
    return {**self.spec(), 'verified': self.verified, 'note': self.note}

  def apply(self, v: np.ndarray) -> np.ndarray:
    """v [..., 3] in the sensor frame -> body frame."""
    return np.asarray(v) @ self.matrix.T


SENSOR = AxisMap('+x', '+y', '+z', verified=True, note='identity: sensor frame kept')


def from_spec(spec: Mapping[str, object] | None, where: str = '') -> AxisMap:
  """An AxisMap from a schema dict {forward: '-z', up: '+x', right: '-y'} (None = identity)."""
  if spec is None:
    return SENSOR
  unknown = set(spec) - {'forward', 'up', 'right', 'verified', 'note'}
  if unknown:
    raise ValueError(f'{where}: unknown axis keys {sorted(unknown)}; expected forward, up, right')
  missing = {'forward', 'up', 'right'} - set(spec)
  if missing:
    raise ValueError(f'{where}: axis map needs forward, up and right; missing {sorted(missing)}')
  m = AxisMap(str(spec['forward']), str(spec['up']), str(spec['right']),
              bool(spec.get('verified', True)), str(spec.get('note', 'declared by the user')))
  try:
    m.matrix  # noqa: B018 (validates)
  except ValueError as e:
    raise ValueError(f'{where}: {e}') from e
  return m


def up_angle_deg(acc_still_body: np.ndarray) -> float:
  """Angle between the mean still specific force [T, 3] (body frame) and +y, in degrees."""
  m = np.asarray(acc_still_body, dtype=np.float64).reshape(-1, 3).mean(axis=0)
  n = np.linalg.norm(m)
  if n == 0:
    return 180.0
  return float(np.degrees(np.arccos(np.clip(m[1] / n, -1.0, 1.0))))


def check_up_axis(acc_still_body: np.ndarray, site: str, where: str,
                  max_angle_deg: float = 60.0) -> float:
  """The up-axis angle; a ValueError when gravity is more than max_angle_deg away from +y."""
  ang = up_angle_deg(acc_still_body)
  if ang > max_angle_deg:
    m = np.asarray(acc_still_body, dtype=np.float64).reshape(-1, 3).mean(axis=0)
    raise ValueError(
        f'{where}: site {site!r}: still acceleration in the body frame is {np.round(m, 2)} '
        f'({ang:.0f} deg from +y = up); the axis mapping of this site is wrong for this recording')
  return ang


# ----------------------------------------------------------------------------------------------
# Per-data-set mappings (sensor -> BODY). Reasons in docs/data_formats.md, "Axis conventions".

# IPOL (Xsens MTw Awinda). Lower back on L5, case z out of the back: gravity reads +x (and +z from
# the sacral tilt) at rest. Feet on the dorsum, z out of the dorsum, x towards the ankle: gravity
# reads +z (and +x). Checked on subjects 1-10 of the real data: the up angle is under 45 deg at rest
# and the mean +right (sensor +y) foot gyro is positive in every swing phase.
IPOL = {
    'LowerBack': AxisMap('-z', '+x', '-y', True, 'MTw on L5, z out of the back'),
    'LeftFoot': AxisMap('-x', '+z', '+y', True, 'MTw on the dorsum, x towards the ankle'),
    'RightFoot': AxisMap('-x', '+z', '+y', True, 'MTw on the dorsum, x towards the ankle'),
}

# Tan et al. 2022 SageMotion frame (datasets.md 3.1): z = outward surface normal, y up,
# x = y cross z. Sensors on the front of trunk/thigh/shank (normal forward) give forward = +z,
# up = +y, right = -x; the pelvis sensor (WAIST) is assumed on the front as well. Feet: the paper
# states the same y-up frame [U]. Only the up axis is checked (gravity on +y, datasets.md 3.2).
_SAGE = AxisMap('+z', '+y', '-x', False, 'SageMotion z = surface normal (assumed anterior), y up')
KNEE_MOMENT = {s: _SAGE for s in ('L_FOOT', 'R_FOOT', 'R_SHANK', 'R_THIGH', 'WAIST', 'CHEST',
                                  'L_SHANK', 'L_THIGH')}

# Camargo 2021: the authors' final code rotated every triad with new = [[0,1,0],[-1,0,0],[0,0,1]]
# old "so that z is the skin normal and y points up" (datasets.md 2.2): up = y_new = -x_old and
# z_new = z_old is the skin normal, taken as anterior [U] (forward = +z_old, right = -y_old).
# The shank gyro sign differs between subjects [3P], so this map is not verified.
_CAMARGO = AxisMap('+z', '-x', '-y', False, 'reference rotation (z skin normal, y up), '
                   'normal assumed anterior')
CAMARGO = {s: _CAMARGO for s in ('trunk', 'shank', 'thigh', 'foot')}

# MoVi (Axis-Neuron-style "calc" export [U]): about -1 g on x at rest (datasets.md 1.2), so up =
# -x. The reference's later rotations (v' = R v into "z skin normal, y up") give the remaining axes
# for the 8 trunk / leg sites; they are taken with the skin normal anterior (trunk, pelvis,
# shanks), lateral (thighs) and up (feet, the reference's y taken towards the toes). Arms and head
# keep up = -x with the other two axes unverified. None of this is verified on real MoVi files.
MOVI = {
    'Spine1': AxisMap('-z', '-x', '+y', False, 'reference TRUNK rotation, normal anterior'),
    'Hip': AxisMap('-z', '-x', '+y', False, 'reference PELVIS rotation, normal anterior'),
    'RightLeg': AxisMap('-z', '-x', '+y', False, 'reference R_SHANK rotation'),
    'LeftLeg': AxisMap('-z', '-x', '+y', False, 'reference L_SHANK rotation'),
    'RightUpLeg': AxisMap('+z', '-x', '-y', False, 'reference R_THIGH rotation, normal lateral'),
    'LeftUpLeg': AxisMap('+z', '-x', '-y', False, 'reference L_THIGH rotation, normal lateral'),
    'RightFoot': AxisMap('+z', '-x', '-y', False, 'reference R_FOOT rotation, its y = toes'),
    'LeftFoot': AxisMap('+z', '-x', '-y', False, 'reference L_FOOT rotation, its y = toes'),
}
for _s in ('Head', 'RightShoulder', 'RightArm', 'RightForeArm', 'RightHand', 'LeftShoulder',
           'LeftArm', 'LeftForeArm', 'LeftHand'):
  MOVI[_s] = AxisMap('-z', '-x', '+y', False, 'up = -x from the rest reading; others unverified')

# Running (Tan, Strout & Shull 2021; Xsens MTw on the left side) [U]: the step-wise file is
# expected in the same y-up frame as the knee-moment set.
RUNNING = {s: _SAGE for s in ('L_SHANK', 'L_FOOT', 'L_THIGH', 'PELVIS', 'TRUNK')}

DATASETS: dict[str, Mapping[str, AxisMap]] = {
    'ipol_gait': IPOL, 'knee_moment': KNEE_MOMENT, 'camargo2021': CAMARGO, 'movi_imu': MOVI,
    'running_valr': RUNNING,
}


def mapping_for(dataset: str, sites: tuple[str, ...] | list[str], mode: str = 'body',
                where: str = '') -> dict[str, AxisMap]:
  """Per-site maps for a data set; ``mode='sensor'`` keeps the sensor frames (identity)."""
  if mode == 'sensor':
    return {s: SENSOR for s in sites}
  if mode != 'body':
    raise ValueError(f"{where}: option axes={mode!r}; expected 'body' or 'sensor'")
  table = DATASETS[dataset]
  missing = [s for s in sites if s not in table]
  if missing:
    raise ValueError(f'{where}: no axis mapping for site(s) {missing} of {dataset}')
  return {s: table[s] for s in sites}


def mapping_json(maps: Mapping[str, AxisMap], mode: str = 'body') -> dict[str, object]:
  """JSON-serialisable description for the builder's metadata."""
  return {'convention': BODY if mode == 'body' else 'sensor frame',
          'sites': {s: m.to_json() for s, m in maps.items()}}
