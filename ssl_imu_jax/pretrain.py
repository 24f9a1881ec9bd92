"""Self-supervised pre-training: acc vs gyr InfoNCE over a device mesh.

Entry point ``run(config, workdir)``; checkpoints in ``<workdir>/checkpoints`` with the config
beside them (``config.json``) and a model card (``MODEL_CARD.md``).
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssl_imu_jax import files, input_pipeline, losses, parallel, steps, train_state, trainer
from ssl_imu_jax.errors import ConfigError
from ssl_imu_jax.models import ContrastiveModel
from ssl_imu_jax.models.ssl_imu import dtype_from_name


def build_model(config: ml_collections.ConfigDict) -> ContrastiveModel:
  return ContrastiveModel(encoder_config=config.model.encoder,
                          projection_dims=tuple(config.model.projection_dims),
                          temperature=config.ssl.temperature,
                          learnable_temperature=config.ssl.learnable_temperature,
                          projection_batch_norm=config.model.get('projection_batch_norm', False),
                          dtype=dtype_from_name(config.train.compute_dtype))


def ssl_loss(config, z_acc, z_gyr, temp, local_blocks: int = 1, weights_B=None):
  """``config.ssl.loss`` ('reference_nce' | 'info_nce') on projected embeddings."""
  return losses.contrastive_loss(config.ssl.get('loss', 'info_nce'), z_acc, z_gyr, temp,
                                 grouped=config.ssl.grouped, local_blocks=local_blocks,
                                 weights_B=weights_B,
                                 chunk_size=int(config.ssl.get('chunk_size', 0)))


def make_gradient_fn(config: ml_collections.ConfigDict, model: ContrastiveModel, num_devices: int):
  """``(params, batch_stats, acc, gyr) -> (loss, batch_stats, metrics, grads)`` on normalised
  inputs; with ``train.grad_accum_steps`` = k, the mean of the k micro-batches' gradients
  (negatives then come from each micro-batch)."""
  local_blocks = num_devices if config.ssl.negatives == 'local' else 1
  accum = int(config.train.grad_accum_steps)

  def loss_fn(params, batch_stats, acc, gyr):
    (z_acc, z_gyr, temp), new_vars = model.apply(
        {'params': params, 'batch_stats': batch_stats}, acc, gyr, train=True,
        mutable=['batch_stats'])
    loss, m = ssl_loss(config, z_acc, z_gyr, temp, local_blocks=local_blocks)
    return loss, (new_vars['batch_stats'], {**m, 'temperature': temp})

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def gradients(params, batch_stats, acc, gyr):
    if accum == 1:
      (loss, (bstats, m)), grads = grad_fn(params, batch_stats, acc, gyr)
      return loss, bstats, m, grads
    micro = lambda x: x.reshape((accum, x.shape[0] // accum) + x.shape[1:])

    def body(carry, xs):
      bstats, gsum = carry
      (l_, (bstats, m_)), g = grad_fn(params, bstats, *xs)
      return (bstats, jax.tree.map(jnp.add, gsum, g)), (l_, m_)

    zeros = jax.tree.map(jnp.zeros_like, params)
    (bstats, grads), (ls, ms) = jax.lax.scan(body, (batch_stats, zeros), (micro(acc), micro(gyr)))
    grads = jax.tree.map(lambda g: g / accum, grads)
    return jnp.mean(ls), bstats, jax.tree.map(jnp.mean, ms), grads

  return gradients


def make_train_step(config: ml_collections.ConfigDict, model: ContrastiveModel, tx,
                    schedule, num_devices: int):
  """``(state, batch, rng) -> (state, metrics)``; batch = {'acc','gyr'} [B, N, T, 3] raw units.

  The input normalisation comes from ``state.norm``. The state is donated by the caller's jit.
  """
  gradients = make_gradient_fn(config, model, num_devices)

  def step(state: train_state.TrainState, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    acc, gyr = steps.apply_augmentation(rng, batch['acc'], batch['gyr'], config.augment)
    stats = state.norm
    acc = steps.normalize(acc, stats['acc_mean'], stats['acc_std'])
    gyr = steps.normalize(gyr, stats['gyr_mean'], stats['gyr_std'])
    loss, bstats, m, grads = gradients(state.params, state.batch_stats, acc, gyr)
    new_state, norms = steps.apply_gradients(state, tx, schedule, grads, bstats)
    return new_state, {'loss': loss, **m, **norms}

  return step


def make_eval_step(config: ml_collections.ConfigDict, model: ContrastiveModel):
  """Loss and retrieval accuracy (top-1 / top-5 within the batch) on padded eval batches."""

  def step(state, batch):
    stats = state.norm
    acc = steps.normalize(batch['acc'], stats['acc_mean'], stats['acc_std'])
    gyr = steps.normalize(batch['gyr'], stats['gyr_mean'], stats['gyr_std'])
    z_acc, z_gyr, temp = model.apply({'params': state.params, 'batch_stats': state.batch_stats},
                                     acc, gyr, train=False)
    loss, m = ssl_loss(config, z_acc, z_gyr, temp, weights_B=batch['weights'])
    return {'loss': loss, **m}

  return step


class Training(NamedTuple):
  """What ``build_training`` returns: the pieces ``run`` trains with."""

  model: ContrastiveModel
  tx: Any
  schedule: Any
  state: train_state.TrainState
  step_fn: Any  # jitted (state, batch, rng) -> (state, metrics); the state is donated
  mesh: jax.sharding.Mesh
  data_sharding: jax.sharding.NamedSharding
  replicated: jax.sharding.NamedSharding


def build_training(config: ml_collections.ConfigDict, sample_shape: tuple[int, ...],
                   stats: dict[str, float], mesh=None) -> Training:
  """The model, optimiser, initial state on the mesh and the jitted, state-donating train step
  of ``run`` (the one implementation; benchmarks/pretrain_throughput.py times it too).

  ``sample_shape`` is one batch's [1, N, T, 3]; ``stats`` the input normalisation
  (``input_pipeline.fit_input_stats``); ``mesh`` defaults to all devices.
  """
  mesh = parallel.make_mesh() if mesh is None else mesh
  n_dev = mesh.devices.size
  parallel.check_batch(config.train.batch_size, mesh)
  if config.train.batch_size % config.train.grad_accum_steps:
    raise ConfigError('config key train.batch_size must be divisible by train.grad_accum_steps')
  model = build_model(config)
  tx, schedule = train_state.make_optimizer(config.optimizer, config.train.steps)
  state = steps.init_state(config, model, tx, tuple(sample_shape), mesh, stats)
  dsh, rep = parallel.data_sharding(mesh), parallel.replicated(mesh)
  step_fn = jax.jit(make_train_step(config, model, tx, schedule, n_dev),
                    in_shardings=(rep, dsh, rep), out_shardings=(rep, rep), donate_argnums=(0,))
  return Training(model, tx, schedule, state, step_fn, mesh, dsh, rep)


def run(config: ml_collections.ConfigDict, workdir: str, data_dir: str) -> dict[str, Any]:
  """Pre-trains (or resumes) into ``workdir``; returns the last training and eval metrics."""
  os.makedirs(workdir, exist_ok=True)
  input_pipeline.check_dataset(config.data.dataset, 'data.dataset')
  if input_pipeline.mix_config(config.data) is not None:
    input_pipeline.check_dataset(config.data.mix.dataset, 'data.mix.dataset')
  if config.ssl.negatives not in ('global', 'local'):
    raise ConfigError(f"config key ssl.negatives must be 'global' or 'local', got "
                      f'{config.ssl.negatives!r}')
  if config.ssl.get('loss', 'info_nce') not in losses.LOSSES:
    raise ConfigError(f'config key ssl.loss must be one of {losses.LOSSES}, got '
                      f'{config.ssl.loss!r}')
  stream = bool(config.data.get('stream', False))
  train, held_out = input_pipeline.load_corpus(config.data, data_dir, stream=stream)
  path = train.path
  if train.gyr is None:
    raise ConfigError(
        f'{path}: {config.data.dataset!r} is accelerometer-only, and this pre-training contrasts '
        f'the accelerometer window of a sensor with its gyroscope window, so it has nothing to '
        f'pair; pre-train on a corpus with gyroscopes (or use released weights) and fine-tune '
        f'on this one with --config.data.use_gyr=False (the acc encoder alone)')
  if held_out is not None:
    shared = set(train.subject_id.tolist()) & set(held_out.subject_id.tolist())
    if shared:
      raise ConfigError(f'{path}: subjects {sorted(shared)[:5]} are in both {config.data.split!r} '
                        f'and {config.data.eval_split!r}')
  stats = input_pipeline.fit_input_stats(train, np.arange(len(train)))

  setup = build_training(config, (1,) + tuple(train.acc.shape[1:]), stats)
  model, state, step_fn, mesh = setup.model, setup.state, setup.step_fn, setup.mesh
  dsh, rep = setup.data_sharding, setup.replicated

  meta = {
      'kind': 'pretrain',
      'config': config.to_dict(),
      'dataset': {'name': config.data.dataset, 'path': path, 'split': config.data.split,
                  'sites': list(train.sites), 'sample_rate_hz': train.sample_rate_hz,
                  'window_length': train.window_length, 'num_windows': len(train),
                  'subjects': sorted(set(train.subject_id.tolist())),
                  **({'mix': train.metadata['mix']} if 'mix' in train.metadata else {})},
      'normalization': stats,
      'encoder': config.model.encoder.to_dict(),
      'data_position': 'step',  # batches are a pure function of (data seed, step)
  }
  eval_fn = None
  if held_out is not None and len(held_out):
    eval_step = jax.jit(make_eval_step(config, model), in_shardings=(rep, dsh))
    eval_bs = steps.eval_batch_size(config.train.eval_batch_size, mesh)

    def eval_fn(st):
      tot, n = {}, 0
      for batch, n_real in input_pipeline.eval_batches(held_out, np.arange(len(held_out)),
                                                       eval_bs, dsh):
        m = jax.device_get(eval_step(st, batch))
        for k, v in m.items():
          tot[k] = tot.get(k, 0.0) + float(v) * n_real
        n += n_real
      return {k: v / n for k, v in tot.items()}

  out = trainer.fit(config, workdir, train, np.arange(len(train)), state=state, step_fn=step_fn,
                    meta=meta, tag='pretrain', sharding=dsh, eval_fn=eval_fn)
  write_model_card(workdir, meta, out.last, out.final_eval)
  return {'train': out.last, 'eval': out.final_eval, 'checkpoint_dir': out.checkpoint_dir,
          'state': out.state}


def write_model_card(workdir: str, meta: dict[str, Any], train_metrics: dict[str, float],
                     eval_metrics: dict[str, float]) -> None:
  """Fills the packaged model-card template's fields into <workdir>/checkpoints/MODEL_CARD.md."""
  from ssl_imu_jax import model_card  # noqa: PLC0415

  text = model_card.render(meta, train_metrics, eval_metrics)
  if parallel.is_writer():
    files.write_text_atomic(os.path.join(workdir, 'checkpoints', 'MODEL_CARD.md'), text)
  parallel.barrier('model card')
