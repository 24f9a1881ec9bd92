"""Pieces every compiled step shares: input normalisation, augmentation, state initialisation on
the mesh, the optimiser update with its norms, and the eval batch size. pretrain.py and
finetune.py hold only what makes their step theirs (loss, model, metrics)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssl_imu_jax import parallel
from ssl_imu_jax.training import train_state


def normalize(x, mean, std):
  return (x - mean) / std


def any_augmentation(aug_cfg: ml_collections.ConfigDict) -> bool:
  return bool(aug_cfg.rotation or aug_cfg.scale or aug_cfg.noise or aug_cfg.time_shift)


def apply_augmentation(rng, acc, gyr, aug_cfg):
  """Random views of the raw signals (see augment.py); the identity when every switch is off.
  ``gyr`` may be None (accelerometer-only data)."""
  if not any_augmentation(aug_cfg):
    return acc, gyr
  from ssl_imu_jax.training import augment  # noqa: PLC0415

  return augment.augment(rng, acc, gyr, aug_cfg)


def apply_gradients(state: train_state.TrainState, tx, schedule, grads, batch_stats,
                    total=None) -> tuple[train_state.TrainState, dict[str, jax.Array]]:
  """One optimiser update; the new state and the norms every stage logs.

  ``total``: the run's length as a traced value, for an optimiser made with
  ``make_optimizer(opt, None)`` (the learning rate ``schedule(step, total)`` is applied here).
  """
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  if total is None:
    lr = schedule(state.step)
  else:
    lr = schedule(state.step, total)
    updates = jax.tree.map(lambda u: -lr * u, updates)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_state=opt_state)
  return new_state, {'grad_norm': optax.global_norm(grads),
                     'param_norm': optax.global_norm(params),
                     'update_norm': optax.global_norm(updates),
                     'learning_rate': lr}


def make_init(model, tx, sample_shape, mesh):
  """``(rng, norm) -> TrainState``, compiled to produce the state replicated on the mesh."""
  x = jnp.zeros(sample_shape, jnp.float32)

  def init(rng, norm):
    variables = model.init(rng, x, x, train=False)
    state = train_state.create(variables['params'], variables.get('batch_stats', {}), tx)
    return state.replace(norm=norm)

  return jax.jit(init, out_shardings=parallel.replicated(mesh))


def init_key(seed: int) -> jax.Array:
  # An 'rbg' key for parameter initialisation compiles ~3x faster than threefry on CPU; the
  # output is replicated, so its values do not depend on the device count.
  return jax.random.key(seed, impl='rbg')


def init_state(config, model, tx, sample_shape, mesh, norm):
  """The replicated initial state (parameters from ``config.seed``, ``norm`` statistics)."""
  return make_init(model, tx, sample_shape, mesh)(init_key(config.seed),
                                                  train_state.norm_arrays(norm))


def eval_batch_size(requested: int, mesh) -> int:
  """The largest multiple of the device count not above ``requested`` (at least one each)."""
  n_dev = mesh.devices.size
  return max(n_dev, (int(requested) // n_dev) * n_dev)
