"""Tiny TFDS builders for the spine's unit tests (seconds to build; no physics claims).

The windows couple acc and gyr through a shared latent signal, so contrastive learning has
something to find, and the label is a known function of the signal amplitude. ``as_written``
regenerates a split's windows as the builders write them, so tests can check what the input
pipeline reads against the records' contents (acc is acc, gyr is gyr), not only shapes.
"""

import numpy as np

from data_prep import records

UNLABELLED_SPLITS = {'train': range(6), 'validation': range(6, 8)}
LABELLED_SPLITS = {'train': range(10)}


def unlabelled_windows(subjects, t: int):
  """(key, acc [3, t, 3], gyr, subject, trial, targets) of toy_unlabelled, in generation order."""
  for s in subjects:
    rng = np.random.default_rng(s)
    for i in range(24):
      w = rng.normal(size=(3, t, 3)).cumsum(1) * 0.1
      yield f'{s}_{i}', 9.81 + 5 * np.gradient(w, axis=1), w, s, i % 2, {}


def labelled_windows(subjects, t: int):
  """(key, acc [2, t, 3], gyr, subject, trial, targets) of toy_labelled, in generation order."""
  for s in subjects:
    rng = np.random.default_rng(100 + s)
    for i in range(16):
      amp = rng.uniform(0.5, 2.0)
      w = amp * np.sin(np.linspace(0, 6, t))[None, :, None] * np.ones((2, 1, 3))
      yield f'{s}_{i}', 9.81 + w, 0.5 * w, s, 0, {'y': 1.0 + amp}


class ToyUnlabelled(records.ImuWindowBuilder):
  """3 sites; subjects 0-5 train, 6-7 validation."""

  SITES = ('a', 'b', 'c')

  def _split_generators(self, dl_manager):
    return {k: self._generate_examples(v) for k, v in UNLABELLED_SPLITS.items()}

  def _generate_examples(self, subjects):
    for key, acc, gyr, s, trial, _ in unlabelled_windows(subjects,
                                                         self.builder_config.window_length):
      yield key, self.example(acc, gyr, s, trial)


class ToyAccOnly(ToyUnlabelled):
  """toy_unlabelled's windows without the gyroscope (an accelerometer-only corpus)."""

  WITH_GYR = False

  def _generate_examples(self, subjects):
    for key, acc, _, s, trial, _ in unlabelled_windows(subjects, self.builder_config.window_length):
      yield key, self.example(acc, None, s, trial)


class ToyLabelled(records.ImuWindowBuilder):
  """2 sites, 10 subjects, label y = 1 + amplitude (BW)."""

  SITES = ('a', 'b')
  TARGETS = {'y': 'BW'}

  def _split_generators(self, dl_manager):
    return {k: self._generate_examples(v) for k, v in LABELLED_SPLITS.items()}

  def _generate_examples(self, subjects):
    for key, acc, gyr, s, trial, y in labelled_windows(subjects, self.builder_config.window_length):
      yield key, self.example(acc, gyr, s, trial, y)


def as_written(dataset: str, split: str, t: int = 32) -> dict[str, np.ndarray]:
  """The windows of a toy split as the builder writes them (float32, generation order, all sites):
  {'acc', 'gyr' [n, N, t, 3], 'subject_id', 'trial' [n], 'targets' [n, K]}."""
  gen, splits = {'toy_unlabelled': (unlabelled_windows, UNLABELLED_SPLITS),
                 'toy_labelled': (labelled_windows, LABELLED_SPLITS)}[dataset]
  rows = list(gen(splits[split], t))
  return {'acc': np.stack([r[1] for r in rows]).astype(np.float32),
          'gyr': np.stack([r[2] for r in rows]).astype(np.float32),
          'subject_id': np.array([r[3] for r in rows], np.int64),
          'trial': np.array([r[4] for r in rows], np.int64),
          'targets': np.array([list(r[5].values()) for r in rows], np.float32).reshape(
              len(rows), -1)}


def register():
  """Makes the toy builders reachable by name through data_prep.get_builder_class."""
  import data_prep

  data_prep.BUILDERS.setdefault('toy_unlabelled', 'toy_data:ToyUnlabelled')
  data_prep.BUILDERS.setdefault('toy_labelled', 'toy_data:ToyLabelled')
  data_prep.BUILDERS.setdefault('toy_acc_only', 'toy_data:ToyAccOnly')
