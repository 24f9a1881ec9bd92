"""The PyTorch twin of the masked Transformer step (benchmarks/torch_transformer_reference.py,
timed by benchmarks/transformer_throughput.py) computes the project's step: same parameter
count, loss, gradients (float32 and float64), one optimiser update and schedule, at a tiny
size. PyTorch is an optional benchmark extra; without it the test is skipped."""

import os
import sys

import pytest

pytest.importorskip(
    'torch', reason='PyTorch is an optional benchmark extra (pip install torch==2.13.0); the '
    'twin of the Transformer step cannot be checked without it')

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'benchmarks')
sys.path.insert(0, BENCH)
import transformer_throughput as tb  # noqa: E402


def test_twin_equals_the_project_masked_step_at_a_tiny_size():
  cfg = tb.masked_config(4, 'tiny')  # 2 layers x 32 wide, 4 heads, feed-forward 64
  chk = tb.check_equivalence(cfg, batch_size=3, sites=2, seed=5, threads=1)
  assert chk['params_jax'] == chk['params_torch'] and chk['tensors'] == 2 * 12 + 5
  assert abs(chk['loss_jax'] - chk['loss_torch']) < 1e-5 * abs(chk['loss_jax'])
  assert chk['max_rel_grad_err'] < 1e-4
  # float64 on both sides; jax.nn.dot_product_attention's softmax stays float32 (~1e-8).
  assert chk['max_rel_grad_err_f64'] < 1e-6
  assert abs(chk['loss_step_jax'] - chk['loss_step_torch']) < 1e-5 * abs(chk['loss_step_jax'])
  # Adam's first update is ~lr x sign(gradient): gradient elements within float32 rounding of 0
  # flip sign between the frameworks (measured 1.5e-2 of the update vector here).
  assert chk['max_rel_update_err'] < 5e-2
  assert chk['max_rel_lr_err'] < 1e-6


def test_twin_layout_of_a_flax_attention_layer():
  """flax q / k / v kernels [W, heads, head_dim] pack into torch's in_proj_weight [3W, W] so that
  the twin's attention equals the project's for a single layer (inference, eval mode)."""
  import jax
  import numpy as np
  import torch
  import torch_transformer_reference as tt

  from ssl_imu_jax.models import transformer

  model = transformer.MaskedTransformer(width=16, depth=1, heads=4, ff=24, dropout=0.0)
  x = np.random.default_rng(0).normal(size=(2, 10, 6)).astype(np.float32)
  params = model.init(jax.random.key(0), x)['params']
  h_j, r_j = model.apply({'params': params}, x)
  tm = tt.MaskedTransformer(6, 10, 16, 1, 4, 24, 0.0)
  tm.eval()
  assert tt.load_flax(tm, params) == 5 + 12
  with torch.no_grad():
    h_t, r_t = tm(torch.from_numpy(x))
  np.testing.assert_allclose(h_t.numpy(), h_j, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(r_t.numpy(), r_j, rtol=1e-4, atol=1e-5)
