"""Fine-tuning models of either backbone, for scalar and for curve targets (issue 27, step 3b).

``TransformerRegressionModel`` is the masked-reconstruction Transformer of Tan et al. 2024
(models/transformer.py) as a regressor: the same tokens (``imu_tokens``: one per time step, every
site's acc channels then every site's gyr channels), the mask off, no reconstruction head, and

- a scalar target (peak values, [B, K]): the mean of the token embeddings over time, [B, width],
  into the linear head (``head_dims=()``: one Dense layer, as the ResNet's);
- a curve target (``curve``, e.g. the GRF curve [B, T, A]): the head on every token,
  Linear(width -> A) per time step (the reference's GRF head, masked-recipe.md section 2).

A backbone pre-trained with NCE (``modalities='separate'``: the acc tokens [B, T, 3N] and the gyr
tokens each through the one Transformer, ``backbone_tokens``) gives one embedding per modality:
the scalar head takes their time means side by side, [B, 2·width] (acc then gyr), the curve head
the two tokens of each step side by side, [B, T, 2·width] (``modalities`` is the checkpoint's
``meta['encoder']['modalities']``; 'joint', the masked model's tokens, when absent).

Its parameter tree is ``{'transformer': ..., 'head': ...}``; ``transformer`` has the names of the
pre-training model's subtree (``MaskedImuModel``) less ``reconstruction``, so fine-tuning copies
the pre-trained encoder by name (``mask_token`` comes along and is unused: no step is masked).
Dropout of the encoder is on whenever ``train`` is, a linear probe included (the reference keeps
it on during the probe); ``freeze_encoder`` only stops the gradient.

``regression_model`` builds the fine-tuning model an encoder config describes: the Transformer
(``backbone: 'transformer'``) or the ResNet's ``RegressionModel``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_imu_jax.models.heads import MLP
from ssl_imu_jax.models.ssl_imu import RegressionModel, is_transformer, transformer_sizes
from ssl_imu_jax.models.transformer import MaskedTransformer, backbone_tokens


class TransformerRegressionModel(nn.Module):
  """(acc, gyr) [B, N, T, 3] normalised -> [B, K] (scalar targets) or [B, T, K] (``curve``)."""

  head_dims: Sequence[int]
  num_targets: int
  width: int = 192
  depth: int = 6
  heads: int = 8
  ff: int = 512
  dropout: float = 0.1
  pos_base_factor: float = 2.0
  use_gyr: bool = True
  freeze_encoder: bool = False
  dropout_rate: float = 0.0  # the head's
  curve: bool = False
  modalities: str = 'joint'  # 'separate': acc and gyr tokens apart (an NCE-pre-trained backbone)
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    self.transformer = MaskedTransformer(self.width, self.depth, self.heads, self.ff,
                                         self.dropout, self.pos_base_factor, self.dtype,
                                         reconstruct=False)
    self.head = MLP(tuple(self.head_dims) + (self.num_targets,), dropout_rate=self.dropout_rate,
                    dtype=self.dtype)

  def embed(self, acc, gyr, train: bool):
    """[B, M, width] (the tokens' mean over time, M = 1 'joint', 2 'separate') or, ``curve``,
    [B, T, M·width] (every token; 'separate': the acc and gyr tokens of a step side by side)."""
    h = backbone_tokens(self.transformer, acc, gyr if self.use_gyr else None, self.modalities,
                        train)  # [B, M, T, W]
    if self.curve:
      b, m, t, w = h.shape
      h = jnp.transpose(h, (0, 2, 1, 3)).reshape(b, t, m * w)
    else:
      h = jnp.mean(h, axis=2)
    if self.freeze_encoder:
      h = jax.lax.stop_gradient(h)
    return h

  def __call__(self, acc_BxNxTxC, gyr_BxNxTxC, train: bool):
    return self.from_embedding(self.embed(acc_BxNxTxC, gyr_BxNxTxC, train), train)

  def from_embedding(self, h, train: bool):
    """The head on what ``embed`` returns (cached probes included)."""
    if self.curve:
      return self.head(h, train)
    return self.head(h.reshape(h.shape[0], -1), train)


def regression_model(encoder_cfg, head_dims: Sequence[int], num_targets: int, use_gyr: bool,
                     freeze_encoder: bool = False, encoder_bn_adapt: bool = True,
                     dropout_rate: float = 0.0, dtype=jnp.float32, curve: bool = False):
  """The fine-tuning model of ``encoder_cfg``'s backbone (``encoder_bn_adapt``: ResNet only)."""
  if is_transformer(encoder_cfg):
    return TransformerRegressionModel(head_dims=tuple(head_dims), num_targets=num_targets,
                                      use_gyr=use_gyr, freeze_encoder=freeze_encoder,
                                      dropout_rate=dropout_rate, curve=curve, dtype=dtype,
                                      **transformer_sizes(encoder_cfg))
  return RegressionModel(encoder_config=encoder_cfg, head_dims=tuple(head_dims),
                         num_targets=num_targets, use_gyr=use_gyr,
                         freeze_encoder=freeze_encoder, encoder_bn_adapt=encoder_bn_adapt,
                         dropout_rate=dropout_rate, dtype=dtype, curve=curve)
