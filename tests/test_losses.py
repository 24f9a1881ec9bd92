"""InfoNCE variants against a plain numpy reference."""

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_imu_jax.training import losses


def cosine_logits(za, zg, t):
  """[B*N, B*N] cosine similarities / t, rows and columns window-major."""
  a = za.reshape(-1, za.shape[-1])
  g = zg.reshape(-1, zg.shape[-1])
  a = a / np.linalg.norm(a, axis=1, keepdims=True)
  g = g / np.linalg.norm(g, axis=1, keepdims=True)
  return a @ g.T / t


def numpy_info_nce(za, zg, t, grouped=False, blocks=1):
  n = za.shape[1]
  s = cosine_logits(za, zg, t)
  m = len(s)
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


@pytest.mark.parametrize('name', losses.LOSSES)
def test_padding_weights_remove_windows(name):
  rng = np.random.default_rng(2)
  za = rng.normal(size=(6, 2, 4)).astype(np.float32)
  zg = rng.normal(size=(6, 2, 4)).astype(np.float32)
  w = np.array([1, 1, 1, 1, 0, 0], np.float32)
  padded, _ = losses.contrastive_loss(name, za, zg, 0.3, weights_B=w)
  alone, _ = losses.contrastive_loss(name, za[:4], zg[:4], 0.3)
  np.testing.assert_allclose(float(padded), float(alone), rtol=1e-5)


def test_mse_weights():
  p = jnp.array([[1.0], [3.0]])
  y = jnp.array([[0.0], [0.0]])
  assert float(losses.mse(p, y)) == 5.0
  assert float(losses.mse(p, y, jnp.array([1.0, 0.0]))) == 1.0


def numpy_reference_nce(za, zg, t, blocks=1):
  """The reference loss written out with loops: acc row i against the gyr columns of every
  other window (all sites), positive = s_ii; loss = mean lse(negatives) - mean positive."""
  n = za.shape[1]
  s = cosine_logits(za, zg, t)
  m = len(s)
  lse, pos, top1 = [], [], 0
  for i in range(m):
    negs = [j for j in range(m) if j // n != i // n
            and (blocks == 1 or i // (m // blocks) == j // (m // blocks))]
    lse.append(np.log(np.exp(s[i, negs]).sum()))
    pos.append(s[i, i])
    cands = [j for j in range(m) if blocks == 1 or i // (m // blocks) == j // (m // blocks)]
    top1 += (s[i, cands] > s[i, i]).sum() < 1
  return np.mean(lse) - np.mean(pos), top1 / m


@pytest.mark.parametrize('n_sites,blocks', [(1, 1), (3, 1), (17, 1), (3, 2)])
def test_reference_nce_matches_numpy(n_sites, blocks):
  rng = np.random.default_rng(3)
  za = rng.normal(size=(6, n_sites, 5)).astype(np.float32)
  zg = (za + 0.7 * rng.normal(size=za.shape)).astype(np.float32)
  loss, m = losses.reference_nce(jnp.asarray(za), jnp.asarray(zg), 0.1, local_blocks=blocks)
  ref, ref1 = numpy_reference_nce(za.astype(np.float64), zg.astype(np.float64), 0.1, blocks)
  np.testing.assert_allclose(float(loss), ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(float(m['top1']), ref1)


def test_reference_nce_masks_every_pair_of_the_same_window():
  """Hand computation: every site of window w embeds as the basis vector e_w (acc and gyr), so
  same-window pairs have cosine 1 and other windows 0. Masked out, the denominator holds only the
  (B-1)*N zeros: loss = log((B-1)*N) - 1/tau. InfoNCE keeps the N-1 other sites (cosine 1)."""
  b, n, tau = 4, 3, 0.1
  z = np.repeat(np.eye(b, dtype=np.float32)[:, None, :], n, axis=1)  # [B, N, P=B]
  loss, m = losses.reference_nce(z, z, tau)
  np.testing.assert_allclose(float(loss), np.log((b - 1) * n) - 1 / tau, rtol=1e-6)
  info, _ = losses.info_nce(z, z, tau)
  np.testing.assert_allclose(float(info), np.log(n * np.exp(1 / tau) + (b - 1) * n) - 1 / tau,
                             rtol=1e-5)
  assert float(m['top1']) == 1.0  # ties with the other sites do not beat the positive


def test_reference_nce_needs_two_windows_and_a_known_name():
  za = np.ones((1, 2, 4), np.float32)
  with pytest.raises(ValueError, match='>= 2 windows'):
    losses.reference_nce(za, za, 0.1)
  with pytest.raises(ValueError, match='ssl.loss'):
    losses.contrastive_loss('nce', za, za, 0.1)


@pytest.mark.parametrize('name', losses.LOSSES)
@pytest.mark.parametrize('b,n,blocks,chunk,padded,grouped', [
    (8, 3, 1, 5, False, False),   # chunk does not divide M = 24: a padded last block
    (8, 3, 2, 7, True, True),     # per-device negatives, padding windows, grouped
    (6, 1, 1, 4, False, True),
    (8, 4, 4, 64, True, False),   # one block larger than M
])
def test_blockwise_loss_equals_dense_with_its_gradient(name, b, n, blocks, chunk, padded,
                                                       grouped):
  import jax

  rng = np.random.default_rng(b * 10 + chunk)
  za, zg = (jnp.asarray(rng.normal(size=(b, n, 16)), jnp.float32) for _ in range(2))
  w = jnp.asarray((np.arange(b) < b - 2).astype(np.float32)) if padded else None

  def run(c):  # one compiled program per variant, as training runs it (not op by op)
    return jax.jit(jax.value_and_grad(
        lambda a, g: losses.contrastive_loss(name, a, g, 0.1, grouped, blocks, w, c),
        argnums=(0, 1), has_aux=True))(za, zg)

  (dense, m_dense), g_dense = run(0)
  (blockwise, m_block), g_block = run(chunk)
  np.testing.assert_allclose(float(blockwise), float(dense), rtol=0, atol=1e-5)
  chex.assert_trees_all_close(g_block, g_dense, atol=1e-5, rtol=0)
  assert max(float(jnp.max(jnp.abs(g))) for g in g_dense) > 1e-3  # a gradient to compare
  chex.assert_trees_all_close(m_block, m_dense, atol=1e-6, rtol=0)  # retrieval too
