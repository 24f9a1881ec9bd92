"""Contrastive losses (reference NCE, InfoNCE), regression losses and the masked-reconstruction
loss, with retrieval accuracy.

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

``chunk_size > 0`` computes either loss blockwise: the columns (gyr embeddings) in blocks of that
many, a running log-sum-exp per row, the masks built per block from indices, and each block
recomputed in the backward pass (``jax.checkpoint``), so memory grows with M x chunk instead of
M x M. Equal to the dense loss and its gradient (tests/test_losses.py).
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


def _pair_masks(rows, cols, n_sites: int, m: int, local_blocks: int, w):
  """Boolean [rows, cols] masks from indices: same window, same device block, valid column."""
  same_window = (rows // n_sites)[:, None] == (cols // n_sites)[None, :]
  if local_blocks > 1:
    same_block = (rows // (m // local_blocks))[:, None] == (cols // (m // local_blocks))[None, :]
  else:
    same_block = jnp.ones(same_window.shape, bool)
  real = cols < m
  valid_col = (jnp.take(w, jnp.minimum(cols, m - 1)) > 0) & real
  return same_window, same_block, valid_col[None, :], real[None, :]


def _blockwise(za, zg, temperature, masks, chunk_size: int, columns: bool):
  """Row log-sum-exp over ``masks(...)['lse']``, column log-sum-exp (``columns``) and the rank of
  the diagonal among ``masks(...)['rank']``, over column blocks of ``chunk_size``.

  ``masks(rows, cols)`` -> {'lse': [M, C] bool, 'rank': [M, C] bool, 'real': [1, C] bool}; masked
  entries count as _NEG_INF (as in the dense losses), padding columns not at all.
  """
  m, p = za.shape
  n_blocks = -(-m // chunk_size)
  zg_pad = jnp.pad(zg, ((0, n_blocks * chunk_size - m), (0, 0))).reshape(n_blocks, chunk_size, p)
  rows = jnp.arange(m)
  diag = jnp.sum(za * zg, axis=-1) / temperature

  @jax.checkpoint
  def body(carry, xs):
    run_max, run_sum, rank = carry
    zg_blk, start = xs
    cols = start + jnp.arange(chunk_size)
    mk = masks(rows, cols)
    x = za @ zg_blk.T / temperature
    x_lse = jnp.where(mk['real'], jnp.where(mk['lse'], x, _NEG_INF), -jnp.inf)
    new_max = jax.lax.stop_gradient(jnp.maximum(run_max, jnp.max(x_lse, axis=1)))
    run_sum = run_sum * jnp.exp(run_max - new_max) + jnp.sum(jnp.exp(x_lse - new_max[:, None]),
                                                              axis=1)
    beats = (x > diag[:, None]) & (rows[:, None] != cols[None, :])  # never the positive itself
    rank = rank + jnp.sum(mk['rank'] & beats, axis=1)
    col_lse = jax.nn.logsumexp(jnp.where(mk['lse'], x, _NEG_INF), axis=0) if columns else None
    return (new_max, run_sum, rank), col_lse

  init = (jnp.full((m,), -jnp.inf), jnp.zeros((m,)), jnp.zeros((m,), jnp.int32))
  starts = jnp.arange(n_blocks) * chunk_size
  (run_max, run_sum, rank), col_lse = jax.lax.scan(body, init, (zg_pad, starts))
  row_lse = run_max + jnp.log(run_sum)
  if columns:
    col_lse = col_lse.reshape(-1)[:m]
  return row_lse, col_lse, diag, rank


def _weights(weights_B, n: int, m: int):
  if weights_B is None:
    return jnp.ones((m,), jnp.float32)
  return jnp.repeat(weights_B.astype(jnp.float32), n)


def _retrieval_from_rank(rank, w, denom):
  return {'top1': jnp.sum(w * (rank < 1)) / denom, 'top5': jnp.sum(w * (rank < 5)) / denom}


def info_nce(z_acc_BxNxP, z_gyr_BxNxP, temperature, grouped: bool = False,
             local_blocks: int = 1, weights_B=None, chunk_size: int = 0):
  """Symmetric InfoNCE (acc->gyr and gyr->acc) with cosine similarity / temperature.

  Args:
    z_acc_BxNxP, z_gyr_BxNxP: projected embeddings.
    temperature: scalar (a float or a learnable parameter).
    grouped: exclude other sites of the same window from the negatives.
    local_blocks: >1 restricts negatives to contiguous batch blocks (one per device).
    weights_B: optional 0/1 weights of valid windows (padding in evaluation batches).
    chunk_size: >0 computes the loss blockwise in bounded memory (module docstring).

  Returns:
    (loss, metrics) with metrics top1 / top5: how often the gyr embedding of the same window is
    the best / among the five best acc->gyr matches.
  """
  b, n, p = z_acc_BxNxP.shape
  za = l2_normalize(z_acc_BxNxP.reshape(b * n, p).astype(jnp.float32))
  zg = l2_normalize(z_gyr_BxNxP.reshape(b * n, p).astype(jnp.float32))
  if chunk_size > 0:
    m = b * n
    w = _weights(weights_B, n, m)

    def masks(rows, cols):
      same_window, same_block, valid_col, real = _pair_masks(rows, cols, n, m, local_blocks, w)
      eye = rows[:, None] == cols[None, :]
      keep = (~same_window if grouped else jnp.ones_like(eye)) & same_block
      if weights_B is not None:
        valid_row = jnp.take(w, rows)[:, None] > 0
        keep &= valid_col & valid_row
      keep |= eye
      return {'lse': keep & real, 'rank': keep & real, 'real': real}

    row_lse, col_lse, diag, rank = _blockwise(za, zg, temperature, masks, chunk_size, True)
    denom = jnp.maximum(w.sum(), 1.0)
    loss = jnp.sum(w * 0.5 * ((row_lse - diag) + (col_lse - diag))) / denom
    return loss, _retrieval_from_rank(rank, w, denom)
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
                  weights_B=None, chunk_size: int = 0):
  """The reference NCE loss (module docstring): acc -> gyr, negatives only in the denominator.

  Args:
    z_acc_BxNxP, z_gyr_BxNxP: projected embeddings; rows window-major (window * N + site).
    temperature: scalar.
    local_blocks: >1 restricts negatives to contiguous batch blocks (one per device).
    weights_B: optional 0/1 weights of valid windows (padding in evaluation batches).
    chunk_size: >0 computes the loss blockwise in bounded memory (module docstring).

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
  if chunk_size > 0:
    m = b * n
    w = _weights(weights_B, n, m)

    def masks(rows, cols):
      same_window, same_block, valid_col, real = _pair_masks(rows, cols, n, m, local_blocks, w)
      neg = ~same_window & same_block
      if weights_B is not None:
        neg &= valid_col
      return {'lse': neg & real, 'rank': same_block & valid_col, 'real': real}

    row_lse, _, diag, rank = _blockwise(za, zg, temperature, masks, chunk_size, False)
    denom = jnp.maximum(w.sum(), 1.0)
    loss = jnp.sum(w * row_lse) / denom - jnp.sum(w * diag) / denom
    return loss, _retrieval_from_rank(rank, w, denom)
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
  return _retrieval_from_rank(rank, w, denom)


LOSSES = ('reference_nce', 'info_nce')


def contrastive_loss(name: str, z_acc, z_gyr, temperature, grouped: bool = False,
                     local_blocks: int = 1, weights_B=None, chunk_size: int = 0):
  """The contrastive loss ``config.ssl.loss`` names (``chunk_size`` > 0: blockwise)."""
  if name == 'reference_nce':
    return reference_nce(z_acc, z_gyr, temperature, local_blocks, weights_B, chunk_size)
  if name == 'info_nce':
    return info_nce(z_acc, z_gyr, temperature, grouped, local_blocks, weights_B, chunk_size)
  raise ConfigError(f'config key ssl.loss must be one of {LOSSES}, got {name!r}')


def mse(pred_BxK, target_BxK, weights_B=None):
  """Mean squared error over targets and valid windows."""
  err = jnp.mean((pred_BxK - target_BxK) ** 2, axis=-1)
  if weights_B is None:
    return jnp.mean(err)
  return jnp.sum(weights_B * err) / jnp.maximum(jnp.sum(weights_B), 1.0)


def masked_mse(pred_BxTxC, target_BxTxC, mask_BxT):
  """The masked-reconstruction loss (Tan et al. 2024): squared error of the masked time steps
  only, averaged over those steps and every channel; unmasked steps do not count."""
  err = jnp.mean((pred_BxTxC - target_BxTxC) ** 2, axis=-1)
  m = mask_BxT.astype(err.dtype)
  return jnp.sum(m * err) / jnp.maximum(jnp.sum(m), 1.0)


def present_mse(pred, target):
  """Mean squared error over the target's finite entries only (a curve target [B, T, A] whose
  source lacks an axis, or a sample, holds NaN there): absent entries neither count nor pass a
  gradient."""
  present = jnp.isfinite(target)
  err = jnp.where(present, pred - jnp.where(present, target, 0.0), 0.0)
  return jnp.sum(err ** 2) / jnp.maximum(jnp.sum(present.astype(err.dtype)), 1.0)
