"""knee_moment builder on a fixture HDF5 in the published step-wise layout."""

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_prep import axes, convert, records
from data_prep.builders.knee_moment import SITES, KneeMoment

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import knee_moment as fx  # noqa: E402


def _build(tmp_path, manual, t_len=128, rate=100, **options):
  cfg = convert.builder_config(KneeMoment, sample_rate_hz=rate, window_length=t_len,
                               options=options)
  return tfds.builder_from_directory(
      records.build(KneeMoment, tmp_path / 'out', cfg, manual_dir=str(manual)))


def test_labels_units_padding_and_axes(tmp_path):
  written = fx.write_file(tmp_path / 'raw' / 'walking_knee_moment.h5')
  b = _build(tmp_path, tmp_path / 'raw')
  assert b.info.splits['train'].num_examples == 20
  assert b.info.metadata['targets'] == {'peak_kfm': '%BW*BH', 'peak_kam': '%BW*BH'}
  assert b.info.metadata['subjects']['2'] == {'mass_kg': 70.0, 'height_m': pytest.approx(1.75)}
  src = b.as_data_source()['train']
  exs = [src[i] for i in range(len(src))]
  cols = fx.columns()
  for s in (1, 2):
    x, kfm, kam = written[s]
    got = sorted((round(float(e['peak_kfm']), 4), round(float(e['peak_kam']), 4))
                 for e in exs if e['subject_id'] == s)
    # Hand computation: the first-half peaks are the bump heights (the larger late values at
    # sample 70 lie in the second half of stance [20, 75) and must not be picked).
    assert got == sorted(zip(np.round(kfm, 4), np.round(kam, 4), strict=True))
    step = next(e for e in exs if e['subject_id'] == s and
                abs(e['peak_kfm'] - kfm[3]) < 1e-5)
    assert step['acc'].shape == (8, 128, 3)
    # Units and axes: gyro deg/s -> rad/s, SageMotion frame -> body frame, padding stays 0.
    k = SITES.index('R_SHANK')
    g_deg = x[3, :128, [cols.index(f'Gyro{a}_R_SHANK') for a in 'XYZ']].T
    np.testing.assert_allclose(step['gyr'][k],
                               axes.KNEE_MOMENT['R_SHANK'].apply(np.radians(g_deg)), atol=1e-5)
    np.testing.assert_array_equal(step['acc'][:, 95:], 0.0)
    np.testing.assert_allclose(step['acc'][k, 40], [0.0, 9.81, 0.0], atol=1e-5)


def test_errors(tmp_path):
  raw = tmp_path / 'raw'
  with pytest.raises(FileNotFoundError, match='Expected layout'):
    _build(tmp_path, raw)
  p = raw / 'walking_knee_moment.h5'
  fx.write_file(p, subjects=(1,), gyro_scale=np.pi / 180)  # gyro written in rad/s
  with pytest.raises(ValueError, match=r"subject_01 L_FOOT: gyro declared in 'deg/s'.*rad/s"):
    _build(tmp_path, raw)
  fx.write_file(p, subjects=(1,))
  with pytest.raises(ValueError, match='is not walking'):  # 100 Hz data declared as 50 Hz
    _build(tmp_path, raw, source_rate_hz=50)
  with pytest.raises(KeyError, match=r'subject\(s\) \[3\]'):
    _build(tmp_path, raw, subjects='1,3')
  with pytest.raises(ValueError, match='longer than the stored steps'):
    _build(tmp_path, raw, t_len=160)
  with h5py.File(p, 'a') as f:
    cols = json.loads(f.attrs['columns'])
    f['subject_01'][2, 10, cols.index('AccelY_WAIST')] = np.inf
  with pytest.raises(ValueError, match=r'subject_01: every one of the 10 steps has NaN/Inf'):
    with h5py.File(p, 'a') as f:
      f['subject_01'][:, 10, cols.index('AccelY_WAIST')] = np.nan
    _build(tmp_path / 'allnan', raw)
  fx.write_file(p, subjects=(1,))
  with h5py.File(p, 'a') as f:
    f['subject_01'][2, 10, cols.index('AccelY_WAIST')] = 9.81
    cols[cols.index('GyroZ_CHEST')] = 'GyroZ_chest'
    f.attrs['columns'] = json.dumps(cols)
    f.create_dataset('subject_02', data=np.zeros((0, 152, 256), np.float32))
  with pytest.raises(KeyError, match=r'missing columns GyroX_CHEST\.\.GyroZ_CHEST'):
    _build(tmp_path, raw, subjects='1')
  with pytest.raises(ValueError, match='subject_02: subject has no steps'):
    _build(tmp_path, raw, subjects='2')


def test_nan_in_one_step_costs_that_step(tmp_path, caplog):
  """Five NaN samples in one step of one subject: that step is dropped with a warning naming the
  file, step and field; the rest of the subject builds."""
  p = tmp_path / 'raw' / 'walking_knee_moment.h5'
  fx.write_file(p)
  with h5py.File(p, 'a') as f:
    cols = json.loads(f.attrs['columns'])
    f['subject_01'][3, 30:35, cols.index('GyroX_CHEST')] = np.nan
  with caplog.at_level('WARNING'):
    b = _build(tmp_path, tmp_path / 'raw')
  assert b.info.splits['train'].num_examples == 19
  assert (f"{p}:subject_01 step 3: 5 NaN/Inf samples in ['GyroX_CHEST'] (first at sample 31 of "
          'the step, counting from 1): that step is dropped' in caplog.text)
