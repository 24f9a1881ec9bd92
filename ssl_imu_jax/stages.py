"""Dispatch from ``config.stage`` to the code that runs it (main.py stays thin)."""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections

from ssl_imu_jax.data import input_pipeline
from ssl_imu_jax.errors import ConfigError


def check_required(config: ml_collections.ConfigDict, prefix: str = '') -> None:
  """Every field left as None (a placeholder) is a required value the user must set."""
  for key, value in config.items():
    name = f'{prefix}{key}'
    if value is None:
      raise ConfigError(f'config key {name} is required but has no value '
                        f'(set --config.{name}=...)')
    if isinstance(value, ml_collections.ConfigDict):
      check_required(value, name + '.')


def run(config: ml_collections.ConfigDict, workdir: str) -> Any:
  if 'stage' not in config:
    raise ConfigError(f'config key stage is missing; expected one of {STAGES}')
  if config.stage not in STAGES:
    raise ConfigError(f'config key stage={config.stage!r}; expected one of {STAGES}')
  check_required(config)
  import jax  # noqa: PLC0415

  if jax.process_count() > 1 and config.stage not in MULTI_HOST_STAGES:
    raise ConfigError(f'stage {config.stage!r} runs on one host (its data fit one machine); '
                      f'{jax.process_count()} processes joined this run. Run it without the '
                      f'multi-host launcher; multi-host stages: {MULTI_HOST_STAGES}')
  os.makedirs(workdir, exist_ok=True)
  from ssl_imu_jax.training import interrupt, trainer  # noqa: PLC0415

  # Paths inside the work directory are fingerprinted relative to it (a copy resumes), and an
  # interrupted run names its stage.
  with trainer.run_root(workdir), interrupt.activity(config.stage):
    return _RUNNERS[config.stage](config, workdir)


def _data_dir(config, workdir: str) -> str:
  return input_pipeline.resolve_data_dir(config, workdir)


def _run_prepare(config, workdir):
  for name in config.datasets:  # every name checked before anything is built
    input_pipeline.check_dataset(name, 'datasets')
  paths = {}
  for name in config.datasets:
    data_cfg = ml_collections.ConfigDict(config.data.to_dict())
    data_cfg.dataset = name
    paths[name] = input_pipeline.ensure_built(data_cfg, _data_dir(config, workdir))
    print(f'{name}: {paths[name]}')
  if config.get('plot', False):
    from data_prep import plot_signals

    out = os.path.join(workdir, 'report', 'signals.png')
    os.makedirs(os.path.dirname(out), exist_ok=True)
    plot_signals.plot_synthetic(out, seed=int(config.data.seed),
                                rate=float(config.data.sample_rate_hz))
    print(f'plot: {out}')
  return paths


def _run_pretrain(config, workdir):
  from ssl_imu_jax.training import pretrain

  out = pretrain.run(config, os.path.join(workdir, 'pretrain'), _data_dir(config, workdir))
  if out['train']:
    print(json.dumps({'train': out['train'], 'eval': out['eval']}, indent=1))
  else:
    print(f'pre-training had already finished; held-out eval of its last checkpoint: '
          f'{json.dumps(out["eval"])}')
  return out


def _run_finetune(config, workdir):
  from ssl_imu_jax.evaluation import report
  from ssl_imu_jax.training import finetune

  out = os.path.join(workdir, 'finetune')
  res = finetune.train_and_evaluate(config, out, _data_dir(config, workdir))
  if res['final']:
    print(f'final model on all {len(res["train_subjects"])} subjects (no held-out fold): {out}; '
          f'model card {os.path.join(out, finetune.MODEL_CARD)}')
    return res
  record = report.make_record(res, task=config.data.dataset, init=res['init'],
                              protocol=config.protocol, fraction=float(config.split.fraction),
                              fold=int(config.split.fold),
                              steps=int(res['training'].get('steps_run') or config.train.steps))
  report_dir = os.path.join(workdir, 'report')
  print(report.write_results([record], report_dir))
  print(f'report: {report_dir}')
  return res


def _run_sweep(config, workdir):
  from ssl_imu_jax.evaluation import sweep

  return sweep.run(config, workdir)


def _run_paper(config, workdir):
  """Per-task pre-training, then the sweep against the matching checkpoints -> table."""
  from ssl_imu_jax.evaluation import experiment

  return experiment.run(config, workdir)


def _run_budget(config, workdir):
  """Downstream gain and retrieval against pre-training steps (intermediate checkpoints)."""
  from ssl_imu_jax.evaluation import experiment

  return experiment.budget_curve(config, workdir)


def _run_objectives(config, workdir):
  """NCE and masked pre-training (and mask ratios) on one corpus and budget, each fine-tuned on
  the same folds beside random init and the feature baseline -> objectives.md."""
  from ssl_imu_jax.evaluation import objectives

  return objectives.run(config, workdir)


def _run_demo(config, workdir):
  """The paper stage on the embedded synthetic data, sized for a 2-core machine."""
  return _run_paper(config, workdir)


def _run_predict(config, workdir):
  """A fine-tuned model applied to new recordings -> predictions.csv (+ metrics with labels)."""
  from ssl_imu_jax.deploy import predict

  return predict.run(config, workdir)


def _run_evaluate(config, workdir):
  """``predict`` on a labelled set the model never saw, with its metrics."""
  from ssl_imu_jax.deploy import predict

  return predict.run(config, workdir, require_labels=True)


def _run_embed(config, workdir):
  from ssl_imu_jax.deploy import encoder_api

  return encoder_api.embed_stage(config, workdir)


def _run_release(config, workdir):
  """A pre-training checkpoint's encoder -> weights/<name>/ with its card and checksums."""
  from ssl_imu_jax.deploy import release

  return release.export(config)


_RUNNERS = {
    'prepare': _run_prepare, 'pretrain': _run_pretrain, 'finetune': _run_finetune,
    'sweep': _run_sweep, 'predict': _run_predict, 'evaluate': _run_evaluate, 'embed': _run_embed,
    'paper': _run_paper, 'demo': _run_demo, 'budget': _run_budget, 'release': _run_release,
    'objectives': _run_objectives,
}
STAGES = tuple(_RUNNERS)
MULTI_HOST_STAGES = ('prepare', 'pretrain')
