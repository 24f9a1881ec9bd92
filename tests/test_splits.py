import numpy as np
import pytest

from ssl_imu_jax.data import splits


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


def test_validation_subjects_are_training_subjects_fixed_and_fraction_independent():
  ids = np.repeat(np.arange(20), 10)  # 20 subjects x 10 windows
  folds = splits.assign_folds(ids, 5, 0)
  train, test = splits.fold_indices(ids, folds, 0)
  sides = {f: splits.train_validation_indices(ids, train, f, 0.25, 0, 3) for f in (0.1, 0.5, 1.0)}
  val_subjects = {f: set(ids[v].tolist()) for f, (_, v) in sides.items()}
  fit_subjects = {f: set(ids[t].tolist()) for f, (t, _) in sides.items()}
  assert len(val_subjects[1.0]) == 4                       # round(0.25 * 16)
  assert val_subjects[0.5] <= val_subjects[1.0] and val_subjects[0.1] <= val_subjects[1.0]
  for f, (fit, val) in sides.items():
    assert not fit_subjects[f] & val_subjects[1.0]          # subject-wise
    assert not set(ids[np.concatenate([fit, val])].tolist()) & set(ids[test].tolist())
    assert len(fit) == max(1, round(f * 120)) and len(val) == max(1, round(f * 40))
  # nested across fractions on both sides
  assert set(sides[0.1][0]) <= set(sides[0.5][0]) <= set(sides[1.0][0])
  assert set(sides[0.1][1]) <= set(sides[0.5][1]) <= set(sides[1.0][1])
  assert splits.validation_subjects(ids[train], 0.25, 3) == sorted(val_subjects[1.0])
  assert splits.validation_subjects(np.arange(2), 0.9, 0) != []  # one left to train on
  assert len(splits.validation_subjects(np.arange(2), 0.9, 0)) == 1
  fit, val = splits.train_validation_indices(ids, train, 1.0, 0.0, 0, 0)
  assert len(val) == 0 and np.array_equal(fit, train)
