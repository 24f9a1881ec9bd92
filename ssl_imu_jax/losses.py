"""Contrastive losses (reference NCE, InfoNCE) and regression losses, with retrieval accuracy.

``reference_nce`` is the loss of the reference code (Tan et al., "nce_loss_groups_of_positive"):
acc rows scored against gyr columns (one direction), cosine similarity / temperature; each row's
log-sum-exp runs over negatives only -- every acc-gyr pair of the same window (all sites x all
sites, the positive included) is masked out -- and the positive term is the mean positive
similarity: loss = mean_i logsumexp_{j in neg(i)} s_ij - mean_i s_ii.

The InfoNCE of this method pairs the acc and gyr embeddings of the same IMU-site window: for M
site-windows in the (global) batch, row i of the M x M similarity matrix has its positive on the
diagonal and the other entries as negatives. Two switches remove entries from the negatives:
``grouped`` (other sites of the same window are not independent samples) and ``local_blocks``
(only negatives from the same device shard, i.e. the same contiguous block of the batch).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ssl_imu_jax.errors import ConfigError

_NEG_INF = -1e9


def l2_normalize(x, axis: int = -1, eps: float = 1e-8):
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), eps * eps))


def negatives_mask(batch_size: int, n_sites: int, grouped: bool, local_blocks: int = 1):
  """[M, M] bool, True where a pair may serve as a negative (M = batch_size * n_sites).

  Rows and columns are ordered window-major (index = window * n_sites + site), as produced by
  reshaping [B, N, P] to [B * N, P]. The diagonal (the positive) is always True.
  """
  m = batch_size * n_sites
  idx = jnp.arange(m)
  keep = jnp.ones((m, m), dtype=bool)
  if grouped:
    window = idx // n_sites
    keep &= window[:, None] != window[None, :]
  if local_blocks > 1:
    if batch_size % local_blocks:
      raise ValueError(f'batch size {batch_size} is not divisible by {local_blocks} devices')
    block = idx // (m // local_blocks)
    keep &= block[:, None] == block[None, :]
  return keep | jnp.eye(m, dtype=bool)


def info_nce(z_acc_BxNxP, z_gyr_BxNxP, temperature, grouped: bool = False,
             local_blocks: int = 1, weights_B=None):
  """Symmetric InfoNCE (acc->gyr and gyr->acc) with cosine similarity / temperature.

  Args:
    z_acc_BxNxP, z_gyr_BxNxP: projected embeddings.
    temperature: scalar (a float or a learnable parameter).
    grouped: exclude other sites of the same window from the negatives.
    local_blocks: >1 restricts negatives to contiguous batch blocks (one per device).
    weights_B: optional 0/1 weights of valid windows (padding in evaluation batches).

  Returns:
    (loss, metrics) with metrics top1 / top5: how often the gyr embedding of the same window is
    the best / among the five best acc->gyr matches.
  """
  b, n, p = z_acc_BxNxP.shape
  za = l2_normalize(z_acc_BxNxP.reshape(b * n, p).astype(jnp.float32))
  zg = l2_normalize(z_gyr_BxNxP.reshape(b * n, p).astype(jnp.float32))
  logits = za @ zg.T / temperature
  keep = negatives_mask(b, n, grouped, local_blocks)
  if weights_B is None:
    w = jnp.ones((b * n,), jnp.float32)
  else:
    w = jnp.repeat(weights_B.astype(jnp.float32), n)
    valid = w > 0
    keep &= (valid[None, :] & valid[:, None]) | jnp.eye(b * n, dtype=bool)  # no padded negatives
  logits = jnp.where(keep, logits, _NEG_INF)
  logits_t = jnp.where(keep.T, logits.T, _NEG_INF)
  diag = jnp.diagonal(logits)
  loss_a2g = jax.nn.logsumexp(logits, axis=1) - diag
  loss_g2a = jax.nn.logsumexp(logits_t, axis=1) - diag
  denom = jnp.maximum(w.sum(), 1.0)
  loss = jnp.sum(w * 0.5 * (loss_a2g + loss_g2a)) / denom
  return loss, _retrieval(logits, diag, w, denom)


def reference_nce(z_acc_BxNxP, z_gyr_BxNxP, temperature, local_blocks: int = 1,
                  weights_B=None):
  """The reference NCE loss (module docstring): acc -> gyr, negatives only in the denominator.

  Args:
    z_acc_BxNxP, z_gyr_BxNxP: projected embeddings; rows window-major (window * N + site).
    temperature: scalar.
    local_blocks: >1 restricts negatives to contiguous batch blocks (one per device).
    weights_B: optional 0/1 weights of valid windows (padding in evaluation batches).

  Returns:
    (loss, metrics) with top1 / top5 retrieval accuracy as in ``info_nce`` (all site-windows of
    the batch are candidates).
  """
  b, n, p = z_acc_BxNxP.shape
  if b // max(local_blocks, 1) < 2:
    raise ValueError(f'the reference NCE loss needs >= 2 windows per negatives block, got batch '
                     f'{b} over {local_blocks} block(s) (raise train.batch_size)')
  za = l2_normalize(z_acc_BxNxP.reshape(b * n, p).astype(jnp.float32))
  zg = l2_normalize(z_gyr_BxNxP.reshape(b * n, p).astype(jnp.float32))
  logits = za @ zg.T / temperature
  neg = negatives_mask(b, n, grouped=True, local_blocks=local_blocks) & ~jnp.eye(b * n, dtype=bool)
  if weights_B is None:
    w = jnp.ones((b * n,), jnp.float32)
  else:
    w = jnp.repeat(weights_B.astype(jnp.float32), n)
    neg &= (w > 0)[None, :]
  diag = jnp.diagonal(logits)
  lse = jax.nn.logsumexp(jnp.where(neg, logits, _NEG_INF), axis=1)
  denom = jnp.maximum(w.sum(), 1.0)
  loss = jnp.sum(w * lse) / denom - jnp.sum(w * diag) / denom
  valid = (w > 0)[None, :] & negatives_mask(b, n, grouped=False, local_blocks=local_blocks)
  return loss, _retrieval(jnp.where(valid, logits, _NEG_INF), diag, w, denom)


def _retrieval(logits, diag, w, denom):
  rank = jnp.sum(logits > diag[:, None], axis=1)  # how many candidates beat the positive
  return {'top1': jnp.sum(w * (rank < 1)) / denom, 'top5': jnp.sum(w * (rank < 5)) / denom}


LOSSES = ('reference_nce', 'info_nce')


def contrastive_loss(name: str, z_acc, z_gyr, temperature, grouped: bool = False,
                     local_blocks: int = 1, weights_B=None):
  """The contrastive loss ``config.ssl.loss`` names."""
  if name == 'reference_nce':
    return reference_nce(z_acc, z_gyr, temperature, local_blocks, weights_B)
  if name == 'info_nce':
    return info_nce(z_acc, z_gyr, temperature, grouped, local_blocks, weights_B)
  raise ConfigError(f'config key ssl.loss must be one of {LOSSES}, got {name!r}')


def mse(pred_BxK, target_BxK, weights_B=None):
  """Mean squared error over targets and valid windows."""
  err = jnp.mean((pred_BxK - target_BxK) ** 2, axis=-1)
  if weights_B is None:
    return jnp.mean(err)
  return jnp.sum(weights_B * err) / jnp.maximum(jnp.sum(weights_B), 1.0)
