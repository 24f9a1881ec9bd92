"""Many fine-tuning cells in one compiled program: a ``jax.vmap`` of the fine-tuning step over a
leading cell axis.

Cells of a sweep that share a data set, protocol, model and schedule differ only in their
windows (fold, fraction, seed), their starting point (random, pre-trained, probe) and their
normalisation, all of which live in the train state or the batch indices. ``train_cells``
stacks their states, keeps the data set on the device (one copy; each step gathers every cell's
batch there from a [cells, batch] index array, so no window crosses from the host during
training), and advances all cells with one compiled step; with several devices the cell axis is
sharded over the mesh (each device advances whole cells; a group is padded to a multiple of the
devices with copies of its first cell, whose results are dropped). Each cell's batches are the ones
``trainer.fit`` would draw (``input_pipeline.batch_indices`` of its seed) and its random numbers
come from its own seed, so each step equals the cell's step alone up to float rounding (the
vmapped convolutions sum in another order: 1e-7). Over many steps Adam can amplify that rounding
where a gradient is near zero (its update is then about +-learning rate whatever the gradient's
size): 30 full fine-tuning steps of a random-init KFM cell end 8e-3 apart in the parameters, as
two machines would. Short runs stay within 1e-5 (tests). At the end every cell gets its own
checkpoint, metrics.jsonl, result.json and model card, as alone.

Resume is per cell: a group killed mid-way leaves its cells without result.json, and the sweep
trains them again from the start (the same results; no intermediate group checkpoints).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssl_imu_jax import parallel
from ssl_imu_jax.data import input_pipeline
from ssl_imu_jax.training import checkpointing, finetune, interrupt, trainer
from ssl_imu_jax.training.metric_writers import MetricWriter

_GROUP_STEPS: dict[Any, Any] = {}


def groupable(cells: Sequence[finetune.Cell]) -> str:
  """'' when the cells can train as one program, else why not."""
  if len(cells) < 2:
    return 'a single cell'
  if any(not c.refusal for c in cells):
    return 'linear probes on cached embeddings are already cheap'
  if len({id(c.progs) for c in cells}) > 1:
    return 'the cells differ in model, optimiser, schedule or shapes'
  if len({id(c.ws) for c in cells}) > 1:
    return 'the cells read different data'
  if any(len(c.val_idx) for c in cells):
    return 'the cells stop early, each at its own point (validation subjects)'
  if len({c.plan.steps for c in cells}) > 1:
    return 'the cells train for different numbers of steps (train.epochs)'
  if jax.process_count() > 1:
    return 'cell groups run on one host'
  return ''


def _group_step(progs: finetune.Programs, n_cells: int, mesh):
  """The jitted group step; the cell axis is sharded over the mesh (each device advances whole
  cells, no cross-device traffic), the data set replicated."""
  key = (id(progs), n_cells, tuple(d.id for d in mesh.devices.flat))
  if key not in _GROUP_STEPS:
    cells, rep = parallel.data_sharding(mesh), parallel.replicated(mesh)
    step = progs.train_step

    def group(states, data, idx_CxB, rngs):
      def one(state, idx, rng):
        batch = {k: jnp.take(v, idx, axis=0) for k, v in data.items()}
        return step(state, batch, rng)

      return jax.vmap(one)(states, idx_CxB, rngs)

    _GROUP_STEPS[key] = jax.jit(group, in_shardings=(cells, rep, cells, cells),
                                out_shardings=(cells, cells), donate_argnums=(0,))
  return _GROUP_STEPS[key]


def train_cells(configs: Sequence[ml_collections.ConfigDict], workdirs: Sequence[str],
                data_dir: str) -> list[dict[str, Any]]:
  """Trains the cells together when they can (``groupable``), else one after the other; returns
  each cell's result as ``finetune.train_and_evaluate`` would."""
  ws = finetune.load_windows(configs[0], data_dir)
  same_data = all(json.dumps(c.data.to_dict(), sort_keys=True, default=str) ==
                  json.dumps(configs[0].data.to_dict(), sort_keys=True, default=str)
                  for c in configs)
  cells = [finetune.prepare(c, w, data_dir, ws if same_data else None)
           for c, w in zip(configs, workdirs, strict=True)]
  if groupable(cells):
    return [finetune.fit_and_finish(c) for c in cells]
  config = cells[0].config
  t = config.train
  mesh = cells[0].mesh
  # Pad the group to a multiple of the devices with copies of its first cell (results dropped).
  run = cells + [cells[0]] * (-len(cells) % mesh.devices.size)
  rep, by_cell = parallel.replicated(mesh), parallel.data_sharding(mesh)
  data = {'acc': ws.acc, 'targets': ws.targets,
          'gyr': ws.gyr if ws.gyr is not None else np.zeros(ws.acc.shape[:-1] + (0,),
                                                            np.float32)}
  data = jax.device_put(data, rep)  # device-resident: one copy per device for the whole group
  states = jax.device_put(jax.tree.map(lambda *x: np.stack(x), *jax.device_get(
      [c.state for c in run])), by_cell)
  rngs = jax.device_put(jnp.stack([jax.random.key(int(c.config.seed)) for c in run]), by_cell)
  step_fn = _group_step(cells[0].progs, len(run), mesh)
  log_every, _, _ = trainer.intervals(t)
  # Every cell's batch indices for every step, drawn before the loop: [steps, cells, batch].
  idx_all = np.stack([np.stack([c.train_idx[input_pipeline.batch_indices(
      s, t.batch_size, len(c.train_idx), int(c.config.seed))] for c in run])
      for s in range(int(t.steps))]).astype(np.int32)
  writers = [MetricWriter(c.workdir, t.steps, progress=False) for c in cells]
  last: list[dict[str, float]] = [{} for _ in cells]
  with interrupt.checked():
    try:
      for s in range(int(t.steps)):
        states, metrics = step_fn(states, data, jax.device_put(idx_all[s], by_cell), rngs)
        done = s + 1
        if done % log_every == 0 or done == t.steps:
          host = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
          for i, w in enumerate(writers):
            last[i] = {k: float(v[i]) for k, v in host.items()}
            w.write(done, last[i])
        if done < t.steps:  # a signal: stop here; a group keeps no checkpoint (module docstring)
          interrupt.check(done, int(t.steps), note='cells trained as one program keep no '
                          'checkpoint: they train again from step 0')
    finally:
      for w in writers:
        w.close()
  results = []
  states = jax.device_get(states)
  for i, cell in enumerate(cells):
    state = jax.device_put(jax.tree.map(lambda x, i=i: x[i], states), rep)
    ckpt = checkpointing.Checkpointer(os.path.join(cell.workdir, 'checkpoints'), t.max_to_keep)
    fp = {'config': trainer.fingerprint(cell.config),
          'data': trainer.data_fingerprint(cell.windows, cell.train_idx)}
    ckpt.write_config(cell.config.to_json_best_effort(indent=2, sort_keys=True))
    ckpt.save(int(t.steps), state, {**cell.meta, 'fingerprint': fp, 'step': int(t.steps)},
              wait=True)
    ckpt.close()
    results.append(finetune.finish(cell, state, last[i]))
  return results
