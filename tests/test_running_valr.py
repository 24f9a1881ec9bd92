"""running_valr builder on a fixture step-wise HDF5: VALR from the column and from the vGRF."""

import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_prep import convert, records
from data_prep.builders.running_valr import RunningValr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import running  # noqa: E402


def _build(tmp_path, manual, t_len=64, rate=200, **options):
  cfg = convert.builder_config(RunningValr, sample_rate_hz=rate, window_length=t_len,
                               options=options)
  return tfds.builder_from_directory(
      records.build(RunningValr, tmp_path / 'out', cfg, manual_dir=str(manual)))


def _labels(b):
  src = b.as_data_source()['train']
  return sorted((int(src[i]['subject_id']), round(float(src[i]['valr']), 3))
                for i in range(len(src)))


def test_valr_from_column_and_from_vgrf_agree_with_hand_values(tmp_path):
  written = running.write_file(tmp_path / 'raw' / 'running.h5')
  want = sorted((s, round(float(v), 3)) for s, (_, valr) in written.items() for v in valr)
  b = _build(tmp_path, tmp_path / 'raw')
  assert _labels(b) == want
  assert b.info.metadata['imu_sites'] == ['L_SHANK'] and b.info.metadata['targets'] == {
      'valr': 'BW/s'}
  e = b.as_data_source()['train'][0]
  assert e['acc'].shape == (1, 64, 3) and e['sample_rate_hz'] == 200.0
  # Gyro deg/s -> rad/s: 400 deg/s amplitude in the fixture.
  assert 6.0 < np.abs(e['gyr']).max() <= np.radians(400) + 1e-4
  b2 = _build(tmp_path, tmp_path / 'raw', valr_from='vgrf')
  assert _labels(b2) == want


def test_step_messages_keep_the_stored_numbers_after_a_nan_drop(tmp_path, caplog):
  """Step 1 of subject 0 holds a NaN (dropped with a warning); step 4 has no contact in its
  vGRF: the error names step 4, the number it has in the file, not its place among the kept
  steps."""
  import h5py

  p = tmp_path / 'raw' / 'running.h5'
  running.write_file(p)
  with h5py.File(p, 'a') as f:
    f['subject_0'][1, 50, 3] = np.nan
    f['subject_0'][4, :, 7] = 0.0
  with caplog.at_level('WARNING'), pytest.raises(ValueError, match=r'subject_0: step 4 has 0 '
                                                 r'stances in the vGRF column'):
    _build(tmp_path, tmp_path / 'raw', valr_from='vgrf')
  assert ("subject_0 step 1: 1 NaN/Inf samples in ['L_SHANK_Gyro_X'] (first at sample 51 of "
          'the step, counting from 1): that step is dropped' in caplog.text)


def test_errors(tmp_path):
  raw = tmp_path / 'raw'
  running.write_file(raw / 'running.h5')
  with pytest.raises(ValueError, match='is not running'):  # 200 Hz steps declared as 100 Hz
    _build(tmp_path, raw, valr_from='vgrf', source_rate_hz=100)
  with pytest.raises(ValueError, match=r'longer than the stored steps \(100 samples\)'):
    _build(tmp_path, raw, t_len=128)
  with pytest.raises(KeyError, match=r"missing columns AccelX_L_FOOT"):
    _build(tmp_path, raw, sites='L_FOOT')
  running.write_file(raw / 'other.h5')
  with pytest.raises(ValueError, match='several HDF5 files'):
    _build(tmp_path, raw)
  with pytest.raises(FileNotFoundError, match=r'nope\.h5: not found'):
    _build(tmp_path, raw, file='nope.h5')
