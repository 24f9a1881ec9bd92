import numpy as np
import pytest

from ssl_imu_jax import splits


def test_folds_partition_subjects_and_are_balanced():
  subjects = list(range(10, 31))
  folds = splits.assign_folds(subjects, 5, seed=3)
  assert sorted(folds) == subjects
  sizes = np.bincount(list(folds.values()))
  assert sizes.max() - sizes.min() <= 1
  assert folds == splits.assign_folds(subjects[::-1], 5, seed=3)
  assert folds != splits.assign_folds(subjects, 5, seed=4)


def test_no_subject_in_train_and_test():
  rng = np.random.default_rng(0)
  ids = rng.integers(0, 12, size=500)
  folds = splits.assign_folds(ids, 4, seed=0)
  seen_test = set()
  for k in range(4):
    tr, te = splits.fold_indices(ids, folds, k)
    assert len(tr) + len(te) == len(ids)
    assert not set(ids[tr]) & set(ids[te])
    assert not set(ids[te]) & seen_test
    seen_test |= set(ids[te])
  assert seen_test == set(ids)


def test_fractions_are_nested():
  train = np.arange(100, 400)
  prev = set()
  for frac in (0.05, 0.1, 0.25, 0.5, 1.0):
    idx = splits.fraction_indices(train, frac, seed=1)
    assert len(idx) == round(frac * 300)
    assert prev <= set(idx)
    prev = set(idx)
  assert prev == set(train)


def test_bad_split_arguments_fail_clearly():
  with pytest.raises(ValueError, match='num_folds'):
    splits.assign_folds([1, 2], 5, seed=0)
  with pytest.raises(ValueError, match='fraction'):
    splits.fraction_indices(np.arange(5), 0.0, seed=0)
