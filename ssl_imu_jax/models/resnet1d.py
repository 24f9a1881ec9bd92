"""A 1-D ResNet that embeds every IMU-site window of one modality with shared weights."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp


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


class ResidualBlock(nn.Module):
  """Two k-wide convolutions with a skip connection (projected when the shape changes)."""

  features: int
  kernel_size: int
  strides: int
  norm: str
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x_LxC, train: bool):
    conv = functools.partial(nn.Conv, use_bias=False, padding='SAME', dtype=self.dtype)
    y = conv(self.features, (self.kernel_size,), strides=(self.strides,), name='conv1')(x_LxC)
    y = nn.relu(norm_layer(self.norm, train, self.dtype, 'norm1')(y))
    y = conv(self.features, (self.kernel_size,), name='conv2')(y)
    y = norm_layer(self.norm, train, self.dtype, 'norm2', zero_init=True)(y)
    skip = x_LxC
    if skip.shape != y.shape:
      skip = conv(self.features, (1,), strides=(self.strides,), name='proj_conv')(skip)
      skip = norm_layer(self.norm, train, self.dtype, 'proj_norm')(skip)
    return nn.relu(skip + y)


class ResNet1D(nn.Module):
  """[B, N, T, 3] -> [B, N, D]: every one of the N sites is encoded by the same weights.

  Attributes:
    widths: channels per stage; every stage after the first halves the time axis.
    blocks_per_stage: residual blocks per stage.
    kernel_size: temporal kernel width.
    embed_dim: size D of the per-site embedding.
    norm: 'batch' or 'group'.
    dtype: computation dtype (parameters stay float32).
  """

  widths: Sequence[int] = (16, 32, 64, 128)
  blocks_per_stage: int = 1
  kernel_size: int = 9
  embed_dim: int = 128
  norm: str = 'batch'
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BxNxTxC, train: bool):
    b, n, t, c = x_BxNxTxC.shape
    x = x_BxNxTxC.reshape(b * n, t, c).astype(self.dtype)
    x = nn.Conv(self.widths[0], (self.kernel_size,), padding='SAME', use_bias=False,
                dtype=self.dtype, name='stem_conv')(x)
    x = nn.relu(norm_layer(self.norm, train, self.dtype, 'stem_norm')(x))
    for i, width in enumerate(self.widths):
      for j in range(self.blocks_per_stage):
        strides = 2 if (i > 0 and j == 0) else 1
        x = ResidualBlock(width, self.kernel_size, strides, self.norm, self.dtype,
                          name=f'stage{i}_block{j}')(x, train)
    x = jnp.mean(x, axis=1)
    x = nn.Dense(self.embed_dim, dtype=self.dtype, name='embed')(x)
    return x.reshape(b, n, self.embed_dim).astype(jnp.float32)
