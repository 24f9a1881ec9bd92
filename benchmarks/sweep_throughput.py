"""A slice of the paper's sweep run two ways: wall time of each and the largest difference in
their results.csv, measured in one run.

  python benchmarks/sweep_throughput.py --workdir=/tmp/sweep_bench --compare=cache [--steps=100]
  python benchmarks/sweep_throughput.py --workdir=/tmp/sweep_bench --compare=cells [--cells=8]

The slice: one synthetic task fine-tuned from its released encoder and from random init, every
fold, two fractions. ``cache``: the linear probe with the encoder in inference mode
(``linear_probe_bn_adapt=False``; the reference lets BatchNorm adapt, which cannot be cached),
on windows against on cached embeddings. ``cells``: the reference protocol (linear probe with
adapting BatchNorm, then full_from_probe) cell by cell against ``--cells`` cells per vmapped
program (``sweep.max_cells_per_program``). Both runs share the built data; the baseline goes
first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

import jax
import numpy as np
import pandas as pd

from configs import sweep as sweep_config
from ssl_imu_jax.data import input_pipeline
from ssl_imu_jax.evaluation import sweep
from ssl_imu_jax.training import checkpointing, finetune, multicell

TASKS = {'synthetic_walking_kfm': (100.0, 128), 'synthetic_walking_grf': (200.0, 128),
         'synthetic_running_valr': (200.0, 64)}


def config(task: str, steps: int, folds: int, fast: bool, data_dir: str, compare: str,
           cells: int):
  rate, window = TASKS[task]
  c = sweep_config.get_config('default')
  c.datasets = (task,)
  c.task_data = {task: {'sample_rate_hz': rate, 'window_length': window}}
  c.fractions = (0.1, 1.0)
  c.folds = tuple(range(folds))
  c.seeds = (0,)
  c.protocols = ('linear_probe',) if compare == 'cache' else ('linear_probe', 'full_from_probe')
  c.inits = ('pretrained', 'random')
  c.init_from = os.path.join(checkpointing.weights_root(),
                             checkpointing.release_name('synthetic_movi', rate, window))
  c.finetune.model.encoder.blocks_per_stage = (2, 2, 2, 2)  # the released encoders' depth
  c.finetune.train.steps = steps
  c.finetune.train.batch_size = 16
  c.finetune.train.progress = False
  if compare == 'cache':
    c.finetune.linear_probe_bn_adapt = False
    c.finetune.cache_embeddings = fast
  else:
    c.max_cells_per_program = cells if fast else 1
  c.finetune.data_dir = data_dir
  return c


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument('--workdir', required=True)
  ap.add_argument('--task', default='synthetic_walking_kfm', choices=sorted(TASKS))
  ap.add_argument('--steps', type=int, default=100)
  ap.add_argument('--folds', type=int, default=5)
  ap.add_argument('--compare', choices=('cache', 'cells'), default='cache')
  ap.add_argument('--cells', type=int, default=8)
  a = ap.parse_args()
  data_dir = os.path.join(a.workdir, 'tfds')
  probe = config(a.task, a.steps, a.folds, False, data_dir, a.compare, a.cells)
  data = probe.finetune.data.copy_and_resolve_references()
  data.dataset = a.task
  data.sample_rate_hz, data.window_length = TASKS[a.task]
  input_pipeline.ensure_built(data, data_dir)  # built once, outside the timings
  seconds, results = {}, {}
  names = {'cache': ('windows', 'cached embeddings'),
           'cells': ('cell by cell', f'{a.cells} cells per program')}[a.compare]
  for fast in (False, True):
    out = os.path.join(a.workdir, f'{a.compare}_{fast}')
    shutil.rmtree(out, ignore_errors=True)
    # Each run compiles its own programs: nothing carried over from the run before.
    finetune._PROGRAMS.clear()
    multicell._GROUP_STEPS.clear()
    jax.clear_caches()
    t = time.perf_counter()
    report = sweep.run(config(a.task, a.steps, a.folds, fast, data_dir, a.compare, a.cells), out)
    seconds[fast] = time.perf_counter() - t
    results[fast] = pd.read_csv(os.path.join(report, 'results.csv'))
  keys = ['task', 'target', 'init', 'protocol', 'fraction', 'fold', 'seed', 'subject']
  both = results[False].merge(results[True], on=keys, suffixes=('_base', '_fast'))
  diff = float(np.nanmax(np.abs(both['pearson_r_base'] - both['pearson_r_fast'])))
  cells = len(results[False].drop_duplicates(['init', 'protocol', 'fraction', 'fold']))
  print(f'{a.task}: {cells} cells x {a.steps} steps x batch 16 ({a.compare})')
  print(f'| run | wall time (s) |\n|---|---|\n| {names[0]} | {seconds[False]:.1f} |\n'
        f'| {names[1]} | {seconds[True]:.1f} |')
  print(f'speed-up {seconds[False] / seconds[True]:.2f}x; largest |r difference| over '
        f'{len(both)} rows of results.csv: {diff:.2e}')


if __name__ == '__main__':
  main()
