"""lab_files with native device exports (x-IMU3, NGIMU, APDM Opal, Xsens DOT), ``time_unit``, and
time columns that jitter. Every fixture is written here in the device's documented layout (the
headers typed out, not taken from the readers): gravity on sensor +z with a small x sway, and a
0.5 Hz turn about z peaking at 90 deg/s, so built values are checked sample by sample in SI."""

import re
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from data_prep import preprocess
from data_prep.readers import apdm, devices, xio, xsens_dot

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import lab as fx  # noqa: E402
from test_lab_files import _all, _build  # noqa: E402 (the lab_files build helpers)

XIMU3_HEADER = ('Timestamp (us),Gyroscope X (deg/s),Gyroscope Y (deg/s),Gyroscope Z (deg/s),'
                'Accelerometer X (g),Accelerometer Y (g),Accelerometer Z (g)')
NGIMU_HEADER = ('Time (s),Gyroscope X (deg/s),Gyroscope Y (deg/s),Gyroscope Z (deg/s),'
                'Accelerometer X (g),Accelerometer Y (g),Accelerometer Z (g),Magnetometer X (uT),'
                'Magnetometer Y (uT),Magnetometer Z (uT),Barometer (hPa)')
DOT_HEAD = ['sep=,', 'DeviceTag:,{tag}', 'FirmwareVersion:,2.0.0', 'AppVersion:,2021.0',
            'SyncStatus:,Synced', 'OutputRate:,{rate}Hz', 'FilterProfile:,General',
            'Measurement Mode:,Custom Mode 4', 'StartTime: ,2021-08-20_20:21:13_829 GMT+8',
            '\u00a9 Xsens Technologies B. V. 2005-2021', '',
            'PacketCounter,SampleTimeFine,Euler_X,Euler_Y,Euler_Z,Acc_X,Acc_Y,Acc_Z,Gyr_X,Gyr_Y,'
            'Gyr_Z']
UNLABELLED = {'static_threshold_g': 0.0}  # the synthetic turn is too calm for the static filter


def motion(t):
  """acc (g) and gyr (deg/s) [len(t), 3] at times t (s)."""
  z = np.zeros_like(t)
  return (np.stack([0.05 * np.sin(2 * np.pi * t), z, 1.0 + z], 1),
          np.stack([z, z, 90.0 * np.sin(np.pi * t)], 1))


def check_si(exs, fs, t0=0.0, atol=1e-3):
  """Every window equals the motion at its time, in m/s^2 (g x preprocess.G) and rad/s."""
  assert exs
  for e in exs:
    acc, gyr = motion(t0 + float(e['start_s']) + np.arange(e['acc'].shape[1]) / fs)
    for k in range(e['acc'].shape[0]):
      np.testing.assert_allclose(e['acc'][k], acc * preprocess.G, atol=atol)
      np.testing.assert_allclose(e['gyr'][k], np.radians(gyr), atol=atol)


def write_ximu3(folder, n, fs, t0_us=19150794, delay=0, drop=()):
  """An x-IMU3 logger folder: Inertial.csv, microsecond device clock, one row per sample."""
  k = np.setdiff1d(np.arange(delay, n), drop)
  acc, gyr = motion(k / fs)
  folder.mkdir(parents=True, exist_ok=True)
  rows = [f'{t0_us + int(round(1e6 * i / fs))},' + ','.join(f'{v:.6f}' for v in (*g, *a))
          for i, a, g in zip(k, acc, gyr, strict=True)]
  (folder / 'Inertial.csv').write_text('\n'.join([XIMU3_HEADER] + rows) + '\n')


def write_ngimu(folder, n, fs, settings_rate='50f', repeat=(10,)):
  """An NGIMU folder: sensors.csv (with a repeated row, as real logs have) and Settings.txt."""
  t = np.arange(n) / fs
  acc, gyr = motion(t)
  folder.mkdir(parents=True, exist_ok=True)
  rows = []
  for i in range(n):
    rows.append(f'{t[i]:.9f},' + ','.join(f'{v:.7g}' for v in (*gyr[i], *acc[i]))
                + ',-0.4640059,-19.16631,-40.76735,1027.018')
    if i in repeat:
      rows.append(rows[-1])
  (folder / 'sensors.csv').write_text('\n'.join([NGIMU_HEADER] + rows) + '\n')
  (folder / 'Settings.txt').write_text(
      '/name, "NGIMU-Blue"\n/serialnumber, "0029D0B4"\n/wifi/enabled, True\n'
      + (f'/rate/sensors, {settings_rate}\n' if settings_rate else '')
      + '/rate/quaternion, 50f\n/rate/battery, 1f\n')


def write_apdm(path, n, fs, labels=('Lumbar', 'Right Foot')):
  """An Opal v5 file: /Sensors/<id>/ Accelerometer, Gyroscope, Magnetometer, Time, Configuration."""
  path.parent.mkdir(parents=True, exist_ok=True)
  acc, gyr = motion(np.arange(n) / fs)
  t_us = 1_650_000_000_000_000 + np.round(np.arange(n) * 1e6 / fs).astype(np.uint64)
  with h5py.File(path, 'w') as f:
    f.attrs['FileFormatVersion'] = 5
    f.create_group('Annotations')
    for k, label in enumerate(labels):
      g = f.create_group(f'Sensors/SI-00{1234 + k}')
      g.create_dataset('Accelerometer', data=(acc * preprocess.G).astype(np.float32))
      g.create_dataset('Gyroscope', data=np.radians(gyr).astype(np.float32))
      g.create_dataset('Magnetometer', data=np.zeros((n, 3), np.float32))
      g.create_dataset('Time', data=t_us)
      c = g.create_group('Configuration')
      c.attrs['Label 0'] = label.encode()
      c.attrs['Sample Rate'] = np.uint16(fs)


def write_dot(path, n, fs, tag='Shank', stf0=2**32 - 1_000_000, zero_first=True, counter0=0):
  """A DOT app export: header lines, PacketCounter (16 bit, from ``counter0``), SampleTimeFine
  (us, wrapping at 2^32), Acc m/s^2, Gyr deg/s. Data row i is file line 13 + i."""
  t = np.arange(n) / fs
  acc, gyr = motion(t)
  rows = []
  for i in range(n):
    a, g = (acc[i] * preprocess.G, gyr[i]) if i or not zero_first else (np.zeros(3), np.zeros(3))
    stf = (stf0 + int(round(1e6 * t[i]))) % 2**32
    rows.append(f'{(counter0 + i) % 65536},{stf},0.1,0.2,0.3,'
                + ','.join(f'{v:.8f}' for v in (*a, *g)))
  path.parent.mkdir(parents=True, exist_ok=True)
  head = [h.format(tag=tag, rate=f'{fs:g}') for h in DOT_HEAD]
  path.write_text('\n'.join(head + rows) + '\n', encoding='utf-8')


def test_ximu3_session_two_devices_rate_from_timestamps(tmp_path, caplog):
  raw = tmp_path / 'raw'
  write_ximu3(raw / 'P01' / 'Trunk 6A3B204B (USB)', 800, 100.0)
  # The shank starts one sample later and drops a packet (a 20 ms step, as real logs do).
  write_ximu3(raw / 'P01' / 'Shank 673B204B (USB)', 800, 100.0, delay=1, drop=(300,))
  schema = fx.write_schema(raw / 'schema.yaml', {
      'format': 'ximu3', 'sites': {'trunk': {}, 'shank': {}},
      'subjects': [{'id': 1, 'files': ['P01']}]})
  with caplog.at_level('WARNING', logger='data_prep.readers.timestamps'):
    b = _build(tmp_path / 'a', raw, schema, **UNLABELLED)
  (line,) = [r.getMessage() for r in caplog.records if 'resampled onto a uniform' in r.getMessage()]
  assert 'steps up to 100 % off' in line and 'starting up to 10.0 ms apart' in line, line
  # The rate the timestamps give is recorded, with where it came from.
  assert b.info.metadata['source_rate_hz'] == 100.0
  (rate,) = b.info.metadata['source_rates_hz'].values()
  assert rate['hz'] == 100.0 and rate['from'].startswith('the timestamps of ')
  exs = _all(b)
  assert len(exs) == 7  # common span 0.01-7.99 s at 100 Hz: 799 samples -> 7 windows of 100
  check_si(exs, 100.0, t0=0.01)
  # The rate is the timestamps': a declared rate that disagrees names where it came from.
  bad = fx.write_schema(raw / 'schema.yaml', {
      'format': 'ximu3', 'sample_rate_hz': 200, 'sites': {'trunk': {}, 'shank': {}},
      'subjects': [{'id': 1, 'files': ['P01']}]})
  with pytest.raises(ValueError, match=r'Inertial\.csv \(timestamps\): 100 Hz, but the schema '
                                       r'says sample_rate_hz: 200'):
    _build(tmp_path / 'b', raw, bad, **UNLABELLED)


def test_ngimu_folder_rate_from_settings(tmp_path):
  raw = tmp_path / 'raw'
  write_ngimu(raw / 'NGIMU-Blue - 0029D0B4', 400, 50.0)
  schema = fx.write_schema(raw / 'schema.yaml', {
      'format': 'ngimu', 'sites': {'shank': {}},
      'subjects': [{'id': 1, 'files': ['NGIMU-Blue*']}]})
  b = _build(tmp_path / 'a', raw, schema, t_len=50, rate=50, **UNLABELLED)
  exs = _all(b)
  assert len(exs) == 8  # 8 s at 50 Hz (the repeated row dropped), windows of 50
  check_si(exs, 50.0)
  (rate,) = b.info.metadata['source_rates_hz'].values()
  assert b.info.metadata['source_rate_hz'] == 50.0 and rate['from'].endswith('(/rate/sensors)')
  rec = xio.read_ngimu(raw / 'NGIMU-Blue - 0029D0B4')
  assert (rec.rate_hz, rec.name) == (50.0, 'NGIMU-Blue - 0029D0B4')
  # Settings.txt, not the schema or the timestamps, states the rate.
  write_ngimu(raw / 'NGIMU-Blue - 0029D0B4', 400, 50.0, settings_rate='100f')
  with pytest.raises(ValueError, match=r'sensors\.csv: timestamps imply 50\.000 Hz, .*Settings\.'
                                       r'txt \(/rate/sensors\) says 100 Hz'):
    _build(tmp_path / 'b', raw, schema, t_len=50, rate=50, **UNLABELLED)


def test_apdm_sites_by_label(tmp_path):
  raw = tmp_path / 'raw'
  write_apdm(raw / 'walk_01.h5', 1280, 128.0)
  schema = fx.write_schema(raw / 'schema.yaml', {
      'format': 'apdm', 'sites': {'right_foot': {}, 'lumbar': {}},
      'subjects': [{'id': 3, 'files': ['*.h5']}]})
  b = _build(tmp_path / 'a', raw, schema, t_len=128, rate=128, **UNLABELLED)
  exs = _all(b)
  assert len(exs) == 10 and b.info.metadata['imu_sites'] == ['right_foot', 'lumbar']
  check_si(exs, 128.0, atol=1e-4)
  recs = apdm.read_apdm(raw / 'walk_01.h5')
  assert sorted(recs) == ['Lumbar', 'Right Foot'] and recs['Lumbar'].rate_hz == 128.0
  with pytest.raises(KeyError, match=r"walk_01\.h5: site 'thigh' matches 0 device\(s\) ; found "
                                     r"\['Lumbar', 'Right Foot'\]"):
    devices.read_sites('apdm', raw / 'walk_01.h5', ['thigh', 'lumbar'])


def test_xsens_dot_export(tmp_path):
  raw = tmp_path / 'raw'
  write_dot(raw / 'Shank_D4CA6EF17860_20210830_170505.csv', 481, 60.0)
  schema = fx.write_schema(raw / 'schema.yaml', {
      'format': 'xsens_dot', 'sites': {'shank': {}},
      'subjects': [{'id': 1, 'files': ['Shank_*.csv']}]})
  b = _build(tmp_path / 'a', raw, schema, t_len=60, rate=60, **UNLABELLED)
  exs = _all(b)
  assert len(exs) == 8  # the all-zero first packet dropped: 480 samples
  check_si(exs, 60.0, t0=1 / 60.0)
  rec = xsens_dot.read_xsens_dot(raw / 'Shank_D4CA6EF17860_20210830_170505.csv')
  assert rec.name == 'Shank' and rec.rate_hz == 60.0
  assert np.all(np.diff(rec.time_s) > 0)  # SampleTimeFine wrapped at 2^32 and was unwrapped


def _edit_lines(path, fn):
  path.write_text('\n'.join(fn(path.read_text().splitlines())) + '\n')


def test_device_exports_follow_the_counter_and_last_line_rules(tmp_path, caplog):
  """Xsens DOT (a packet counter): an identical repeat is dropped with a warning, another repeat
  skips the trial, a gap over max_gap is never spliced (windows touching it left out), the
  16-bit wrap is unwrapped. x-IMU3 / NGIMU (timestamps only): a row written twice is dropped, a
  timestamp repeated with other values skips the trial. A half-written last line is dropped."""
  raw = tmp_path / 'raw'
  dot = raw / 'Shank_D4CA6EF17860_20210830_170505.csv'
  schema = fx.write_schema(raw / 'schema.yaml', {
      'format': 'xsens_dot', 'sites': {'shank': {}},
      'subjects': [{'id': 1, 'files': ['Shank_*.csv']}]})

  def build(name):
    return _build(tmp_path / name, raw, schema, t_len=60, rate=60, **UNLABELLED)
  write_dot(dot, 481, 60.0)
  _edit_lines(dot, lambda r: r[:113] + [r[112]] + r[113:])  # data row 100 written twice
  with caplog.at_level('WARNING'):
    assert len(_all(build('same'))) == 8
  assert f'{dot}: packet 100 written twice (data rows 101 and 102, identical values) at file ' \
         'lines 113 and 114: the copy is dropped' in caplog.text
  write_dot(dot, 481, 60.0)
  _edit_lines(dot, lambda r: r[:113] + [r[112].rsplit(',', 1)[0] + ',7.5'] + r[113:])  # Gyr_Z
  with pytest.raises(ValueError, match=r'packet counter is not increasing at data row 102 \(file '
                                       r'line 114: counter 100 -> 100, repeated with other values'):
    build('other')
  write_dot(dot, 481, 60.0)
  _edit_lines(dot, lambda r: r[:212] + r[242:])  # packets 200-229 lost
  caplog.clear()
  with caplog.at_level('WARNING'):
    exs = _all(build('gap'))
  assert 'counter gap(s) of more than max_gap=10 packets (largest: 30 missing' in caplog.text
  # The window over the gap (samples 180-239 after the dropped zero row) is left out; the
  # others keep their real times.
  assert sorted(round(float(e['start_s']) * 60) for e in exs) == [0, 60, 120, 240, 300, 360, 420]
  check_si(exs, 60.0, t0=1 / 60.0)
  write_dot(dot, 481, 60.0, counter0=65536 - 200)
  assert len(_all(build('wrap'))) == 8
  write_dot(dot, 481, 60.0)
  _edit_lines(dot, lambda r: r[:-1] + [r[-1][:len(r[-1]) // 2]])
  caplog.clear()
  with caplog.at_level('WARNING'):
    assert len(_all(build('cut'))) == 7  # 479 samples
  assert f'{dot}: line 493 is half-written' in caplog.text
  # x-IMU3: a half-written last line; NGIMU: a row written twice, then one with other values.
  x3 = tmp_path / 'x3'
  write_ximu3(x3 / 'P01' / 'Shank 673B204B (USB)', 800, 100.0)
  _edit_lines(x3 / 'P01' / 'Shank 673B204B (USB)' / 'Inertial.csv',
              lambda r: r[:-1] + [r[-1][:len(r[-1]) // 2]])
  caplog.clear()
  with caplog.at_level('WARNING'):
    rec = xio.read_ximu3(x3 / 'P01' / 'Shank 673B204B (USB)')
  assert len(rec.time_s) == 799 and 'Inertial.csv: line 801 is half-written' in caplog.text
  ng = tmp_path / 'ng' / 'NGIMU-Blue - 0029D0B4'
  write_ngimu(ng, 400, 50.0)  # row 10 written twice: lines 12 and 13
  ng_schema = fx.write_schema(ng.parent / 'schema.yaml', {
      'format': 'ngimu', 'sites': {'shank': {}}, 'subjects': [{'id': 1, 'files': ['NGIMU*']}]})
  caplog.clear()
  with caplog.at_level('WARNING'):
    _build(tmp_path / 'ng1', ng.parent, ng_schema, t_len=50, rate=50, **UNLABELLED)
  assert ('sensors.csv: 1 row(s) written twice (identical timestamp and values; the first at file '
          'line 12 and file line 13): the copies are dropped' in caplog.text)
  _edit_lines(ng / 'sensors.csv', lambda r: r[:12] + [r[12].replace(',1,', ',1.5,', 1)] + r[13:])
  with pytest.raises(ValueError, match=r'sensors\.csv: timestamp 0\.200000 s repeated with other '
                                       r'values at file line 12 and file line 13'):
    _build(tmp_path / 'ng2', ng.parent, ng_schema, t_len=50, rate=50, **UNLABELLED)


def test_csv_time_in_microseconds(tmp_path):
  raw = tmp_path / 'raw'
  fx.write_csv_trial(raw / 'S01_walk.csv', 1, 70.0, [1.1, 1.3])
  df = pd.read_csv(raw / 'S01_walk.csv')
  df['time'] = np.round(df['time'] * 1e6).astype(np.int64) + 5_000_000  # device clock, us
  df.to_csv(raw / 'S01_walk.csv', index=False)
  one = [{'id': 1, 'files': ['S01_*.csv'], 'mass_kg': 70.0}]
  b = _build(tmp_path / 'us', raw, fx.write_schema(raw / 'schema.yaml', fx.csv_schema(
      subjects=one, time_unit='us')))
  assert sorted(round(float(e['peak_vgrf']), 5) for e in _all(b)) == [1.1, 1.1, 1.1, 1.1, 1.1,
                                                                      1.3, 1.3, 1.3, 1.3]
  with pytest.raises(ValueError, match=r"schema\.yaml: time_unit: 'ns' is not a time unit; "
                                       r"expected one of \['s', 'ms', 'us'\]"):
    _build(tmp_path / 'ns', raw, fx.write_schema(raw / 'schema.yaml', fx.csv_schema(
        subjects=one, time_unit='ns')))
  # Read as seconds, the same column is a 0 Hz clock: the trial is skipped with that reason.
  with pytest.raises(ValueError, match=r'S01_walk\.csv: time column implies 0\.000 Hz'):
    _build(tmp_path / 's', raw, fx.write_schema(raw / 'schema.yaml', fx.csv_schema(
        subjects=one)))


def test_jittered_time_column_is_resampled_on_the_real_times(tmp_path, caplog):
  raw = tmp_path / 'raw'
  fx.write_csv_trial(raw / 'S01_walk.csv', 1, 70.0, [1.2], seconds=8.0)
  df = pd.read_csv(raw / 'S01_walk.csv')
  rng = np.random.default_rng(0)
  t = df['time'].to_numpy() + rng.uniform(-0.003, 0.003, len(df))  # +-30 % of the 10 ms step
  df['time'] = t
  df.to_csv(raw / 'S01_walk.csv', index=False)
  sites = fx.site_columns()
  for site in sites.values():
    del site['axes']  # sensor frame: the file's columns, converted
  schema = fx.write_schema(raw / 'schema.yaml', fx.csv_schema(
      sites=sites, subjects=[{'id': 1, 'files': ['S01_*.csv']}], force=None, targets=None))
  with caplog.at_level('WARNING', logger='data_prep.readers.timestamps'):
    b = _build(tmp_path / 'a', raw, schema, **UNLABELLED)
  msgs = [r.getMessage() for r in caplog.records if 'resampled onto a uniform 100 Hz' in
          r.getMessage()]
  assert len(msgs) == 1 and 'S01_walk.csv' in msgs[0], msgs
  n = int(np.floor((t[-1] - t[0]) * 100 + 1e-6)) + 1
  exs = sorted(_all(b), key=lambda x: float(x['start_s']))  # the data source's order varies
  assert len(exs) == n // 100
  e = exs[3]
  at = t[0] + float(e['start_s']) + np.arange(100) / 100.0  # the grid starts at the first stamp
  np.testing.assert_allclose(e['acc'][1, :, 2], np.interp(at, t, df['shank_acc_z'])
                             * preprocess.G, atol=1e-4)
  gx = np.radians(np.interp(at, t, df['trunk_gyr_x']))
  assert e['gyr'][0, 37, 0] == pytest.approx(gx[37], abs=1e-4)  # one sample, by hand
  np.testing.assert_allclose(e['gyr'][0, :, 0], gx, atol=1e-4)
  # Taking the rows at the nominal rate instead would be off by up to 3 ms of movement.
  nominal = max(np.abs(x['gyr'][0, :, 0] - np.radians(df['trunk_gyr_x'].to_numpy()[
      int(round(float(x['start_s']) * 100)) + np.arange(100)])).max() for x in exs)
  assert nominal > 0.01


def test_device_file_errors_name_the_file(tmp_path):
  # Missing files.
  (tmp_path / 'empty').mkdir()
  with pytest.raises(FileNotFoundError, match=r'empty: no Inertial\.csv in it or in its '
                                               r'subfolders'):
    devices.read_sites('ximu3', tmp_path / 'empty', ['trunk'])
  write_ngimu(tmp_path / 'ng', 100, 50.0)
  (tmp_path / 'ng' / 'Settings.txt').unlink()
  with pytest.raises(FileNotFoundError, match=r'ng/Settings\.txt: not found \(expected the NGIMU '
                                              r'settings file, with a line "/rate/sensors'):
    xio.read_ngimu(tmp_path / 'ng')
  write_ngimu(tmp_path / 'ng', 100, 50.0, settings_rate='')
  with pytest.raises(ValueError, match=r'Settings\.txt: no line "/rate/sensors, <Hz>"'):
    xio.read_ngimu(tmp_path / 'ng')
  with pytest.raises(FileNotFoundError, match=r'nothing\.h5: not found \(expected an APDM'):
    apdm.read_apdm(tmp_path / 'nothing.h5')
  # Malformed headers.
  write_ximu3(tmp_path / 'x3', 100, 100.0)
  f = tmp_path / 'x3' / 'Inertial.csv'
  f.write_text(f.read_text().replace('Gyroscope X (deg/s)', 'Gyro X'))
  with pytest.raises(ValueError, match=r"x3/Inertial\.csv: line 1: no column\(s\) \['Gyroscope "
                                       r"X'\] \(as \"Name \(unit\)\"\); expected the header "
                                       r"'Timestamp \(us\),Gyroscope X"):
    xio.read_ximu3(tmp_path / 'x3')
  f.write_text(f.read_text().replace('Gyro X', 'Gyroscope X (deg/s)').replace('deg/s', 'dpm'))
  with pytest.raises(ValueError, match=r"Inertial\.csv: line 1: Gyroscope X: unit 'dpm' is not a "
                                       r'known gyr unit'):
    xio.read_ximu3(tmp_path / 'x3')
  with h5py.File(tmp_path / 'v4.h5', 'w') as h:
    h.attrs['FileFormatVersion'] = 4
    h.create_group('SI-001234/Calibrated')
  with pytest.raises(ValueError, match=r'v4\.h5: no /Sensors group \(file format version 4\); '
                                       r'expected an APDM v5 file'):
    apdm.read_apdm(tmp_path / 'v4.h5')
  dot = tmp_path / 'Fused_D4CA.csv'
  write_dot(dot, 50, 60.0)
  dot.write_text(dot.read_text().replace('Acc_X,Acc_Y,Acc_Z', 'FreeAcc_X,FreeAcc_Y,FreeAcc_Z'))
  with pytest.raises(ValueError, match=r"Fused_D4CA\.csv: line 12: no column\(s\) \['Acc_X', "
                                       r"'Acc_Y', 'Acc_Z'\]"):
    xsens_dot.read_xsens_dot(dot)
  # NaN / empty fields: the file's line (header lines counted) and the column header.
  write_ximu3(tmp_path / 'x3', 100, 100.0)
  rows = f.read_text().splitlines()
  cells = rows[5].split(',')
  cells[2] = ''  # data row 5: Gyroscope Y
  rows[5] = ','.join(cells)
  f.write_text('\n'.join(rows) + '\n')
  with pytest.raises(ValueError, match=r"x3/Inertial\.csv: line 6, column 'Gyroscope Y \(deg/s\)' "
                                       r'is NaN/Inf'):
    xio.read_ximu3(tmp_path / 'x3')
  write_dot(dot, 50, 60.0)
  rows = dot.read_text().splitlines()
  rows[14] = rows[14].rsplit(',', 4)[0] + ',nan,' + ','.join(rows[14].rsplit(',', 3)[1:])
  dot.write_text('\n'.join(rows) + '\n')
  with pytest.raises(ValueError, match=r"Fused_D4CA\.csv: line 15, column 'Acc_Z' is NaN/Inf"):
    xsens_dot.read_xsens_dot(dot)
  # Schema: a device format names no columns.
  raw = tmp_path / 'raw'
  write_ximu3(raw / 'S1', 300, 100.0)
  with pytest.raises(ValueError, match=re.escape("sites.trunk: ['acc', 'acc_unit'] not used with "
                                                 "format 'ximu3'")):
    _build(tmp_path / 'c', raw, fx.write_schema(raw / 'schema.yaml', {
        'format': 'ximu3', 'sites': {'trunk': {'acc': ['a', 'b', 'c'], 'acc_unit': 'g'}},
        'subjects': [{'id': 1, 'files': ['S1']}]}))
  # Through a build, a missing file stops it naming the folder.
  (raw / 'S2').mkdir()
  with pytest.raises(FileNotFoundError, match=r'S2: no Inertial\.csv'):
    _build(tmp_path / 'd', raw, fx.write_schema(raw / 'schema.yaml', {
        'format': 'ximu3', 'sites': {'trunk': {}}, 'subjects': [{'id': 1, 'files': ['S2']}]}),
        **UNLABELLED)
