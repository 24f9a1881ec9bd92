"""A 1-D ResNet that embeds every IMU-site window with shared weights.

The default is the reference encoder of Tan et al. (their "resnet50", January 2023): a k=49,
stride-2 stem conv with BatchNorm, ReLU and a (3, stride 2) max-pool; four stages of basic blocks
(two k=9 convs with BatchNorm, residual; a 1x1 strided conv + BatchNorm on the skip where the
shape changes), widths 16/32/64/128, blocks [3, 4, 6, 3], stride 2 at the start of stages 2-4;
global average pool -> one vector per site. Padding is symmetric (k // 2), as in PyTorch, so the
time axis has the reference's lengths (T=128: 64 after the stem, 32 after the pool, 32/16/8/4).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def norm_layer(kind: str, train: bool, dtype, name: str | None = None, zero_init: bool = False):
  """BatchNorm (statistics over the whole global batch under jit) or GroupNorm (none)."""
  scale_init = nn.initializers.zeros if zero_init else nn.initializers.ones
  if kind == 'batch':
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                        scale_init=scale_init, name=name)
  if kind == 'group':
    return nn.GroupNorm(num_groups=None, group_size=8, dtype=dtype, scale_init=scale_init,
                        name=name)
  raise ValueError(f"model.encoder.norm must be 'batch' or 'group', got {kind!r}")


def _as_matmul(length: int, c_in: int, c_out: int, kernel: int) -> bool:
  """Whether a k-wide 1-D convolution over ``length`` samples runs as one matrix product.

  On short, wide inputs (stages 3-4 of the reference: 8 or 4 samples, 64-128 channels) XLA's CPU
  convolution runs at a tenth of its matrix-product speed (about 10 vs 90 GFLOP/s forward +
  backward on a 2-core EPYC); there the banded (Toeplitz) matrix of the kernel is small (at most
  1024 x 1024) and one dense product is 5-17x faster, although it multiplies the zeros of the band
  too. Where the time axis is long or the channels narrow the convolution is kept.
  """
  return kernel > 1 and length <= 2 * kernel and max(c_in, c_out) >= 64 and (
      length * max(c_in, c_out) <= 1024)


def conv1d(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
           dimension_numbers=None, feature_group_count=1, precision=None):
  """``lax.conv_general_dilated`` for ``nn.Conv``'s 1-D NWC convolutions; a 1x1 convolution and,
  on the shapes ``_as_matmul`` picks, a k-wide one as one matrix product (with the kernel's banded
  matrix; equal up to float rounding; gradients flow to the same [k, in, out] kernel)."""
  plain = (lhs.ndim == 3 and feature_group_count == 1 and not isinstance(padding, str)
           and all(d == 1 for d in (lhs_dilation or (1,)) + (rhs_dilation or (1,)))
           and dimension_numbers == jax.lax.conv_dimension_numbers(
               lhs.shape, rhs.shape, ('NWC', 'WIO', 'NWC')))
  if plain and rhs.shape[0] == 1 and tuple(map(tuple, padding)) == ((0, 0),):
    # A 1x1 (projection) convolution is a product on every stride-th sample. As a dot its weight
    # gradient reads the input in its own layout; XLA's convolution wants it transposed to
    # [C, L, M], and recomputes the stage's whole residual chain into that transpose.
    (stride,) = window_strides
    return jnp.einsum('mlc,cd->mld', lhs[:, ::stride], rhs[0], precision=precision)
  if not (plain and _as_matmul(lhs.shape[1], rhs.shape[1], rhs.shape[2], rhs.shape[0])):
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
        precision=precision)
  (stride,), ((before, after),) = window_strides, padding
  m, length, c_in = lhs.shape
  k, _, c_out = rhs.shape
  out_len = (length + before + after - k) // stride + 1
  # tap[j, i]: which kernel tap joins input sample j to output sample i (outside 0..k-1: none).
  tap = np.arange(length)[:, None] - np.arange(out_len)[None, :] * stride + before
  band = (tap >= 0) & (tap < k)
  w = jnp.where(band[:, :, None, None], rhs[np.clip(tap, 0, k - 1)], 0)  # [L, L_out, in, out]
  w = w.transpose(0, 2, 1, 3).reshape(length * c_in, out_len * c_out)
  y = jnp.matmul(lhs.reshape(m, length * c_in), w, precision=precision)
  return y.reshape(m, out_len, c_out)


CONV_IMPLS = ('auto', 'xla')


def _conv(features: int, kernel: int, strides: int, use_bias: bool, dtype, name: str,
          impl: str = 'auto'):
  """``impl`` 'auto': ``conv1d`` (banded matrix products where faster); 'xla': XLA's convolution
  everywhere (the encoders released before 2026-12 were trained so; equal up to rounding)."""
  if impl not in CONV_IMPLS:
    raise ValueError(f'model.encoder.conv_impl must be one of {CONV_IMPLS}, got {impl!r}')
  pad = kernel // 2
  return nn.Conv(features, (kernel,), strides=(strides,), padding=((pad, pad),),
                 use_bias=use_bias, dtype=dtype, name=name,
                 conv_general_dilated=conv1d if impl == 'auto' else jax.lax.conv_general_dilated)


class ResidualBlock(nn.Module):
  """Two k-wide convolutions with a skip connection (projected when the shape changes)."""

  features: int
  kernel_size: int
  strides: int
  norm: str
  conv_bias: bool = False
  zero_init_residual: bool = False
  conv_impl: str = 'auto'
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x_LxC, train: bool):
    conv = functools.partial(_conv, use_bias=self.conv_bias, dtype=self.dtype,
                             impl=self.conv_impl)
    y = conv(self.features, self.kernel_size, self.strides, name='conv1')(x_LxC)
    y = nn.relu(norm_layer(self.norm, train, self.dtype, 'norm1')(y))
    y = conv(self.features, self.kernel_size, 1, name='conv2')(y)
    y = norm_layer(self.norm, train, self.dtype, 'norm2', zero_init=self.zero_init_residual)(y)
    skip = x_LxC
    if skip.shape != y.shape:
      skip = conv(self.features, 1, self.strides, name='proj_conv')(skip)
      skip = norm_layer(self.norm, train, self.dtype, 'proj_norm')(skip)
    return nn.relu(skip + y)


class ResNet1D(nn.Module):
  """[B, N, T, 3] -> [B, N, D]: every one of the N sites is encoded by the same weights.

  Attributes:
    widths: channels per stage; every stage after the first halves the time axis.
    blocks_per_stage: residual blocks per stage (an int for all stages, or one per stage).
    kernel_size: temporal kernel width of the blocks.
    stem_kernel, stem_stride: the first convolution (its width is ``widths[0]``).
    stem_pool: a (3, stride 2) max-pool after the stem.
    embed_dim: D; 0 = no projection, D = widths[-1] (the reference); else a Dense layer to D.
    conv_bias: convolutions with a bias (the reference's PyTorch default; every conv here feeds a
      BatchNorm, which cancels the bias, so it is off by default).
    zero_init_residual: BatchNorm scale 0 on each block's last norm (an alternative init).
    norm: 'batch' or 'group'.
    conv_impl: 'auto' (short, wide convolutions as banded matrix products: ``conv1d``) or 'xla'.
    dtype: computation dtype (parameters stay float32).
  """

  widths: Sequence[int] = (16, 32, 64, 128)
  blocks_per_stage: int | Sequence[int] = (3, 4, 6, 3)
  kernel_size: int = 9
  stem_kernel: int = 49
  stem_stride: int = 2
  stem_pool: bool = True
  embed_dim: int = 0
  conv_bias: bool = False
  zero_init_residual: bool = False
  conv_impl: str = 'auto'
  norm: str = 'batch'
  dtype: jnp.dtype = jnp.float32

  @property
  def out_dim(self) -> int:
    return int(self.embed_dim) or int(self.widths[-1])

  def stage_blocks(self) -> tuple[int, ...]:
    blocks = self.blocks_per_stage
    if isinstance(blocks, int):
      return (blocks,) * len(self.widths)
    blocks = tuple(int(b) for b in blocks)
    if len(blocks) != len(self.widths):
      raise ValueError(f'model.encoder.blocks_per_stage {blocks} needs one entry per stage of '
                       f'model.encoder.widths {tuple(self.widths)}')
    return blocks

  @nn.compact
  def __call__(self, x_BxNxTxC, train: bool, sequence: bool = False):
    """[B, N, D] pooled embeddings; ``sequence``: the last stage's feature map before the
    time pool, [B, N, T', D] (T' = T / 32 for the reference; ``embed`` per time step), the
    input of the per-time-step curve head (ssl_imu.RegressionModel with ``curve``)."""
    b, n, t, c = x_BxNxTxC.shape
    x = x_BxNxTxC.reshape(b * n, t, c).astype(self.dtype)
    x = _conv(self.widths[0], self.stem_kernel, self.stem_stride, self.conv_bias, self.dtype,
              'stem_conv', self.conv_impl)(x)
    x = nn.relu(norm_layer(self.norm, train, self.dtype, 'stem_norm')(x))
    if self.stem_pool:
      x = nn.max_pool(x, (3,), strides=(2,), padding=((1, 1),))
    for i, (width, n_blocks) in enumerate(zip(self.widths, self.stage_blocks(), strict=True)):
      for j in range(n_blocks):
        strides = 2 if (i > 0 and j == 0) else 1
        x = ResidualBlock(width, self.kernel_size, strides, self.norm, self.conv_bias,
                          self.zero_init_residual, conv_impl=self.conv_impl, dtype=self.dtype,
                          name=f'stage{i}_block{j}')(x, train)
    if not sequence:
      x = jnp.mean(x, axis=1)
    if self.embed_dim:
      x = nn.Dense(self.embed_dim, dtype=self.dtype, name='embed')(x)
    if sequence:
      return x.reshape(b, n, x.shape[1], self.out_dim).astype(jnp.float32)
    return x.reshape(b, n, self.out_dim).astype(jnp.float32)
