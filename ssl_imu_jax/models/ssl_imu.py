"""The acc/gyr models: contrastive pre-training, downstream regression, and the bare encoders.

Parameter trees (the names are the checkpoint contract):
  shared encoder (``model.encoder.shared=True``, the reference): ``encoder`` embeds both modalities
  separate encoders (``shared=False``):                          ``acc_encoder``, ``gyr_encoder``
  ContrastiveModel: <encoders>, acc_projection, gyr_projection[, log_temperature]
  RegressionModel:  <encoders>, head
  ImuEncoder:       <encoders>
  the Transformer (models/sequence.py TransformerRegressionModel): transformer, head
Fine-tuning and ``load_encoder`` copy the encoder subtrees (params and batch_stats).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssl_imu_jax.models.heads import MLP, nce_head, setup_nce_head
from ssl_imu_jax.models.resnet1d import ResNet1D

# every name an encoder subtree can have ('transformer': the masked-reconstruction backbone)
ENCODERS = ('encoder', 'acc_encoder', 'gyr_encoder', 'transformer')


def is_transformer(cfg) -> bool:
  """Whether an encoder config (``model.encoder``, a checkpoint's meta['encoder']) describes
  the Transformer backbone (``backbone: 'transformer'``, its sizes beside) rather than the
  ResNet."""
  get = cfg.get if hasattr(cfg, 'get') else (lambda k, d=None: getattr(cfg, k, d))
  return str(get('backbone', 'resnet') or 'resnet') == 'transformer'


# 'modalities': how a window becomes tokens (models/transformer.py MODALITIES); absent = 'joint'
TRANSFORMER_DEFAULTS = {'width': 192, 'depth': 6, 'heads': 8, 'ff': 512, 'dropout': 0.1,
                        'pos_base_factor': 2.0, 'modalities': 'joint'}


def transformer_sizes(cfg) -> dict[str, Any]:
  """The Transformer's sizes of an encoder config (missing keys: the reference's)."""
  get = cfg.get if hasattr(cfg, 'get') else (lambda k, d=None: getattr(cfg, k, d))
  return {k: type(v)(get(k, v)) for k, v in TRANSFORMER_DEFAULTS.items()}


def dtype_from_name(name: str):
  if name not in ('float32', 'bfloat16'):
    raise ValueError(f"train.compute_dtype must be 'float32' or 'bfloat16', got {name!r}")
  return jnp.dtype(name)


def make_encoder(cfg: ml_collections.ConfigDict, dtype, name: str | None = None) -> ResNet1D:
  """The encoder described by ``config.model.encoder`` (missing keys: the reference values)."""
  get = cfg.get if hasattr(cfg, 'get') else (lambda k, d=None: getattr(cfg, k, d))
  blocks = get('blocks_per_stage', (3, 4, 6, 3))
  blocks = int(blocks) if isinstance(blocks, int | np.integer) else tuple(int(b) for b in blocks)
  return ResNet1D(widths=tuple(get('widths', (16, 32, 64, 128))), blocks_per_stage=blocks,
                  kernel_size=int(get('kernel_size', 9)), stem_kernel=int(get('stem_kernel', 49)),
                  stem_stride=int(get('stem_stride', 2)), stem_pool=bool(get('stem_pool', True)),
                  embed_dim=int(get('embed_dim', 0)), conv_bias=bool(get('conv_bias', False)),
                  zero_init_residual=bool(get('zero_init_residual', False)),
                  norm=get('norm', 'batch'), conv_impl=str(get('conv_impl', 'auto')),
                  dtype=dtype, name=name)


def encoder_spec(cfg) -> dict[str, Any]:
  """The encoder a config describes, with the reference values filled in: two configs with
  equal specs build the same model (a checkpoint's config may predate a key)."""
  if is_transformer(cfg):
    return {'backbone': 'transformer', **transformer_sizes(cfg)}
  enc = make_encoder(cfg, jnp.float32)
  spec = {f.name: getattr(enc, f.name) for f in dataclasses.fields(enc)
          if f.name not in ('parent', 'name', 'dtype')}
  return {**spec, 'shared': bool(cfg.get('shared', False))}


def encoder_names(cfg, has_gyr: bool = True) -> tuple[str, ...]:
  """The encoder subtree names a model with this encoder config holds."""
  if bool(cfg.get('shared', False)):
    return ('encoder',)
  return ('acc_encoder', 'gyr_encoder') if has_gyr else ('acc_encoder',)


def embed_dim(cfg) -> int:
  """D, the per-site, per-modality embedding size of an encoder config."""
  return make_encoder(cfg, jnp.float32).out_dim


def _setup_encoders(module: nn.Module, cfg, dtype, has_gyr: bool) -> None:
  """Creates the encoder submodule(s) of ``module`` (call from its ``setup``)."""
  for name in encoder_names(cfg, has_gyr):
    setattr(module, name, make_encoder(cfg, dtype))


def _encoders(module: nn.Module, has_gyr: bool):
  """(acc encoder, gyr encoder or None) of a module set up by ``_setup_encoders``."""
  if bool(module.encoder_config.get('shared', False)):
    return module.encoder, (module.encoder if has_gyr else None)
  return module.acc_encoder, (module.gyr_encoder if has_gyr else None)


class ImuEncoder(nn.Module):
  """(acc, gyr or None) [B, N, T, 3] normalised -> (h_acc, h_gyr or None) [B, N, D].

  The one place the modalities meet the encoder weights: with ``shared`` the same ResNet (and the
  same BatchNorm) runs on acc and then on gyr, each call normalising by its own batch.
  """

  encoder_config: ml_collections.ConfigDict
  has_gyr: bool = True
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    _setup_encoders(self, self.encoder_config, self.dtype, self.has_gyr)

  def __call__(self, acc_BxNxTxC, gyr_BxNxTxC, train: bool):
    acc_enc, gyr_enc = _encoders(self, self.has_gyr)
    use_gyr = self.has_gyr and gyr_BxNxTxC is not None
    return acc_enc(acc_BxNxTxC, train), (gyr_enc(gyr_BxNxTxC, train) if use_gyr else None)


class ContrastiveModel(nn.Module):
  """(acc, gyr) [B, N, T, 3] -> projected embeddings (z_acc, z_gyr) [B, N, P] and temperature."""

  encoder_config: ml_collections.ConfigDict
  projection_dims: Sequence[int]
  temperature: float
  learnable_temperature: bool = False
  projection_batch_norm: bool = True
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    _setup_encoders(self, self.encoder_config, self.dtype, True)
    setup_nce_head(self)

  def embed(self, acc, gyr, train: bool):
    acc_enc, gyr_enc = _encoders(self, True)
    return acc_enc(acc, train), gyr_enc(gyr, train)

  def __call__(self, acc_BxNxTxC, gyr_BxNxTxC, train: bool):
    return nce_head(self, *self.embed(acc_BxNxTxC, gyr_BxNxTxC, train), train)


class RegressionModel(nn.Module):
  """(acc, gyr) -> targets [B, K]: a head on the concatenated per-site embeddings.

  ``head_dims=()`` makes the head a single Dense layer (the reference's linear head).
  With ``use_gyr=False`` only the acc path exists (accelerometer-only data sets).
  ``freeze_encoder`` (linear probe) puts the encoder behind stop_gradient; its BatchNorm runs in
  training mode (statistics adapt to the downstream data, as in the reference) when
  ``encoder_bn_adapt``, else in inference mode with the pre-trained statistics.

  ``curve`` (a curve target, e.g. a GRF curve [B, T, A]; ``num_targets`` = A): the per-time-step
  head. The last stage's feature map of every site and modality before the time pool
  ([B, N, T', D], T' = T / 32 for the reference ResNet) is concatenated per time step
  ([B, T', N·D·modalities]), upsampled linearly to the window's T steps
  (``jax.image.resize``, half-sample centres) and the head maps each step to A values. With the
  default linear head the whole decoder is linear in the feature map.
  """

  encoder_config: ml_collections.ConfigDict
  head_dims: Sequence[int]
  num_targets: int
  use_gyr: bool = True
  freeze_encoder: bool = False
  encoder_bn_adapt: bool = True
  dropout_rate: float = 0.0
  dtype: jnp.dtype = jnp.float32
  curve: bool = False

  def setup(self):
    _setup_encoders(self, self.encoder_config, self.dtype, self.use_gyr)
    self.head = MLP(tuple(self.head_dims) + (self.num_targets,), dropout_rate=self.dropout_rate,
                    dtype=self.dtype)

  def embed(self, acc, gyr, train: bool):
    """[B, N, E] per-site embeddings; ``curve``: [B, T, F] per-time-step features."""
    enc_train = train and (self.encoder_bn_adapt or not self.freeze_encoder)
    acc_enc, gyr_enc = _encoders(self, self.use_gyr)
    parts = [acc_enc(acc, enc_train, sequence=self.curve)]
    if self.use_gyr:
      parts.append(gyr_enc(gyr, enc_train, sequence=self.curve))
    h = jnp.concatenate(parts, axis=-1)  # [B, N, D * n_modalities] (curve: [B, N, T', ...])
    if self.curve:
      b, n, t_short, e = h.shape
      h = jnp.transpose(h, (0, 2, 1, 3)).reshape(b, t_short, n * e)
      h = jax.image.resize(h, (b, acc.shape[2], n * e), 'linear')
    if self.freeze_encoder:
      h = jax.lax.stop_gradient(h)
    return h

  def __call__(self, acc_BxNxTxC, gyr_BxNxTxC, train: bool):
    h = self.embed(acc_BxNxTxC, gyr_BxNxTxC, train)
    return self.from_embedding(h, train)

  def from_embedding(self, h_BxNxE, train: bool):
    """The head on per-site embeddings [B, N, E] (what ``embed`` returns; cached probes);
    ``curve``: on every time step of [B, T, F] -> [B, T, A]."""
    if self.curve:
      return self.head(h_BxNxE, train)
    return self.head(h_BxNxE.reshape(h_BxNxE.shape[0], -1), train)
