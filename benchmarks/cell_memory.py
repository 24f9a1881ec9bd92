"""How many fine-tuning cells fit in one vmapped program on an accelerator, by computation: XLA's
compiled memory analysis of the grouped step (multicell.py) for 1 and ``--cells`` cells at the
given shapes, the bytes each extra cell adds, and how many fit in ``--budget_gb``.

  python benchmarks/cell_memory.py [--batch=256] [--sites=8] [--window=128] [--cells=8]

Compile only (nothing runs), so reference shapes are fine on a laptop. The data set is not
counted (one copy for the whole group); the state (parameters, Adam moments, BatchNorm
statistics) and the activations of the forward and backward pass are, per cell.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from configs import finetune as finetune_config
from ssl_imu_jax import parallel
from ssl_imu_jax.training import finetune, steps, train_state


def group_bytes(cfg, n_cells: int, batch: int, sites: int, window: int) -> int:
  mesh = parallel.make_mesh(1)
  model = finetune.build_model(cfg, cfg.model.encoder, num_targets=1, use_gyr=True)
  tx, schedule = train_state.make_optimizer(cfg.optimizer, cfg.train.steps)
  norm = {'acc_mean': 0.0, 'acc_std': 1.0, 'gyr_mean': 0.0, 'gyr_std': 1.0, 'y_mean': [0.0],
          'y_std': [1.0]}
  state = jax.eval_shape(lambda: steps.init_state(cfg, model, tx, (1, sites, window, 3), mesh,
                                                  norm))
  step = finetune.make_train_step(cfg, model, tx, schedule)
  stack = lambda x: jax.ShapeDtypeStruct((n_cells,) + x.shape, x.dtype)  # noqa: E731
  states = jax.tree.map(stack, state)
  batch_s = {'acc': jax.ShapeDtypeStruct((n_cells, batch, sites, window, 3), jnp.float32),
             'gyr': jax.ShapeDtypeStruct((n_cells, batch, sites, window, 3), jnp.float32),
             'targets': jax.ShapeDtypeStruct((n_cells, batch, 1), jnp.float32)}
  keys = jax.eval_shape(lambda: jnp.stack([jax.random.key(0)] * n_cells))
  ma = jax.jit(jax.vmap(step)).lower(states, batch_s, keys).compile().memory_analysis()
  return int(ma.temp_size_in_bytes + ma.argument_size_in_bytes + ma.output_size_in_bytes)


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument('--batch', type=int, default=256)
  ap.add_argument('--sites', type=int, default=8)
  ap.add_argument('--window', type=int, default=128)
  ap.add_argument('--cells', type=int, default=8)
  ap.add_argument('--budget_gb', type=float, default=80.0)
  ap.add_argument('--blocks', default='3,4,6,3')
  a = ap.parse_args()
  cfg = finetune_config.get_config('default')
  cfg.protocol = 'full_from_probe'
  cfg.model.encoder.blocks_per_stage = tuple(int(b) for b in a.blocks.split(','))
  one = group_bytes(cfg, 1, a.batch, a.sites, a.window)
  many = group_bytes(cfg, a.cells, a.batch, a.sites, a.window)
  per_cell = (many - one) / (a.cells - 1)
  fit = int((a.budget_gb * 2**30 - (one - per_cell)) // per_cell)
  print(f'encoder blocks {a.blocks}; batch {a.batch} x {a.sites} sites x {a.window} samples; '
        f'full fine-tuning step (backward through the encoder)')
  print(f'1 cell: {one / 2**30:.2f} GiB; {a.cells} cells: {many / 2**30:.2f} GiB; '
        f'{per_cell / 2**30:.3f} GiB per extra cell -> about {fit} cells in {a.budget_gb:g} GiB')


if __name__ == '__main__':
  main()
