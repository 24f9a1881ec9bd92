"""The reference encoder's shapes and parameter count, weight sharing, and the linear head."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from ssl_imu_jax.models import ContrastiveModel, ImuEncoder, RegressionModel, ResNet1D


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def hand_count(widths, blocks, k, stem_k, cin=3, bias=False) -> int:
  """Parameters of the reference ResNet counted from its description (conv weights [+ biases],
  BatchNorm scale + bias; a 1x1 conv + BatchNorm on the skip where the shape changes)."""
  conv = lambda ci, co, kk: kk * ci * co + (co if bias else 0)  # noqa: E731
  bn = lambda c: 2 * c  # noqa: E731
  total = conv(cin, widths[0], stem_k) + bn(widths[0])
  c_in = widths[0]
  for width, n_blocks in zip(widths, blocks, strict=True):
    for _ in range(n_blocks):
      total += conv(c_in, width, k) + bn(width) + conv(width, width, k) + bn(width)
      if c_in != width:
        total += conv(c_in, width, 1) + bn(width)
      c_in = width
  return total


def test_reference_encoder_shapes_and_parameter_count():
  enc = ResNet1D()  # the defaults are the reference: [3, 4, 6, 3], k 9, stem k 49 / 2, pool
  x = jnp.zeros((2, 5, 128, 3))
  key = jax.random.key(0)
  # Shapes only (jax.eval_shape): the same trace as running it, without executing op by op.
  variables = jax.eval_shape(lambda: enc.init(key, x, train=False))
  n = hand_count((16, 32, 64, 128), (3, 4, 6, 3), 9, 49)
  assert _count(variables['params']) == n == 1_335_248
  # With the reference's conv biases (which the BatchNorms cancel): its PyTorch count.
  biased = jax.eval_shape(lambda: ResNet1D(conv_bias=True).init(key, x, train=False))
  assert _count(biased['params']) == hand_count((16, 32, 64, 128), (3, 4, 6, 3), 9, 49,
                                                bias=True) == 1_337_376
  # The reference's time axis: 64 after the stem, 32 after the pool, stages 32 / 16 / 8 / 4.
  out, inter = jax.eval_shape(lambda v: enc.apply(v, x, train=False, capture_intermediates=True),
                              variables)
  chex.assert_shape(out, (2, 5, 128))
  lengths = [inter['intermediates'][f'stage{i}_block0']['__call__'][0].shape[1] for i in range(4)]
  assert lengths == [32, 16, 8, 4]
  small = ResNet1D(blocks_per_stage=(2, 2, 2, 2))
  v2 = jax.eval_shape(lambda: small.init(key, jnp.zeros((1, 1, 64, 3)), train=False))
  assert _count(v2['params']) == hand_count((16, 32, 64, 128), (2, 2, 2, 2), 9, 49)


def test_shared_encoder_is_one_set_of_weights_for_acc_and_gyr():
  cfg = common.model_config('tiny')
  assert cfg.encoder.shared
  model = ContrastiveModel(encoder_config=cfg.encoder, projection_dims=(8, 8), temperature=0.1)
  x = jax.random.normal(jax.random.key(1), (4, 2, 32, 3))
  variables = jax.jit(lambda: model.init(jax.random.key(0), x, x, train=False))()
  assert set(variables['params']) == {'encoder', 'acc_projection', 'gyr_projection'}
  embed = jax.jit(lambda v: model.apply(v, x, x, train=False, method=ContrastiveModel.embed))
  h_acc, h_gyr = embed(variables)
  np.testing.assert_array_equal(np.asarray(h_acc), np.asarray(h_gyr))  # same input, same weights
  # Perturbing the one encoder changes both modalities' embeddings.
  bumped = jax.tree.map(lambda p: p + 0.1, variables['params']['encoder'])
  v2 = {**variables, 'params': {**variables['params'], 'encoder': bumped}}
  h_acc2, h_gyr2 = embed(v2)
  assert float(jnp.abs(h_acc2 - h_acc).max()) > 1e-3 and float(jnp.abs(h_gyr2 - h_gyr).max()) > 1e-3
  # The projection heads are per modality and carry a BatchNorm between the Dense layers.
  assert set(variables['params']['acc_projection']) == {'dense0', 'norm0', 'dense1'}
  # The separate-encoder alternative has two encoder trees of the same size.
  two = common.model_config('tiny', 'two_encoder')
  m2 = ContrastiveModel(encoder_config=two.encoder, projection_dims=(8, 8), temperature=0.1)
  p2 = jax.eval_shape(lambda: m2.init(jax.random.key(0), x, x, train=False))['params']
  assert {'acc_encoder', 'gyr_encoder'} <= set(p2)
  assert _count(p2['acc_encoder']) == _count(p2['gyr_encoder'])


def test_linear_head_is_one_dense_layer_on_concatenated_site_embeddings():
  cfg = common.model_config('tiny')
  assert tuple(cfg.head_dims) == ()
  model = RegressionModel(encoder_config=cfg.encoder, head_dims=cfg.head_dims, num_targets=1,
                          freeze_encoder=True)
  x = jnp.ones((2, 3, 32, 3))
  params = model.init(jax.random.key(0), x, x, train=False)['params']
  assert set(params) == {'encoder', 'head'}
  assert set(params['head']) == {'dense0'}
  enc = ImuEncoder(encoder_config=cfg.encoder)
  h_acc, h_gyr = enc.apply(enc.init(jax.random.key(0), x, x, False), x, x, False)
  d = h_acc.shape[-1]
  assert h_gyr.shape == h_acc.shape == (2, 3, cfg.encoder.widths[-1])
  assert params['head']['dense0']['kernel'].shape == (3 * 2 * d, 1)  # sites x {acc, gyr} x D


@pytest.mark.parametrize('kernels_only', [True, False])
def test_weight_decay_reaches_kernels_only_by_default(kernels_only):
  """With a zero gradient AdamW's step is the decay alone: kernels shrink; BatchNorm scales and
  biases, biases and the temperature stay unless every parameter is decayed (the reference)."""
  from ssl_imu_jax.training import train_state

  opt = common.optimizer_config(learning_rate=0.1, weight_decay=0.5)
  opt.warmup_fraction = 0.0
  opt.decay_kernels_only = kernels_only
  params = {'conv': {'kernel': jnp.ones((3, 2)), 'bias': jnp.ones(2)},
            'norm': {'scale': jnp.ones(2), 'bias': jnp.ones(2)}, 'log_temperature': jnp.ones(())}
  tx, _ = train_state.make_optimizer(opt, total_steps=10)
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  changed = jax.tree.map(lambda u: bool(jnp.any(u != 0)), updates)
  assert changed['conv']['kernel']
  others = [changed['conv']['bias'], changed['norm']['scale'], changed['norm']['bias'],
            changed['log_temperature']]
  assert others == ([False] * 4 if kernels_only else [True] * 4)


@pytest.mark.parametrize('length,c_in,c_out,stride,k', [
    (8, 64, 64, 1, 9), (16, 32, 64, 2, 9), (4, 128, 128, 1, 9), (64, 16, 16, 1, 9),
    (16, 32, 64, 2, 1), (32, 16, 32, 2, 1)])  # k=1: the projection on the skip, as a dot
def test_banded_matmul_convolution_equals_xla_convolution(length, c_in, c_out, stride, k):
  from ssl_imu_jax.models import resnet1d

  pad = k // 2
  x = jax.random.normal(jax.random.key(0), (5, length, c_in))
  w = jax.random.normal(jax.random.key(1), (k, c_in, c_out)) / np.sqrt(k * c_in)
  dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, ('NWC', 'WIO', 'NWC'))

  def loss(conv, x, w):
    y = conv(x, w, (stride,), ((pad, pad),), dimension_numbers=dn)
    return jnp.sum(jnp.sin(y)), y

  (_, y_ref), g_ref = jax.value_and_grad(lambda x, w: loss(jax.lax.conv_general_dilated, x, w),
                                         argnums=(0, 1), has_aux=True)(x, w)
  (_, y), g = jax.value_and_grad(lambda x, w: loss(resnet1d.conv1d, x, w), argnums=(0, 1),
                                 has_aux=True)(x, w)
  assert y.shape == y_ref.shape == (5, -(-length // stride), c_out)
  np.testing.assert_allclose(y, y_ref, atol=1e-5, rtol=1e-5)
  for a, b in zip(g, g_ref, strict=True):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
  # The banded product is taken where XLA's convolution is slow (short and wide), not elsewhere.
  assert resnet1d._as_matmul(length, c_in, c_out, k) == (k > 1 and length <= 18 and c_out >= 64)


def test_the_encoder_with_banded_convolutions_equals_xla_convolutions():
  x = jax.random.normal(jax.random.key(2), (2, 3, 128, 3))
  outs = []
  for impl in ('auto', 'xla'):
    enc = ResNet1D(blocks_per_stage=(1, 1, 1, 1), conv_impl=impl)
    variables = enc.init(jax.random.key(0), x, train=False)
    outs.append(enc.apply(variables, x, train=True, mutable=['batch_stats'])[0])
  np.testing.assert_allclose(outs[0], outs[1], atol=1e-5, rtol=1e-5)
  with pytest.raises(ValueError, match=r"model.encoder.conv_impl must be one of \('auto', 'xla'\)"):
    ResNet1D(conv_impl='fast').init(jax.random.key(0), x, train=False)
