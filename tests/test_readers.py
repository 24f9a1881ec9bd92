"""Readers: Xsens text exports (both header variants, real files), C3D, MATLAB tables, HDF5."""

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from data_prep.readers import c3d, tables, xsens

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import SHARED_DATA  # noqa: E402

REAL_IMU = SHARED_DATA / 'real_imu' / 'walking_xsens_lowerLeg.txt'
REAL_IPOL = SHARED_DATA / 'real_gait_ipol'


def _signals(n=300, fs=100.0):
  t = np.arange(n) / fs
  acc = np.stack([np.sin(t), 9.81 + 0 * t, np.cos(t)], 1)
  gyr = np.stack([0.1 * t, -t, 2 * np.sin(3 * t)], 1)
  return acc, gyr


@pytest.mark.parametrize('variant', ['plain', 'comment'])
def test_xsens_round_trip_both_variants(tmp_path, variant):
  acc, gyr = _signals()
  p = tmp_path / 'rec.txt'
  xsens.write_xsens_txt(p, acc, gyr, 100.0, variant=variant, counter=np.arange(300) + 5)
  e = xsens.read_xsens_txt(p)
  assert e.variant == variant and e.sample_rate_hz == 100.0
  np.testing.assert_allclose(e.acc(), acc, atol=1e-6)
  np.testing.assert_allclose(e.gyr(), gyr, atol=1e-6)
  np.testing.assert_array_equal(e.counter, np.arange(300) + 5)


def test_xsens_errors(tmp_path):
  acc, gyr = _signals()
  p = tmp_path / 'rec.txt'
  xsens.write_xsens_txt(p, acc, gyr, 100.0)
  with pytest.raises(ValueError, match=r'rec\.txt: header says 100 Hz, expected 120 Hz'):
    xsens.read_xsens_txt(p, sample_rate_hz=120.0)
  with pytest.raises(FileNotFoundError, match='nope.txt: Xsens text export not found'):
    xsens.read_xsens_txt(tmp_path / 'nope.txt')
  # Missing gyro columns.
  text = p.read_text().replace('Gyr_Z', 'Foo_Z')
  q = tmp_path / 'nogyr.txt'
  q.write_text(text)
  with pytest.raises(KeyError, match=r"nogyr\.txt: missing column\(s\) \['Gyr_Z'\]"):
    xsens.read_xsens_txt(q).gyr()
  # A NaN sample (empty field).
  lines = p.read_text().splitlines()
  f = lines[10].split('\t')
  f[2] = 'nan'
  lines[10] = '\t'.join(f)
  r = tmp_path / 'nan.txt'
  r.write_text('\n'.join(lines) + '\n')
  with pytest.raises(ValueError, match=r"nan\.txt: line 11, column 'Acc_Y' is NaN/Inf"):
    xsens.read_xsens_txt(r).acc()
  # No rate anywhere.
  s = tmp_path / 'norate.txt'
  s.write_text('\n'.join(lines[1:]) + '\n')
  with pytest.raises(ValueError, match='no sample rate in the header'):
    xsens.read_xsens_txt(s)
  assert xsens.read_xsens_txt(s, sample_rate_hz=50.0).sample_rate_hz == 50.0


def test_xsens_real_comment_variant():
  if not REAL_IMU.exists():
    pytest.skip(f'real Xsens file absent: {REAL_IMU} (shared data folder not present)')
  e = xsens.read_xsens_txt(REAL_IMU)
  assert e.variant == 'comment' and e.sample_rate_hz == 120.0
  acc, gyr = e.acc(), e.gyr()
  assert acc.shape == gyr.shape == (3511, 3)
  np.testing.assert_array_equal(np.diff(e.counter), 1)  # no dropped packets in this file
  # Standing at the start: about -9.8 m/s^2 on x (README), |acc| near g.
  assert -10.5 < acc[:100, 0].mean() < -9.0
  assert abs(np.linalg.norm(acc[:100], axis=1).mean() - 9.81) < 0.5


def test_xsens_real_plain_variant():
  p = REAL_IPOL / '1-1_lb.txt'
  if not p.exists():
    pytest.skip(f'real IPOL file absent: {p} (shared data folder not present)')
  e = xsens.read_xsens_txt(p)
  assert e.variant == 'plain' and e.sample_rate_hz == 100.0
  assert e.acc().shape == (2913, 3)
  assert abs(np.linalg.norm(e.acc()[:100], axis=1).mean() - 9.81) < 0.6


def test_c3d_round_trip(tmp_path):
  acc, _ = _signals(n=200, fs=1000.0)
  p = tmp_path / 'trial.c3d'
  c3d.write_c3d_analogs(p, {'shank_Acc_X': acc[:, 0], 'Fz': 700 + acc[:, 2]}, 1000.0,
                        units={'shank_Acc_X': 'g', 'Fz': 'N'}, point_rate_hz=100.0)
  a = c3d.read_c3d_analogs(p)
  assert a.sample_rate_hz == 1000.0 and a.labels == ['shank_Acc_X', 'Fz']
  assert a.unit_of('Fz') == 'N'
  np.testing.assert_allclose(a.channels(['Fz'])[:, 0], 700 + acc[:, 2], rtol=1e-6)
  with pytest.raises(KeyError, match=r"trial\.c3d: missing analog channel\(s\) \['Fy'\]"):
    a.channels(['Fy'])
  with pytest.raises(FileNotFoundError, match='C3D file not found'):
    c3d.read_c3d_analogs(tmp_path / 'x.c3d')


def test_mat_table_round_trip_and_errors(tmp_path):
  import matio

  df = pd.DataFrame({'Header': np.arange(5) / 200.0, 'shank_Accel_X': np.arange(5.0)})
  p = tmp_path / 't.mat'
  matio.save_to_mat(str(p), {'data': df}, version='v7')
  back = tables.load_mat_table(p)
  np.testing.assert_allclose(back['shank_Accel_X'], np.arange(5.0))
  with pytest.raises(KeyError, match=r"t\.mat: missing column\(s\) \['shank_Gyro_X'\]"):
    tables.require_columns(back, ['shank_Gyro_X'], str(p))
  with pytest.raises(KeyError, match="no variable 'speed'"):
    tables.load_mat_table(p, 'speed')
  with pytest.raises(FileNotFoundError, match='holding a MATLAB table'):
    tables.load_mat_table(tmp_path / 'missing.mat')
  (tmp_path / 'junk.mat').write_bytes(b'not a mat file at all' * 10)
  with pytest.raises(ValueError, match='not a readable .mat file'):
    tables.load_mat_table(tmp_path / 'junk.mat')


def test_h5_steps_and_tables(tmp_path):
  p = tmp_path / 's.h5'
  x = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
  with h5py.File(p, 'w') as f:
    f.create_dataset('subject_01', data=x)
    f.attrs['columns'] = json.dumps(['a', 'b', 'c'])
    f.create_dataset('flat', data=x[0])
  steps, cols = tables.read_h5_steps(p, 'subject_01')
  assert cols == ['a', 'b', 'c'] and steps.shape == (2, 4, 3)
  df = tables.read_h5_table(p, 'flat')
  np.testing.assert_array_equal(df['c'], x[0, :, 2])
  with pytest.raises(KeyError, match=r"no dataset 'subject_02'"):
    tables.read_h5_steps(p, 'subject_02')
  with pytest.raises(ValueError, match=r'expected \[n_steps, T, 3\]'):
    tables.read_h5_steps(p, 'flat')


def test_signal_plots_put_the_real_shank_in_the_body_frame(tmp_path, monkeypatch):
  """plot_signals draws the real file rotated by its axis map: standing, gravity reads on +y
  (the synthetic shank's nominal frame), and the plot goes to runs/plots/ (ignored by git)."""
  if not REAL_IMU.exists():
    pytest.skip(f'real Xsens file absent: {REAL_IMU} (shared data folder not present)')
  from data_prep import plot_signals

  m = plot_signals.parse_axes(plot_signals.XSENS_SHANK_AXES)
  still = m.apply(xsens.read_xsens_txt(REAL_IMU).acc()[81:201]).mean(0)
  assert still[1] > 9.0 and abs(still[0]) < 2.5 and abs(still[2]) < 2.5
  assert plot_signals.parse_axes('sensor') is plot_signals.axes.SENSOR
  with pytest.raises(ValueError, match="--axes='up': expected"):
    plot_signals.parse_axes('up')
  monkeypatch.chdir(tmp_path)
  plot_signals.main(['xsens', str(REAL_IMU), '--seconds', '1'])
  assert (tmp_path / 'runs' / 'plots' / 'real_xsens_shank.png').stat().st_size > 1000


def test_broken_tables_name_their_file(tmp_path):
  """A CSV row with an extra field and a truncated HDF5 file: one error naming the file (and
  the line), not a library traceback without a path."""
  import h5py

  bad = tmp_path / 'trial.csv'
  bad.write_text('a,b,c\n1,2,3\n4,5,6\n7,8,9,10\n11,12,13\n')
  with pytest.raises(ValueError, match=rf'{bad}: not a regular table \(Expected 3 fields in line '
                                       r'4, saw 4; line numbers count the header row as line 1\)'):
    tables.read_csv_table(bad)
  good = tmp_path / 'steps.h5'
  with h5py.File(good, 'w') as f:
    f.create_dataset('subject_01', data=np.zeros((4, 50, 2)))
    f.attrs['columns'] = json.dumps(['x', 'y'])
  cut = tmp_path / 'cut.h5'
  cut.write_bytes(good.read_bytes()[:good.stat().st_size // 2])
  assert tables.read_h5_steps(good, 'subject_01')[0].shape == (4, 50, 2)
  for read in (lambda p: tables.read_h5_steps(p, 'subject_01'), tables.read_h5_table):
    with pytest.raises(ValueError, match=rf'{cut}: not a readable HDF5 file \(.*truncated'):
      read(cut)
