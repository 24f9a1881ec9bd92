"""movi_imu builder on a fixture tree in the MoVi layout: joint selection by name, g -> m/s^2,
body axes, resampling, static-window filter, subject splits, and clear errors."""

import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_prep import axes, convert, records
from data_prep.builders.movi_imu import MoviImu

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import movi  # noqa: E402


def _build(tmp_path, manual, rate=120, t_len=60, **options):
  cfg = convert.builder_config(MoviImu, sample_rate_hz=rate, window_length=t_len,
                               options=options)
  return tfds.builder_from_directory(
      records.build(MoviImu, tmp_path / 'out', cfg, manual_dir=str(manual)))


def _all(b, split):
  src = b.as_data_source()[split]
  return [src[i] for i in range(len(src))]


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
  root = tmp_path_factory.mktemp('movi_raw')
  return root, movi.write_tree(root)


def test_windows_units_axes_and_splits(tree, tmp_path):
  root, written = tree
  b = _build(tmp_path, root, sites='Hip+LeftFoot+Spine1')
  # 600 samples / 60 = 10 windows per round; the first 240 samples are static -> 6 kept;
  # rounds I1 and S1 (S1_Synched is not a default round) -> 12 per subject.
  assert {k: v.num_examples for k, v in b.info.splits.items()} == {'train': 24, 'validation': 12}
  assert b.info.metadata['splits_subjects'] == {'train': [1, 2], 'validation': [81]}
  assert b.info.metadata['imu_sites'] == ['Hip', 'LeftFoot', 'Spine1']
  exs = _all(b, 'train')
  assert {e['subject_id'] for e in exs} == {1, 2} and {e['trial'] for e in exs} == {0, 2}
  # Hand computation for subject 2 (joints stored in reverse order): round S1, window at 300.
  e = exs[0]
  d = written[2]['S1']
  joints = list(written[2]['joints'])
  checked = 0
  for x in exs:
    if x['subject_id'] != 2 or x['trial'] != 2:
      continue
    checked += 1
    for k, site in enumerate(['Hip', 'LeftFoot', 'Spine1']):
      j = joints.index(site)
      a = d[:, 16 * j + 10:16 * j + 13] * 9.81
      w = d[:, 16 * j + 13:16 * j + 16]
      starts = [s for s in range(0, 600, 60)
                if np.allclose(axes.MOVI[site].apply(a[s:s + 60]), x['acc'][k], atol=1e-4)]
      assert len(starts) == 1 and starts[0] >= 240
      np.testing.assert_allclose(x['gyr'][k], axes.MOVI[site].apply(w[starts[0]:starts[0] + 60]),
                                 atol=1e-5)
  assert checked >= 1  # the loop above compared at least one window by hand
  assert e['acc'].shape == (3, 60, 3) and e['sample_rate_hz'] == 120.0


def test_resampling_and_static_threshold(tree, tmp_path):
  root, _ = tree
  b = _build(tmp_path, root, rate=100, t_len=50, sites='Hip', subjects='1')
  # 600 samples at 120 Hz -> 500 at 100 Hz -> 10 windows; 240 static samples -> 200 -> 4 dropped.
  assert b.info.splits['train'].num_examples == 12
  b0 = _build(tmp_path, root, rate=100, t_len=50, sites='Hip', subjects='1',
              static_threshold_g=0.0)
  assert b0.info.splits['train'].num_examples == 20
  # The polyphase (anti-aliasing) filter's gain differs slightly between its phases: a constant
  # 9.81 m/s^2 comes out with a ripple of 0.0066 m/s^2 peak to peak (scipy's Kaiser window, beta 5).
  still = [e for e in _all(b0, 'train') if np.ptp(e['acc'], axis=1).max() < 0.01]
  # 4 static windows per round; the one bordering the movement in each round carries the filter's
  # transient (its impulse response spans about 10 source samples), so 3 stay flat.
  assert len(still) == 6
  np.testing.assert_allclose(still[0]['acc'][0], np.tile([0, 9.81, 0], (50, 1)), atol=0.005)
  # The loading-rate and vGRF pre-trainings' rate: 600 samples at 120 Hz -> 1000 at 200 Hz ->
  # 15 windows of 64 per round; the 240 static samples (400 at 200 Hz) fill 6 of them.
  all200 = _build(tmp_path, root, rate=200, t_len=64, sites='Hip', subjects='1',
                  static_threshold_g=0.0)
  assert all200.info.splits['train'].num_examples == 2 * 15
  kept = _all(_build(tmp_path, root, rate=200, t_len=64, sites='Hip', subjects='1'), 'train')
  assert len(kept) <= 2 * (15 - 6)
  assert all(np.ptp(e['acc'], axis=1).max() > 1e-3 for e in kept)  # no still window survives
  assert {e['sample_rate_hz'] for e in kept} == {200.0}


def test_errors(tmp_path):
  root = tmp_path / 'raw'
  with pytest.raises(FileNotFoundError, match='Expected layout'):
    _build(tmp_path, root)
  movi.write_subject(root, 1, joints=movi.JOINTS[:-1])  # no LeftHand
  with pytest.raises(KeyError, match=r"Subject_1\.mat round I1: jointNames lack \['LeftHand'\]"):
    _build(tmp_path, root)
  movi.write_subject(root, 1, nan_at=400)
  with pytest.raises(ValueError, match=r'imu_Subject_1\.mat round I1: 1 samples with NaN/Inf'):
    _build(tmp_path, root, sites='Hip')
  assert _build(tmp_path, root, sites='Hip', nan_policy='drop').info.splits[
      'train'].num_examples == 10  # 12 minus the window holding sample 400 in each round
  movi.write_subject(root, 1)
  with pytest.raises(ValueError, match="declared in 'm/s\\^2'.*the data look like g"):
    _build(tmp_path, root, sites='Hip', acc_unit='m/s^2')
  with pytest.raises(FileNotFoundError, match=r'subject\(s\) \[5\]'):
    _build(tmp_path, root, subjects='1,5')
  movi.write_subject(root, 3, rounds=('F',))
  with pytest.raises(KeyError, match=r"imu_Subject_3\.mat: IMU has none of the rounds"):
    _build(tmp_path, root, sites='Hip')
  with pytest.raises(ValueError, match=r"unknown joint\(s\) \['Pelvis'\]"):
    _build(tmp_path, root, sites='Pelvis')
