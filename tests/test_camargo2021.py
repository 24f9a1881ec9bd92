"""camargo2021 builder on a MATLAB-table fixture tree (mat-io): plates, filtering, strikes,
peak vGRF / BW with the subject mass table, windows, mixed-case names, and clear errors."""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_prep import convert, records
from data_prep.builders import camargo2021
from data_prep.builders.camargo2021 import Camargo2021

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import camargo  # noqa: E402


def _build(tmp_path, manual, **options):
  cfg = convert.builder_config(Camargo2021, sample_rate_hz=200, window_length=128,
                               options=options)
  return tfds.builder_from_directory(
      records.build(Camargo2021, tmp_path / 'out', cfg, manual_dir=str(manual)))


def test_peak_vgrf_labels_windows_and_metadata(tmp_path):
  designed = camargo.write_tree(tmp_path / 'raw')
  b = _build(tmp_path, tmp_path / 'raw')
  meta = b.info.metadata
  assert meta['targets'] == {'peak_vgrf': 'BW'} and meta['imu_sites'] == ['trunk', 'shank']
  assert meta['subjects']['7']['mass_kg'] == 60.0  # SubjectInfo.mat wins over the table
  assert meta['subjects']['7']['trials'] == {'0': 'levelground_ccw_normal_01_02'}
  src = b.as_data_source()['train']
  exs = [src[i] for i in range(len(src))]
  for name, sid in (('AB06', 6), ('AB07', 7)):
    got = np.sort([float(e['peak_vgrf']) for e in exs if e['subject_id'] == sid])
    # One window per walking stance (the peak in its central quarter), value = designed max of
    # the vGRF / (m g): within 1 % after the 15 Hz filter and 200 Hz decimation.
    np.testing.assert_allclose(got, np.sort(designed[name]), rtol=0.01)
  e = exs[0]
  assert e['acc'].shape == e['gyr'].shape == (2, 128, 3)
  # Units: acc in g -> m/s^2; moving windows keep |acc| averaging near g.
  assert 7.0 < np.linalg.norm(e['acc'], axis=-1).mean() < 13.0


def test_helpers_by_hand():
  assert camargo2021.right_foot_plates('levelground', 'LevelGround_cw_slow_01_01') == [
      'Combined', 'FP2', 'FP5']
  assert camargo2021.right_foot_plates('stair', 'stair_1_l_01_02') == ['FP1', 'FP5']
  assert camargo2021.right_foot_plates('treadmill', 'treadmill_01_01') == ['Treadmill_R']
  hs = np.array([0, 0, 0, 10, 20, 100, 0, 5, 0, 0])
  np.testing.assert_array_equal(camargo2021.heel_strikes(hs), [2, 6])
  labels = ['walk', 'idle', 'stand-walk', 'walk-rampascent', 'stairdescent', 'turn1', 'jump']
  assert [camargo2021.collapse_label(s) for s in labels] == [0, 1, 2, 6, 8, 3, -2]


def test_errors(tmp_path):
  raw = tmp_path / 'raw'
  camargo.write_subject_info(raw, {'AB06': 74.8})
  trial = 'levelground_ccw_normal_01_01'
  cases = [
      ({'skip_sensor': 'fp'}, FileNotFoundError, r'trial levelground_ccw_normal_01_01 has imu '
       r'but no .*fp'),
      ({'drop': ('shank_Gyro_Z',)}, KeyError, r"imu/levelground_ccw_normal_01_01\.mat: missing "
       r"column\(s\) \['shank_Gyro_Z'\]"),
      ({'nan_at': 50}, ValueError, r"levelground_ccw_normal_01_01\.mat: row 51 \(counting from "
       r"1\), column 'shank_Accel_Y' is NaN/Inf"),
      ({'imu_rate': 100.0}, ValueError, r'implies 100\.000 Hz, expected 200 Hz'),
      ({'acc_unit_scale': 9.81}, ValueError, r"trunk: accelerometer declared in 'g'.*look like "
       r'm/s\^2'),
  ]
  for kw, exc, match in cases:
    shutil.rmtree(raw / 'AB06', ignore_errors=True)
    camargo.write_trial(raw, 'AB06', trial, 74.8, 6, **kw)
    with pytest.raises(exc, match=match):
      _build(tmp_path, raw)
  (raw / 'AB08' / '11_01_18' / 'levelground' / 'imu').mkdir(parents=True)
  with pytest.raises(ValueError, match=r'AB08: subject has no trials'):
    _build(tmp_path, raw)
  with pytest.raises(ValueError, match=r"unknown site\(s\) \['pelvis'\]"):
    _build(tmp_path, raw, sites='trunk+pelvis')
