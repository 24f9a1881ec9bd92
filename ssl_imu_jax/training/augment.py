"""On-device augmentation of raw IMU windows, sampled afresh inside the compiled training step.

Every switch lives in ``config.augment`` (see :func:`default_config`). The transforms act on
physical signals (acc in m/s^2, gyr in rad/s) before normalisation, in this order:

1. ``rotation``: one random 3-D rotation R per (window, site) applied to that sensor's acc *and*
   gyr samples (both are vectors in the same sensor frame, so re-mounting the sensor rotates both
   by the same R; lengths and the acc.gyr dot product are unchanged). ``max_rotation_deg >= 180``
   draws R uniformly (Haar) over SO(3) from a random unit quaternion; a smaller value draws a
   uniformly random axis and an angle uniform in [0, max_rotation_deg].
2. ``scale``: amplitude scaling, one factor per (window, site, modality) drawn uniformly from
   ``scale_range`` (a sensor gain error; a single factor for all three axes keeps step 1's
   geometry, and acc and gyr gains are independent, as in real sensors).
3. ``time_shift``: one integer shift s per window, uniform in [-max_time_shift, max_time_shift],
   applied to every site and to both modalities (acc, gyr and all sites stay synchronised).
   ``out[t] = in[t - s]``; samples shifted in from outside the window repeat the nearest edge
   sample (no zeros, which would read as free fall for an accelerometer).
4. ``noise``: additive white Gaussian noise per sample and axis with ``acc_noise_std`` (m/s^2) and
   ``gyr_noise_std`` (rad/s), added last, in the sensor frame.

Each transform draws from its own key folded from ``rng``, so switching one on or off leaves the
draws of the others unchanged, and the same ``rng`` always gives the same output (exact resume).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections

from ssl_imu_jax.errors import ConfigError

_FIELDS = ('rotation', 'max_rotation_deg', 'scale', 'scale_range', 'noise', 'acc_noise_std',
           'gyr_noise_std', 'time_shift', 'max_time_shift')


def default_config() -> ml_collections.ConfigDict:
  """``config.augment`` with every switch off (the defaults of the pre-training configs)."""
  return ml_collections.ConfigDict({
      'rotation': False,
      'max_rotation_deg': 180.0,
      'scale': False,
      'scale_range': (0.9, 1.1),
      'noise': False,
      'acc_noise_std': 0.05,
      'gyr_noise_std': 0.01,
      'time_shift': False,
      'max_time_shift': 8,
  })


def validate_config(cfg, window_length: int | None = None) -> None:
  """Raise ValueError naming the ``augment.*`` field that is missing or out of range."""
  missing = [f for f in _FIELDS if not hasattr(cfg, f)]
  if missing:
    raise ConfigError(f'config.augment is missing field(s) {missing}; expected all of {_FIELDS}')
  if not 0.0 <= float(cfg.max_rotation_deg) <= 180.0:
    raise ValueError(f'augment.max_rotation_deg must be in [0, 180], got {cfg.max_rotation_deg}')
  scale_range = tuple(cfg.scale_range)
  if len(scale_range) != 2 or not 0.0 < scale_range[0] <= scale_range[1]:
    raise ValueError(f'augment.scale_range must be (low, high) with 0 < low <= high, '
                     f'got {cfg.scale_range}')
  for name in ('acc_noise_std', 'gyr_noise_std'):
    if float(getattr(cfg, name)) < 0:
      raise ValueError(f'augment.{name} must be >= 0, got {getattr(cfg, name)}')
  shift = cfg.max_time_shift
  if int(shift) != shift or shift < 0:
    raise ValueError(f'augment.max_time_shift must be a non-negative integer, got {shift}')
  if cfg.time_shift and window_length is not None and shift >= window_length:
    raise ValueError(f'augment.max_time_shift ({shift}) must be smaller than the window length '
                     f'({window_length} samples)')


def quaternion_to_matrix(q_x4):
  """Unit quaternions (w, x, y, z) [..., 4] -> rotation matrices [..., 3, 3]."""
  w, x, y, z = jnp.moveaxis(q_x4, -1, 0)
  rows = [
      [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
      [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
      [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
  ]
  return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)


def random_rotations(rng, shape, max_rotation_deg: float = 180.0):
  """Random rotation matrices [*shape, 3, 3] (Haar-uniform when ``max_rotation_deg >= 180``).

  Uniform: a normalised 4-D Gaussian is a uniform unit quaternion, whose matrix is Haar-uniform
  on SO(3). Limited: a uniform axis k on the sphere and an angle a ~ U[0, max], as the
  quaternion (cos(a/2), sin(a/2) k).
  """
  shape = tuple(shape)
  if max_rotation_deg >= 180.0:
    q = jax.random.normal(rng, shape + (4,), jnp.float32)
  else:
    k_axis, k_angle = jax.random.split(rng)
    axis = jax.random.normal(k_axis, shape + (3,), jnp.float32)
    angle = jax.random.uniform(k_angle, shape + (1,), jnp.float32, 0.0,
                               math.radians(max_rotation_deg))
    axis = axis / jnp.linalg.norm(axis, axis=-1, keepdims=True)
    q = jnp.concatenate([jnp.cos(angle / 2), jnp.sin(angle / 2) * axis], axis=-1)
  q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
  return quaternion_to_matrix(q)


def _shift_time(x_BxNxTxC, shift_B):
  """out[:, :, t] = x[:, :, clip(t - shift, 0, T - 1)]: a per-window shift, edges held."""
  t = x_BxNxTxC.shape[2]
  idx_BxT = jnp.clip(jnp.arange(t)[None, :] - shift_B[:, None], 0, t - 1)
  return jnp.take_along_axis(x_BxNxTxC, idx_BxT[:, None, :, None], axis=2)


def augment(rng, acc_BxNxTxC, gyr_BxNxTxC, cfg):
  """Randomly augmented copies of a batch of windows; pure and jit-able (``cfg`` is static).

  Args:
    rng: a JAX PRNG key; fold the step into it so every step draws new augmentations.
    acc_BxNxTxC: accelerometer windows [B, N sites, T samples, 3 axes], m/s^2.
    gyr_BxNxTxC: gyroscope windows of the same shape (rad/s), or None for acc-only data.
    cfg: ``config.augment`` (fields as in :func:`default_config`); Python values, read at trace
      time.

  Returns:
    (acc, gyr) with the input shapes and dtypes (gyr is None when given None).
  """
  validate_config(cfg, acc_BxNxTxC.shape[2] if acc_BxNxTxC.ndim == 4 else None)
  if acc_BxNxTxC.ndim != 4 or acc_BxNxTxC.shape[-1] != 3:
    raise ValueError(f'acc must be [B, N, T, 3], got shape {acc_BxNxTxC.shape}')
  if gyr_BxNxTxC is not None and gyr_BxNxTxC.shape != acc_BxNxTxC.shape:
    raise ValueError(f'gyr must have the shape of acc {acc_BxNxTxC.shape}, '
                     f'got {gyr_BxNxTxC.shape}')
  b, n, _, _ = acc_BxNxTxC.shape
  dtypes = (acc_BxNxTxC.dtype, None if gyr_BxNxTxC is None else gyr_BxNxTxC.dtype)
  acc = acc_BxNxTxC.astype(jnp.float32)
  gyr = None if gyr_BxNxTxC is None else gyr_BxNxTxC.astype(jnp.float32)
  k_rot, k_scale, k_shift, k_noise = (jax.random.fold_in(rng, i) for i in range(4))

  def both(fn, *keys):
    out_acc = fn(acc, keys[0] if keys else None, 'acc')
    out_gyr = None if gyr is None else fn(gyr, keys[1] if keys else None, 'gyr')
    return out_acc, out_gyr

  if cfg.rotation:
    r_BxNx3x3 = random_rotations(k_rot, (b, n), float(cfg.max_rotation_deg))
    acc, gyr = both(lambda x, _, __: jnp.einsum('bnij,bntj->bnti', r_BxNx3x3, x))
  if cfg.scale:
    lo, hi = (float(v) for v in cfg.scale_range)
    ka, kg = jax.random.split(k_scale)
    acc, gyr = both(
        lambda x, k, _: x * jax.random.uniform(k, (b, n, 1, 1), jnp.float32, lo, hi), ka, kg)
  if cfg.time_shift and cfg.max_time_shift > 0:
    m = int(cfg.max_time_shift)
    shift_B = jax.random.randint(k_shift, (b,), -m, m + 1)
    acc, gyr = both(lambda x, _, __: _shift_time(x, shift_B))
  if cfg.noise:
    stds = {'acc': float(cfg.acc_noise_std), 'gyr': float(cfg.gyr_noise_std)}
    ka, kg = jax.random.split(k_noise)
    acc, gyr = both(lambda x, k, name: x + stds[name] * jax.random.normal(k, x.shape, x.dtype),
                    ka, kg)
  acc = acc.astype(dtypes[0])
  gyr = None if gyr is None else gyr.astype(dtypes[1])
  return acc, gyr
