"""The four synthetic TFDS builders: build 'tiny' (into the test run's shared data dir, where
other tests read the same sets) and read the records back; determinism on fresh builds."""

import json
import logging

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import shared_tfds

from data_prep import records
from data_prep.builders import synthetic as sb

logging.getLogger('absl').setLevel(logging.ERROR)

CASES = {
    # name: (rate, T) - the demo's 100 Hz / 128 and other rates / lengths the builders must take
    'synthetic_movi': (100.0, 128),
    'synthetic_running_valr': (200.0, 64),
    'synthetic_walking_grf': (100.0, 128),
    'synthetic_walking_kfm': (100.0, 96),
}
N_SUBJECTS = {'synthetic_running_valr': 15, 'synthetic_walking_grf': 21,
              'synthetic_walking_kfm': 17}


@pytest.fixture(scope='module')
def built():
  out = {}
  for name, (rate, t) in CASES.items():
    with shared_tfds(f'{name}_tiny_{rate:g}hz_t{t}') as root:
      d = records.build(sb.BUILDERS[name], root, records.make_config('tiny', rate, t))
    b = tfds.builder_from_directory(d)
    out[name] = (d, b, b.as_data_source())
  return out


def _read(src, split):
  return [src[split][i] for i in range(len(src[split]))]


@pytest.mark.parametrize('name', list(CASES))
def test_records_follow_the_contract(built, name):
  _, b, src = built[name]
  rate, t = CASES[name]
  cls = sb.BUILDERS[name]
  n_imu = len(cls.SITES)
  meta = b.info.metadata
  assert meta['imu_sites'] == list(cls.SITES)
  assert meta['sample_rate_hz'] == rate and meta['window_length'] == t
  assert meta['targets'] == dict(cls.TARGETS)
  for split in src:
    exs = _read(src, split)
    assert exs, f'{name}/{split} is empty'
    for ex in exs[:50]:
      assert ex['acc'].shape == (n_imu, t, 3) and ex['acc'].dtype == np.float32
      assert ex['gyr'].shape == (n_imu, t, 3) and ex['gyr'].dtype == np.float32
      assert np.all(np.isfinite(ex['acc'])) and np.all(np.isfinite(ex['gyr']))
      assert float(ex['sample_rate_hz']) == rate
      # Specific force: around one g or more, within the +-16 g sensor range of every axis.
      mag = np.linalg.norm(ex['acc'], axis=-1)
      assert 4.0 < float(np.median(mag)) < 60.0
      assert np.abs(ex['acc']).max() <= 16 * 9.81 + 0.01
      assert np.abs(ex['gyr']).max() <= np.deg2rad(2000) + 0.01
  # Metadata holds every subject's body and is JSON-serialisable.
  subjects = meta['subjects']
  json.dumps(subjects)
  ids = {int(ex['subject_id']) for split in src for ex in _read(src, split)}
  assert ids <= {int(k) for k in subjects}
  for k in subjects:
    assert 40 < subjects[k]['body_mass_kg'] < 130 and 1.45 < subjects[k]['height_m'] < 2.05


@pytest.mark.parametrize('name', list(N_SUBJECTS))
def test_labelled_sets_have_all_subjects_and_plausible_labels(built, name):
  _, b, src = built[name]
  assert set(src) == {'train'}
  exs = _read(src, 'train')
  (target,) = sb.BUILDERS[name].TARGETS
  ids = np.array([int(ex['subject_id']) for ex in exs])
  labels = np.array([float(ex[target]) for ex in exs])
  assert set(ids) == set(range(N_SUBJECTS[name]))
  per_subject = np.bincount(ids)
  assert per_subject.min() >= 6 and per_subject.max() <= sb.STEPS_PER_SUBJECT['tiny']
  lo, hi = {'valr': (15, 160), 'peak_vgrf': (0.95, 1.45), 'peak_kfm': (0.5, 14)}[target]
  assert lo < labels.min() and labels.max() < hi, (labels.min(), labels.max())
  # Subjects differ: the spread of subject means exceeds the typical within-subject spread / 2.
  means = np.array([labels[ids == s].mean() for s in range(N_SUBJECTS[name])])
  within = np.mean([labels[ids == s].std() for s in range(N_SUBJECTS[name])])
  assert means.std() > 0.5 * within


def test_labelled_windows_are_aligned_to_the_step(built):
  # KFM windows start 20 samples (0.2 s at 100 Hz; T/4 = 24 is not binding) before the right
  # heel strike: the right-foot gyroscope spins in late swing just before sample 20 and is quiet
  # in the foot-flat phase that follows.
  _, b, src = built['synthetic_walking_kfm']
  foot = list(b.info.metadata['imu_sites']).index('RightFoot')
  exs = _read(src, 'train')
  ok = 0
  for ex in exs:
    w = np.linalg.norm(ex['gyr'][foot], axis=-1)
    ok += w[6:18].mean() > 2.0 * w[30:38].mean()
  assert ok > 0.8 * len(exs)


def test_movi_splits_are_disjoint_and_cover_the_activities(built):
  _, b, src = built['synthetic_movi']
  assert set(src) == {'train', 'validation'}
  tr = {int(ex['subject_id']) for ex in _read(src, 'train')}
  va = {int(ex['subject_id']) for ex in _read(src, 'validation')}
  assert tr and va and not tr & va
  assert len(tr) == sb.MOVI_SUBJECTS['tiny'][0] and len(va) == sb.MOVI_SUBJECTS['tiny'][1]
  trials = {int(ex['trial']) for ex in _read(src, 'train')}
  assert trials == set(range(len(b.info.metadata['activities'])))
  assert 150 <= len(src['train']) + len(src['validation']) <= 600


def test_same_config_same_records_other_seed_differs(tmp_path, built):
  d1, _, src1 = built['synthetic_running_valr']
  rate, t = CASES['synthetic_running_valr']
  d2 = records.build(sb.SyntheticRunningValr, str(tmp_path / 'again'),
                     records.make_config('tiny', rate, t))
  src2 = tfds.builder_from_directory(d2).as_data_source()
  key = lambda e: (int(e['subject_id']), int(e['trial']), float(e['valr']))
  a = sorted(key(e) for e in _read(src1, 'train'))
  b = sorted(key(e) for e in _read(src2, 'train'))
  assert a == b
  d3 = records.build(sb.SyntheticRunningValr, str(tmp_path / 'seed'),
                     records.make_config('tiny', rate, t, seed=1))
  src3 = tfds.builder_from_directory(d3).as_data_source()
  c = sorted(float(e['valr']) for e in _read(src3, 'train'))
  assert c != sorted(v for _, _, v in a)


def test_bad_config_is_rejected_with_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match='size must be one of'):
    records.build(sb.SyntheticWalkingGrf, str(tmp_path), records.make_config('huge'))
  with pytest.raises(ValueError, match='window_length'):
    records.build(sb.SyntheticWalkingGrf, str(tmp_path), records.make_config('tiny', 100.0, 4))
