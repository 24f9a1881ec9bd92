"""Tiny TFDS builders for the spine's unit tests (seconds to build; no physics claims).

The windows couple acc and gyr through a shared latent signal, so contrastive learning has
something to find, and the label is a known function of the signal amplitude.
"""

import numpy as np

from data_prep import records


class ToyUnlabelled(records.ImuWindowBuilder):
  """3 sites; subjects 0-5 train, 6-7 validation."""

  SITES = ('a', 'b', 'c')

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples(range(6)),
            'validation': self._generate_examples(range(6, 8))}

  def _generate_examples(self, subjects):
    t = self.builder_config.window_length
    for s in subjects:
      rng = np.random.default_rng(s)
      for i in range(24):
        w = rng.normal(size=(3, t, 3)).cumsum(1) * 0.1
        yield f'{s}_{i}', self.example(9.81 + 5 * np.gradient(w, axis=1), w, s, i % 2)


class ToyLabelled(records.ImuWindowBuilder):
  """2 sites, 10 subjects, label y = 1 + amplitude (BW)."""

  SITES = ('a', 'b')
  TARGETS = {'y': 'BW'}

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples(range(10))}

  def _generate_examples(self, subjects):
    t = self.builder_config.window_length
    for s in subjects:
      rng = np.random.default_rng(100 + s)
      for i in range(16):
        amp = rng.uniform(0.5, 2.0)
        w = amp * np.sin(np.linspace(0, 6, t))[None, :, None] * np.ones((2, 1, 3))
        yield f'{s}_{i}', self.example(9.81 + w, 0.5 * w, s, 0, {'y': 1.0 + amp})


def register():
  """Makes the toy builders reachable by name through data_prep.get_builder_class."""
  import data_prep

  data_prep.BUILDERS.setdefault('toy_unlabelled', 'toy_data:ToyUnlabelled')
  data_prep.BUILDERS.setdefault('toy_labelled', 'toy_data:ToyLabelled')
