"""Any-angle sensor mounts in lab_files: ``rotation:`` specs and ``calibrate: static`` (tilt from
the still stretch, heading from the sagittal gyro rule, data_prep/axes.py), on a synthetic tilted
sensor with a known rotation and on the real Xsens shank recording."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.transform import Rotation

from data_prep import axes, preprocess
from data_prep.builders import lab_files

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import lab as fx  # noqa: E402
from test_lab_files import REAL_IMU, _all, _build, real_xsens_schema  # noqa: E402

FS = 100.0
TILT, HEADING = 48.0, 130.0  # the known mount: tilted 48 deg, then turned 130 deg about up
_AXIS = np.array([1.0, 0.0, 0.6]) / np.linalg.norm([1.0, 0.0, 0.6])  # horizontal tilt axis
MOUNT = (Rotation.from_euler('y', HEADING, degrees=True)
         * Rotation.from_rotvec(np.radians(TILT) * _AXIS))  # sensor -> body


def _angle(u, v) -> float:
  u, v = np.asarray(u, float), np.asarray(v, float)
  return float(np.degrees(np.arccos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v),
                                            -1, 1))))


def _rot_angle(a, b) -> float:
  """Angle (deg) of the rotation between two rotation matrices."""
  return float(np.degrees(Rotation.from_matrix(np.asarray(a) @ np.asarray(b).T).magnitude()))


def walk_body(seconds: float = 12.0, still_s: float = 1.5, seed: int = 0):
  """A shank in the body frame: still, then strides of 1.1 s (swing 40 %, stance 60 %).

  Sagittal rate (about +z): a fast forward half-sine in swing (4 rad/s), a slower backward one
  in stance, zero mean; gravity follows the segment angle; plus a sinusoidal forward and
  vertical acceleration and smaller rates about x and y (sway, not in step with the swing: a
  roll in step would tilt the principal axis, see data_prep/axes.py). acc m/s^2, gyr rad/s.
  """
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * FS)) / FS
  moving = t >= still_s
  ph = ((t - still_s) / 1.1) % 1.0
  wz = np.where(ph < 0.4, 4.0 * np.sin(np.pi * ph / 0.4),
                -4.0 * 0.4 / 0.6 * np.sin(np.pi * (ph - 0.4) / 0.6)) * moving
  theta = np.cumsum(wz) / FS
  sway = [0.6 * np.sin(2 * np.pi * t / 0.7 + 1), 0.8 * np.sin(2 * np.pi * t / 0.45 + 2)]
  gyr = np.stack([*sway, wz], 1) * moving[:, None]
  acc = np.stack([9.81 * np.sin(theta), 9.81 * np.cos(theta), np.zeros_like(t)], 1)
  acc[:, 0] += 2.0 * np.sin(2 * np.pi * t / 1.1) * moving
  acc[:, 1] += 1.5 * np.sin(4 * np.pi * t / 1.1) * moving
  return acc + rng.normal(0, 0.03, acc.shape), gyr + rng.normal(0, 0.01, gyr.shape)


def write_tilted_trial(path: Path, mount: Rotation = MOUNT) -> None:
  """The walk seen by a sensor mounted with ``mount`` (v_sensor = mount^-1 v_body), as CSV."""
  acc, gyr = walk_body()
  r = mount.as_matrix()
  a_s, g_s = acc @ r, gyr @ r  # row vectors: (R^T v)^T = v^T R
  cols = {'time': np.arange(len(acc)) / FS}
  for i, c in enumerate('xyz'):
    cols[f'shank_acc_{c}'], cols[f'shank_gyr_{c}'] = a_s[:, i], g_s[:, i]
  path.parent.mkdir(parents=True, exist_ok=True)
  pd.DataFrame(cols).to_csv(path, index=False)


def _schema(**site_keys) -> dict:
  site = {'acc': [f'shank_acc_{c}' for c in 'xyz'], 'gyr': [f'shank_gyr_{c}' for c in 'xyz'],
          **site_keys}
  return {'sample_rate_hz': FS, 'time_column': 'time', 'sites': {'shank': site},
          'subjects': [{'id': 1, 'files': ['walk.csv']}]}


def _first_window(b):
  return min(_all(b), key=lambda e: float(e['start_s']))


# -- (a) rotation specs --------------------------------------------------------------------------

def test_rotation_specs_round_trip_and_errors(tmp_path):
  r = Rotation.from_euler('xyz', [30.0, -48.0, 100.0], degrees=True)
  specs = [r.as_matrix().round(6).tolist(), {'matrix': r.as_matrix().tolist()},
           {'quaternion': r.as_quat(scalar_first=True).tolist()},
           {'euler_deg': [30.0, -48.0, 100.0], 'order': 'xyz'},
           {'euler_deg': [30.0, -48.0, 100.0]},  # order defaults to 'xyz' (extrinsic)
           {'euler_deg': (r.as_euler('ZXY', degrees=True)).tolist(), 'order': 'ZXY'}]
  for spec in specs:
    m = axes.rotation_from_spec(spec, 'schema.yaml: sites.shank.rotation')
    np.testing.assert_allclose(m.matrix, r.as_matrix(), atol=1e-5)
    np.testing.assert_allclose(m.apply([0.0, 1.0, 0.0]), r.apply([0.0, 1.0, 0.0]), atol=1e-5)
  # tilt / heading of a known mount, and the nearest signed axis swap of a 90-deg one
  tilt, heading = axes.tilt_heading(MOUNT.as_matrix())
  assert tilt == pytest.approx(TILT, abs=1e-6) and heading == pytest.approx(HEADING, abs=1e-6)
  near, off = axes.nearest_axes(axes.AxisMap('+y', '-x', '+z').matrix)
  assert near.spec() == {'forward': '+y', 'up': '-x', 'right': '+z'} and off < 1e-6
  bad = [
      (np.diag([1.0, 1.0, -1.0]).tolist(), r'sites\.shank\.rotation: matrix has determinant -1: '
       r'a mirror image'),
      ([[1, 0, 0], [0, 1, 0], [0, 0.2, 1]], r'sites\.shank\.rotation: matrix is not orthonormal'),
      ([[1, 0, 0], [0, 1, 0]], r'sites\.shank\.rotation: matrix of shape \(2, 3\)'),
      ({'quaternion': [2, 0, 0, 0]},
       r'sites\.shank\.rotation: quaternion \[2, 0, 0, 0\]: .*norm 1'),
      ({'euler_deg': [1, 2, 3], 'order': 'xyq'}, r"order 'xyq'"),
      ({'axis_angle': [1, 0, 0]}, r"sites\.shank\.rotation: keys \['axis_angle'\]"),
  ]
  raw = tmp_path / 'raw'
  for spec, match in bad:
    with pytest.raises(ValueError, match=match):
      lab_files.load_schema(fx.write_schema(raw / 'schema.yaml', _schema(rotation=spec)))
  both = _schema(rotation=specs[0], axes={'forward': '+x', 'up': '+y', 'right': '+z'})
  with pytest.raises(ValueError, match=r'sites\.shank: axes and rotation are mutually exclusive'):
    lab_files.load_schema(fx.write_schema(raw / 'schema.yaml', both))
  with pytest.raises(ValueError, match=r"sites\.shank\.calibrate: 'dynamic'; expected 'static'"):
    lab_files.load_schema(fx.write_schema(raw / 'schema.yaml', _schema(calibrate='dynamic')))


# -- (b) a synthetic tilted sensor ---------------------------------------------------------------

def test_static_calibration_recovers_a_tilted_mount(tmp_path):
  raw = tmp_path / 'raw'
  write_tilted_trial(raw / 'walk.csv')
  # Uncalibrated (sensor frame), gravity is the mount's tilt away from +y.
  b0 = _build(tmp_path / 'raw_frame', raw, fx.write_schema(raw / 'schema.yaml', _schema()),
              static_threshold_g=0.0)
  assert _angle(_first_window(b0)['acc'][0].mean(0), [0, 1, 0]) == pytest.approx(TILT, abs=1.0)
  b = _build(tmp_path / 'cal', raw, fx.write_schema(raw / 'schema.yaml',
                                                     _schema(calibrate='static')),
             static_threshold_g=0.0)
  first = _first_window(b)
  assert _angle(first['acc'][0].mean(0), [0, 1, 0]) < 2.0  # standing: gravity on +y
  site = b.info.metadata['axes']['sites']['shank']
  assert site['calibrate'] == 'static' and site['heading_from'] == 'sagittal gyro rule'
  ((stem, rep),) = site['trials'].items()
  assert stem.endswith('walk.csv')
  assert rep['tilt_deg'] == pytest.approx(TILT, abs=2.0)
  assert abs((rep['heading_deg'] - HEADING + 180) % 360 - 180) < 2.0
  assert _rot_angle(rep['matrix'], MOUNT.as_matrix()) < 3.0  # the whole rotation recovered
  assert rep['heading_from'] == 'sagittal gyro rule' and rep['sagittal']['dominance'] > 3
  gz = np.concatenate([e['gyr'][0, :, 2] for e in _all(b)])
  assert gz.max() > 3.5 and gz.max() > -1.2 * gz.min()  # swing peaks positive about +z


def test_declared_rotation_is_checked_and_can_be_levelled(tmp_path):
  raw = tmp_path / 'raw'
  write_tilted_trial(raw / 'walk.csv')
  # The exact mount as a quaternion: passes the up and forward/right checks.
  q = {'quaternion': MOUNT.as_quat(scalar_first=True).tolist()}
  b = _build(tmp_path / 'q', raw, fx.write_schema(raw / 'schema.yaml', _schema(rotation=q)),
             static_threshold_g=0.0)
  assert _angle(_first_window(b)['acc'][0].mean(0), [0, 1, 0]) < 1.0
  # Turned 180 deg about up: gravity is still on +y, but forward / right point backwards / left.
  wrong = Rotation.from_euler('y', 180, degrees=True) * MOUNT
  schema = fx.write_schema(raw / 'schema.yaml', _schema(rotation=wrong.as_matrix().tolist()))
  with pytest.raises(ValueError, match=r"walk\.csv: site 'shank': while walking, the sagittal rate "
                     r'\(about \+z = right\) peaks at -\d\.\d+ rad/s.*forward and right point '
                     r'backwards and left'):
    _build(tmp_path / 'wrong', raw, schema)
  _build(tmp_path / 'unchecked', raw, schema, check_axes=False, static_threshold_g=0.0)
  # A declared frame 10 deg off (about body forward), with calibrate: static, is levelled back.
  off = Rotation.from_rotvec(np.radians(10.0) * np.array([1.0, 0.0, 0.0])) * MOUNT
  eul = {'euler_deg': off.as_euler('XYZ', degrees=True).tolist(), 'order': 'XYZ'}
  b = _build(tmp_path / 'lev', raw, fx.write_schema(raw / 'schema.yaml', _schema(
      rotation=eul, calibrate='static')), static_threshold_g=0.0)
  assert _angle(_first_window(b)['acc'][0].mean(0), [0, 1, 0]) < 2.0
  (rep,) = b.info.metadata['axes']['sites']['shank']['trials'].values()
  assert rep['heading_from'] == 'declared' and rep['tilt_deg'] == pytest.approx(10.0, abs=2.0)
  assert _rot_angle(rep['matrix'], MOUNT.as_matrix()) < 3.0


def test_calibration_says_what_it_cannot_resolve():
  acc, gyr = walk_body()
  t = np.arange(len(acc)) / FS
  up = np.tile([0.0, 9.81, 0.0], (len(t), 1))
  # No still second: the whole trial moves.
  with pytest.raises(preprocess.TrialError, match=r"t1: site 'shank': calibrate static needs 1 s "
                     r'still .*the stillest stretch'):
    axes.calibrate_static(acc[200:], gyr[200:], FS, 'shank', 't1')
  # A trunk-like site: the horizontal rotation is a slow symmetric roll, not a sagittal swing.
  roll = np.stack([1.5 * np.sin(2 * np.pi * t / 1.1), 0 * t,
                   1.2 * np.sin(2 * np.pi * t / 1.1 + 1)], 1) * (t >= 1.5)[:, None]
  with pytest.raises(preprocess.TrialError, match=r"t2: site 'trunk': calibrate static cannot fix "
                     r'the heading: .*need a ratio of 1\.2.*need 2: a leg segment swinging.*'
                     r'declare axes or rotation beside '
                     r'calibrate: static'):
    axes.calibrate_static(up, roll, FS, 'trunk', 't2')
  assert axes.check_forward_right(roll, FS, 'trunk', 't2') is None  # the check cannot tell
  # A foot: flat in stance, a fast toe-down push-off, a slower toe-up swing, toe-down loading.
  # Its larger peak is negative, so the rule would turn it 180 deg: refused; not checked.
  ph = ((t - 1.5) / 1.1) % 1.0
  wz = np.select([(ph >= 0.3) & (ph < 0.45), (ph >= 0.45) & (ph < 0.85), ph >= 0.85],
                 [-6.0 * np.sin(np.pi * (ph - 0.3) / 0.15), 4.0 * np.sin(np.pi * (ph - 0.45) / 0.4),
                  -3.0 * np.sin(np.pi * (ph - 0.85) / 0.15)]) * (t >= 1.5)
  foot = np.stack([0 * t, 0 * t, wz], 1)
  assert axes.foot_flat_fraction(foot, FS) > 0.2
  with pytest.raises(preprocess.TrialError, match=r'cannot fix the heading: the rate rests \d+% '
                     r'of the walking time \(need under 4%\): a foot'):
    axes.calibrate_static(up, foot, FS, 'foot', 't3')
  assert axes.check_forward_right(foot, FS, 'foot', 't3') is None


# -- (c) the real Xsens shank --------------------------------------------------------------------

def test_real_xsens_shank_static_calibration(tmp_path):
  schema = real_xsens_schema(tmp_path, calibrate='static')
  b = _build(tmp_path, REAL_IMU, schema, t_len=128, static_threshold_g=0.0)
  exs = _all(b)
  first = min(exs, key=lambda e: float(e['start_s']))  # standing, 0-1.3 s
  up = _angle(first['acc'][0].mean(0), [0, 1, 0])
  assert up < 2.0
  (rep,) = b.info.metadata['axes']['sites']['shank']['trials'].values()
  # Measured: the sensor's +y is 97.1 deg from up (gravity 13.4 deg off sensor -x), heading
  # 4.4 deg; that is 15.5 deg from the hand-derived axis swap of docs/bring_your_own_data.md
  # (forward +y, up -x, right +z): its 13.4 deg tilt and a 7.7 deg turn about up.
  assert rep['tilt_deg'] == pytest.approx(97.1, abs=2.0)
  assert rep['heading_deg'] == pytest.approx(4.4, abs=2.0)
  assert rep['nearest_axes'] == {'forward': '+y', 'up': '-x', 'right': '+z'}
  assert rep['off_nearest_axes_deg'] < 20.0
  gz = np.concatenate([e['gyr'][0, :, 2] for e in exs])
  assert gz.max() > 4.0 and gz.max() > -gz.min()  # mid-swing peaks positive about +z
