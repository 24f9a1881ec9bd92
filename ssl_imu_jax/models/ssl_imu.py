"""The two-encoder models: acc vs gyr contrastive pre-training, and downstream regression.

Parameter trees (the names are the checkpoint contract):
  ContrastiveModel: acc_encoder, gyr_encoder, acc_projection, gyr_projection[, log_temperature]
  RegressionModel:  acc_encoder[, gyr_encoder], head
Fine-tuning copies ``acc_encoder`` / ``gyr_encoder`` (params and batch_stats) from pre-training.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssl_imu_jax.models.heads import MLP
from ssl_imu_jax.models.resnet1d import ResNet1D

ENCODERS = ('acc_encoder', 'gyr_encoder')


def dtype_from_name(name: str):
  if name not in ('float32', 'bfloat16'):
    raise ValueError(f"train.compute_dtype must be 'float32' or 'bfloat16', got {name!r}")
  return jnp.dtype(name)


def make_encoder(cfg: ml_collections.ConfigDict, dtype, name: str) -> ResNet1D:
  """The encoder described by ``config.model.encoder``."""
  return ResNet1D(widths=tuple(cfg.widths), blocks_per_stage=cfg.blocks_per_stage,
                  kernel_size=cfg.kernel_size, embed_dim=cfg.embed_dim, norm=cfg.norm,
                  dtype=dtype, name=name)


class ContrastiveModel(nn.Module):
  """(acc, gyr) [B, N, T, 3] -> projected embeddings (z_acc, z_gyr) [B, N, P] and temperature."""

  encoder: ml_collections.ConfigDict
  projection_dims: Sequence[int]
  temperature: float
  learnable_temperature: bool = False
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    self.acc_encoder = make_encoder(self.encoder, self.dtype, 'acc_encoder')
    self.gyr_encoder = make_encoder(self.encoder, self.dtype, 'gyr_encoder')
    self.acc_projection = MLP(tuple(self.projection_dims), dtype=self.dtype)
    self.gyr_projection = MLP(tuple(self.projection_dims), dtype=self.dtype)
    if self.learnable_temperature:
      self.log_temperature = self.param(
          'log_temperature', nn.initializers.constant(np.log(self.temperature)), ())

  def embed(self, acc, gyr, train: bool):
    return self.acc_encoder(acc, train), self.gyr_encoder(gyr, train)

  def __call__(self, acc_BxNxTxC, gyr_BxNxTxC, train: bool):
    h_acc, h_gyr = self.embed(acc_BxNxTxC, gyr_BxNxTxC, train)
    z_acc = self.acc_projection(h_acc, train)
    z_gyr = self.gyr_projection(h_gyr, train)
    if self.learnable_temperature:
      temperature = jnp.exp(self.log_temperature)
    else:
      temperature = jnp.asarray(self.temperature, jnp.float32)
    return z_acc, z_gyr, temperature


class RegressionModel(nn.Module):
  """(acc, gyr) -> targets [B, K]: an MLP on the concatenated per-site embeddings.

  With ``use_gyr=False`` only the acc encoder exists (accelerometer-only data sets).
  ``freeze_encoder`` (linear probe) runs the encoders in inference mode behind stop_gradient.
  """

  encoder: ml_collections.ConfigDict
  head_dims: Sequence[int]
  num_targets: int
  use_gyr: bool = True
  freeze_encoder: bool = False
  dropout_rate: float = 0.0
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    self.acc_encoder = make_encoder(self.encoder, self.dtype, 'acc_encoder')
    if self.use_gyr:
      self.gyr_encoder = make_encoder(self.encoder, self.dtype, 'gyr_encoder')
    self.head = MLP(tuple(self.head_dims) + (self.num_targets,), dropout_rate=self.dropout_rate,
                    dtype=self.dtype)

  def embed(self, acc, gyr, train: bool):
    enc_train = train and not self.freeze_encoder
    parts = [self.acc_encoder(acc, enc_train)]
    if self.use_gyr:
      parts.append(self.gyr_encoder(gyr, enc_train))
    h = jnp.concatenate(parts, axis=-1)  # [B, N, D * n_modalities]
    if self.freeze_encoder:
      h = jax.lax.stop_gradient(h)
    return h

  def __call__(self, acc_BxNxTxC, gyr_BxNxTxC, train: bool):
    h = self.embed(acc_BxNxTxC, gyr_BxNxTxC, train)
    return self.head(h.reshape(h.shape[0], -1), train)
