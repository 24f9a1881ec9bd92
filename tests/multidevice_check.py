"""One training step on a 1-device and an 8-device CPU mesh, same global batch and initial state.

Run by tests/test_multidevice.py in a subprocess whose XLA_FLAGS asks for 8 host devices (the
flag must be set before jax is imported, and it slows every other test, so it lives here). Both
meshes are built in this one process so they see the same XLA flags. Prints one JSON line of
measured differences; the test asserts on them.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/multidevice_check.py
  python tests/multidevice_check.py masked   # the masked-reconstruction step only
  python tests/multidevice_check.py nce_transformer   # the NCE step of the Transformer only
"""

from __future__ import annotations

import json
import os
import sys

_FLAG = '--xla_force_host_platform_device_count=8'
if 'jax' in sys.modules:
  raise RuntimeError('multidevice_check.py must set XLA_FLAGS before jax is imported')
if 'xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + _FLAG).strip()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs import finetune as finetune_config  # noqa: E402
from configs import pretrain as pretrain_config  # noqa: E402
from ssl_imu_jax import parallel  # noqa: E402
from ssl_imu_jax.data import input_pipeline  # noqa: E402
from ssl_imu_jax.training import finetune, pretrain, steps, train_state  # noqa: E402

GLOBAL_BATCH = 16
N_SITES = 2
T = 32
N_DEV = 8


def _tiny_model(cfg) -> None:
  """A one-stage encoder, smaller than the 'tiny' config: compile time dominates this check."""
  cfg.model.encoder.widths = (8,)
  cfg.model.encoder.blocks_per_stage = (1,)
  cfg.model.encoder.kernel_size = 3
  cfg.model.encoder.stem_kernel = 3
  cfg.model.projection_dims = (8, 8)
  cfg.model.head_dims = (8,)


def _max_abs_diff(a, b) -> float:
  """Largest |a - b| over all leaves of two pytrees of the same structure."""
  la, lb = jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b))
  if len(la) != len(lb):
    raise ValueError(f'trees differ: {len(la)} vs {len(lb)} leaves')
  diffs = [float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
           for x, y in zip(la, lb, strict=True) if np.size(x)]
  return max(diffs) if diffs else 0.0


def _n_devices(tree) -> int:
  """Smallest number of devices any leaf of ``tree`` lives on."""
  return min(len(x.sharding.device_set) for x in jax.tree.leaves(tree))


def _batch(rng: np.random.Generator, with_targets: bool) -> dict[str, np.ndarray]:
  """A global batch of smooth random windows (acc about +9.81 on one axis, as when still)."""
  shape = (GLOBAL_BATCH, N_SITES, T, 3)
  w = rng.normal(size=shape).cumsum(2) * 0.1
  batch = {'acc': (9.81 * np.eye(3)[2] + 5 * np.gradient(w, axis=2)).astype(np.float32),
           'gyr': w.astype(np.float32)}
  if with_targets:
    batch['targets'] = (1.0 + np.abs(w).mean((1, 2, 3))[:, None]).astype(np.float32)
  return batch


def _norm(batch: dict[str, np.ndarray], with_targets: bool) -> dict[str, float]:
  stats = {'acc_mean': float(batch['acc'].mean()), 'acc_std': float(batch['acc'].std()),
           'gyr_mean': float(batch['gyr'].mean()), 'gyr_std': float(batch['gyr'].std())}
  if with_targets:
    stats |= {'y_mean': [float(batch['targets'].mean())],
              'y_std': [float(batch['targets'].std())],
              'schedule_steps': 10.0}  # fine-tuning's schedule length is a run-time value
  return stats


def _compiled(step, mesh):
  """The step jitted exactly as pretrain.run / finetune.train_and_evaluate do."""
  rep, dsh = parallel.replicated(mesh), parallel.data_sharding(mesh)
  return jax.jit(step, in_shardings=(rep, dsh, rep), out_shardings=(rep, rep),
                 donate_argnums=(0,))


def _run(step_fn, host_state, host_batch, mesh, rng):
  """One step from a fresh device copy of ``host_state`` (the step donates its state)."""
  state = jax.device_put(host_state, parallel.replicated(mesh))
  batch = input_pipeline.to_global(host_batch, parallel.data_sharding(mesh))
  new_state, metrics = step_fn(state, batch, rng)
  return new_state, jax.device_get(metrics)


def _compare(name, out, host_state, res1, res8):
  (s1, m1), (s8, m8) = res1, res8
  out[name] = {
      'loss_1dev': float(m1['loss']),
      'loss_8dev': float(m8['loss']),
      'params_max_diff': _max_abs_diff(s1.params, s8.params),
      'batch_stats_max_diff': _max_abs_diff(s1.batch_stats, s8.batch_stats),
      'opt_state_max_diff': _max_abs_diff(s1.opt_state, s8.opt_state),
      'grad_norm_1dev': float(m1['grad_norm']),
      'grad_norm_8dev': float(m8['grad_norm']),
      # How far one step moved the parameters / statistics: must dwarf the tolerance.
      'params_change': _max_abs_diff(s1.params, host_state.params),
      'batch_stats_change': _max_abs_diff(s1.batch_stats, host_state.batch_stats),
      'state_devices_1': _n_devices(s1),
      'state_devices_8': _n_devices(s8),
      'steps': [int(s1.step), int(s8.step)],
  }


def check_pretrain(out, mesh1, mesh8, rng):
  """SSL step (the reference NCE loss, shared encoder): 'global' negatives on 8 devices == 1
  device; 'local' == the loss with local_blocks=8 on 1 device."""
  cfg = pretrain_config.get_config('tiny')
  cfg.data.window_length = T
  _tiny_model(cfg)
  cfg.train.batch_size = GLOBAL_BATCH
  cfg.optimizer.warmup_fraction = 0.0  # else the first step's learning rate is 0: nothing moves
  model = pretrain.build_model(cfg)
  tx, schedule = train_state.make_optimizer(cfg.optimizer, 10)
  host_batch = _batch(np.random.default_rng(0), with_targets=False)
  norm = _norm(host_batch, with_targets=False)
  shape = (1, N_SITES, T, 3)
  host_state = jax.device_get(steps.init_state(cfg, model, tx, shape, mesh1, norm))
  out['init_max_diff'] = _max_abs_diff(
      host_state, steps.init_state(cfg, model, tx, shape, mesh8, norm))
  out['batch_shards_8dev'] = sorted({
      s.data.shape[0] for s in input_pipeline.to_global(
          host_batch, parallel.data_sharding(mesh8))['acc'].addressable_shards})

  step1 = _compiled(pretrain.make_train_step(cfg, model, tx, schedule, 1), mesh1)
  step8 = _compiled(pretrain.make_train_step(cfg, model, tx, schedule, N_DEV), mesh8)
  res1 = _run(step1, host_state, host_batch, mesh1, rng)
  res8 = _run(step8, host_state, host_batch, mesh8, rng)
  _compare('pretrain_global', out, host_state, res1, res8)

  # The blockwise loss (ssl.chunk_size) on 8 devices == the dense loss on 1 device.
  cfg_chunk = cfg.copy_and_resolve_references()
  cfg_chunk.ssl.chunk_size = 12  # M = 32 site-windows: 3 blocks, the last one padded
  step8_chunk = _compiled(pretrain.make_train_step(cfg_chunk, model, tx, schedule, N_DEV), mesh8)
  _compare('pretrain_chunked', out, host_state, res1,
           _run(step8_chunk, host_state, host_batch, mesh8, rng))

  cfg_local = cfg.copy_and_resolve_references()
  cfg_local.ssl.negatives = 'local'
  step8_local = _compiled(pretrain.make_train_step(cfg_local, model, tx, schedule, N_DEV), mesh8)
  _, m8_local = _run(step8_local, host_state, host_batch, mesh8, rng)

  # The reference on 1 device: the same forward pass, InfoNCE masked to 8 contiguous blocks.
  def ref_losses(state, batch):
    acc = steps.normalize(batch['acc'], state.norm['acc_mean'], state.norm['acc_std'])
    gyr = steps.normalize(batch['gyr'], state.norm['gyr_mean'], state.norm['gyr_std'])
    (za, zg, temp), _ = model.apply({'params': state.params, 'batch_stats': state.batch_stats},
                                    acc, gyr, train=True, mutable=['batch_stats'])
    return (pretrain.ssl_loss(cfg, za, zg, temp, local_blocks=N_DEV)[0],
            pretrain.ssl_loss(cfg, za, zg, temp, local_blocks=1)[0])

  rep1, dsh1 = parallel.replicated(mesh1), parallel.data_sharding(mesh1)
  ref_local, ref_global = jax.device_get(jax.jit(ref_losses, in_shardings=(rep1, dsh1))(
      jax.device_put(host_state, rep1), input_pipeline.to_global(host_batch, dsh1)))
  out['ssl_loss'] = cfg.ssl.loss
  out['pretrain_local'] = {'loss_8dev': float(m8_local['loss']),
                           'loss_ref_1dev_local_blocks': float(ref_local),
                           'loss_ref_1dev_global': float(ref_global)}


def check_finetune(out, mesh1, mesh8, rng):
  """Fine-tuning step (everything trains, BatchNorm in train mode) on 8 devices == 1 device."""
  cfg = finetune_config.get_config('tiny')
  cfg.data.window_length = T
  _tiny_model(cfg)
  cfg.train.batch_size = GLOBAL_BATCH
  cfg.protocol = 'full_from_probe'  # the full stage's step (the probe's is the frozen one)
  cfg.optimizer.warmup_fraction = 0.0
  model = finetune.build_model(cfg, cfg.model.encoder, num_targets=1, use_gyr=True)
  tx, schedule = train_state.make_optimizer(cfg.optimizer, None)
  host_batch = _batch(np.random.default_rng(1), with_targets=True)
  norm = _norm(host_batch, with_targets=True)
  host_state = jax.device_get(
      steps.init_state(cfg, model, tx, (1, N_SITES, T, 3), mesh1, norm))
  step1 = _compiled(finetune.make_train_step(cfg, model, tx, schedule), mesh1)
  step8 = _compiled(finetune.make_train_step(cfg, model, tx, schedule), mesh8)
  res1 = _run(step1, host_state, host_batch, mesh1, rng)
  res8 = _run(step8, host_state, host_batch, mesh8, rng)
  _compare('finetune_full', out, host_state, res1, res8)


def check_multicell(out, mesh1, mesh8, rng):
  """A group of 8 fine-tuning cells (multicell.py), cells sharded over 8 devices == 1 device."""
  import types

  from ssl_imu_jax.training import multicell

  cfg = finetune_config.get_config('tiny')
  cfg.data.window_length = T
  _tiny_model(cfg)
  cfg.protocol = 'full_from_probe'
  cfg.optimizer.warmup_fraction = 0.0
  model = finetune.build_model(cfg, cfg.model.encoder, num_targets=1, use_gyr=True)
  tx, schedule = train_state.make_optimizer(cfg.optimizer, None)
  data = _batch(np.random.default_rng(2), with_targets=True)  # 16 windows, the cells' data set
  host = jax.device_get(steps.init_state(cfg, model, tx, (1, N_SITES, T, 3), mesh1,
                                         _norm(data, with_targets=True)))
  n = N_DEV
  states = jax.tree.map(lambda x: np.stack([x] * n), host)
  idx = np.random.default_rng(3).integers(0, GLOBAL_BATCH, (2, n, 4)).astype(np.int32)
  rngs = jax.random.split(rng, n)
  progs = types.SimpleNamespace(train_step=finetune.make_train_step(cfg, model, tx, schedule))
  res = {}
  for name, mesh in (('1', mesh1), ('8', mesh8)):
    by_cell = parallel.data_sharding(mesh)
    step = multicell._group_step(progs, n, mesh)
    st = jax.device_put(states, by_cell)
    dat = jax.device_put(data, parallel.replicated(mesh))
    for s in range(2):
      st, m = step(st, dat, jax.device_put(idx[s], by_cell), jax.device_put(rngs, by_cell))
    res[name] = (jax.device_get(st), jax.device_get(m), _n_devices(st))
  (s1, m1, d1), (s8, m8, d8) = res['1'], res['8']
  out['multicell'] = {
      'params_max_diff': _max_abs_diff(s1.params, s8.params),
      'batch_stats_max_diff': _max_abs_diff(s1.batch_stats, s8.batch_stats),
      'loss_max_rel_diff': float(np.max(np.abs(m1['loss'] - m8['loss']) /
                                        np.maximum(1.0, np.abs(m1['loss'])))),
      'params_change': _max_abs_diff(s1.params, states.params),
      'cells_differ': _max_abs_diff(jax.tree.map(lambda x: x[0], s1.params),
                                    jax.tree.map(lambda x: x[1], s1.params)),
      'state_devices_1': d1, 'state_devices_8': d8,
  }


def check_masked(out, mesh1, mesh8, rng, variant: str = 'masked'):
  """A Transformer's pre-training step (dropout on) on 8 devices == 1 device: 'masked' (the
  same masks and dropout draws, the mean of the per-device losses) or 'nce_transformer' (NCE on
  the Transformer: global negatives over the whole batch, BatchNorm of the projections over it).
  Reported as ``out['pretrain_<variant>']``."""
  cfg = pretrain_config.get_config(f'tiny,{variant}')
  cfg.data.window_length = T
  cfg.model.transformer.update(width=16, depth=1, heads=2, ff=32)
  cfg.model.projection_dims = (8, 8)
  cfg.train.batch_size = GLOBAL_BATCH
  cfg.optimizer.warmup_fraction = 0.0
  model = pretrain.build_model(cfg)
  tx, schedule = train_state.make_optimizer(cfg.optimizer, 10)
  host_batch = _batch(np.random.default_rng(4), with_targets=False)
  if variant == 'nce_transformer':
    # Windows of distinct amplitudes, no gravity: the projections' BatchNorm divides by the spread
    # of the pooled tokens over the batch, which a shared gravity offset makes so small that the
    # meshes' different float32 reduction orders no longer agree to the tolerance.
    amp = np.linspace(0.3, 3.0, GLOBAL_BATCH, dtype=np.float32)[:, None, None, None]
    host_batch = {'acc': amp * (host_batch['acc'] - 9.81 * np.eye(3, dtype=np.float32)[2]),
                  'gyr': amp * host_batch['gyr']}
  norm = {**_norm(host_batch, with_targets=False), 'acc_mean': 0.0, 'gyr_mean': 0.0}
  host_state = jax.device_get(steps.init_state(cfg, model, tx, (1, N_SITES, T, 3), mesh1, norm))
  res = [_run(_compiled(pretrain.make_train_step(cfg, model, tx, schedule, n), mesh), host_state,
              host_batch, mesh, rng) for n, mesh in ((1, mesh1), (N_DEV, mesh8))]
  name = f'pretrain_{variant}'
  _compare(name, out, host_state, *res)

  # Parameters whose true gradient is 0, so that Adam's first step turns the rounding noise (which
  # differs between meshes) into steps of up to +-lr: the attention's key bias (it shifts every
  # score of a query equally, which the softmax cancels) and, for NCE, the last layer's final
  # LayerNorm bias (it shifts every pooled token equally, which the projection's BatchNorm
  # subtracts). They are compared apart, against that bound.
  last_norm = f"['transformer']['layer{int(cfg.model.transformer.depth) - 1}']['norm2']['bias']"

  def zero_grad(path: str) -> bool:
    return (("['key']" in path and path.endswith("['bias']"))
            or (variant == 'nce_transformer' and path == last_norm))

  def split(params):
    flat = {jax.tree_util.keystr(p): v
            for p, v in jax.tree_util.tree_flatten_with_path(jax.device_get(params))[0]}
    return ({k: v for k, v in flat.items() if zero_grad(k)},
            {k: v for k, v in flat.items() if not zero_grad(k)})

  (kb1, rest1), (kb8, rest8) = split(res[0][0].params), split(res[1][0].params)
  m = out[name]
  m['params_max_diff'] = _max_abs_diff(rest1, rest8)
  m['zero_grad_max_diff'] = _max_abs_diff(kb1, kb8)
  m['zero_grad_names'] = sorted(kb1)
  m['learning_rate'] = float(cfg.optimizer.learning_rate)


def main() -> None:
  out = {'device_count': jax.device_count(), 'backend': jax.default_backend()}
  if jax.device_count() < N_DEV:
    raise RuntimeError(f'need {N_DEV} devices, got {jax.device_count()}; XLA_FLAGS='
                       f'{os.environ.get("XLA_FLAGS")!r} was not applied before jax started')
  mesh1, mesh8 = parallel.make_mesh(1), parallel.make_mesh(N_DEV)
  rng = jax.random.key(0)
  if sys.argv[1:] in (['masked'], ['nce_transformer']):  # one Transformer step only
    check_masked(out, mesh1, mesh8, rng, sys.argv[1])
    print(json.dumps(out))
    return
  check_pretrain(out, mesh1, mesh8, rng)
  check_finetune(out, mesh1, mesh8, rng)
  check_multicell(out, mesh1, mesh8, rng)
  print(json.dumps(out))


if __name__ == '__main__':
  main()
