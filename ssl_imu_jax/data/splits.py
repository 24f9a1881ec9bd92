"""Subject-wise cross-validation folds and nested training-data fractions.

A subject is the unit of splitting: every window of a subject lands on one side only. A data set
of one subject (the real running file) can only be split by its trials (``units``, config key
``split.unit='trial'``): a within-subject evaluation, said so wherever its results are reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

UNITS = ('subject', 'trial')


def units(subject_ids: np.ndarray, trials: np.ndarray, unit: str, where: str) -> np.ndarray:
  """The ids the folds, fractions and per-unit metrics run over: ``subject_ids`` (unit
  'subject'), or for unit 'trial' the ``trials`` of a one-subject set (``where`` names it)."""
  from ssl_imu_jax.errors import ConfigError  # noqa: PLC0415

  if unit == 'subject':
    return subject_ids
  if unit != 'trial':
    raise ConfigError(f"config key split.unit={unit!r}; expected one of {list(UNITS)}")
  subjects = np.unique(np.asarray(subject_ids))
  if len(subjects) != 1:
    raise ConfigError(f"config key split.unit='trial' splits one subject's trials (a "
                      f'within-subject evaluation); {where} has {len(subjects)} subjects: '
                      f"split them by subject (split.unit='subject')")
  return np.asarray(trials, dtype=np.int64)


def assign_folds(subject_ids: Sequence[int], num_folds: int, seed: int) -> dict[int, int]:
  """Random subject -> fold assignment with balanced fold sizes, fixed by ``seed``."""
  subjects = np.unique(np.asarray(list(subject_ids), dtype=np.int64))
  if num_folds < 2:
    raise ValueError(f'split.num_folds must be >= 2, got {num_folds}')
  if len(subjects) < num_folds:
    raise ValueError(f'split.num_folds={num_folds} but the data set has only {len(subjects)} '
                     f'subjects')
  perm = np.random.default_rng(seed).permutation(subjects)
  return {int(s): int(i % num_folds) for i, s in enumerate(perm)}


def fold_indices(example_subject_ids: np.ndarray, folds: Mapping[int, int],
                 fold: int) -> tuple[np.ndarray, np.ndarray]:
  """Indices of the training and test windows for ``fold`` (test = subjects of that fold)."""
  ids = np.asarray(example_subject_ids)
  unknown = set(np.unique(ids).tolist()) - set(folds)
  if unknown:
    raise ValueError(f'subjects {sorted(unknown)[:5]} have no fold assignment')
  n_folds = max(folds.values()) + 1
  if not 0 <= fold < n_folds:
    raise ValueError(f'split.fold={fold} out of range [0, {n_folds})')
  test_subjects = np.array([s for s, f in folds.items() if f == fold])
  is_test = np.isin(ids, test_subjects)
  return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def fraction_indices(train_idx: np.ndarray, fraction: float, seed: int) -> np.ndarray:
  """A random subset of ``train_idx`` (at least one window), nested across fractions.

  The same seed gives one fixed permutation of ``train_idx``; a fraction keeps its prefix, so
  a smaller fraction is always a subset of a larger one.
  """
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f'split.fraction must be in (0, 1], got {fraction}')
  train_idx = np.asarray(train_idx)
  perm = np.random.default_rng(seed).permutation(len(train_idx))
  n = max(1, int(round(fraction * len(train_idx))))
  return np.sort(train_idx[perm[:n]])


def validation_subjects(train_subject_ids: Sequence[int], fraction: float,
                        seed: int) -> list[int]:
  """The training subjects held out for early stopping and model selection: ``fraction`` of
  them (rounded, at least one, and at least one left to train on), fixed by ``seed``.

  The reference code has no validation subjects (it trains a fixed number of steps); this
  project holds them out inside the training folds so that every arm stops at a defined point
  chosen without the test subjects. 0 = none.
  """
  subjects = np.unique(np.asarray(list(train_subject_ids), dtype=np.int64))
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f'config key split.validation_fraction must be in [0, 1), got {fraction}')
  if fraction == 0.0:
    return []
  if len(subjects) < 2:
    raise ValueError(f'split.validation_fraction={fraction} needs at least 2 training subjects '
                     f'(one to validate on, one to train on), got {len(subjects)}')
  n = min(len(subjects) - 1, max(1, int(round(fraction * len(subjects)))))
  return sorted(int(s) for s in np.random.default_rng(seed).permutation(subjects)[:n])


def train_validation_indices(example_subject_ids: np.ndarray, train_idx: np.ndarray,
                             fraction: float, validation_fraction: float, fraction_seed: int,
                             validation_seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(fit, validation) window indices of a fold's training windows ``train_idx``.

  Subject-wise: the validation subjects (``validation_subjects``) are chosen first, from all of
  the fold's training subjects, so they do not depend on ``fraction``; then ``fraction`` of the
  windows is kept on each side (``fraction_indices``, nested across fractions), so that at 10 %
  of the labels the validation set is 10 % of its windows too: the labelled budget of a cell
  covers both.
  """
  ids = np.asarray(example_subject_ids)
  train_idx = np.asarray(train_idx)
  val_s = validation_subjects(ids[train_idx], validation_fraction, validation_seed)
  is_val = np.isin(ids[train_idx], val_s)
  fit = fraction_indices(train_idx[~is_val], fraction, fraction_seed)
  val = (fraction_indices(train_idx[is_val], fraction, fraction_seed) if val_s
         else np.zeros(0, np.int64))
  return fit, val
