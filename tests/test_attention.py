"""The Transformer's attention (models/transformer.py, issue 27 "Speed"): the fused path
(``jax.nn.dot_product_attention``) computes what flax's explicit softmax path computes, and
training with attention-weight dropout still drops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from ssl_imu_jax.models import transformer


def _layer(fused: bool, dropout: float = 0.0):
  return transformer.EncoderLayer(width=16, heads=4, ff=32, dropout=dropout,
                                  fused_attention=fused)


def test_fused_attention_function_equals_flax_explicit_path():
  q, k, v = (jax.random.normal(jax.random.key(i), (3, 10, 4, 8)) for i in range(3))
  fused = transformer.dot_product_attention(q, k, v, deterministic=True)
  explicit = nn.dot_product_attention(q, k, v, deterministic=True)
  np.testing.assert_allclose(fused, explicit, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('dropout', [0.0, 0.1])
def test_layer_with_fused_attention_equals_the_explicit_layer_without_dropping(dropout):
  """Same parameters (the tree does not depend on the path), same outputs and gradients in
  inference; with dropout 0 also in training."""
  x = jax.random.normal(jax.random.key(0), (2, 12, 16))
  fused, explicit = _layer(True, dropout), _layer(False, dropout)
  params = fused.init(jax.random.key(1), x, train=False)
  assert (jax.tree.structure(params)
          == jax.tree.structure(explicit.init(jax.random.key(1), x, train=False)))
  modes = [False] + ([True] if dropout == 0.0 else [])
  for train in modes:
    def out_and_grad(p, layer, train=train):
      return jax.value_and_grad(lambda p: jnp.sum(layer.apply(p, x, train=train) ** 2))(p)

    (l_f, g_f), (l_e, g_e) = (jax.jit(out_and_grad, static_argnums=1)(params, layer)
                              for layer in (fused, explicit))
    np.testing.assert_allclose(l_f, l_e, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_f), jax.tree.leaves(g_e), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_the_fused_path_is_what_inference_runs():
  """jax.nn.dot_product_attention's XLA lowering has no dropout: inference traces no random
  bits; training with dropout draws them (the explicit path)."""
  x = jnp.ones((2, 12, 16))
  layer = _layer(True, 0.1)
  params = layer.init(jax.random.key(1), x, train=False)
  infer = jax.make_jaxpr(lambda p: layer.apply(p, x, train=False))(params)
  train = jax.make_jaxpr(lambda p: layer.apply(p, x, train=True,
                                               rngs={'dropout': jax.random.key(2)}))(params)
  assert 'random_bits' not in str(infer) and 'random_bits' in str(train)


def test_training_with_attention_dropout_still_drops():
  """With value = 1 the attention output is each query's sum of attention weights: exactly 1
  without dropping; with dropout 0.5 in training, kept weights are scaled by 2 and dropped ones
  are 0, so the sums scatter around 1, and another key gives other sums."""
  q, k = (jax.random.normal(jax.random.key(i), (2, 12, 4, 8)) for i in range(2))
  v = jnp.ones((2, 12, 4, 8))
  det = transformer.dot_product_attention(q, k, v, dropout_rate=0.5, deterministic=True)
  np.testing.assert_allclose(det, 1.0, rtol=1e-5)

  def dropped(seed):
    return transformer.dot_product_attention(q, k, v, dropout_rate=0.5, deterministic=False,
                                             dropout_rng=jax.random.key(seed))[..., 0]

  d1, d2 = dropped(2), dropped(3)
  assert float(jnp.mean(jnp.abs(d1 - 1.0) > 1e-3)) > 0.5
  assert float(jnp.max(jnp.abs(d1 - d2))) > 0.1
  assert 0.7 < float(jnp.mean(d1)) < 1.3  # inverted dropout: the expectation stays 1
  # The whole layer in training mode is random too (all four dropout sites).
  x = jax.random.normal(jax.random.key(0), (2, 12, 16))
  layer = _layer(True, 0.1)
  lp = layer.init(jax.random.key(1), x, train=False)
  t1 = layer.apply(lp, x, train=True, rngs={'dropout': jax.random.key(2)})
  t2 = layer.apply(lp, x, train=True, rngs={'dropout': jax.random.key(3)})
  assert float(jnp.max(jnp.abs(t1 - t2))) > 1e-2


def test_bfloat16_fused_attention_is_close_to_float32():
  q, k, v = (jax.random.normal(jax.random.key(i), (2, 16, 4, 8)) for i in range(3))
  ref = nn.dot_product_attention(q, k, v, deterministic=True)
  low = transformer.dot_product_attention(q, k, v, deterministic=True, dtype=jnp.bfloat16)
  assert low.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(low, np.float32), ref, atol=5e-2)



def test_attention_weights_are_dropped_per_window_and_head():
  """torch drops each attention weight independently; flax's default (broadcast_dropout=True)
  would share one [T, T] keep-mask across windows and heads. The layer draws its attention
  dropout as [B, heads, T, T] bits (the one 4-d draw; the other dropouts are [B, T, width])."""
  x = jnp.ones((2, 12, 16))
  layer = _layer(True, 0.1)
  params = layer.init(jax.random.key(1), x, train=False)
  jaxpr = str(jax.make_jaxpr(lambda p: layer.apply(p, x, train=True,
                                                   rngs={'dropout': jax.random.key(2)}))(params))
  assert 'u32[2,4,12,12]' in jaxpr and 'u32[1,1,12,12]' not in jaxpr
  # and the function drops per element when asked to: identical windows and heads differ
  q = jnp.ones((2, 12, 4, 8))
  out = transformer.dot_product_attention(q, q, q, dropout_rate=0.5, deterministic=False,
                                          broadcast_dropout=False,
                                          dropout_rng=jax.random.key(3))
  assert float(jnp.max(jnp.abs(out[0] - out[1]))) > 1e-2
  assert float(jnp.max(jnp.abs(out[:, :, 0] - out[:, :, 1]))) > 1e-2
