"""Cells trained together in one vmapped program equal the same cells trained one by one (a
few steps: over many, Adam amplifies float rounding; see multicell.py)."""

import os

import jax
import numpy as np
import pytest
from conftest import tiny_finetune_config

from ssl_imu_jax.training import checkpointing

# Two points of the sweep that differ in fold, fraction and fine-tuning seed, so that a grouped
# cell given another cell's windows, batch order or random numbers trains differently.
A, B = (0, 1.0, 0), (1, 0.5, 1)  # (fold, fraction, seed)


def _max_diff(a, b) -> float:
  return max(float(np.max(np.abs(x - y))) for x, y in zip(
      jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _n_differ(a, b, tol: float) -> tuple[int, int]:
  """(elements differing by more than tol, elements) over two pytrees."""
  pairs = list(zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
  return (sum(int(np.sum(np.abs(np.asarray(x) - np.asarray(y)) > tol)) for x, y in pairs),
          sum(np.size(x) for x, _ in pairs))


def _sweep(pretrained, toy_dirs, max_cells: int):
  from configs import sweep as sweep_config

  c = sweep_config.get_config('tiny')
  c.datasets = ('toy_labelled',)
  c.folds, c.fractions, c.seeds = (A[0], B[0]), (B[1], A[1]), (A[2], B[2])
  # Pre-trained only: the encoder is then the same in every cell. A random encoder can have a
  # channel whose gradient is pure float rounding, where Adam moves the parameter by +-lr
  # whichever way the rounding goes (multicell.py): seed 1's does, 2e-3 in r after 3 steps.
  c.inits = ('pretrained',)
  c.init_from = pretrained['workdir']
  c.finetune = tiny_finetune_config()
  c.finetune.train.steps = 3
  c.finetune.train.epochs = 0.0  # cells group only with one step count and no early stopping
  c.finetune.split.validation_fraction = 0.0
  c.finetune.model.head_dims = (8,)  # a hidden layer with dropout: per-cell random numbers
  c.finetune.model.dropout_rate = 0.2
  c.finetune.data_dir = toy_dirs['data_dir']
  c.max_cells_per_program = max_cells
  return c


def _cells_a_and_b(monkeypatch):
  """The sweep's plan (folds x fractions x seeds) thinned to the cells at A and B: 2 per
  protocol, so that each group holds the two points (4 cells)."""
  from ssl_imu_jax.evaluation import sweep

  real = sweep.plan

  def plan(config):
    for cell in real(config):
      _, fold, fraction, _, _, seed = cell
      if (fold, fraction, seed) in (A, B):
        yield cell

  monkeypatch.setattr(sweep, 'plan', plan)


def test_a_grouped_sweep_equals_the_sweep_cell_by_cell_and_resumes(tmp_path, toy_dirs,
                                                                   pretrained, monkeypatch):
  import pandas as pd

  from ssl_imu_jax.data import input_pipeline
  from ssl_imu_jax.evaluation import sweep
  from ssl_imu_jax.training import multicell

  _cells_a_and_b(monkeypatch)
  one = pd.read_csv(tmp_path / sweep.run(_sweep(pretrained, toy_dirs, 1), str(tmp_path / 'one'))
                    / 'results.csv')
  real = input_pipeline.batch_indices
  calls = {'n': 0}

  def dies(step, *a, **k):  # a kill in the middle of the second group (full_from_probe)
    calls['n'] += 1
    if calls['n'] > 2 * 3 + 2:  # 2 cells x 3 steps in the first group
      raise KeyboardInterrupt
    return real(step, *a, **k)

  monkeypatch.setattr(input_pipeline, 'batch_indices', dies)
  cfg = _sweep(pretrained, toy_dirs, 4)
  with pytest.raises(KeyboardInterrupt):
    sweep.run(cfg, str(tmp_path / 'grouped'))
  monkeypatch.setattr(input_pipeline, 'batch_indices', real)
  done = list((tmp_path / 'grouped' / 'sweep').rglob(sweep.CELL_FILE))
  assert len(done) == 2  # the probes' group finished, the interrupted one left no results
  why = []
  groupable = multicell.groupable
  monkeypatch.setattr(multicell, 'groupable', lambda cells: why.append(groupable(cells)) or why[-1])
  grouped = pd.read_csv(tmp_path / sweep.run(cfg, str(tmp_path / 'grouped')) / 'results.csv')
  assert why == [''], why  # the resumed group trained as one program, not one by one
  keys = ['task', 'target', 'init', 'protocol', 'fraction', 'fold', 'seed', 'subject']
  both = one.merge(grouped, on=keys, suffixes=('_one', '_grouped'))
  cells = set(map(tuple, one[keys[2:7]].drop_duplicates().to_numpy().tolist()))
  assert len(both) == len(one) == len(grouped) and len(cells) == 4
  assert {(f, fr, s) for *_, fr, f, s in cells} == {A, B}
  # Equal up to float32 rounding: the vmapped and the one-cell programs compile to different
  # machine code (more so with the suite's LLVM optimisation off), so a parameter whose gradient
  # is pure rounding can move by +-lr under Adam in one and not the other (below); an r near 0
  # magnifies what that does to the predictions (seen: 1.6e-4).
  np.testing.assert_allclose(both.pearson_r_grouped, both.pearson_r_one, atol=1e-3)
  np.testing.assert_allclose(both.rmse_grouped, both.rmse_one, rtol=1e-4)
  for cell, (fold, frac, seed) in (('linear_probe', B), ('full_from_probe', A),
                                   ('full_from_probe', B)):  # states after 3 steps
    where = os.path.join('sweep', 'toy_labelled', f'fold{fold}', f'frac{frac:g}', f'seed{seed}',
                         f'pretrained_{cell}', 'checkpoints')
    a = checkpointing.restore_raw(str(tmp_path / 'one' / where))
    g = checkpointing.restore_raw(str(tmp_path / 'grouped' / where))
    for key, tol in (('params', 1e-5), ('batch_stats', 1e-5), ('opt_state', 1e-4)):
      # Every element equal within tol, but for at most 1 in 1,000 (seen: 1 of 15,529 params,
      # by 5e-4, with the suite's LLVM optimisation off): a rounding-only gradient's +-lr step.
      # Another cell's indices, fraction or dropout seed changes most of them.
      bad, n = _n_differ(a[key], g[key], tol)
      assert bad <= n // 1000, (cell, fold, frac, seed, key, bad, n, _max_diff(a[key], g[key]))
