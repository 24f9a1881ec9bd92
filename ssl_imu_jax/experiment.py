"""The paper's protocol in one resumable command: per-task pre-training, then the sweep.

The reference pre-trains once per downstream task, at that task's sample rate and window length.
``run`` finds the distinct (rate, window) pairs of the sweep's data sets, pre-trains one encoder
for each (``<workdir>/pretrain_<rate>hz_<T>/``; data sets with equal rate and window share it),
then runs the sweep with all of them as ``init_from``, so every data set fine-tunes from the
checkpoint that matches it. Every part resumes: finished pre-trainings and cells are skipped.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import ml_collections

from ssl_imu_jax import input_pipeline


def pretrain_key(data_cfg: ml_collections.ConfigDict) -> tuple[float, int]:
  return float(data_cfg.sample_rate_hz), int(data_cfg.window_length)


def pretrain_dir(workdir: str, key: tuple[float, int]) -> str:
  return os.path.join(workdir, f'pretrain_{key[0]:g}hz_{key[1]}')


def pretrain_configs(config: ml_collections.ConfigDict) -> dict[tuple[float, int], Any]:
  """One pre-training config per distinct (rate, window) of the sweep's data sets."""
  from ssl_imu_jax import sweep

  out = {}
  for dataset in config.sweep.datasets:
    key = pretrain_key(sweep.task_data(config.sweep, dataset))
    if key not in out:
      c = config.pretrain.copy_and_resolve_references()
      c.unlock()
      c.data.sample_rate_hz, c.data.window_length = key
      out[key] = c
  return out


def run(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Pre-trains what the sweep needs, then runs the sweep; returns the report directory."""
  from ssl_imu_jax import pretrain, sweep

  data_dir = input_pipeline.resolve_data_dir(config, workdir)
  ckpts = []
  plans = pretrain_configs(config)
  for i, (key, pcfg) in enumerate(plans.items(), start=1):
    out_dir = pretrain_dir(workdir, key)
    print(f'== pre-training {i}/{len(plans)} on {pcfg.data.dataset} at {key[0]:g} Hz / {key[1]} '
          f'samples ({pcfg.train.steps} steps x {pcfg.train.batch_size} windows) -> {out_dir}',
          file=sys.stderr, flush=True)
    pretrain.run(pcfg, out_dir, data_dir)
    ckpts.append(os.path.join(out_dir, 'checkpoints'))
  sweep_cfg = config.sweep.copy_and_resolve_references()
  sweep_cfg.unlock()
  sweep_cfg.init_from = tuple(ckpts)
  sweep_cfg.finetune.data_dir = data_dir
  return sweep.run(sweep_cfg, workdir)
