"""Cells trained together in one vmapped program equal the same cells trained one by one (a
few steps: over many, Adam amplifies float rounding; see multicell.py)."""

import os

import jax
import numpy as np
import pytest
from conftest import tiny_finetune_config

from ssl_imu_jax import checkpointing


def _max_diff(a, b) -> float:
  return max(float(np.max(np.abs(x - y))) for x, y in zip(
      jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _sweep(pretrained, toy_dirs, max_cells: int):
  from configs import sweep as sweep_config

  c = sweep_config.get_config('tiny')
  c.datasets = ('toy_labelled',)
  c.fractions = (1.0,)
  c.folds = (0,)
  c.init_from = pretrained['workdir']
  c.finetune = tiny_finetune_config()
  c.finetune.train.steps = 3
  c.finetune.model.head_dims = (8,)  # a hidden layer with dropout: per-cell random numbers
  c.finetune.model.dropout_rate = 0.2
  c.finetune.data_dir = toy_dirs['data_dir']
  c.max_cells_per_program = max_cells
  return c


def test_a_grouped_sweep_equals_the_sweep_cell_by_cell_and_resumes(tmp_path, toy_dirs,
                                                                   pretrained, monkeypatch):
  import pandas as pd

  from ssl_imu_jax import input_pipeline, sweep

  one = pd.read_csv(tmp_path / sweep.run(_sweep(pretrained, toy_dirs, 1), str(tmp_path / 'one'))
                    / 'results.csv')
  real = input_pipeline.batch_indices
  calls = {'n': 0}

  def dies(step, *a, **k):  # a kill in the middle of the second group (full_from_probe)
    calls['n'] += 1
    if calls['n'] > 8:
      raise KeyboardInterrupt
    return real(step, *a, **k)

  monkeypatch.setattr(input_pipeline, 'batch_indices', dies)
  cfg = _sweep(pretrained, toy_dirs, 4)
  with pytest.raises(KeyboardInterrupt):
    sweep.run(cfg, str(tmp_path / 'grouped'))
  monkeypatch.undo()
  done = list((tmp_path / 'grouped' / 'sweep').rglob(sweep.CELL_FILE))
  # The feature baseline (alone, first) and the probes' group finished; the interrupted group
  # left no results.
  assert len(done) == 3 and any(p.parent.name == 'features_ridge' for p in done)
  from ssl_imu_jax import multicell

  grouped_protocols = []
  real_cells = multicell.train_cells

  def spy(cfgs, *a, **k):
    grouped_protocols.extend(c.protocol for c in cfgs)
    return real_cells(cfgs, *a, **k)

  monkeypatch.setattr(multicell, 'train_cells', spy)
  grouped = pd.read_csv(tmp_path / sweep.run(cfg, str(tmp_path / 'grouped')) / 'results.csv')
  monkeypatch.undo()
  assert grouped_protocols == ['full_from_probe'] * 2  # never the feature baseline's 'ridge'
  keys = ['task', 'target', 'init', 'protocol', 'fraction', 'fold', 'seed', 'subject']
  both = one.merge(grouped, on=keys, suffixes=('_one', '_grouped'))
  assert len(both) == len(one) == len(grouped) and len(one.drop_duplicates(keys[2:6])) == 5
  np.testing.assert_allclose(both.pearson_r_grouped, both.pearson_r_one, atol=1e-5)
  np.testing.assert_allclose(both.rmse_grouped, both.rmse_one, rtol=1e-5)
  for cell in ('pretrained_linear_probe', 'random_full_from_probe'):  # states after 3 steps
    where = os.path.join('sweep', 'toy_labelled', 'fold0', 'frac1', 'seed0', cell, 'checkpoints')
    a = checkpointing.restore_raw(str(tmp_path / 'one' / where))
    g = checkpointing.restore_raw(str(tmp_path / 'grouped' / where))
    for key, tol in (('params', 1e-5), ('batch_stats', 1e-5), ('opt_state', 1e-4)):
      assert _max_diff(a[key], g[key]) <= tol, (cell, key)
