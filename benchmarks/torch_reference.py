"""A PyTorch twin of the JAX pre-training step, for the throughput benchmark only.

Same architecture as ``ssl_imu_jax.models`` (``ContrastiveModel`` with two ``ResNet1D`` encoders
and two ``MLP`` projection heads), same 'SAME' padding (XLA's: for a total padding p, p // 2
before and the rest after, which differs from PyTorch's symmetric ``padding=`` for strided
convolutions), the same BatchNorm (batch statistics over every site-window and time step, eps
1e-5), the same symmetric InfoNCE with top-1 / top-5 retrieval, and AdamW with decoupled weight
decay on every parameter (as ``optax.adamw``). Module names mirror the Flax parameter names so
:func:`load_flax_params` can copy a JAX initialisation across and the two can be checked equal.

PyTorch is an optional extra (``pip install -e '.[bench]'`` or ``pip install torch==2.13.0``).
"""

from __future__ import annotations

import math

try:
  import torch
  import torch.nn.functional as F
  from torch import nn
except ImportError as e:  # pragma: no cover - exercised only without torch
  raise ImportError(
      'benchmarks/torch_reference.py needs PyTorch, an optional benchmark extra: install it with '
      "`.venv/bin/pip install torch==2.13.0` (or `pip install -e '.[bench]'`).") from e


class SameConv1d(nn.Module):
  """Conv1d without bias and with XLA 'SAME' padding (asymmetric when strided)."""

  def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1):
    super().__init__()
    self.kernel_size, self.stride = kernel_size, stride
    self.weight = nn.Parameter(torch.empty(c_out, c_in, kernel_size))
    nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

  def forward(self, x_NxCxL):
    length = x_NxCxL.shape[-1]
    out = -(-length // self.stride)
    total = max((out - 1) * self.stride + self.kernel_size - length, 0)
    if total:
      x_NxCxL = F.pad(x_NxCxL, (total // 2, total - total // 2))
    return F.conv1d(x_NxCxL, self.weight, stride=self.stride)


def batch_norm(c: int, zero_init: bool = False) -> nn.BatchNorm1d:
  # torch momentum 0.1 == flax momentum 0.9 (weight of the old running average).
  bn = nn.BatchNorm1d(c, eps=1e-5, momentum=0.1)
  if zero_init:
    nn.init.zeros_(bn.weight)
  return bn


class ResidualBlock(nn.Module):
  def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int):
    super().__init__()
    self.conv1 = SameConv1d(c_in, c_out, kernel_size, stride)
    self.norm1 = batch_norm(c_out)
    self.conv2 = SameConv1d(c_out, c_out, kernel_size)
    self.norm2 = batch_norm(c_out, zero_init=True)
    self.has_proj = c_in != c_out or stride != 1
    if self.has_proj:
      self.proj_conv = SameConv1d(c_in, c_out, 1, stride)
      self.proj_norm = batch_norm(c_out)

  def forward(self, x):
    y = F.relu(self.norm1(self.conv1(x)))
    y = self.norm2(self.conv2(y))
    skip = self.proj_norm(self.proj_conv(x)) if self.has_proj else x
    return F.relu(skip + y)


class ResNet1D(nn.Module):
  """[B, N, T, 3] -> [B, N, D], every site encoded by the same weights."""

  def __init__(self, widths=(16, 32, 64, 128), blocks_per_stage: int = 1, kernel_size: int = 9,
               embed_dim: int = 128, in_channels: int = 3):
    super().__init__()
    self.stem_conv = SameConv1d(in_channels, widths[0], kernel_size)
    self.stem_norm = batch_norm(widths[0])
    self.block_names = []
    c = widths[0]
    for i, width in enumerate(widths):
      for j in range(blocks_per_stage):
        stride = 2 if (i > 0 and j == 0) else 1
        name = f'stage{i}_block{j}'
        self.add_module(name, ResidualBlock(c, width, kernel_size, stride))
        self.block_names.append(name)
        c = width
    self.embed = nn.Linear(c, embed_dim)
    self.embed_dim = embed_dim

  def forward(self, x_BxNxTxC):
    b, n, t, c = x_BxNxTxC.shape
    x = x_BxNxTxC.reshape(b * n, t, c).transpose(1, 2)  # [M, C, T]: PyTorch is channels-first
    x = F.relu(self.stem_norm(self.stem_conv(x)))
    for name in self.block_names:
      x = getattr(self, name)(x)
    x = self.embed(x.mean(dim=2))
    return x.reshape(b, n, self.embed_dim)


class MLP(nn.Module):
  def __init__(self, d_in: int, features):
    super().__init__()
    dims = [d_in, *features]
    for i in range(len(features)):
      self.add_module(f'dense{i}', nn.Linear(dims[i], dims[i + 1]))
    self.n = len(features)

  def forward(self, x):
    for i in range(self.n):
      x = getattr(self, f'dense{i}')(x)
      if i < self.n - 1:
        x = F.relu(x)
    return x


class ContrastiveModel(nn.Module):
  """(acc, gyr) [B, N, T, 3] -> projected embeddings (z_acc, z_gyr) [B, N, P]."""

  def __init__(self, widths=(16, 32, 64, 128), blocks_per_stage=1, kernel_size=9, embed_dim=128,
               projection_dims=(128, 128)):
    super().__init__()
    enc = dict(widths=widths, blocks_per_stage=blocks_per_stage, kernel_size=kernel_size,
               embed_dim=embed_dim)
    self.acc_encoder = ResNet1D(**enc)
    self.gyr_encoder = ResNet1D(**enc)
    self.acc_projection = MLP(embed_dim, projection_dims)
    self.gyr_projection = MLP(embed_dim, projection_dims)

  def forward(self, acc, gyr):
    return (self.acc_projection(self.acc_encoder(acc)),
            self.gyr_projection(self.gyr_encoder(gyr)))


def info_nce(z_acc_BxNxP, z_gyr_BxNxP, temperature: float):
  """Symmetric InfoNCE over all B*N site-windows (global negatives), with top-1 / top-5."""
  b, n, p = z_acc_BxNxP.shape
  za = F.normalize(z_acc_BxNxP.reshape(b * n, p), dim=1, eps=1e-8)
  zg = F.normalize(z_gyr_BxNxP.reshape(b * n, p), dim=1, eps=1e-8)
  logits = za @ zg.T / temperature
  target = torch.arange(b * n)
  loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
  with torch.no_grad():
    rank = (logits > logits.diagonal()[:, None]).sum(dim=1)
    metrics = {'top1': (rank < 1).float().mean(), 'top5': (rank < 5).float().mean()}
  return loss, metrics


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, impl: str = 'default'):
  """AdamW on every parameter (as ``optax.adamw``: b1 0.9, b2 0.999, eps 1e-8)."""
  kwargs = {'foreach': True} if impl == 'foreach' else {'fused': True} if impl == 'fused' else {}
  return torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8,
                           weight_decay=weight_decay, **kwargs)


def train_step(model, optimizer, acc, gyr, temperature: float):
  """One pre-training step: forward, symmetric InfoNCE, backward, AdamW update."""
  optimizer.zero_grad(set_to_none=True)
  z_acc, z_gyr = model(acc, gyr)
  loss, metrics = info_nce(z_acc, z_gyr, temperature)
  loss.backward()
  optimizer.step()
  return loss.detach(), metrics


def count_params(model: nn.Module, prefix: str = '') -> int:
  return sum(p.numel() for name, p in model.named_parameters() if name.startswith(prefix))


def load_flax_params(model: nn.Module, params) -> int:
  """Copies a Flax ``ContrastiveModel`` parameter tree into ``model``; returns #tensors copied.

  Conv kernels go from Flax [k, in, out] to PyTorch [out, in, k], Dense kernels from [in, out] to
  [out, in]; BatchNorm scale / bias to weight / bias. Every PyTorch parameter must be covered.
  """
  import numpy as np

  own = dict(model.named_parameters())
  done = set()

  def visit(tree, path):
    for key, value in tree.items():
      if isinstance(value, dict) or hasattr(value, 'items'):
        visit(value, path + (key,))
        continue
      arr = np.asarray(value, dtype=np.float32)
      module = '.'.join(path)
      if key == 'kernel' and arr.ndim == 3:
        name, arr = f'{module}.weight', arr.transpose(2, 1, 0)
      elif key == 'kernel':
        name, arr = f'{module}.weight', arr.T
      elif key == 'scale':
        name = f'{module}.weight'
      elif key == 'bias':
        name = f'{module}.bias'
      else:
        raise KeyError(f'Flax parameter {module}.{key} has no PyTorch counterpart')
      if name not in own:
        raise KeyError(f'Flax parameter {module}.{key} -> {name} is missing in the PyTorch model')
      if tuple(own[name].shape) != arr.shape:
        raise ValueError(f'{name}: PyTorch shape {tuple(own[name].shape)} != Flax {arr.shape}')
      with torch.no_grad():
        own[name].copy_(torch.from_numpy(np.ascontiguousarray(arr)))
      done.add(name)

  visit(params, ())
  missing = set(own) - done
  if missing:
    raise KeyError(f'PyTorch parameters not set from Flax: {sorted(missing)[:5]}')
  return len(done)
