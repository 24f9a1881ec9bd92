"""Augmentation: identity when off, rotation physics, scale/noise statistics, paired time shift."""

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ssl_imu_jax.training import augment as aug


@functools.partial(jax.jit, static_argnums=3)
def _augment_jit(rng, acc, gyr, frozen_cfg):
  return aug.augment(rng, acc, gyr, frozen_cfg)


def run(rng, acc, gyr, cfg):
  """augment() compiled once per config and shape (much faster than op-by-op dispatch)."""
  return _augment_jit(rng, acc, gyr, ml_collections.FrozenConfigDict(cfg))


def make_cfg(**switches):
  cfg = aug.default_config()
  cfg.update(switches)
  return cfg


def imu_batch(b=4, n=3, t=32, seed=0):
  """Smooth acc (gravity + motion) and gyr windows, float32 [B, N, T, 3]."""
  rng = np.random.default_rng(seed)
  time = np.arange(t) / 100.0
  freq = rng.uniform(0.5, 3.0, size=(b, n, 1, 3))
  phase = rng.uniform(0, 2 * np.pi, size=(b, n, 1, 3))
  acc = 3.0 * np.sin(2 * np.pi * freq * time[:, None] + phase)
  acc[..., 2] += 9.81
  gyr = 2.0 * np.cos(2 * np.pi * 1.3 * freq * time[:, None] + 0.7 * phase)
  return acc.astype(np.float32), gyr.astype(np.float32)


def recover_rotation(x_TxC, y_TxC):
  """Least-squares R with y[t] = R x[t]."""
  rt, *_ = np.linalg.lstsq(x_TxC.astype(np.float64), y_TxC.astype(np.float64), rcond=None)
  return rt.T


def test_all_switches_off_is_identity():
  acc, gyr = imu_batch()
  out_acc, out_gyr = run(jax.random.key(0), acc, gyr, aug.default_config())
  np.testing.assert_array_equal(np.asarray(out_acc), acc)
  np.testing.assert_array_equal(np.asarray(out_gyr), gyr)
  # A zero-length shift or zero noise is also the identity.
  out_acc, _ = run(jax.random.key(0), acc, gyr,
                           make_cfg(time_shift=True, max_time_shift=0, noise=True,
                                    acc_noise_std=0.0, gyr_noise_std=0.0))
  np.testing.assert_array_equal(np.asarray(out_acc), acc)


@pytest.mark.parametrize('max_deg', [180.0, 30.0])
def test_rotation_is_one_proper_rotation_per_sensor_applied_to_acc_and_gyr(max_deg):
  acc, gyr = imu_batch()
  out_acc, out_gyr = run(jax.random.key(1), acc, gyr,
                                 make_cfg(rotation=True, max_rotation_deg=max_deg))
  out_acc, out_gyr = np.asarray(out_acc), np.asarray(out_gyr)
  np.testing.assert_allclose(np.linalg.norm(out_acc, axis=-1), np.linalg.norm(acc, axis=-1),
                             rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(out_gyr, axis=-1), np.linalg.norm(gyr, axis=-1),
                             rtol=1e-5)
  np.testing.assert_allclose(np.sum(out_acc * out_gyr, -1), np.sum(acc * gyr, -1), atol=1e-3)
  b, n = acc.shape[:2]
  mats = {}
  for i in range(b):
    for j in range(n):
      r_acc = recover_rotation(acc[i, j], out_acc[i, j])
      r_gyr = recover_rotation(gyr[i, j], out_gyr[i, j])
      np.testing.assert_allclose(r_acc, r_gyr, atol=1e-4)  # the same matrix for both
      np.testing.assert_allclose(r_acc @ r_acc.T, np.eye(3), atol=1e-4)
      assert np.linalg.det(r_acc) == pytest.approx(1.0, abs=1e-4)
      angle = math.degrees(math.acos(np.clip((np.trace(r_acc) - 1) / 2, -1, 1)))
      assert angle <= max_deg + 0.05
      mats[i, j] = r_acc
  # Independent per (window, site): no two sensors share a rotation.
  flat = np.stack(list(mats.values())).reshape(b * n, 9)
  dists = np.linalg.norm(flat[:, None] - flat[None], axis=-1) + 10 * np.eye(b * n)
  assert dists.min() > 1e-3


def test_uniform_rotations_have_zero_mean_and_isotropic_spread():
  # Haar-uniform rotations of a fixed vector cover the sphere evenly: E[Rv] = 0 and
  # E[Rv (Rv)^T] = |v|^2 I / 3. (A random axis with an angle uniform in [0, pi] would give v / 3.)
  n = 20000
  v = np.array([0.0, 0.0, 9.81], np.float32)
  acc = np.broadcast_to(v, (n, 1, 1, 3)).copy()
  out, _ = run(jax.random.key(2), acc, acc, make_cfg(rotation=True))
  rv = np.asarray(out).reshape(n, 3)
  se = 9.81 / math.sqrt(3 * n)
  np.testing.assert_allclose(rv.mean(axis=0), 0.0, atol=5 * se)
  np.testing.assert_allclose(rv.T @ rv / n, np.eye(3) * 9.81**2 / 3, atol=1.5)
  # The limited mode with a 180 degree bound would be biased towards v; check it is not used.
  limited, _ = run(jax.random.key(2), acc, acc,
                           make_cfg(rotation=True, max_rotation_deg=179.0))
  mean_limited = np.asarray(limited).reshape(n, 3).mean(axis=0)
  assert mean_limited[2] > 9.81 / 3 - 10 * se


def test_limited_rotation_angles_are_uniform_up_to_the_bound():
  n = 4000
  rots = np.asarray(aug.random_rotations(jax.random.key(3), (n,), 40.0))
  angles = np.degrees(np.arccos(np.clip((np.trace(rots, axis1=-2, axis2=-1) - 1) / 2, -1, 1)))
  assert angles.max() <= 40.0 + 0.05
  assert angles.mean() == pytest.approx(20.0, abs=1.0)  # U[0, 40]: mean 20, se 0.18
  assert np.std(angles) == pytest.approx(40.0 / math.sqrt(12), abs=0.8)


def test_scale_factors_follow_the_configured_range():
  b, n, t = 2000, 2, 8
  ones = np.ones((b, n, t, 3), np.float32)
  out_acc, out_gyr = run(jax.random.key(4), ones, 2 * ones,
                                 make_cfg(scale=True, scale_range=(0.8, 1.2)))
  out_acc, out_gyr = np.asarray(out_acc), np.asarray(out_gyr) / 2
  for f in (out_acc, out_gyr):
    # One factor per (window, site): constant over time and axes.
    np.testing.assert_allclose(f, np.broadcast_to(f[:, :, :1, :1], f.shape), rtol=1e-6)
    s = f[:, :, 0, 0].ravel()
    assert 0.8 <= s.min() and s.max() <= 1.2
    assert s.mean() == pytest.approx(1.0, abs=0.01)
    assert s.std() == pytest.approx(0.4 / math.sqrt(12), rel=0.05)
  # acc and gyr gains are drawn independently.
  corr = np.corrcoef(out_acc[:, :, 0, 0].ravel(), out_gyr[:, :, 0, 0].ravel())[0, 1]
  assert abs(corr) < 0.1


def test_noise_has_the_configured_std_per_modality():
  zeros = np.zeros((64, 4, 64, 3), np.float32)
  out_acc, out_gyr = run(jax.random.key(5), zeros, zeros,
                                 make_cfg(noise=True, acc_noise_std=0.3, gyr_noise_std=0.02))
  out_acc, out_gyr = np.asarray(out_acc), np.asarray(out_gyr)
  assert out_acc.std() == pytest.approx(0.3, rel=0.03)
  assert out_gyr.std() == pytest.approx(0.02, rel=0.03)
  assert abs(out_acc.mean()) < 0.01 and abs(out_gyr.mean()) < 0.001
  # White: no correlation between neighbouring samples.
  lag1 = np.mean(out_acc[:, :, 1:] * out_acc[:, :, :-1]) / out_acc.var()
  assert abs(lag1) < 0.03


def test_time_shift_keeps_acc_gyr_and_sites_aligned_and_holds_edges():
  b, n, t, m = 64, 3, 40, 5
  ramp = np.arange(t, dtype=np.float32)
  # acc carries the sample index, gyr the index + 1000, each site offset by 100 * site.
  base = ramp[None, None, :, None] + 100 * np.arange(n, dtype=np.float32)[None, :, None, None]
  acc = np.broadcast_to(base, (b, n, t, 3)).copy()
  gyr = acc + 1000
  out_acc, out_gyr = run(jax.random.key(6), acc, gyr,
                                 make_cfg(time_shift=True, max_time_shift=m))
  out_acc, out_gyr = np.asarray(out_acc), np.asarray(out_gyr)
  np.testing.assert_array_equal(out_gyr - 1000, out_acc)  # same shift for both modalities
  idx = out_acc - 100 * np.arange(n)[None, :, None, None]
  # The same shift for every site of a window.
  np.testing.assert_array_equal(idx, np.broadcast_to(idx[:, :1], idx.shape))
  shift = t // 2 - idx[:, 0, t // 2, 0]  # out[t] = in[t - s]
  assert set(shift.astype(int)) == set(range(-m, m + 1))  # all shifts drawn, none beyond
  expected = np.clip(ramp[None, :] - shift[:, None], 0, t - 1)
  np.testing.assert_array_equal(idx[:, 0, :, 0], expected)  # edge samples are repeated


def test_different_rng_differs_and_same_rng_repeats_under_jit():
  acc, gyr = imu_batch()
  cfg = make_cfg(rotation=True, scale=True, noise=True, time_shift=True)
  step = jax.jit(lambda r, a, g: aug.augment(r, a, g, cfg))
  a1, g1 = step(jax.random.key(7), acc, gyr)
  a2, g2 = step(jax.random.key(7), acc, gyr)
  a3, g3 = step(jax.random.key(8), acc, gyr)
  assert a1.shape == acc.shape and a1.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(a1), np.asarray(a2))
  np.testing.assert_array_equal(np.asarray(g1), np.asarray(g2))
  assert np.abs(np.asarray(a1) - np.asarray(a3)).mean() > 0.1
  assert np.abs(np.asarray(g1) - np.asarray(g3)).mean() > 0.01
  # Turning noise off leaves the rotation, scale and shift draws unchanged: the difference is
  # exactly the acc noise.
  quiet = run(jax.random.key(7), acc, gyr, make_cfg(rotation=True, scale=True, time_shift=True))[0]
  resid = np.asarray(a1) - np.asarray(quiet)
  assert resid.std() == pytest.approx(cfg.acc_noise_std, rel=0.2)
  assert abs(resid.mean()) < 0.02


def test_acc_only_and_bfloat16_inputs():
  acc, _ = imu_batch()
  out, none = run(jax.random.key(9), jnp.asarray(acc, jnp.bfloat16), None,
                          make_cfg(rotation=True))
  assert none is None and out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.linalg.norm(np.asarray(out, np.float32), axis=-1),
                             np.linalg.norm(acc, axis=-1), rtol=2e-2)


@pytest.mark.parametrize('field,value,match', [
    ('max_rotation_deg', 270.0, 'max_rotation_deg'),
    ('scale_range', (1.1, 0.9), 'scale_range'),
    ('acc_noise_std', -0.1, 'acc_noise_std'),
    ('max_time_shift', 64, 'window length'),
])
def test_bad_config_is_rejected(field, value, match):
  acc, gyr = imu_batch(t=32)
  with pytest.raises(ValueError, match=match):
    aug.augment(jax.random.key(0), acc, gyr, make_cfg(time_shift=True, **{field: value}))


def test_non_integer_shift_is_rejected():
  acc, gyr = imu_batch()
  cfg = aug.default_config().to_dict()
  cfg['max_time_shift'] = 2.5  # a plain (not type-checked) ConfigDict from a hand-written dict
  with pytest.raises(ValueError, match='max_time_shift must be a non-negative integer'):
    aug.augment(jax.random.key(0), acc, gyr, ml_collections.ConfigDict(cfg))


def test_bad_shapes_are_rejected():
  acc, gyr = imu_batch()
  with pytest.raises(ValueError, match=r'\[B, N, T, 3\]'):
    aug.augment(jax.random.key(0), acc[..., :2], gyr[..., :2], aug.default_config())
  with pytest.raises(ValueError, match='gyr must have the shape'):
    aug.augment(jax.random.key(0), acc, gyr[:, :2], aug.default_config())
  cfg = aug.default_config()
  del cfg['noise']
  with pytest.raises(ValueError, match='noise'):
    aug.augment(jax.random.key(0), acc, gyr, cfg)
