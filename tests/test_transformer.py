"""The masked-reconstruction Transformer (issue 27, step 1) against the reference's shapes,
counts and formulas (../shared/docs/masked-recipe.md)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_imu_jax.models import transformer
from ssl_imu_jax.training import losses


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_reference_size_has_the_reference_parameter_count():
  """6 layers x 192 wide, 8 heads, feed-forward 512 on 8 IMUs x 6 channels: the layers hold the
  2,077,824 parameters the reference logs; embedding 48x192+192, mask token 48, head 192x48+48."""
  model = transformer.MaskedTransformer()
  x = jnp.zeros((1, 128, 48))
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), x))['params']
  layers = {k: v for k, v in params.items() if k.startswith('layer')}
  assert len(layers) == 6 and _count(layers) == 2_077_824
  assert _count(params['embed']) == 48 * 192 + 192 and params['mask_token'].shape == (48,)
  assert _count(params['reconstruction']) == 192 * 48 + 48


def test_sinusoid_follows_the_formula_with_base_two_t():
  pe = transformer.sinusoid(128, 8, 256.0)
  pos, i = 37, 3  # feature 2i = 6 (sin) and 2i + 1 = 7 (cos) share the wavelength 256^(6/8)
  w = 256.0 ** (2 * i / 8)
  np.testing.assert_allclose(pe[pos, 2 * i], np.sin(pos / w), rtol=1e-6)
  np.testing.assert_allclose(pe[pos, 2 * i + 1], np.cos(pos / w), rtol=1e-6)
  np.testing.assert_allclose(pe[:, 0], np.sin(np.arange(128)), atol=1e-6)


def test_the_mask_is_one_contiguous_block_at_the_ratio():
  m = np.asarray(transformer.contiguous_mask(jax.random.key(1), 64, 128, 0.125))
  assert (m.sum(1) == 16).all()
  starts = m.argmax(1)
  for row, s in zip(m, starts, strict=True):
    assert row[s:s + 16].all()  # contiguous
  assert len(set(starts.tolist())) > 10  # drawn per sample
  with pytest.raises(ValueError, match='mask ratio 0.001 masks 0 of 128'):
    transformer.contiguous_mask(jax.random.key(1), 2, 128, 0.001)


def test_masked_steps_become_the_token_and_only_they_count_in_the_loss():
  model = transformer.MaskedTransformer(width=16, depth=1, heads=2, ff=32, dropout=0.0)
  x = jax.random.normal(jax.random.key(0), (2, 32, 6))
  params = model.init(jax.random.key(1), x)
  mask = transformer.contiguous_mask(jax.random.key(2), 2, 32, 0.25)
  # A masked input equals the input with the token written into those steps, unmasked.
  token = params['params']['mask_token']
  by_hand = jnp.where(mask[..., None], token, x)
  np.testing.assert_allclose(model.apply(params, x, mask)[1], model.apply(params, by_hand)[1],
                             atol=1e-6)
  # The loss sees only the masked steps: changing the prediction elsewhere changes nothing.
  pred = model.apply(params, x, mask)[1]
  other = jnp.where(mask[..., None], pred, pred + 100.0)
  assert float(losses.masked_mse(pred, x, mask)) == pytest.approx(
      float(losses.masked_mse(other, x, mask)))
  err = np.asarray((pred - x) ** 2).mean(-1)[np.asarray(mask)].mean()
  assert float(losses.masked_mse(pred, x, mask)) == pytest.approx(float(err), rel=1e-5)


def test_post_layernorm_and_dropout_sites():
  """Each layer ends in a LayerNorm (post-LN: tokens come out with zero mean, unit variance per
  step before the head); dropout acts only in training."""
  model = transformer.MaskedTransformer(width=16, depth=2, heads=2, ff=32, dropout=0.5)
  x = jax.random.normal(jax.random.key(0), (2, 32, 6))
  params = model.init(jax.random.key(1), x)
  h, _ = model.apply(params, x)
  np.testing.assert_allclose(np.asarray(h).mean(-1), 0.0, atol=1e-5)
  np.testing.assert_allclose(np.asarray(h).var(-1), 1.0, rtol=1e-3)
  a = model.apply(params, x, train=True, rngs={'dropout': jax.random.key(3)})[1]
  b = model.apply(params, x, train=True, rngs={'dropout': jax.random.key(4)})[1]
  assert float(jnp.abs(a - b).max()) > 1e-3
  np.testing.assert_array_equal(model.apply(params, x)[1], model.apply(params, x)[1])
