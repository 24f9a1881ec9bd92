"""Small MLP heads: the SSL projection head and the downstream regression head."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
  """Dense layers with ReLU between them; the last layer is linear."""

  features: Sequence[int]
  dropout_rate: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    for i, f in enumerate(self.features):
      x = nn.Dense(f, dtype=self.dtype, name=f'dense{i}')(x)
      if i < len(self.features) - 1:
        x = nn.relu(x)
        if self.dropout_rate > 0:
          x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return x.astype(jnp.float32)
