"""A PyTorch twin of the project's reference pre-training step, for the throughput benchmark only.

The same function as ``ssl_imu_jax.training.pretrain.make_train_step`` with the default config
(``configs/paper.py`` -> ``pretrain``): one ResNet1D (``models/resnet1d.py``: stem conv k=49
stride 2 + BatchNorm + ReLU + max-pool 3/2; basic blocks [3, 4, 6, 3], widths 16/32/64/128, k=9,
symmetric padding k // 2, no conv bias, 1x1 strided conv + BatchNorm on the skip where the shape
changes; mean over time) SHARED by acc and gyr and called once per modality (each call normalises
BatchNorm by its own batch and updates the running statistics in turn); projection heads
Dense(no bias) -> BatchNorm -> ReLU -> Dense (``models/heads.py``); the reference NCE loss
(``losses.reference_nce``: acc -> gyr, cosine / temperature, log-sum-exp over negatives only, every
pair of the same window masked) with top-1 / top-5 retrieval; input normalisation
``(x - mean) / std`` per modality; AdamW (b1 0.9, b2 0.999, eps 1e-8) with optax's linear warm-up +
cosine schedule and weight decay on kernels only (``train_state.make_optimizer``); the gradient,
parameter and update norms the JAX step logs.

Module names mirror the Flax parameter names, so :func:`load_flax` copies a JAX initialisation
(parameters and BatchNorm statistics) across and the two can be checked equal.

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

NEG_INF = -1e9  # masked logits, as losses._NEG_INF


def batch_norm(c: int) -> nn.BatchNorm1d:
  # torch momentum 0.1 == flax momentum 0.9 (weight of the old running average); eps 1e-5.
  return nn.BatchNorm1d(c, eps=1e-5, momentum=0.1)


def conv(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Conv1d:
  return nn.Conv1d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False)


class ResidualBlock(nn.Module):
  def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int):
    super().__init__()
    self.conv1 = conv(c_in, c_out, kernel_size, stride)
    self.norm1 = batch_norm(c_out)
    self.conv2 = conv(c_out, c_out, kernel_size)
    self.norm2 = batch_norm(c_out)
    self.has_proj = c_in != c_out or stride != 1
    if self.has_proj:
      self.proj_conv = conv(c_in, c_out, 1, stride)
      self.proj_norm = batch_norm(c_out)

  def forward(self, x):
    y = F.relu(self.norm1(self.conv1(x)))
    y = self.norm2(self.conv2(y))
    skip = self.proj_norm(self.proj_conv(x)) if self.has_proj else x
    return F.relu(skip + y)


class ResNet1D(nn.Module):
  """[B, N, T, 3] -> [B, N, D]: every site encoded by the same weights (D = widths[-1])."""

  def __init__(self, widths=(16, 32, 64, 128), blocks_per_stage=(3, 4, 6, 3), kernel_size=9,
               stem_kernel=49, stem_stride=2, in_channels=3):
    super().__init__()
    self.stem_conv = conv(in_channels, widths[0], stem_kernel, stem_stride)
    self.stem_norm = batch_norm(widths[0])
    self.block_names = []
    c = widths[0]
    for i, (width, n_blocks) in enumerate(zip(widths, blocks_per_stage, strict=True)):
      for j in range(n_blocks):
        name = f'stage{i}_block{j}'
        self.add_module(name, ResidualBlock(c, width, kernel_size, 2 if i > 0 and j == 0 else 1))
        self.block_names.append(name)
        c = width
    self.out_dim = c

  def stem(self, x_MxCxT):
    x = F.relu(self.stem_norm(self.stem_conv(x_MxCxT)))
    return F.max_pool1d(x, 3, stride=2, padding=1)

  def forward(self, x_BxNxTxC):
    b, n, t, c = x_BxNxTxC.shape
    x = x_BxNxTxC.reshape(b * n, t, c).transpose(1, 2)  # [M, C, T]: PyTorch is channels-first
    x = self.stem(x)
    for name in self.block_names:
      x = getattr(self, name)(x)
    return x.mean(dim=2).reshape(b, n, self.out_dim)


class ProjectionHead(nn.Module):
  """Dense (no bias) -> BatchNorm over all site-windows -> ReLU -> Dense (as MLP(batch_norm))."""

  def __init__(self, d_in: int, features=(128, 128)):
    super().__init__()
    self.dense0 = nn.Linear(d_in, features[0], bias=False)
    self.norm0 = batch_norm(features[0])
    self.dense1 = nn.Linear(features[0], features[1])

  def forward(self, x_BxNxD):
    b, n, d = x_BxNxD.shape
    x = F.relu(self.norm0(self.dense0(x_BxNxD.reshape(b * n, d))))
    return self.dense1(x).reshape(b, n, -1)


class ContrastiveModel(nn.Module):
  """(acc, gyr) [B, N, T, 3] -> (z_acc, z_gyr) [B, N, P]; one encoder for both modalities."""

  def __init__(self, widths=(16, 32, 64, 128), blocks_per_stage=(3, 4, 6, 3), kernel_size=9,
               stem_kernel=49, stem_stride=2, projection_dims=(128, 128)):
    super().__init__()
    self.encoder = ResNet1D(widths, blocks_per_stage, kernel_size, stem_kernel, stem_stride)
    self.acc_projection = ProjectionHead(self.encoder.out_dim, projection_dims)
    self.gyr_projection = ProjectionHead(self.encoder.out_dim, projection_dims)

  def forward(self, acc, gyr):
    return self.acc_projection(self.encoder(acc)), self.gyr_projection(self.encoder(gyr))


def reference_nce(z_acc_BxNxP, z_gyr_BxNxP, temperature: float):
  """acc -> gyr, log-sum-exp over negatives only (pairs of the same window masked), minus the
  mean positive similarity; top-1 / top-5 retrieval among all site-windows."""
  b, n, p = z_acc_BxNxP.shape
  za = F.normalize(z_acc_BxNxP.reshape(b * n, p), dim=1, eps=1e-8)
  zg = F.normalize(z_gyr_BxNxP.reshape(b * n, p), dim=1, eps=1e-8)
  logits = za @ zg.T / temperature
  window = torch.arange(b * n) // n
  same = window[:, None] == window[None, :]
  diag = logits.diagonal()
  loss = torch.logsumexp(logits.masked_fill(same, NEG_INF), dim=1).mean() - diag.mean()
  with torch.no_grad():
    rank = (logits > diag[:, None]).sum(dim=1)
    metrics = {'top1': (rank < 1).float().mean(), 'top5': (rank < 5).float().mean()}
  return loss, metrics


def warmup_cosine(step: int, peak: float, total_steps: int, warmup_fraction: float,
                  final_fraction: float) -> float:
  """optax.warmup_cosine_decay_schedule as train_state.make_schedule builds it."""
  warmup = int(round(warmup_fraction * total_steps))
  init = 0.0 if warmup else peak
  decay_steps, end = max(total_steps, warmup + 1), peak * final_fraction
  if step < warmup:
    return init + (peak - init) * step / warmup
  frac = min(max(step - warmup, 0), decay_steps - warmup) / (decay_steps - warmup)
  return end + (peak - end) * 0.5 * (1 + math.cos(math.pi * frac))


def make_optimizer(model: nn.Module, opt_cfg, total_steps: int, impl: str = 'default'):
  """AdamW with weight decay on conv / dense kernels only (``decay_kernels_only``) and the
  warm-up + cosine schedule; returns (optimizer, lr_at(step))."""
  decay, no_decay = [], []
  for name, p in model.named_parameters():
    is_kernel = name.endswith('.weight') and p.ndim >= 2  # Conv1d / Linear weights
    (decay if is_kernel or not opt_cfg.decay_kernels_only else no_decay).append(p)
  kwargs = {'foreach': True} if impl == 'foreach' else {'fused': True} if impl == 'fused' else {}
  groups = [{'params': decay, 'weight_decay': opt_cfg.weight_decay},
            {'params': no_decay, 'weight_decay': 0.0}]
  optimizer = torch.optim.AdamW(groups, lr=0.0, betas=(opt_cfg.b1, opt_cfg.b2), eps=1e-8,
                                **kwargs)

  def lr_at(step: int) -> float:
    return warmup_cosine(step, opt_cfg.learning_rate, total_steps, opt_cfg.warmup_fraction,
                         opt_cfg.final_lr_fraction)

  return optimizer, lr_at


def normalize(x, mean: float, std: float):
  return (x - mean) / std


def train_step(model, optimizer, lr_at, step: int, acc, gyr, stats, temperature: float):
  """One pre-training step: normalisation, forward, reference NCE, backward, AdamW update, and
  the norms the JAX step logs."""
  optimizer.zero_grad(set_to_none=True)
  acc = normalize(acc, stats['acc_mean'], stats['acc_std'])
  gyr = normalize(gyr, stats['gyr_mean'], stats['gyr_std'])
  z_acc, z_gyr = model(acc, gyr)
  loss, metrics = reference_nce(z_acc, z_gyr, temperature)
  loss.backward()
  params = [p for p in model.parameters()]
  with torch.no_grad():
    old = [p.detach().clone() for p in params]
    grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad)
                                                      for p in params]))
  for group in optimizer.param_groups:
    group['lr'] = lr_at(step)
  optimizer.step()
  with torch.no_grad():
    metrics['grad_norm'] = grad_norm
    metrics['param_norm'] = torch.linalg.vector_norm(torch.stack(
        [torch.linalg.vector_norm(p) for p in params]))
    metrics['update_norm'] = torch.linalg.vector_norm(torch.stack(
        [torch.linalg.vector_norm(p - o) for p, o in zip(params, old, strict=True)]))
  return loss.detach(), metrics


def count_params(model: nn.Module, prefix: str = '') -> int:
  return sum(p.numel() for name, p in model.named_parameters() if name.startswith(prefix))


def flax_to_torch_names(params, batch_stats=None, dtype='float32') -> dict[str, object]:
  """{torch name: numpy array (of ``dtype``) in PyTorch's layout} for a Flax ``ContrastiveModel``
  tree.

  Conv kernels go from Flax [k, in, out] to PyTorch [out, in, k], Dense kernels from [in, out] to
  [out, in]; BatchNorm scale / bias to weight / bias, mean / var to running_mean / running_var.
  """
  import numpy as np

  out = {}

  def visit(tree, path, stats: bool):
    for key, value in tree.items():
      if hasattr(value, 'items'):
        visit(value, path + (key,), stats)
        continue
      arr = np.asarray(value, dtype=dtype)
      module = '.'.join(path)
      if stats:
        name = f"{module}.{ {'mean': 'running_mean', 'var': 'running_var'}[key] }"
      elif key == 'kernel':
        name, arr = f'{module}.weight', (arr.transpose(2, 1, 0) if arr.ndim == 3 else arr.T)
      elif key == 'scale':
        name = f'{module}.weight'
      elif key == 'bias':
        name = f'{module}.bias'
      else:
        raise KeyError(f'Flax parameter {module}.{key} has no PyTorch counterpart')
      out[name] = np.ascontiguousarray(arr)

  visit(params, (), False)
  if batch_stats is not None:
    visit(batch_stats, (), True)
  return out


def load_flax(model: nn.Module, params, batch_stats=None) -> int:
  """Copies a Flax parameter tree (and BatchNorm statistics) into ``model``; every PyTorch
  parameter must be covered. Returns the number of tensors copied."""
  own = {**dict(model.named_parameters()), **dict(model.named_buffers())}
  arrays = flax_to_torch_names(params, batch_stats)
  for name, arr in arrays.items():
    if name not in own:
      raise KeyError(f'Flax tensor -> {name} is missing in the PyTorch model')
    if tuple(own[name].shape) != arr.shape:
      raise ValueError(f'{name}: PyTorch shape {tuple(own[name].shape)} != Flax {arr.shape}')
    with torch.no_grad():
      own[name].copy_(torch.from_numpy(arr))
  missing = {n for n, _ in model.named_parameters()} - set(arrays)
  if missing:
    raise KeyError(f'PyTorch parameters not set from Flax: {sorted(missing)[:5]}')
  return len(arrays)
