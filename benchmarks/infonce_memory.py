"""The largest global batch whose contrastive loss + gradient fits a device memory budget, dense
against blockwise (``ssl.chunk_size``), from XLA's compiled memory analysis; and the time of one
loss + gradient at a batch both fit, as a ratio measured in the same run.

  python benchmarks/infonce_memory.py [--budget_gb=8] [--sites=17] [--dim=128] [--chunk=1024]

Memory counts the loss on the projected embeddings [B, sites, dim] (its inputs, outputs and XLA
temporaries), not the encoder's activations: the part that grows with B^2.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from ssl_imu_jax.training import losses


def loss_and_grad(loss: str, chunk: int):
  def f(za, zg):
    return losses.contrastive_loss(loss, za, zg, 0.1, chunk_size=chunk)[0]

  return jax.jit(jax.value_and_grad(f, argnums=(0, 1)))


def bytes_needed(loss: str, chunk: int, batch: int, sites: int, dim: int) -> int:
  s = jax.ShapeDtypeStruct((batch, sites, dim), jnp.float32)
  ma = loss_and_grad(loss, chunk).lower(s, s).compile().memory_analysis()
  return int(ma.temp_size_in_bytes + ma.argument_size_in_bytes + ma.output_size_in_bytes)


def largest_batch(loss: str, chunk: int, budget: int, sites: int, dim: int,
                  step: int = 8) -> tuple[int, int]:
  """(largest multiple of ``step`` that fits, its bytes), by doubling then bisection."""
  lo, hi = step, step
  while bytes_needed(loss, chunk, hi, sites, dim) <= budget:
    lo, hi = hi, hi * 2
    if hi > 1 << 20:
      return lo, bytes_needed(loss, chunk, lo, sites, dim)
  while hi - lo > step:
    mid = (lo + hi) // 2 // step * step
    if bytes_needed(loss, chunk, mid, sites, dim) <= budget:
      lo = mid
    else:
      hi = mid
  return lo, bytes_needed(loss, chunk, lo, sites, dim)


def seconds(loss: str, chunk: int, batch: int, sites: int, dim: int, reps: int = 5) -> float:
  rng = np.random.default_rng(0)
  za, zg = (jnp.asarray(rng.normal(size=(batch, sites, dim)), jnp.float32) for _ in range(2))
  f = loss_and_grad(loss, chunk)
  jax.block_until_ready(f(za, zg))
  best = float('inf')
  for _ in range(reps):
    t = time.perf_counter()
    jax.block_until_ready(f(za, zg))
    best = min(best, time.perf_counter() - t)
  return best


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument('--budget_gb', type=float, default=8.0)
  ap.add_argument('--sites', type=int, default=17)
  ap.add_argument('--dim', type=int, default=128)
  ap.add_argument('--chunk', type=int, default=1024)
  ap.add_argument('--time_batch', type=int, default=256)
  a = ap.parse_args()
  budget = int(a.budget_gb * 2**30)
  print(f'{jax.devices()[0].device_kind}; {a.sites} sites x {a.dim}-d embeddings, loss + grad, '
        f'budget {a.budget_gb:g} GiB per device')
  print('| loss | dense: largest batch (GiB) | blockwise chunk '
        f'{a.chunk}: largest batch (GiB) | ratio | time at B={a.time_batch}: blockwise / dense |')
  print('|---|---|---|---|---|')
  for loss in losses.LOSSES:
    bd, md = largest_batch(loss, 0, budget, a.sites, a.dim)
    bc, mc = largest_batch(loss, a.chunk, budget, a.sites, a.dim)
    td = seconds(loss, 0, a.time_batch, a.sites, a.dim)
    tc = seconds(loss, a.chunk, a.time_batch, a.sites, a.dim)
    print(f'| {loss} | {bd} ({md / 2**30:.2f}) | {bc} ({mc / 2**30:.2f}) | {bc / bd:.1f}x | '
          f'{tc * 1e3:.0f} / {td * 1e3:.0f} ms = {tc / td:.2f}x |', flush=True)


if __name__ == '__main__':
  main()
