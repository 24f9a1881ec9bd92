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
set's paper; ``check_up_axis`` tests the up axis against gravity at run time. A sensor mounted
at any other angle: ``SensorRotation`` (declared) and ``calibrate_static`` (measured from a still
stretch and walking), at the end of this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
from scipy.spatial.transform import Rotation

from data_prep import preprocess

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


# ----------------------------------------------------------------------------------------------
# Any-angle mounts (lab_files ``rotation:``) and static calibration (``calibrate: static``).
#
# A sensor strapped on at a tilt is not a signed axis swap. ``rotation:`` declares the full
# sensor -> body rotation; ``calibrate: static`` measures it per trial:
#
# 1. Tilt: the still stretch(es) of the trial (|gyr| low, |acc| near 9.81 m/s^2 and steady for
#    >= 1 s; seeded by ``preprocess.still_segment``) give the mean specific force, and the
#    shortest rotation taking it onto +y levels the sensor. The still posture is the reference:
#    a segment's own standing lean is absorbed into the mount.
# 2. Heading (the rotation about up that levelling leaves open), the sagittal gyro rule: a shank
#    or thigh rotates mostly about its medio-lateral axis while walking, so the principal axis of
#    its levelled horizontal angular rate during movement is +-z. Over a stride the segment
#    returns to its starting angle (the rate integrates to ~0) and swings forward in ~40 % of it
#    against ~60 % of slower backward rotation in stance, so the forward swing peaks higher: the
#    sign that makes the larger peak positive is +z = right (the project convention: sagittal
#    rate positive when the lower end swings forward); forward = up x right. Real shank
#    (../shared/data/real_imu): +5.4 against -3.0 rad/s, and the result is 15.5 deg from the
#    hand-derived axis swap (its 13.4 deg tilt plus a 7.7 deg turn about up).
#    What it cannot resolve (a TrialError names the failed figures; give such sites ``axes:`` or
#    ``rotation:`` beside ``calibrate: static``, which then only levels the declared frame):
#    * a foot: push-off and loading turn it toe-down faster than its swing turns it toe-up, so its
#      larger peak is negative (all 116 IPOL foot recordings under their verified maps). A foot
#      is recognised by its foot-flat rest (``foot_flat_fraction`` 0.065-0.39 on those, 0.020
#      on the shank; threshold 0.04) and refused rather than turned 180 deg;
#    * trunk, pelvis, head, arms: no dominant, fast (> 2 rad/s), asymmetric sagittal rate (all
#      58 IPOL lower-back recordings are refused);
#    * under 2 s of walking, or tasks without the swing / stance asymmetry (backward walking flips
#      the sign; running, stairs, cycling are untested);
#    * a segment that also rolls in step with its swing: the principal axis is then a compromise,
#      tilted by about cov / (power difference) of the two rates; and a flexion axis turned from
#      the walking direction (toe-out) is taken as the right axis, as it is anatomically.
#    It also takes the still posture as standing: a rest while sitting gives a wrong tilt.
#    ``check_forward_right`` applies the same sign convention to declared maps (``check_axes``).

G = preprocess.G
_MOVING_RAD_S = 0.5       # |gyr| above this counts as movement for the heading and its check
_DOMINANCE = 3.0          # principal / minor horizontal rate power for a sagittal axis
_ASYMMETRY = 1.2          # peak ratio that decides the sign
_SWING_RAD_S = 2.0        # the larger sagittal peak of a walking leg segment exceeds this
_FOOT_FLAT = 0.04         # foot_flat_fraction from which a site is taken for a foot
_MATRIX_TOL = 2e-3        # |R R^T - I| allowed in a declared matrix (rounded entries)


@dataclasses.dataclass(frozen=True, eq=False)
class SensorRotation:
  """A sensor -> body rotation of any angle (``v_body = matrix @ v_sensor``), declared or found
  by ``calibrate_static``; ``report`` holds the figures the calibration measured."""

  matrix: np.ndarray
  verified: bool = False
  note: str = ''
  report: Mapping[str, object] = dataclasses.field(default_factory=dict)

  def apply(self, v: np.ndarray) -> np.ndarray:
    """v [..., 3] in the sensor frame -> body frame."""
    return np.asarray(v) @ self.matrix.T

  def to_json(self) -> dict[str, object]:
    tilt, heading = tilt_heading(self.matrix)
    near, off = nearest_axes(self.matrix)
    return {'matrix': np.round(self.matrix, 6).tolist(),
            'quaternion_wxyz': np.round(Rotation.from_matrix(self.matrix).as_quat(
                scalar_first=True), 6).tolist(),
            'tilt_deg': round(tilt, 2), 'heading_deg': round(heading, 2),
            'nearest_axes': near.spec(), 'off_nearest_axes_deg': round(off, 2),
            'verified': self.verified, 'note': self.note, **self.report}

  def summary(self) -> str:
    """One log line: the angles applied and the nearest signed axis swap."""
    r = self.report
    near, off = nearest_axes(self.matrix)
    return (f'calibrate static: tilt {r["tilt_deg"]:.1f} deg from up, heading '
            f'{r["heading_deg"]:.1f} deg ({r["heading_from"]}); still {r["still_s"]:.1f} s, '
            f'moving {r["moving_s"]:.1f} s; nearest axis map {near.spec()} ({off:.1f} deg off)')


def rotation_from_spec(spec: object, where: str = '') -> SensorRotation:
  """A SensorRotation from a schema ``rotation:`` value.

  Accepted: a 3x3 matrix (rows = body forward, up, right in sensor axes; also {matrix: ...}),
  {quaternion: [w, x, y, z]} (unit, scalar first) or {euler_deg: [a, b, c], order: 'xyz'}
  (scipy convention: lower case = extrinsic axes, upper case = intrinsic). All mean v_body =
  R v_sensor. A matrix must be orthonormal with determinant +1 (a mirror means a typo).
  """
  if isinstance(spec, Mapping) and set(spec) == {'matrix'}:
    spec = spec['matrix']
  try:
    if isinstance(spec, Mapping):
      keys = set(spec)
      if keys == {'quaternion'}:
        q = np.asarray(spec['quaternion'], dtype=np.float64)
        if q.shape != (4,) or not abs(np.linalg.norm(q) - 1.0) < 0.01:
          raise ValueError(f'quaternion {spec["quaternion"]}: expected four numbers [w, x, y, z] '
                           f'of norm 1')
        r = Rotation.from_quat(q, scalar_first=True).as_matrix()
      elif keys in ({'euler_deg'}, {'euler_deg', 'order'}):
        order = str(spec.get('order', 'xyz'))
        a = np.asarray(spec['euler_deg'], dtype=np.float64)
        if a.shape != (3,) or len(order) != 3 or not (set(order) <= set('xyz')
                                                       or set(order) <= set('XYZ')):
          raise ValueError(f'euler_deg {spec["euler_deg"]} order {order!r}: expected three '
                           f"angles and an order such as 'xyz' (extrinsic) or 'XYZ' (intrinsic)")
        r = Rotation.from_euler(order, a, degrees=True).as_matrix()
      else:
        raise ValueError(f'keys {sorted(keys)}: expected a 3x3 matrix, {{quaternion: [w, x, y, '
                         f'z]}} or {{euler_deg: [a, b, c], order: xyz}}')
    else:
      r = np.asarray(spec, dtype=np.float64)
      if r.shape != (3, 3):
        raise ValueError(f'matrix of shape {r.shape}: expected 3x3 (rows forward, up, right)')
      err = float(np.abs(r @ r.T - np.eye(3)).max())
      if not np.isfinite(err) or err > _MATRIX_TOL:
        raise ValueError(f'matrix is not orthonormal (R R^T differs from I by {err:.3g}, allowed '
                         f'{_MATRIX_TOL:g}); expected a rotation')
      if np.linalg.det(r) < 0:
        raise ValueError('matrix has determinant -1: a mirror image (left-handed), not a '
                         'rotation; check the signs')
      r = Rotation.from_matrix(r).as_matrix()  # re-orthonormalised
  except (TypeError, ValueError) as e:
    raise ValueError(f'{where}: {e}') from e
  return SensorRotation(r, True, 'declared by the user (rotation)')


def tilt_heading(matrix: np.ndarray) -> tuple[float, float]:
  """(tilt, heading) in degrees of a sensor -> body rotation R = R_y(heading) @ S.

  S is the shortest rotation taking the sensor's gravity direction (R^T y) onto +y; tilt is
  its angle (the angle between the sensor's own +y and up) and heading the remaining turn about
  up, right-handed, in (-180, 180].
  """
  r = np.asarray(matrix, dtype=np.float64)
  s = _level(r.T[:, 1])
  t = r @ s.T
  tilt = float(np.degrees(np.arccos(np.clip(r[1, 1], -1.0, 1.0))))
  return tilt, float(np.degrees(np.arctan2(t[0, 2], t[0, 0])))


def _level(g: np.ndarray) -> np.ndarray:
  """The shortest rotation (matrix) taking direction g onto +y."""
  g = np.asarray(g, dtype=np.float64) / np.linalg.norm(g)
  axis = np.cross(g, [0.0, 1.0, 0.0])
  n = np.linalg.norm(axis)
  ang = float(np.arccos(np.clip(g[1], -1.0, 1.0)))
  if n < 1e-12:  # already up, or exactly down (any horizontal axis will do)
    axis, n = np.array([1.0, 0.0, 0.0]), 1.0
  return Rotation.from_rotvec(axis / n * ang).as_matrix()


def _yaw(deg: float) -> np.ndarray:
  c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
  return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def nearest_axes(matrix: np.ndarray) -> tuple[AxisMap, float]:
  """The signed axis swap closest to a rotation, and the angle (deg) between them."""
  best, best_ang = SENSOR, 360.0
  for perm in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
    for signs in np.ndindex(2, 2, 2):
      p = np.zeros((3, 3))
      p[range(3), perm] = [1 - 2 * s for s in signs]
      if np.linalg.det(p) < 0:
        continue
      ang = float(np.degrees(np.arccos(np.clip((np.trace(matrix @ p.T) - 1) / 2, -1.0, 1.0))))
      if ang < best_ang:
        spec = [('+' if p[row, perm[row]] > 0 else '-') + 'xyz'[perm[row]] for row in range(3)]
        best, best_ang = AxisMap(*spec, verified=False, note='nearest axis swap'), ang
  return best, best_ang


def _rolling_mean(x: np.ndarray, w: int) -> np.ndarray:
  """Means of x [T, ...] over every window of w samples: [T - w + 1, ...] (cumulative sums)."""
  c = np.cumsum(np.concatenate([np.zeros((1,) + x.shape[1:]), x]), axis=0)
  return (c[w:] - c[:-w]) / w


def still_mask(acc: np.ndarray, gyr: np.ndarray, sample_rate_hz: float, site: str, where: str,
               duration_s: float = 1.0, max_gyr: float = 0.2,
               max_angle_deg: float = 2.0) -> np.ndarray:
  """Samples [T] bool in still stretches of >= duration_s in the stillest one's posture.

  Still: the window's |acc| std under 5 % of g, its mean |acc| within 10 % of g and its mean
  |gyr| under ``max_gyr`` rad/s. The stillest window (``preprocess.still_segment``) must pass;
  other passing windows join when their mean acc is within ``max_angle_deg`` of its direction
  (a rest in another posture, e.g. sitting, is left out). A TrialError names the figures when
  the trial holds no still stretch.
  """
  acc = np.asarray(acc, dtype=np.float64)
  gyr = np.asarray(gyr, dtype=np.float64)
  w = max(2, int(round(duration_s * sample_rate_hz)))
  if len(acc) < w:
    raise preprocess.TrialError(f'{where}: site {site!r}: calibrate static needs a still '
                                f'stretch of {duration_s:g} s; the trial has {len(acc)} samples')
  amag = np.linalg.norm(acc, axis=-1)
  m = _rolling_mean(amag, w)
  sd = np.sqrt(np.maximum(_rolling_mean(amag ** 2, w) - m ** 2, 0.0))
  gm = _rolling_mean(np.linalg.norm(gyr, axis=-1), w)
  mean = _rolling_mean(acc, w)
  ok = (sd < 0.05 * G) & (np.abs(m - G) < 0.1 * G) & (gm < max_gyr)
  i = preprocess.still_segment(acc, sample_rate_hz, duration_s, gyr)[0]
  if not ok[i]:
    raise preprocess.TrialError(
        f'{where}: site {site!r}: calibrate static needs {duration_s:g} s still (|acc| std under '
        f'{0.05 * G:.2f} m/s^2 and within 10 % of {G} m/s^2, mean |gyr| under {max_gyr} rad/s); '
        f'the stillest stretch (samples {i}-{i + w}) reads |acc| {m[i]:.2f} +- {sd[i]:.2f} m/s^2, '
        f'|gyr| {gm[i]:.3f} rad/s')
  u = mean / np.linalg.norm(mean, axis=-1, keepdims=True)
  ok &= u @ u[i] > np.cos(np.radians(max_angle_deg))
  quiet = np.linalg.norm(gyr, axis=-1) < 2 * max_gyr  # trims movement onsets inside a window
  return (np.convolve(ok.astype(float), np.ones(w))[:len(acc)] > 0) & quiet


def _peaks(p: np.ndarray) -> tuple[float, float]:
  """Robust positive and negative peaks (99th and 1st percentiles) of a rate trace."""
  if not len(p):
    return 0.0, 0.0
  hi, lo = np.percentile(p, [99.0, 1.0])
  return float(hi), float(lo)


def foot_flat_fraction(gyr: np.ndarray, sample_rate_hz: float, gap_s: float = 0.8) -> float:
  """Share of the walking time with |gyr| under 0.5 rad/s; walking = between two bursts of
  |gyr| > 2 rad/s at most ``gap_s`` before and after (a rest before or after a walk is not).

  A foot rests flat for part of every stance; a shank or thigh keeps rotating. Measured (feet:
  the 116 IPOL recordings) in ``data_prep/axes.py``'s notes.
  """
  w = np.linalg.norm(np.asarray(gyr, dtype=np.float64), axis=-1)
  k = max(1, int(round(gap_s * sample_rate_hz)))
  c = np.concatenate([[0], np.cumsum(w > 2.0)])
  i = np.arange(len(w))
  before = c[i + 1] - c[np.maximum(i + 1 - k, 0)]
  after = c[np.minimum(i + k, len(w))] - c[i]
  walking = (before > 0) & (after > 0)
  return float((w[walking] < _MOVING_RAD_S).mean()) if walking.any() else 0.0


def sagittal_axis(gyr_level: np.ndarray, sample_rate_hz: float) -> dict[str, object]:
  """The sagittal gyro rule on a levelled gyr [T, 3] (rad/s): the signed right axis, or why not.

  Returns 'axis' (x, z unit vector of +z = right: the principal axis of the horizontal rate
  while moving, signed so that its larger peak is positive), 'dominance' (principal / minor
  rate power), 'peak_pos' / 'peak_neg' (rad/s along it), 'foot_flat', 'moving_s' and
  'why_not' (the failed conditions; empty when the rule applies).
  """
  g = np.asarray(gyr_level, dtype=np.float64)
  h = g[np.linalg.norm(g, axis=-1) > _MOVING_RAD_S][:, [0, 2]]
  ev, vec = np.linalg.eigh(h.T @ h / max(len(h), 1))
  e = vec[:, 1]
  hi, lo = _peaks(h @ e)
  if hi < -lo:
    e, hi, lo = -e, -lo, -hi
  out = {'axis': e, 'dominance': float(ev[1] / max(ev[0], 1e-12)), 'peak_pos': hi,
         'peak_neg': lo, 'foot_flat': foot_flat_fraction(g, sample_rate_hz),
         'moving_s': len(h) / sample_rate_hz}
  out['why_not'] = _why_not(out['moving_s'], out['dominance'], hi, lo, out['foot_flat'])
  return out


def _why_not(moving_s: float, dominance: float, hi: float, lo: float,
             foot_flat: float) -> list[str]:
  why = []
  if moving_s < 2.0:
    why.append(f'{moving_s:.1f} s of movement (need 2)')
  if dominance < _DOMINANCE:
    why.append(f'principal horizontal rate {dominance:.1f}x the minor one (need {_DOMINANCE:g}; '
               f'not a sagittal swing)')
  if max(hi, -lo) < _ASYMMETRY * min(hi, -lo):
    why.append(f'peaks {hi:+.2f} / {lo:+.2f} rad/s (need a ratio of {_ASYMMETRY:g})')
  if max(hi, -lo) < _SWING_RAD_S:
    why.append(f'the rate peaks at {max(hi, -lo):.2f} rad/s (need {_SWING_RAD_S:g}: a leg '
               f'segment swinging)')
  elif foot_flat >= _FOOT_FLAT:
    why.append(f'the rate rests {foot_flat:.0%} of the walking time (need under '
               f'{_FOOT_FLAT:.0%}): a foot, whose push-off outpaces its swing')
  return why


def calibrate_static(acc: np.ndarray, gyr: np.ndarray, sample_rate_hz: float, site: str,
                     where: str, base: AxisMap | SensorRotation | None = None) -> SensorRotation:
  """The sensor -> body rotation of one site, measured on one trial (acc m/s^2, gyr rad/s).

  Levels the mean still acc onto +y, then turns about up by the sagittal gyro rule (module
  notes above). With ``base`` (declared axes / rotation) the declared frame is only levelled:
  its heading is kept. A TrialError names the site and the figures when the trial cannot be
  calibrated (no still second, the rule does not apply).
  """
  b = np.eye(3) if base is None else base.matrix
  a0, g0 = np.asarray(acc) @ b.T, np.asarray(gyr) @ b.T
  still = still_mask(a0, g0, sample_rate_hz, site, where)
  grav = a0[still].mean(axis=0)
  lv = _level(grav)
  tilt = float(np.degrees(np.arccos(np.clip(grav[1] / np.linalg.norm(grav), -1.0, 1.0))))
  gl = g0 @ lv.T
  report: dict[str, object] = {
      'calibrate': 'static', 'tilt_deg': round(tilt, 2),
      'still_s': round(float(still.sum()) / sample_rate_hz, 2),
      'still_acc_mean': np.round(grav, 3).tolist()}
  if base is not None:
    heading, src = 0.0, 'declared'
  else:
    sag = sagittal_axis(gl, sample_rate_hz)  # still samples are under the movement threshold
    if sag['why_not']:
      raise preprocess.TrialError(
          f'{where}: site {site!r}: calibrate static cannot fix the heading: '
          f'{"; ".join(sag["why_not"])}. The sagittal gyro rule fits a shank or thigh while '
          f'walking; declare axes or rotation beside calibrate: static to level only')
    ex, ez = sag['axis']
    heading, src = float(np.degrees(np.arctan2(-ex, ez))), 'sagittal gyro rule'
    report['sagittal'] = {k: round(float(sag[k]), 3) for k in ('dominance', 'peak_pos',
                                                               'peak_neg', 'foot_flat')}
  report.update(moving_s=round(float(np.sum(~still & (np.linalg.norm(gl, axis=-1) >
                                                      _MOVING_RAD_S))) / sample_rate_hz, 2),
                heading_deg=round(heading, 2), heading_from=src)
  how = 'declared' if base is not None else 'from the sagittal gyro rule'
  return SensorRotation(_yaw(heading) @ lv @ b, False,
                        f'calibrate static: tilt from the still stretch, heading {how}', report)


def check_forward_right(gyr_body: np.ndarray, sample_rate_hz: float, site: str,
                        where: str) -> dict[str, object] | None:
  """Checks forward / right of a mapped site by the sagittal gyro rule, where it applies.

  Where the movement's horizontal rate is clearly sagittal (about z), asymmetric and without a
  foot-flat phase, its larger peak must be positive (forward swing of a shank or thigh);
  otherwise a ValueError names the site and the peaks. Returns the figures, or None when the
  data cannot tell (no walking, a trunk or a foot).
  """
  g = np.asarray(gyr_body, dtype=np.float64)
  moving = g[np.linalg.norm(g, axis=-1) > _MOVING_RAD_S]
  if len(moving) < 2:
    return None
  pz, px = (float(np.mean(moving[:, c] ** 2)) for c in (2, 0))
  hi, lo = _peaks(moving[:, 2])
  if _why_not(len(moving) / sample_rate_hz, pz / max(px, 1e-12), hi, lo,
              foot_flat_fraction(g, sample_rate_hz)):
    return None
  if -lo > hi:
    raise ValueError(
        f'{where}: site {site!r}: while walking, the sagittal rate (about +z = right) peaks at '
        f'{lo:+.2f} rad/s against {hi:+.2f} rad/s; a shank or thigh peaks positive (forward '
        f"swing), so forward and right point backwards and left (a 180 deg turn about up) in this "
        f"site's map; fix axes / rotation, or set check_axes=false if the site is neither")
  return {'sagittal_peak_pos': hi, 'sagittal_peak_neg': lo}


@dataclasses.dataclass(frozen=True, eq=False)
class SiteFrame:
  """One lab_files site's orientation keys: a declared map (``axes:`` or ``rotation:``) and
  ``calibrate: static``; ``resolve`` gives the map to apply to one trial."""

  base: AxisMap | SensorRotation | None = None
  calibrate: str | None = None

  @property
  def declared(self) -> bool:
    """Whether the site asks for the body frame (any of axes, rotation, calibrate)."""
    return self.base is not None or self.calibrate is not None

  def resolve(self, acc: np.ndarray, gyr: np.ndarray, sample_rate_hz: float, site: str,
              where: str) -> AxisMap | SensorRotation:
    if self.calibrate:
      return calibrate_static(acc, gyr, sample_rate_hz, site, where, self.base)
    return SENSOR if self.base is None else self.base

  def to_json(self) -> dict[str, object]:
    if not self.calibrate:
      return (SENSOR if self.base is None else self.base).to_json()
    return {'calibrate': self.calibrate, 'declared': None if self.base is None else
            self.base.to_json(), 'heading_from': 'declared' if self.base else 'sagittal gyro rule',
            'trials': {}}


def site_frame(site: Mapping[str, object], where: str = '') -> SiteFrame:
  """A SiteFrame from a lab_files site mapping (keys axes, rotation, calibrate), validated."""
  if site.get('axes') is not None and site.get('rotation') is not None:
    raise ValueError(f'{where}: axes and rotation are mutually exclusive; give axes for a signed '
                     f'axis swap or rotation for any angle, not both')
  cal = site.get('calibrate')
  if cal is not None and cal != 'static':
    raise ValueError(f"{where}.calibrate: {cal!r}; expected 'static' (still stretch + walking)")
  if site.get('rotation') is not None:
    base = rotation_from_spec(site['rotation'], f'{where}.rotation')
  elif site.get('axes') is not None:
    base = from_spec(site['axes'], f'{where}.axes')
  else:
    base = None
  return SiteFrame(base, cal)
