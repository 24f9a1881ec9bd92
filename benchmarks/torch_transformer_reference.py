"""A PyTorch twin of the masked-reconstruction pre-training step (Tan et al., TBME 2024), for the
Transformer throughput benchmark and its test only.

The reference model as the reference code builds it (../shared/docs/masked-recipe.md §2-5):
tokens = one per time step of every site's acc, then every site's gyr channels (48 for 8 IMUs);
a learned input-space mask token (U(-0.5, 0.5)) replaces one contiguous block of steps per
sample; ``Linear(C -> 192)``; a fixed sinusoid with base 2T added after the embedding;
``nn.TransformerEncoder(nn.TransformerEncoderLayer(192, nhead=8, dim_feedforward=512,
dropout=0.1, batch_first=True), 6)`` (torch defaults: post-LN, ReLU, LayerNorm eps 1e-5, no final
norm); ``Linear(192 -> C)``; MSE over the masked steps only; torch AdamW (weight decay 0.01 on
every parameter) with the cosine x linear warm-up factor schedule. The step also scales the raw
windows by one std per modality (the reference's ``StandardScaler(with_mean=False)``) and lays
them out as tokens, as ``ssl_imu_jax.training.pretrain.make_masked_train_step`` does, and returns
the norms the JAX step logs.

:func:`load_flax` copies a JAX ``MaskedImuModel`` initialisation into the twin: flax's separate
query / key / value ``DenseGeneral`` kernels [W, heads, head_dim] become torch's packed
``in_proj_weight`` [3W, W] (rows q, then k, then v; head-major within each, as torch splits the
width into heads), the output kernel [heads, head_dim, W] becomes ``out_proj.weight`` [W, W],
Dense kernels [in, out] become Linear weights [out, in].

PyTorch is an optional extra (``pip install torch==2.13.0``).
"""

from __future__ import annotations

import math

try:
  import torch
  from torch import nn
except ImportError as e:  # pragma: no cover - exercised only without torch
  raise ImportError(
      'benchmarks/torch_transformer_reference.py needs PyTorch, an optional benchmark extra: '
      'install it with `.venv/bin/pip install torch==2.13.0`.') from e


def positional_table(length: int, width: int, base: float) -> torch.Tensor:
  """The reference's ``PositionalEncoding`` buffer (sin on even, cos on odd features)."""
  position = torch.arange(length, dtype=torch.float64)[:, None]
  div = torch.exp(torch.arange(0, width, 2, dtype=torch.float64) * (-math.log(base) / width))
  pe = torch.zeros(length, width, dtype=torch.float64)
  pe[:, 0::2] = torch.sin(position * div)
  pe[:, 1::2] = torch.cos(position * div)
  return pe.float()


class MaskedTransformer(nn.Module):
  """[B, T, C] scaled tokens + [B, T] bool mask -> ([B, T, W] encodings, [B, T, C]
  reconstruction)."""

  def __init__(self, channels: int, length: int = 128, width: int = 192, depth: int = 6,
               heads: int = 8, ff: int = 512, dropout: float = 0.1,
               pos_base_factor: float = 2.0):
    super().__init__()
    self.mask_token = nn.Parameter(torch.empty(channels).uniform_(-0.5, 0.5))
    self.embed = nn.Linear(channels, width)
    layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=ff, dropout=dropout,
                                       batch_first=True)
    self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
    self.reconstruction = nn.Linear(width, channels)
    self.register_buffer('pe', positional_table(length, width, pos_base_factor * length))

  def forward(self, x_BxTxC, mask_BxT=None):
    if mask_BxT is not None:
      x_BxTxC = torch.where(mask_BxT[..., None], self.mask_token.to(x_BxTxC.dtype), x_BxTxC)
    h = self.embed(x_BxTxC) + self.pe[:x_BxTxC.shape[1]].to(x_BxTxC.dtype)
    h = self.encoder(h)
    return h, self.reconstruction(h)


def tokens(acc_BxNxTx3, gyr_BxNxTx3=None):
  """[B, T, C]: every site's acc x, y, z, then every site's gyr (``imu_tokens``' order)."""
  def per_step(x):
    b, n, t, k = x.shape
    return x.permute(0, 2, 1, 3).reshape(b, t, n * k)

  parts = [per_step(acc_BxNxTx3)]
  if gyr_BxNxTx3 is not None and gyr_BxNxTx3.shape[-1]:
    parts.append(per_step(gyr_BxNxTx3))
  return torch.cat(parts, dim=-1)


def contiguous_mask(batch: int, length: int, ratio: float, generator=None) -> torch.Tensor:
  """[B, T] bool: one block of round(ratio T) steps per sample at a uniform start."""
  n = int(round(ratio * length))
  start = torch.randint(0, length - n + 1, (batch, 1), generator=generator)
  t = torch.arange(length)[None, :]
  return (t >= start) & (t < start + n)


def masked_mse(pred_BxTxC, target_BxTxC, mask_BxT):
  """Squared error over the masked steps, averaged over those steps and every channel."""
  err = ((pred_BxTxC - target_BxTxC) ** 2).mean(dim=-1)
  m = mask_BxT.to(err.dtype)
  return (m * err).sum() / m.sum().clamp_min(1.0)


def cosine_times_warmup(step: int, peak: float, total_steps: int, warmup_fraction: float,
                        final_fraction: float) -> float:
  """``train_state.cosine_times_warmup``: cosine(step / total) x min(1, (step + 1) / W)."""
  total = max(float(total_steps), 1.0)
  end = peak * final_fraction
  warmup = round(warmup_fraction * total)
  cosine = end + (peak - end) * 0.5 * (1 + math.cos(math.pi * min(max(step / total, 0.0), 1.0)))
  return cosine * (min(1.0, (step + 1) / max(warmup, 1.0)) if warmup > 0 else 1.0)


def make_optimizer(model: nn.Module, opt_cfg, total_steps: int, impl: str = 'default'):
  """torch AdamW, weight decay on every parameter (the masked config's
  ``decay_kernels_only=False``), and the learning rate per step; returns (optimizer, lr_at)."""
  if opt_cfg.get('decay_kernels_only', False):
    raise ValueError('the masked twin decays every parameter (decay_kernels_only=False)')
  kwargs = {'foreach': True} if impl == 'foreach' else {'fused': True} if impl == 'fused' else {}
  optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, betas=(opt_cfg.b1, opt_cfg.b2),
                                eps=1e-8, weight_decay=opt_cfg.weight_decay, **kwargs)

  def lr_at(step: int) -> float:
    return cosine_times_warmup(step, opt_cfg.learning_rate, total_steps,
                               opt_cfg.warmup_fraction, opt_cfg.final_lr_fraction)

  return optimizer, lr_at


def scale(acc, gyr, stats):
  """Divide by the pooled std per modality (means are 0 with ssl.normalization='scale')."""
  acc = (acc - stats['acc_mean']) / stats['acc_std']
  gyr = None if gyr is None else (gyr - stats['gyr_mean']) / stats['gyr_std']
  return acc, gyr


def loss_of(model, acc, gyr, stats, mask):
  acc, gyr = scale(acc, gyr, stats)
  x = tokens(acc, gyr)
  _, recon = model(x, mask)
  return masked_mse(recon, x, mask)


def train_step(model, optimizer, lr_at, step: int, acc, gyr, stats, ratio: float, mask=None,
               autocast: bool = False):
  """One masked pre-training step; ``mask`` None draws a new block per sample (the reference);
  ``autocast``: the forward under CPU bfloat16 autocast."""
  optimizer.zero_grad(set_to_none=True)
  if mask is None:
    mask = contiguous_mask(acc.shape[0], acc.shape[2], ratio)
  with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
    loss = loss_of(model, acc, gyr, stats, mask)
  loss.backward()
  params = list(model.parameters())
  with torch.no_grad():
    old = [p.detach().clone() for p in params]
    grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad)
                                                      for p in params]))
  for group in optimizer.param_groups:
    group['lr'] = lr_at(step)
  optimizer.step()
  with torch.no_grad():
    metrics = {
        'grad_norm': grad_norm,
        'param_norm': torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(p) for p in params])),
        'update_norm': torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(p - o) for p, o in zip(params, old, strict=True)])),
    }
  return loss.detach(), metrics


def count_params(model: nn.Module, prefix: str = '') -> int:
  return sum(p.numel() for name, p in model.named_parameters() if name.startswith(prefix))


def flax_to_torch_names(params, dtype='float32') -> dict[str, object]:
  """{torch name: numpy array in PyTorch's layout} for a Flax ``MaskedImuModel`` parameter tree
  (``{'transformer': {...}}``) or its ``MaskedTransformer`` subtree."""
  import numpy as np

  p = params.get('transformer', params)
  a = lambda x: np.asarray(x, dtype=dtype)  # noqa: E731
  out = {'mask_token': a(p['mask_token']),
         'embed.weight': a(p['embed']['kernel']).T, 'embed.bias': a(p['embed']['bias']),
         'reconstruction.weight': a(p['reconstruction']['kernel']).T,
         'reconstruction.bias': a(p['reconstruction']['bias'])}
  layers = sorted((k for k in p if k.startswith('layer')), key=lambda k: int(k[len('layer'):]))
  for i, name in enumerate(layers):
    lay, t = p[name], f'encoder.layers.{i}.'
    att = lay['attention']
    w = a(att['out']['kernel']).shape[-1]
    out[t + 'self_attn.in_proj_weight'] = np.concatenate(
        [a(att[k]['kernel']).reshape(w, w).T for k in ('query', 'key', 'value')])
    out[t + 'self_attn.in_proj_bias'] = np.concatenate(
        [a(att[k]['bias']).reshape(w) for k in ('query', 'key', 'value')])
    out[t + 'self_attn.out_proj.weight'] = a(att['out']['kernel']).reshape(w, w).T
    out[t + 'self_attn.out_proj.bias'] = a(att['out']['bias'])
    for k in ('linear1', 'linear2'):
      out[t + f'{k}.weight'] = a(lay[k]['kernel']).T
      out[t + f'{k}.bias'] = a(lay[k]['bias'])
    for k in ('norm1', 'norm2'):
      out[t + f'{k}.weight'] = a(lay[k]['scale'])
      out[t + f'{k}.bias'] = a(lay[k]['bias'])
  return {k: np.array(v, order='C') for k, v in out.items()}


def load_flax(model: nn.Module, params) -> int:
  """Copies a Flax parameter tree into ``model``; every PyTorch parameter must be covered and
  every shape equal. Returns the number of tensors copied."""
  own = dict(model.named_parameters())
  arrays = flax_to_torch_names(params)
  for name, arr in arrays.items():
    if name not in own:
      raise KeyError(f'Flax tensor -> {name} is missing in the PyTorch model')
    if tuple(own[name].shape) != arr.shape:
      raise ValueError(f'{name}: PyTorch shape {tuple(own[name].shape)} != Flax {arr.shape}')
    with torch.no_grad():
      own[name].copy_(torch.from_numpy(arr))
  missing = set(own) - set(arrays)
  if missing:
    raise KeyError(f'PyTorch parameters not set from Flax: {sorted(missing)[:5]}')
  return len(arrays)
