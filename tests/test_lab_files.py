"""lab_files (bring your own data): CSV / C3D / HDF5 / Xsens trials described by a schema, unit and
axis conversion with plausibility checks, labels from a force channel, and the real Xsens file."""

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_prep import convert, records
from data_prep.builders import lab_files
from data_prep.builders.lab_files import LabFiles

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import SHARED_DATA  # noqa: E402
from fixtures import lab as fx  # noqa: E402

REAL_IMU = SHARED_DATA / 'real_imu'


def _build(tmp_path, manual, schema, t_len=100, rate=100, **options):
  opts = convert.lab_schema_options(str(manual), {'schema': str(schema), **options})
  cfg = convert.builder_config(LabFiles, sample_rate_hz=rate, window_length=t_len,
                               options=opts)
  return tfds.builder_from_directory(
      records.build(LabFiles, tmp_path / 'out', cfg, manual_dir=str(manual)))


def _all(b, split='train'):
  src = b.as_data_source()[split]
  return [src[i] for i in range(len(src))]


def test_csv_peak_vgrf_units_and_axes(tmp_path):
  raw = tmp_path / 'raw'
  fx.write_csv_trial(raw / 'S01_walk.csv', 1, 70.0, [1.1, 1.2, 1.3])
  fx.write_csv_trial(raw / 'S02_walk.csv', 2, 80.0, [1.25])
  schema = fx.write_schema(raw / 'schema.yaml', fx.csv_schema())
  b = _build(tmp_path, raw, schema)
  assert b.info.metadata['targets'] == {'peak_vgrf': 'BW'}
  assert b.info.metadata['subjects']['1'] == {'name': None, 'mass_kg': 70.0, 'height_m': 1.75}
  exs = _all(b)
  # 12 s trials: stances start at 2.2 s every 1.1 s while a full stance fits -> 9 per trial;
  # the half-sine peaks on a sample, so peak vGRF / BW is the designed value exactly.
  s1 = sorted(round(float(e['peak_vgrf']), 5) for e in exs if e['subject_id'] == 1)
  assert s1 == sorted([1.1, 1.2, 1.3] * 3)
  assert {round(float(e['peak_vgrf']), 5) for e in exs if e['subject_id'] == 2} == {1.25}
  e = exs[0]
  assert e['acc'].shape == (2, 100, 3)
  # g -> m/s^2 and the schema's axes: gravity (sensor -x) ends on body +y; gyro deg/s -> rad/s.
  acc, gyr = fx.imu_signals(1200, e['subject_id'])
  assert np.abs(e['gyr']).max() < np.radians(np.abs(gyr).max()) + 1e-4
  assert 8.0 < e['acc'][:, :, 1].mean() < 11.5


def test_c3d_valr_labels(tmp_path):
  raw = tmp_path / 'raw'
  fx.write_c3d_trial(raw / 'run1.c3d', 3, 65.0, [1.5, 1.8])
  schema = fx.write_schema(raw / 'schema.yaml', {
      'sample_rate_hz': 200, 'format': 'c3d', 'sites': fx.site_columns(),
      'subjects': [{'id': 4, 'files': ['*.c3d'], 'mass_kg': 65.0}],
      'force': {'vertical': 'Fz'}, 'targets': ['valr', 'peak_vgrf']})
  b = _build(tmp_path, raw, schema, t_len=128, rate=200)
  exs = _all(b)
  # Hand value: 0.6 F / (6 samples / 200 Hz) / (m g) = 20 * peak_bw BW/s.
  assert sorted({round(float(e['valr']), 4) for e in exs}) == [30.0, 36.0]
  # Peak vGRF is the active peak, 1.3 x the impact peak.
  assert sorted({round(float(e['peak_vgrf']), 4) for e in exs}) == [1.95, 2.34]


def test_xsens_multisite_and_hdf5_unlabelled(tmp_path):
  raw = tmp_path / 'raw'
  fx.write_xsens_trial(raw, 'P1_t1', 5)
  fx.write_xsens_trial(raw, 'P2_t1', 6)
  sites = {s: {'acc': ['Acc_X', 'Acc_Y', 'Acc_Z'], 'gyr': ['Gyr_X', 'Gyr_Y', 'Gyr_Z'],
               'suffix': f'_{s}', 'axes': fx.AXES} for s in fx.SITES}
  schema = fx.write_schema(raw / 'schema.yaml', {
      'sample_rate_hz': 100, 'sites': sites,
      'subjects': [{'id': 1, 'files': ['P1_*.txt']}, {'id': 2, 'files': ['P2_*.txt']}]})
  b = _build(tmp_path, raw, schema, static_threshold_g=0.0)
  # 8 s at 100 Hz -> 8 windows of 100 per trial; subject 2 validates.
  assert {k: v.num_examples for k, v in b.info.splits.items()} == {'train': 8, 'validation': 8}
  still = min(_all(b), key=lambda e: float(np.std(e['acc'])))
  np.testing.assert_allclose(still['acc'].mean(axis=1), [[0, 9.81, 0]] * 2, atol=0.05)
  h5 = tmp_path / 'h5'
  fx.write_h5_trial(h5 / 'a.h5', 7)
  fx.write_h5_trial(h5 / 'b.h5', 8)
  schema = fx.write_schema(h5 / 'schema.yaml', fx.csv_schema(
      subjects=[{'id': 1, 'files': ['a.h5']}, {'id': 2, 'files': ['b.h5']}], force=None,
      targets=None, hdf5_key='data'))
  b = _build(tmp_path, h5, schema)
  assert b.info.splits['train'].num_examples == 6  # the 2 still windows dropped


def real_xsens_schema(tmp_path, **site) -> str:
  """A schema for the real Xsens shank file (skips the test where the shared data are absent)."""
  src = REAL_IMU / 'walking_xsens_lowerLeg.txt'
  if not src.exists():
    pytest.skip(f'real Xsens file absent: {src} (shared data folder not present)')
  return fx.write_schema(tmp_path / 'schema.yaml', {
      'sample_rate_hz': 120, 'format': 'xsens',
      'sites': {'shank': {'acc': ['Acc_X', 'Acc_Y', 'Acc_Z'], 'gyr': ['Gyr_X', 'Gyr_Y', 'Gyr_Z'],
                          **site}},
      'subjects': [{'id': 1, 'files': [src.name]}]})


def test_real_xsens_worked_example(tmp_path):
  schema = real_xsens_schema(tmp_path, acc_unit='m/s^2', gyr_unit='rad/s',
                             axes={'forward': '+y', 'up': '-x', 'right': '+z'})
  b = _build(tmp_path, REAL_IMU, schema, t_len=128, static_threshold_g=0.0)
  # 3511 samples at 120 Hz -> 2926 at 100 Hz -> 22 windows of 128.
  assert b.info.splits['train'].num_examples == 22
  exs = _all(b)
  first = min(exs, key=lambda e: float(np.std(e['acc'])))
  assert 9.0 < first['acc'][0, :, 1].mean() < 10.5  # standing: gravity on body +y
  # Walking: the shank's sagittal (about +z = right) rate peaks positive in mid-swing.
  gz = np.concatenate([e['gyr'][0, :, 2] for e in exs])
  assert gz.max() > 4.0 and gz.max() > -gz.min()
  b2 = _build(tmp_path, REAL_IMU, schema, t_len=128)
  assert 0 < b2.info.splits['train'].num_examples < 22  # standing windows dropped


def test_schema_and_data_errors(tmp_path):
  raw = tmp_path / 'raw'
  fx.write_csv_trial(raw / 'S01_walk.csv', 1, 70.0, [1.2])
  fx.write_csv_trial(raw / 'S02_walk.csv', 2, 80.0, [1.2])
  bad_schemas = [
      (fx.csv_schema(sampling=100), ValueError, r"unknown key\(s\) \['sampling'\]"),
      ({k: v for k, v in fx.csv_schema().items() if k != 'sample_rate_hz'}, KeyError,
       "missing key 'sample_rate_hz'"),
      (fx.csv_schema(subjects=[{'id': 1, 'files': ['S01_*.csv']}]), KeyError,
       r'need mass_kg for subject\(s\) \[1\]'),
      (fx.csv_schema(sites={'shank': {'acc': ['a', 'b', 'c'], 'gyr': ['d', 'e', 'f'],
                                      'acc_unit': 'furlong'}}), ValueError,
       "sites.shank.acc_unit: unit 'furlong'"),
      (fx.csv_schema(subjects=[{'id': 1, 'files': ['S09_*.csv'], 'mass_kg': 70}]),
       FileNotFoundError, r"no file matches 'S09_\*\.csv' \(subject 1"),
  ]
  for schema, exc, match in bad_schemas:
    with pytest.raises(exc, match=match):
      _build(tmp_path, raw, fx.write_schema(raw / 'schema.yaml', schema))
  schema = fx.write_schema(raw / 'schema.yaml', fx.csv_schema())
  bad_data = [
      ({'time_rate': 50.0}, r'S01_walk\.csv: time column implies 50\.000 Hz, expected 100 Hz'),
      ({'acc_scale': 9.81}, r"S01_walk\.csv site trunk: accelerometer declared in 'g'.*"
       r'look like m/s\^2'),
      # Data row 40 from 0 = file line 42 (the header is line 1).
      ({'nan_at': 40}, r"S01_walk\.csv: line 42, column 'shank_gyr_y' is NaN/Inf \(1 NaN/Inf "
       r"value\(s\) in \['shank_gyr_y'\]\)"),
  ]
  # Bad data in one trial leave that trial out (with the reason in the metadata); the other
  # subject builds. A build whose every trial fails is the error, naming the reasons.
  for k, (kw, match) in enumerate(bad_data):
    fx.write_csv_trial(raw / 'S01_walk.csv', 1, 70.0, [1.2], **kw)
    b = _build(tmp_path / f'case{k}', raw, schema)
    assert {int(e['subject_id']) for e in _all(b)} == {2}
    (reason,) = b.info.metadata['skipped']
    assert re.search(match, reason), reason
  only_bad = fx.write_schema(raw / 'schema_s01.yaml', fx.csv_schema(
      subjects=[{'id': 1, 'files': ['S01_*.csv'], 'mass_kg': 70.0}]))
  with pytest.raises(ValueError, match=r"no examples from 1 source item\(s\).*Skipped: .*S01_walk"):
    _build(tmp_path / 'all_bad', raw, only_bad)
  fx.write_csv_trial(raw / 'S01_walk.csv', 1, 70.0, [1.2], drop='Fz')
  with pytest.raises(KeyError, match=r"S01_walk\.csv: missing column\(s\) \['Fz'\]"):
    _build(tmp_path, raw, schema)
  # Wrong axes: gravity would point down in the body frame.
  fx.write_csv_trial(raw / 'S01_walk.csv', 1, 70.0, [1.2])
  sites = fx.site_columns()
  sites['shank']['axes'] = {'forward': '-z', 'up': '+x', 'right': '-y'}
  with pytest.raises(ValueError, match="site 'shank'.*axis mapping of this site is wrong"):
    _build(tmp_path, raw, fx.write_schema(raw / 'schema.yaml', fx.csv_schema(sites=sites)))
  # An empty subject: its only file is too short to hold one stance or window.
  shutil.copy(raw / 'S01_walk.csv', raw / 'keep.csv')
  fx.write_csv_trial(raw / 'S02_walk.csv', 2, 80.0, [1.2], seconds=0.5)
  with pytest.raises(ValueError, match="lab_files 'train': no examples|no stance"):
    _build(tmp_path, raw, fx.write_schema(raw / 'schema.yaml', fx.csv_schema(
        subjects=[{'id': 2, 'files': ['S02_*.csv'], 'mass_kg': 80.0}])))
  assert lab_files.load_schema(schema)['sample_rate_hz'] == 100.0


def _rate_case(tmp_path, raw, sites, rate, files, **schema):
  schema = fx.write_schema(raw / 'schema.yaml', {
      'sample_rate_hz': rate, 'sites': sites, 'subjects': [{'id': 1, 'files': files}], **schema})
  return _build(tmp_path / f'at{rate}', raw, schema, static_threshold_g=0.0)


def test_a_wrong_rate_without_time_column_stops_the_build(tmp_path):
  """A synthetic 100 Hz walk (shank and foot) in a CSV without a time column: declared at 200
  or 50 Hz the build stops, naming the rate the signals show; declared at 100 Hz it builds.
  The same for a 50 Hz x-IMU3 export without its Timestamp column declared at 100 Hz."""
  raw = tmp_path / 'raw'
  sites = fx.write_synthetic_walk_csv(raw / 'walk.csv')
  for rate, words in ((200, 'about 1/2 of the declared rate'), (50, 'about 2x the declared')):
    with pytest.raises(ValueError, match=rf'walk\.csv: sample_rate_hz: {rate} contradicts the '
                       rf'data: .*site RightLeg: (9\d|10\d) Hz, {words}.*rate_confirmed: true'):
      _rate_case(tmp_path, raw, sites, rate, ['walk.csv'])
    assert not list((tmp_path / f'at{rate}' / 'out').iterdir())  # a failed build leaves nothing
  b = _rate_case(tmp_path, raw, sites, 100, ['walk.csv'])
  assert b.info.metadata['rate_verified'] == {str(raw / 'walk.csv'): True}
  est = b.info.metadata['rate_check'][str(raw / 'walk.csv')]['sites']
  assert all(90 < est[s]['estimate_hz'] < 110 for s in sites)
  # An x-IMU3 Inertial.csv at 50 Hz with its Timestamp column cut off, declared at 100 Hz.
  xio = tmp_path / 'xio'
  sites = fx.write_synthetic_walk_csv(xio / 'Inertial.csv', ('RightLeg',), fs=50.0, xio=True)
  with pytest.raises(ValueError, match=r'Inertial\.csv: sample_rate_hz: 100 contradicts the '
                     r'data: .*site RightLeg: (4\d|5\d) Hz, about 1/2 of the declared rate'):
    _rate_case(tmp_path, xio, sites, 100, ['Inertial.csv'])


def test_real_walk_declared_at_twice_or_half_its_rate(tmp_path):
  """The real 120 Hz shank walk as a CSV without its time column: 240 and 60 Hz stop the build,
  120 Hz builds with the rate verified."""
  src = REAL_IMU / 'walking_xsens_lowerLeg.txt'
  if not src.exists():
    pytest.skip(f'real Xsens file absent: {src} (shared data folder not present)')
  from data_prep.readers import xsens
  e = xsens.read_xsens_txt(src)
  raw = tmp_path / 'raw'
  raw.mkdir()
  e.table[list(xsens.ACC_COLS + xsens.GYR_COLS)].to_csv(raw / 'shank.csv', index=False)
  sites = {'shank': {'acc': list(xsens.ACC_COLS), 'gyr': list(xsens.GYR_COLS)}}
  for rate, words in ((240, 'about 1/2 of'), (60, 'about 2x')):
    with pytest.raises(ValueError, match=rf'shank\.csv: sample_rate_hz: {rate} contradicts the '
                       rf'data: .*site shank: 1[12]\d Hz, {words} the declared rate'):
      _rate_case(tmp_path, raw, sites, rate, ['shank.csv'])
  b = _rate_case(tmp_path, raw, sites, 120, ['shank.csv'])
  assert b.info.metadata['rate_verified'] == {str(raw / 'shank.csv'): True}
  assert b.info.splits['train'].num_examples == 29  # 3511 samples at 120 Hz -> 29 s at 100 Hz


def test_a_rate_the_signals_cannot_show_needs_rate_confirmed(tmp_path, caplog):
  """Signals that do not show the rate (the fixture's gyro and acc are not one sensor's) stop
  the build with a request to confirm it; rate_confirmed: true builds, unverified."""
  raw = tmp_path / 'raw'
  fx.write_csv_trial(raw / 'S01_walk.csv', 1, 70.0, [1.2])
  schema = fx.csv_schema(subjects=[{'id': 1, 'files': ['S01_*.csv'], 'mass_kg': 70.0}])
  del schema['time_column']
  with pytest.raises(ValueError, match=r'S01_walk\.csv: sample_rate_hz: 100 cannot be checked: '
                     r'no time_column, and the signals do not show the rate \(site trunk: .*\)\. '
                     r'Name the file.s time column in time_column, or confirm the rate with '
                     r'rate_confirmed: true in .*schema\.yaml'):
    _build(tmp_path, raw, fx.write_schema(raw / 'schema.yaml', schema))
  b = _build(tmp_path / 'ok', raw, fx.write_schema(raw / 'schema.yaml',
                                                   {**schema, 'rate_confirmed': True}))
  assert b.info.metadata['rate_verified'] == {str(raw / 'S01_walk.csv'): False}
  assert b.info.metadata['rate_check'][str(raw / 'S01_walk.csv')]['verdict'] == 'undecided'
  with pytest.raises(ValueError, match='rate_confirmed is for tables without a time column'):
    lab_files.load_schema(fx.write_schema(raw / 'bad.yaml', fx.csv_schema(rate_confirmed=True)))


def test_a_failed_build_leaves_nothing_and_shows_the_layout_once(tmp_path):
  """Every builder that reads files, given an empty manual_dir: one error showing its layout
  once, and nothing left under the records folder."""
  from data_prep import convert

  (tmp_path / 'empty').mkdir()
  built = []
  for name in convert.BUILDERS:
    cls = convert.get_builder_class(name)
    if not getattr(cls, 'MANUAL_DOWNLOAD_INSTRUCTIONS', None):
      continue
    built.append(name)
    opts = {'schema': str(fx.write_schema(tmp_path / 'schema.yaml', fx.csv_schema()))} \
        if cls is LabFiles else {}
    cfg = convert.builder_config(cls, sample_rate_hz=100, window_length=64, options=opts)
    out = tmp_path / 'out'
    with pytest.raises(FileNotFoundError) as e:
      records.build(cls, out, cfg, manual_dir=str(tmp_path / 'empty'))
    msg = str(e.value)
    assert msg.startswith(f'manual_dir {tmp_path / "empty"} does not exist or is empty. Expected '
                          f'layout:\n'), (name, msg)
    layout_line = msg.splitlines()[1]
    assert msg.count(layout_line) == 1, (name, msg)
    assert not out.exists() or not list(out.iterdir()), (name, list(out.rglob('*')))
  assert len(built) == 7, built


def _xsens_tree(raw, counter_start=0):
  """Subject 1: trials P1_t1, P1_t2; subject 2: P2_t1 (8 s at 100 Hz, two sites each)."""
  for stem, seed in (('P1_t1', 5), ('P1_t2', 6), ('P2_t1', 7)):
    fx.write_xsens_trial(raw, stem, seed)
  if counter_start:
    for f in raw.glob('*.txt'):
      lines = f.read_text().splitlines(keepends=True)
      k = next(i for i, ln in enumerate(lines) if ln[:1].isdigit())
      lines[k:] = [f'{(counter_start + j) % 65536}\t' + ln.split('\t', 1)[1]
                   for j, ln in enumerate(lines[k:])]
      f.write_text(''.join(lines))
  sites = {s: {'acc': ['Acc_X', 'Acc_Y', 'Acc_Z'], 'gyr': ['Gyr_X', 'Gyr_Y', 'Gyr_Z'],
               'suffix': f'_{s}', 'axes': fx.AXES} for s in fx.SITES}
  return fx.write_schema(raw / 'schema.yaml', {
      'sample_rate_hz': 100, 'sites': sites,
      'subjects': [{'id': 1, 'files': ['P1_*.txt']}, {'id': 2, 'files': ['P2_*.txt']}]})


def _edit_rows(path, fn):
  """Applies fn to the data lines of an Xsens text file; returns the file line of data row 1."""
  lines = path.read_text().splitlines(keepends=True)
  k = next(i for i, ln in enumerate(lines) if ln[:1].isdigit())
  path.write_text(''.join(lines[:k] + fn(lines[k:])))
  return k + 1


def _windows(b):
  """Windows of P1_t1 (subject 1's first trial) by start time (s)."""
  ex = [e for e in _all(b) if int(e['subject_id']) == 1]
  t1 = min(int(e['trial']) for e in ex)
  return {round(float(e['start_s']), 2): e for e in ex if int(e['trial']) == t1}


def test_xsens_packet_counter_repeats(tmp_path, caplog):
  """An identical repeated packet is dropped with one warning (file, lines); a repeat with other
  values skips that trial with a warning naming file, line and reason; the rest builds."""
  raw = tmp_path / 'raw'
  schema = _xsens_tree(raw)
  bad = raw / 'P1_t1_shank.txt'
  first = _edit_rows(bad, lambda r: r[:300] + [r[299]] + r[300:])
  with caplog.at_level('WARNING'):
    b = _build(tmp_path / 'same', raw, schema, static_threshold_g=0.0)
  said = [r.getMessage() for r in caplog.records if 'written twice' in r.getMessage()]
  assert len(said) == 1 and str(bad) in said[0]
  assert f'at file lines {first + 299} and {first + 300}' in said[0]
  assert b.info.splits['train'].num_examples == 16 and not b.info.metadata['skipped']

  def changed(r):
    f = r[299].split('\t')
    f[1] = f'{float(f[1]) + 0.5:.6f}'
    return r[:300] + ['\t'.join(f)] + r[300:]
  _xsens_tree(raw)
  first = _edit_rows(bad, changed)
  b = _build(tmp_path / 'other', raw, schema, static_threshold_g=0.0)
  skipped = b.info.metadata['skipped']
  assert len(skipped) == 1 and str(bad) in skipped[0]
  assert f'file line {first + 300}' in skipped[0] and 'repeated with other values' in skipped[0]
  assert b.info.splits['train'].num_examples == 8  # P1_t2 only


def test_xsens_counter_gap_is_never_spliced(tmp_path, caplog):
  """A 3 s gap (300 packets) in one site: no window spans it, every other window keeps its
  real time (compared with the same trial without the gap); a counter that wraps at 65536
  builds whole."""
  raw = tmp_path / 'raw'
  schema = _xsens_tree(raw)
  clean = _windows(_build(tmp_path / 'clean', raw, schema, static_threshold_g=0.0))
  first = _edit_rows(raw / 'P1_t1_shank.txt', lambda r: r[:400] + r[700:])
  with caplog.at_level('WARNING'):
    gap = _windows(_build(tmp_path / 'gap', raw, schema, static_threshold_g=0.0))
  assert sorted(gap) == [0.0, 1.0, 2.0, 3.0, 7.0]
  for s, e in gap.items():
    np.testing.assert_allclose(e['acc'], clean[s]['acc'], atol=1e-5)
  assert (f'300 missing after file line {first + 399}, counter 399 -> 700' in caplog.text)
  wrap = tmp_path / 'wrap'
  schema = _xsens_tree(wrap, counter_start=65536 - 350)
  b = _build(tmp_path / 'wrapped', wrap, schema, static_threshold_g=0.0)
  assert b.info.splits['train'].num_examples == 16 and not b.info.metadata['skipped']


def test_half_written_last_line_is_dropped(tmp_path, caplog):
  """A last line cut mid-write loses that row with a warning naming file and line; the trial
  builds from the rest (Xsens text and CSV)."""
  raw = tmp_path / 'raw'
  schema = _xsens_tree(raw)
  bad = raw / 'P1_t1_shank.txt'
  first = _edit_rows(bad, lambda r: r[:-1] + [r[-1][:len(r[-1]) // 2]])
  with caplog.at_level('WARNING'):
    b = _build(tmp_path / 'x', raw, schema, static_threshold_g=0.0)
  assert f'{bad}: line {first + 799} is half-written' in caplog.text
  assert not b.info.metadata['skipped']
  assert sorted(_windows(b)) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # 799 samples
  from data_prep.readers import tables
  csv = tmp_path / 't.csv'
  csv.write_text('time,a,b\n0,1,2\n0.01,3,4\n0.02,5')
  caplog.clear()
  with caplog.at_level('WARNING'):
    df = tables.read_csv_table(csv)
  assert len(df) == 2 and f'{csv}: line 4 is half-written (2 of 3 fields' in caplog.text
