"""The masked-reconstruction backbone of Tan et al. (IEEE TBME 71(7), 2024): a post-LN Transformer
over one token per time step (every site's acc and gyr channels), a learned input-space mask token
over one contiguous block of steps, and a per-step reconstruction head.

Built to the reference's details (../shared/docs/masked-recipe.md §2-4, §9): torch
``TransformerEncoderLayer`` semantics (post-LayerNorm, eps 1e-5, ReLU, dropout at the attention
weights, the attention output, the feed-forward hidden layer and its output), a fixed sinusoid
whose base is 2·T (not 10,000) added after the embedding, and a mask token in input space that
replaces the raw channels before the embedding. Issue 27, step 1: the model, mask and loss; the
pre-training objective that uses them comes next.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def sinusoid(length: int, width: int, base: float) -> np.ndarray:
  """[length, width] fixed positional code: sin on even, cos on odd features, wavelengths up to
  ``base`` (the reference uses 2·T)."""
  pos = np.arange(length, dtype=np.float64)[:, None]
  div = np.exp(np.arange(0, width, 2, dtype=np.float64) * (-np.log(base) / width))
  pe = np.zeros((length, width), np.float64)
  pe[:, 0::2] = np.sin(pos * div)
  pe[:, 1::2] = np.cos(pos * div[:width // 2])
  return pe.astype(np.float32)


def contiguous_mask(rng: jax.Array, batch: int, length: int, ratio: float) -> jax.Array:
  """[batch, length] bool: one contiguous block of round(ratio·length) steps per sample, its start
  drawn uniformly (a new draw per call, as the reference draws per sample and step)."""
  n = int(round(ratio * length))
  if not 0 < n < length:
    raise ValueError(f'mask ratio {ratio} masks {n} of {length} steps; expected 0 < n < '
                     f'{length}')
  start = jax.random.randint(rng, (batch, 1), 0, length - n + 1)
  t = jnp.arange(length)[None, :]
  return (t >= start) & (t < start + n)


def _uniform_half(key, shape, dtype=jnp.float32):
  """U(-0.5, 0.5), the reference's mask-token init."""
  return jax.random.uniform(key, shape, dtype, -0.5, 0.5)


class EncoderLayer(nn.Module):
  """torch ``nn.TransformerEncoderLayer(norm_first=False)``: x = LN(x + drop(attn(x))),
  x = LN(x + drop(W2 drop(relu(W1 x))))."""

  width: int
  heads: int
  ff: int
  dropout: float = 0.1
  eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    det = not train
    a = nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=self.width,
                                        dropout_rate=self.dropout, deterministic=det,
                                        dtype=self.dtype, name='attention')(x, x)
    x = nn.LayerNorm(epsilon=self.eps, dtype=self.dtype, name='norm1')(
        x + nn.Dropout(self.dropout, deterministic=det)(a))
    h = nn.relu(nn.Dense(self.ff, dtype=self.dtype, name='linear1')(x))
    h = nn.Dense(self.width, dtype=self.dtype, name='linear2')(
        nn.Dropout(self.dropout, deterministic=det)(h))
    return nn.LayerNorm(epsilon=self.eps, dtype=self.dtype, name='norm2')(
        x + nn.Dropout(self.dropout, deterministic=det)(h))


class MaskedTransformer(nn.Module):
  """[B, T, C] normalised channels (+ an optional [B, T] mask) -> ([B, T, width] tokens,
  [B, T, C] reconstruction). The reference size: width 192, depth 6, 8 heads, feed-forward 512."""

  width: int = 192
  depth: int = 6
  heads: int = 8
  ff: int = 512
  dropout: float = 0.1
  pos_base_factor: float = 2.0  # the sinusoid's base is pos_base_factor · T
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None, train: bool = False):
    _, length, channels = x.shape
    token = self.param('mask_token', _uniform_half, (channels,))
    if mask is not None:
      x = jnp.where(mask[..., None], token.astype(x.dtype), x)
    h = nn.Dense(self.width, dtype=self.dtype, name='embed')(x)
    h = h + sinusoid(length, self.width, self.pos_base_factor * length)
    for i in range(self.depth):
      h = EncoderLayer(self.width, self.heads, self.ff, self.dropout, dtype=self.dtype,
                       name=f'layer{i}')(h, train)
    recon = nn.Dense(channels, dtype=self.dtype, name='reconstruction')(h)
    return h.astype(jnp.float32), recon.astype(jnp.float32)
