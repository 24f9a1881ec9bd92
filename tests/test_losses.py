"""InfoNCE variants against a plain numpy reference."""

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_imu_jax import losses


def numpy_info_nce(za, zg, t, grouped=False, blocks=1):
  b, n, p = za.shape
  a = za.reshape(b * n, p)
  g = zg.reshape(b * n, p)
  a = a / np.linalg.norm(a, axis=1, keepdims=True)
  g = g / np.linalg.norm(g, axis=1, keepdims=True)
  s = a @ g.T / t
  m = b * n
  total, top1, top5 = 0.0, 0, 0
  for i in range(m):
    cand = []
    for j in range(m):
      if j != i and grouped and i // n == j // n:
        continue
      if j != i and blocks > 1 and i // (m // blocks) != j // (m // blocks):
        continue
      cand.append(j)
    row = s[i, cand]
    col = s[cand, i]
    pos = s[i, i]
    total += 0.5 * (np.log(np.exp(row).sum()) - pos) + 0.5 * (np.log(np.exp(col).sum()) - pos)
    better = (row > pos).sum()
    top1 += better < 1
    top5 += better < 5
  return total / m, top1 / m, top5 / m


@pytest.mark.parametrize('grouped,blocks', [(False, 1), (True, 1), (False, 2), (True, 4)])
def test_info_nce_matches_numpy(grouped, blocks):
  rng = np.random.default_rng(0)
  za = rng.normal(size=(8, 3, 5)).astype(np.float32)
  zg = (za + 0.8 * rng.normal(size=za.shape)).astype(np.float32)
  loss, m = losses.info_nce(jnp.asarray(za), jnp.asarray(zg), 0.2, grouped, blocks)
  ref_loss, ref1, ref5 = numpy_info_nce(za.astype(np.float64), zg.astype(np.float64), 0.2,
                                        grouped, blocks)
  np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-5)
  np.testing.assert_allclose(float(m['top1']), ref1)
  np.testing.assert_allclose(float(m['top5']), ref5)


def test_info_nce_is_low_for_aligned_and_high_for_shuffled_pairs():
  rng = np.random.default_rng(1)
  z = rng.normal(size=(16, 2, 8)).astype(np.float32)
  aligned, m = losses.info_nce(z, z, 0.1)
  shuffled, _ = losses.info_nce(z, z[::-1], 0.1)
  assert float(m['top1']) == 1.0
  assert float(aligned) < 0.5 < 2.0 < float(shuffled)
  chex.assert_shape(losses.negatives_mask(4, 3, True, 2), (12, 12))


def test_padding_weights_remove_windows():
  rng = np.random.default_rng(2)
  za = rng.normal(size=(6, 2, 4)).astype(np.float32)
  zg = rng.normal(size=(6, 2, 4)).astype(np.float32)
  w = np.array([1, 1, 1, 1, 0, 0], np.float32)
  padded, _ = losses.info_nce(za, zg, 0.3, weights_B=w)
  alone, _ = losses.info_nce(za[:4], zg[:4], 0.3)
  np.testing.assert_allclose(float(padded), float(alone), rtol=1e-5)


def test_mse_weights():
  p = jnp.array([[1.0], [3.0]])
  y = jnp.array([[0.0], [0.0]])
  assert float(losses.mse(p, y)) == 5.0
  assert float(losses.mse(p, y, jnp.array([1.0, 0.0]))) == 1.0
