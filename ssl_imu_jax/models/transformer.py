"""The masked-reconstruction backbone of Tan et al. (IEEE TBME 71(7), 2024): a post-LN Transformer
over one token per time step (every site's acc and gyr channels), a learned input-space mask token
over one contiguous block of steps, and a per-step reconstruction head.

Built to the reference's details (../shared/docs/masked-recipe.md §2-4, §9): torch
``TransformerEncoderLayer`` semantics (post-LayerNorm, eps 1e-5, ReLU, dropout at the attention
weights, the attention output, the feed-forward hidden layer and its output), a fixed sinusoid
whose base is 2·T (not 10,000) added after the embedding, and a mask token in input space that
replaces the raw channels before the embedding. ``MaskedImuModel`` takes the project's
[B, N, T, 3] acc / gyr windows and makes the tokens (``imu_tokens``);
ssl_imu_jax/training/pretrain.py trains it with ``ssl.objective='masked'`` (issue 27, step 2);
fine-tuning builds the same backbone without its reconstruction head (``reconstruct=False``;
models/sequence.py).

The same backbone also pre-trains with the acc <-> gyr NCE objective (``ContrastiveTransformer``,
``ssl.objective='nce'`` with ``model.backbone='transformer'``; issue 27, the crossed pairing):
tokens per modality (``modalities='separate'``: ``imu_tokens(acc)`` and ``imu_tokens(gyr)``,
[B, T, 3N] each, embedded by the one Transformer in turn), mean-pooled over time and projected.
``backbone_tokens`` is the one place either token form meets the backbone.

Attention goes through ``jax.nn.dot_product_attention`` (``dot_product_attention`` below, flax's
``attention_fn`` hook, so the parameters are flax's as before) wherever the attention weights are
not dropped: inference, or a dropout rate of 0. In training with attention-weight dropout it keeps
flax's explicit softmax-dropout path, since ``jax.nn.dot_product_attention`` has no dropout
argument (benchmarks/transformer_throughput.py times both).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssl_imu_jax.models.heads import nce_head, setup_nce_head

# How a window becomes tokens (``model.transformer.modalities``): 'joint', one token per time
# step over every site's acc and gyr channels (the masked reference); 'separate', the acc and
# the gyr channels each make their own token sequence, embedded by the same Transformer (NCE,
# which contrasts the two).
MODALITIES = ('joint', 'separate')


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


def imu_tokens(acc_BxNxTx3, gyr_BxNxTx3=None):
  """[B, T, C] tokens, one per time step: every site's acc x, y, z (site by site, in the
  windows' site order), then every site's gyr x, y, z; C = 6N, or 3N without gyr (None or a
  zero-width array). The reference's channel order (../shared/docs/masked-recipe.md §1)."""
  def per_step(x):
    b, n, t, k = x.shape
    return jnp.transpose(x, (0, 2, 1, 3)).reshape(b, t, n * k)

  parts = [per_step(acc_BxNxTx3)]
  if gyr_BxNxTx3 is not None and gyr_BxNxTx3.shape[-1]:
    parts.append(per_step(gyr_BxNxTx3))
  return jnp.concatenate(parts, axis=-1)


def backbone_tokens(transformer, acc, gyr, modalities: str, train: bool):
  """[B, M, T, width]: the backbone ``transformer`` (a ``MaskedTransformer``, mask off) on a
  window's tokens. 'joint': M = 1, ``imu_tokens(acc, gyr)`` (gyr None: acc alone); 'separate':
  ``imu_tokens(acc)`` then ``imu_tokens(gyr)`` through the same weights, M = 2 (1 when gyr is
  None)."""
  if modalities not in MODALITIES:
    raise ValueError(f'modalities must be one of {MODALITIES}, got {modalities!r}')
  has_gyr = gyr is not None and gyr.shape[-1] > 0
  if modalities == 'joint':
    xs = [imu_tokens(acc, gyr if has_gyr else None)]
  else:
    xs = [imu_tokens(acc)] + ([imu_tokens(gyr)] if has_gyr else [])
  return jnp.stack([transformer(x, None, train)[0] for x in xs], axis=1)


def token_channels(sites, use_gyr: bool) -> list[str]:
  """The name of each token channel in ``imu_tokens``' order, e.g. 'acc/pelvis/x'."""
  mods = ('acc', 'gyr') if use_gyr else ('acc',)
  return [f'{m}/{s}/{a}' for m in mods for s in sites for a in 'xyz']


def dot_product_attention(query, key, value, bias=None, mask=None, broadcast_dropout=True,
                          dropout_rng=None, dropout_rate=0.0, deterministic=False, dtype=None,
                          precision=None, module=None):
  """flax ``attention_fn``: [B, T, heads, head_dim] query / key / value -> [B, T, heads,
  head_dim], softmax(q k^T / sqrt(head_dim)) v.

  Where the attention weights are not dropped (``deterministic`` or ``dropout_rate`` 0) this is
  ``jax.nn.dot_product_attention``: one fused attention op that XLA lowers as it sees fit, and on
  a GPU with bfloat16 / float16 inputs cuDNN's fused (flash) kernel (``implementation='cudnn'``,
  falling back to XLA's where cuDNN refuses the shapes or is absent, checked while tracing;
  cuDNN has no float32 flash kernel). The softmax is computed in float32 there.

  With dropout on in training it is ``flax.linen.dot_product_attention``, the explicit path:
  weights = softmax(...), dropped elementwise, then multiplied by v, because
  ``jax.nn.dot_product_attention`` cannot drop attention weights. ``module`` (flax's weight
  sowing) is honoured on that path only.
  """
  if dropout_rate > 0.0 and not deterministic:
    return nn.dot_product_attention(
        query, key, value, bias, mask, broadcast_dropout=broadcast_dropout,
        dropout_rng=dropout_rng, dropout_rate=dropout_rate, deterministic=False, dtype=dtype,
        precision=precision, module=module)
  if dtype is not None:
    query, key, value = (x.astype(dtype) for x in (query, key, value))
  if (jax.default_backend() == 'gpu'
      and query.dtype in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))):
    try:
      return jax.nn.dot_product_attention(query, key, value, bias, mask, implementation='cudnn')
    except (NotImplementedError, ValueError, RuntimeError):
      pass  # cuDNN absent or these shapes unsupported: XLA's lowering below
  return jax.nn.dot_product_attention(query, key, value, bias, mask)


def _uniform_half(key, shape, dtype=jnp.float32):
  """U(-0.5, 0.5), the reference's mask-token init."""
  return jax.random.uniform(key, shape, dtype, -0.5, 0.5)


class EncoderLayer(nn.Module):
  """torch ``nn.TransformerEncoderLayer(norm_first=False)``: x = LN(x + drop(attn(x))),
  x = LN(x + drop(W2 drop(relu(W1 x)))).

  Attention: ``dot_product_attention`` (fused where no attention weight is dropped);
  ``fused_attention=False`` keeps flax's explicit softmax path everywhere (for comparisons).
  Attention weights are dropped element by element (``broadcast_dropout=False``), as torch does;
  flax's default shares one [T, T] mask across every window and head."""

  width: int
  heads: int
  ff: int
  dropout: float = 0.1
  eps: float = 1e-5
  dtype: jnp.dtype = jnp.float32
  fused_attention: bool = True

  @nn.compact
  def __call__(self, x, train: bool):
    det = not train
    attention_fn = dot_product_attention if self.fused_attention else nn.dot_product_attention
    a = nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=self.width,
                                        dropout_rate=self.dropout, deterministic=det,
                                        broadcast_dropout=False, dtype=self.dtype,
                                        attention_fn=attention_fn, name='attention')(x, x)
    x = nn.LayerNorm(epsilon=self.eps, dtype=self.dtype, name='norm1')(
        x + nn.Dropout(self.dropout, deterministic=det)(a))
    h = nn.relu(nn.Dense(self.ff, dtype=self.dtype, name='linear1')(x))
    h = nn.Dense(self.width, dtype=self.dtype, name='linear2')(
        nn.Dropout(self.dropout, deterministic=det)(h))
    return nn.LayerNorm(epsilon=self.eps, dtype=self.dtype, name='norm2')(
        x + nn.Dropout(self.dropout, deterministic=det)(h))


class MaskedTransformer(nn.Module):
  """[B, T, C] normalised channels (+ an optional [B, T] mask) -> ([B, T, width] tokens,
  [B, T, C] reconstruction). The reference size: width 192, depth 6, 8 heads, feed-forward 512.
  ``reconstruct=False`` (fine-tuning): no reconstruction head, (tokens, None)."""

  width: int = 192
  depth: int = 6
  heads: int = 8
  ff: int = 512
  dropout: float = 0.1
  pos_base_factor: float = 2.0  # the sinusoid's base is pos_base_factor · T
  dtype: jnp.dtype = jnp.float32
  reconstruct: bool = True

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
    if not self.reconstruct:
      return h.astype(jnp.float32), None
    recon = nn.Dense(channels, dtype=self.dtype, name='reconstruction')(h)
    return h.astype(jnp.float32), recon.astype(jnp.float32)


class MaskedImuModel(nn.Module):
  """The project's windows to the Transformer: (acc [B, N, T, 3], gyr [B, N, T, 3] or None,
  optional mask [B, T]) -> ([B, T, width] tokens, [B, T, C] reconstruction of ``imu_tokens``).
  ``use_gyr=False`` (an accelerometer-only corpus): gyr is ignored, C = 3N. Inputs are expected
  normalised (the pre-training step scales them)."""

  width: int = 192
  depth: int = 6
  heads: int = 8
  ff: int = 512
  dropout: float = 0.1
  pos_base_factor: float = 2.0
  use_gyr: bool = True
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, acc, gyr=None, mask=None, train: bool = False):
    x = imu_tokens(acc, gyr if self.use_gyr else None)
    return MaskedTransformer(self.width, self.depth, self.heads, self.ff, self.dropout,
                             self.pos_base_factor, self.dtype, name='transformer')(x, mask, train)


class ContrastiveTransformer(nn.Module):
  """acc <-> gyr NCE on the Transformer backbone: (acc, gyr) [B, N, T, 3] normalised ->
  (z_acc, z_gyr) [B, 1, P] and the temperature, as ``ContrastiveModel`` returns them with one
  "site" per window (the loss's same-window blocks are then the positive pair alone).

  Each modality's tokens ([B, T, 3N]: every site's x, y, z of that modality) go through the one
  Transformer (``backbone_tokens``, 'separate'); the tokens' mean over time [B, width] is
  projected by ``acc_projection`` / ``gyr_projection`` (Dense -> BatchNorm -> ReLU -> Dense, as
  the ResNet's). Parameters: ``transformer`` (no reconstruction head; ``mask_token`` [3N] is
  unused, kept so the tree is the fine-tuning model's), the projections[, log_temperature]."""

  projection_dims: Sequence[int]
  temperature: float
  learnable_temperature: bool = False
  projection_batch_norm: bool = True
  width: int = 192
  depth: int = 6
  heads: int = 8
  ff: int = 512
  dropout: float = 0.1
  pos_base_factor: float = 2.0
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    self.transformer = MaskedTransformer(self.width, self.depth, self.heads, self.ff,
                                         self.dropout, self.pos_base_factor, self.dtype,
                                         reconstruct=False)
    setup_nce_head(self)

  def embed(self, acc, gyr, train: bool):
    """(h_acc, h_gyr) [B, 1, width]: each modality's tokens averaged over time."""
    h = jnp.mean(backbone_tokens(self.transformer, acc, gyr, 'separate', train), axis=2)
    return h[:, :1], h[:, 1:]

  def __call__(self, acc_BxNxTxC, gyr_BxNxTxC, train: bool):
    return nce_head(self, *self.embed(acc_BxNxTxC, gyr_BxNxTxC, train), train)


class TransformerEncoder(nn.Module):
  """The released Transformer encoder (``load_encoder``): (acc, gyr or None) [B, N, T, 3]
  normalised -> [B, M·width], the backbone's tokens averaged over time (M = 1 'joint', or acc
  then gyr for 'separate'; M = 1 there with gyr None). Parameters: ``transformer``, the names
  of every model above, so a checkpoint's subtree restores into it as saved."""

  width: int = 192
  depth: int = 6
  heads: int = 8
  ff: int = 512
  dropout: float = 0.1
  pos_base_factor: float = 2.0
  modalities: str = 'joint'
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, acc, gyr=None, train: bool = False):
    t = MaskedTransformer(self.width, self.depth, self.heads, self.ff, self.dropout,
                          self.pos_base_factor, self.dtype, reconstruct=False, name='transformer')
    h = jnp.mean(backbone_tokens(t, acc, gyr, self.modalities, train), axis=2)  # [B, M, W]
    return h.reshape(h.shape[0], -1)
