"""Small MLP heads: the SSL projection heads and the downstream regression head."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np


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


def setup_nce_head(module: nn.Module) -> None:
  """Inside ``module.setup``: the NCE head both contrastive models share, ``acc_projection`` /
  ``gyr_projection`` (MLPs of ``module.projection_dims``) and, if learnable, ``log_temperature``."""
  for name in ('acc_projection', 'gyr_projection'):
    setattr(module, name, MLP(tuple(module.projection_dims),
                              batch_norm=module.projection_batch_norm, dtype=module.dtype))
  if module.learnable_temperature:
    module.log_temperature = module.param(
        'log_temperature', nn.initializers.constant(np.log(module.temperature)), ())


def nce_head(module: nn.Module, h_acc, h_gyr, train: bool):
  """(z_acc, z_gyr, temperature): the two modalities' embeddings through ``setup_nce_head``'s
  projections."""
  if module.learnable_temperature:
    temperature = jnp.exp(module.log_temperature)
  else:
    temperature = jnp.asarray(module.temperature, jnp.float32)
  return module.acc_projection(h_acc, train), module.gyr_projection(h_gyr, train), temperature
