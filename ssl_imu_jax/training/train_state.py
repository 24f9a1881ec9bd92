"""The training state (a pytree Orbax saves whole) and the AdamW optimiser with its schedule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssl_imu_jax.errors import ConfigError


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to continue: saved whole by Orbax.

  ``norm`` holds the input / target normalisation statistics as arrays (not trained). Keeping
  them in the state, not baked into the compiled step as constants, makes the step program the
  same for every fold and fraction, so it compiles once and the compilation cache reuses it.
  """

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  norm: Any


SCHEDULES = ('warmup_cosine', 'cosine_times_warmup')


def _schedule_name(opt: ml_collections.ConfigDict) -> str:
  name = str(opt.get('schedule', 'warmup_cosine'))
  if name not in SCHEDULES:
    raise ConfigError(f'config key optimizer.schedule must be one of {SCHEDULES}, got {name!r}')
  return name


def make_schedule(opt: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """``optimizer.schedule``: 'warmup_cosine' (the default): linear warm-up over
  ``warmup_fraction`` of the steps, then cosine decay over the rest; 'cosine_times_warmup':
  ``cosine_times_warmup`` (the masked-reconstruction reference's)."""
  if _schedule_name(opt) == 'cosine_times_warmup':
    return lambda step: cosine_times_warmup(opt, step, total_steps)
  warmup = int(round(opt.warmup_fraction * total_steps))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0 if warmup else opt.learning_rate, peak_value=opt.learning_rate,
      warmup_steps=warmup, decay_steps=max(total_steps, warmup + 1),
      end_value=opt.learning_rate * opt.final_lr_fraction)


def cosine_times_warmup(opt: ml_collections.ConfigDict, step, total_steps):
  """The learning rate of Tan et al. 2024 (torch ``CosineAnnealingLR`` over all steps, dampened by
  ``pytorch_warmup.LinearWarmup``): cosine(step / total) x min(1, (step + 1) / W), W =
  round(warmup_fraction x total) (factor 1 when W = 0). The warm-up multiplies the cosine from
  step 0; it does not precede it (../shared/docs/masked-recipe.md §5, §9.5). The step-0 rate is
  peak / W, not 0."""
  total = jnp.maximum(jnp.asarray(total_steps, jnp.float32), 1.0)
  step = jnp.asarray(step, jnp.float32)
  peak = opt.learning_rate
  end = peak * opt.final_lr_fraction
  warmup = jnp.round(opt.warmup_fraction * total)
  cosine = end + (peak - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.clip(step / total, 0.0, 1.0)))
  factor = jnp.where(warmup > 0, jnp.minimum(1.0, (step + 1.0) / jnp.maximum(warmup, 1.0)), 1.0)
  return cosine * factor


def warmup_cosine(opt: ml_collections.ConfigDict, step, total_steps):
  """``make_schedule``'s rate with the run's length a traced value (equal up to rounding), so
  one compiled step serves runs of any length (fine-tuning cells that stop after a number of
  passes over their own training windows)."""
  if _schedule_name(opt) == 'cosine_times_warmup':
    return cosine_times_warmup(opt, step, total_steps)
  total = jnp.maximum(jnp.asarray(total_steps, jnp.float32), 1.0)
  step = jnp.asarray(step, jnp.float32)
  peak = opt.learning_rate
  end = peak * opt.final_lr_fraction
  warmup = jnp.round(opt.warmup_fraction * total)
  warm = peak * step / jnp.maximum(warmup, 1.0)
  t = jnp.clip((step - warmup) / jnp.maximum(total - warmup, 1.0), 0.0, 1.0)
  cosine = end + (peak - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * t))
  return jnp.where(step < warmup, warm, cosine)


def make_optimizer(opt: ml_collections.ConfigDict, total_steps: int | None,
                   frozen: Callable[[tuple[str, ...]], bool] | None = None):
  """AdamW (+ optional global-norm clipping); parameters for which ``frozen(path)`` is true are
  left untouched (``optax.multi_transform`` with ``set_to_zero``). Returns (tx, schedule).

  ``total_steps=None``: the length is known only at run time; ``schedule(step, total)`` is
  ``warmup_cosine`` and ``tx`` leaves the learning rate out (AdamW without its last scaling),
  for ``steps.apply_gradients(..., total=...)`` to apply.
  """
  dynamic = total_steps is None
  schedule = ((lambda step, total: warmup_cosine(opt, step, total)) if dynamic
              else make_schedule(opt, total_steps))
  parts = []
  if opt.grad_clip_norm:
    parts.append(optax.clip_by_global_norm(opt.grad_clip_norm))
  mask = decay_mask if opt.get('decay_kernels_only', False) else None
  if dynamic:  # optax.adamw is exactly this chain followed by scale_by_learning_rate
    parts += [optax.scale_by_adam(b1=opt.b1, b2=opt.b2),
              optax.add_decayed_weights(opt.weight_decay, mask)]
  else:
    parts.append(optax.adamw(schedule, b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay,
                             mask=mask))
  tx = optax.chain(*parts)
  if frozen is not None:
    def labels(params):
      return jax.tree_util.tree_map_with_path(
          lambda path, _: 'frozen' if frozen(tuple(_key(p) for p in path)) else 'train', params)
    tx = optax.multi_transform({'train': tx, 'frozen': optax.set_to_zero()}, labels)
  return tx, schedule


def decay_mask(params):
  """True for the parameters weight decay applies to: Dense / Conv kernels only."""
  return jax.tree_util.tree_map_with_path(lambda path, _: _key(path[-1]) == 'kernel', params)


def _key(p) -> str:
  return str(getattr(p, 'key', getattr(p, 'name', p)))


def create(params, batch_stats, tx, norm=None) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                    opt_state=tx.init(params), norm=norm_arrays(norm or {}))


def norm_arrays(stats) -> dict[str, jax.Array]:
  """Normalisation statistics as float32 arrays (the ``norm`` field of the state)."""
  return {k: jnp.asarray(v, jnp.float32) for k, v in stats.items()}
