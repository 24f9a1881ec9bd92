"""Small MLP heads: the SSL projection heads and the downstream regression head."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
  """Dense layers with ReLU between them; the last layer is linear.

  ``batch_norm`` puts a BatchNorm before each hidden ReLU (the reference projection head:
  Dense -> BatchNorm -> ReLU -> Dense); a Dense layer feeding a BatchNorm has no bias (the
  BatchNorm cancels it). ``features=(K,)`` is a single Dense layer.
  """

  features: Sequence[int]
  dropout_rate: float = 0.0
  batch_norm: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    for i, f in enumerate(self.features):
      hidden = i < len(self.features) - 1
      x = nn.Dense(f, use_bias=not (hidden and self.batch_norm), dtype=self.dtype,
                   name=f'dense{i}')(x)
      if hidden:
        if self.batch_norm:
          x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                           dtype=self.dtype, name=f'norm{i}')(x)  # over all but the last axis
        x = nn.relu(x)
        if self.dropout_rate > 0:
          x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return x.astype(jnp.float32)
