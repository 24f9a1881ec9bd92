r"""Pre-training throughput: one JAX step vs the same step in PyTorch (CPU), side by side.

One step = forward of both encoders and projection heads, symmetric InfoNCE over the whole batch,
backward, AdamW update, at the paper's shapes (B windows x 17 IMUs x 128 samples x 3 axes per
modality). Each framework runs in its own fresh subprocess pinned to the same CPUs (same thread
count, clean peak-RSS reading); the two run their steps alternately (lock-step), so load from
other processes on a shared machine slows both alike.

  .venv/bin/pip install torch==2.13.0      # optional benchmark extra, never a core dependency
  .venv/bin/python benchmarks/pretrain_throughput.py                       # B = 16, 64, 256
  .venv/bin/python benchmarks/pretrain_throughput.py --quick               # smoke run
  .venv/bin/python benchmarks/pretrain_throughput.py --batch_sizes=64 --xla_flags='...'
  .venv/bin/python benchmarks/pretrain_throughput.py --breakdown=64        # JAX parts only

Printed per batch size: s/step of each framework (median of the timed steps), windows/s, the
ratio (PyTorch s/step / JAX s/step, > 1 means JAX is faster), the JAX step's FLOPs from XLA's cost
analysis, its achieved FLOP/s as a fraction of the float32 matmul peak (best 2048^3 JAX matmul,
timed between the steps of the same row), peak resident memory of each subprocess, and the CPU
load other processes put on the machine meanwhile. Before timing, a check copies the JAX
initialisation into the PyTorch model and compares parameter counts, the loss and the gradients,
so both sides compute the same function.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
N_IMU, WINDOW, AXES = 17, 128, 3
WIDTHS, KERNEL, EMBED, PROJ = (16, 32, 64, 128), 9, 128, (128, 128)
TEMPERATURE, LR, WEIGHT_DECAY = 0.1, 1e-4, 1e-5
TORCH_MISSING = ('PyTorch is not installed; it is an optional benchmark extra. Install it with\n'
                 "  .venv/bin/pip install torch==2.13.0   (or: pip install -e '.[bench]')")


# ----------------------------------------------------------------------------- helpers


def pin_cpus(threads: int) -> list[int]:
  """Restrict this process to ``threads`` CPUs (both XLA and PyTorch size their pools from it)."""
  cpus = sorted(os.sched_getaffinity(0))[:threads]
  os.sched_setaffinity(0, cpus)
  os.environ['OMP_NUM_THREADS'] = os.environ['MKL_NUM_THREADS'] = str(threads)
  return cpus


def rss_mb() -> tuple[float, float]:
  """(current, peak) resident set size of this process in MB."""
  current = 0.0
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith('VmRSS:'):
        current = int(line.split()[1]) / 1024
  return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_busy_seconds() -> float:
  """CPU-seconds all processes on the machine have spent busy so far (from /proc/stat)."""
  with open('/proc/stat') as f:
    fields = [int(v) for v in f.readline().split()[1:]]
  idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
  return (sum(fields[:8]) - idle) / os.sysconf('SC_CLK_TCK')


def analytic_forward_macs_per_site_window() -> int:
  """Multiply-adds of one encoder + projection head for one site-window (conv + dense only)."""
  macs, length, c = WINDOW * KERNEL * AXES * WIDTHS[0], WINDOW, WIDTHS[0]
  for i, w in enumerate(WIDTHS):
    stride = 2 if i > 0 else 1
    length = -(-length // stride)
    macs += length * KERNEL * c * w + length * KERNEL * w * w
    if stride != 1 or c != w:
      macs += length * c * w
    c = w
  dims = [c, EMBED, *PROJ]
  return macs + sum(a * b for a, b in zip(dims[:-1], dims[1:], strict=True))


def fake_batch(batch_size: int, seed: int = 0):
  import numpy as np

  rng = np.random.default_rng(seed)
  shape = (batch_size, N_IMU, WINDOW, AXES)
  return (rng.normal(size=shape).astype(np.float32), rng.normal(size=shape).astype(np.float32))


def time_steps(run_step, warmup: int, steps: int) -> list[float]:
  for _ in range(warmup):
    run_step()
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    run_step()
    times.append(time.perf_counter() - t0)
  return times


# ----------------------------------------------------------------------------- JAX side


def jax_parts(dtype_name: str = 'float32'):
  import jax.numpy as jnp
  import ml_collections
  import optax

  from ssl_imu_jax.models import ContrastiveModel

  # The 'two_encoder' design (configs/common.py), which the PyTorch twin mirrors; the reference
  # encoder's benchmark is open work.
  encoder = ml_collections.ConfigDict({'widths': WIDTHS, 'blocks_per_stage': 1,
                                       'kernel_size': KERNEL, 'stem_kernel': KERNEL,
                                       'stem_stride': 1, 'stem_pool': False, 'embed_dim': EMBED,
                                       'conv_bias': False, 'zero_init_residual': True,
                                       'norm': 'batch', 'shared': False})
  model = ContrastiveModel(encoder_config=encoder, projection_dims=PROJ, temperature=TEMPERATURE,
                           projection_batch_norm=False, dtype=jnp.dtype(dtype_name))
  tx = optax.adamw(LR, b1=0.9, b2=0.999, eps=1e-8, weight_decay=WEIGHT_DECAY)
  return model, tx


def jax_init(model, tx, seed: int = 0):
  import jax
  import jax.numpy as jnp

  x = jnp.zeros((1, N_IMU, WINDOW, AXES), jnp.float32)
  variables = model.init(jax.random.key(seed), x, x, train=False)
  params = variables['params']
  return params, variables.get('batch_stats', {}), tx.init(params)


def jax_loss_fn(model):
  from ssl_imu_jax import losses

  def loss_fn(params, batch_stats, acc, gyr):
    (z_acc, z_gyr, temp), new_vars = model.apply(
        {'params': params, 'batch_stats': batch_stats}, acc, gyr, train=True,
        mutable=['batch_stats'])
    loss, metrics = losses.info_nce(z_acc, z_gyr, temp)
    return loss, (new_vars['batch_stats'], metrics)

  return loss_fn


def jax_train_step(model, tx):
  """(params, batch_stats, opt_state), acc, gyr -> (new state, loss, metrics)."""
  import jax
  import optax

  grad_fn = jax.value_and_grad(jax_loss_fn(model), has_aux=True)

  def step(state, acc, gyr):
    params, batch_stats, opt_state = state
    (loss, (batch_stats, metrics)), grads = grad_fn(params, batch_stats, acc, gyr)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return (params, batch_stats, opt_state), loss, metrics

  return step


def count_jax_params(tree) -> int:
  import jax

  return int(sum(x.size for x in jax.tree.leaves(tree)))


def setup_jax(args):
  """Builds and compiles the JAX step; returns (run_step, info)."""
  import jax
  import jax.numpy as jnp

  base_rss, _ = rss_mb()
  model, tx = jax_parts(args.dtype)
  state = jax_init(model, tx)
  acc, gyr = (jnp.asarray(x) for x in fake_batch(args.batch_size))
  step = jax.jit(jax_train_step(model, tx), donate_argnums=(0,))
  t0 = time.perf_counter()
  compiled = step.lower(state, acc, gyr).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  mem = compiled.memory_analysis()
  holder = {'state': state}

  def run_step():
    holder['state'], loss, _ = compiled(holder['state'], acc, gyr)
    loss.block_until_ready()

  # The matmul peak, timed between the steps so that it sees the same load from other processes.
  n = args.matmul_size
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  matmul = jax.jit(lambda x, y: x @ y).lower(a, a).compile()
  matmul(a, a).block_until_ready()

  info = {
      'framework': 'jax', 'batch_size': args.batch_size, 'compile_s': compile_s,
      'flops': float(cost.get('flops', float('nan'))),
      'bytes_accessed': float(cost.get('bytes accessed', float('nan'))),
      'xla_temp_mb': getattr(mem, 'temp_size_in_bytes', 0) / 2**20,
      'xla_args_mb': getattr(mem, 'argument_size_in_bytes', 0) / 2**20,
      'rss_after_import_mb': base_rss, 'params': count_jax_params(state[0]),
      'jax_version': jax.__version__, 'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'dtype': args.dtype, 'matmul_size': n,
  }
  return run_step, info, {'matmul': lambda: matmul(a, a).block_until_ready()}


def worker_matmul(args) -> dict:
  """float32 matmul peak of JAX (the denominator) and, for context, of PyTorch."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  n = args.matmul_size
  a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
  f = jax.jit(lambda x, y: x @ y)
  f(a, a).block_until_ready()
  best = min(time_steps(lambda: f(a, a).block_until_ready(), 0, args.matmul_repeats))
  out = {'framework': 'matmul', 'n': n, 'jax_best_s': best, 'jax_flops_per_s': 2 * n**3 / best}
  try:
    import torch
  except ImportError:
    return out
  torch.set_num_threads(args.threads)
  t = torch.from_numpy(np.asarray(a))
  torch.mm(t, t)
  best_t = min(time_steps(lambda: torch.mm(t, t), 0, args.matmul_repeats))
  out.update(torch_best_s=best_t, torch_flops_per_s=2 * n**3 / best_t)
  return out


# ----------------------------------------------------------------------------- PyTorch side


def import_torch_reference():
  try:
    import torch  # noqa: F401
  except ImportError:
    sys.exit(TORCH_MISSING)
  sys.path.insert(0, HERE)
  import torch_reference

  return torch_reference


def setup_torch(args):
  """Builds the PyTorch model, optimiser and batch; returns (run_step, info)."""
  tr = import_torch_reference()
  import torch

  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  base_rss, _ = rss_mb()
  model = tr.ContrastiveModel(WIDTHS, 1, KERNEL, EMBED, PROJ)
  model.train()
  opt = tr.make_optimizer(model, LR, WEIGHT_DECAY, args.torch_optimizer)
  acc, gyr = (torch.from_numpy(x) for x in fake_batch(args.batch_size))
  step = torch.compile(tr.train_step) if args.torch_compile else tr.train_step

  def run_step():
    step(model, opt, acc, gyr, TEMPERATURE)

  info = {
      'framework': 'torch', 'batch_size': args.batch_size, 'rss_after_import_mb': base_rss,
      'params': tr.count_params(model), 'torch_version': torch.__version__,
      'threads': torch.get_num_threads(), 'optimizer': args.torch_optimizer,
      'compiled': args.torch_compile, 'mkldnn': torch.backends.mkldnn.is_available(),
  }
  return run_step, info, {}


def serve(setup, args) -> None:
  """Lock-step protocol with the driver: 'step' (or an extra such as 'matmul') runs and times
  one call, 'quit' reports."""
  run_step, info, extras = setup(args)
  calls = {'step': run_step, **extras}
  times = {name: [] for name in calls}
  print('READY', flush=True)
  cpu = 0.0
  for line in sys.stdin:
    name = line.strip()
    if name == 'quit':
      break
    c0, t0 = time.process_time(), time.perf_counter()
    calls[name]()
    times[name].append(time.perf_counter() - t0)
    if name == 'step':
      cpu += time.process_time() - c0
    print(f'TIME {times[name][-1]}', flush=True)
  info.update(times=times.pop('step'), peak_rss_mb=rss_mb()[1], step_cpu_s=cpu,
              **{f'{k}_times': v for k, v in times.items()})
  print('RESULT ' + json.dumps(info), flush=True)


def conv_layers():
  """(length, c_in, c_out, stride, kernel) of every convolution in one encoder."""
  layers, length, c = [(WINDOW, AXES, WIDTHS[0], 1, KERNEL)], WINDOW, WIDTHS[0]
  for i, w in enumerate(WIDTHS):
    stride = 2 if i > 0 else 1
    layers.append((length, c, w, stride, KERNEL))
    length = -(-length // stride)
    layers.append((length, w, w, 1, KERNEL))
    if stride != 1 or c != w:
      layers.append((length * stride, c, w, stride, 1))
    c = w
  return layers


def worker_breakdown(args) -> dict:
  """Where the JAX step's time goes: each part compiled alone, best of ``--steps`` runs."""
  import jax
  import jax.numpy as jnp
  import optax

  from ssl_imu_jax import losses

  b, m = args.batch_size, args.batch_size * N_IMU
  model, tx = jax_parts(args.dtype)
  params, batch_stats, opt_state = jax_init(model, tx)
  acc, gyr = (jnp.asarray(x) for x in fake_batch(b))
  out = {}

  def bench(name, fn, *xs):
    compiled = jax.jit(fn).lower(*xs).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    jax.block_until_ready(compiled(*xs))
    best = min(time_steps(lambda: jax.block_until_ready(compiled(*xs)), 0, args.steps))
    out[name] = {'s': best, 'flops': float(cost.get('flops', 0.0))}

  enc = model.bind({'params': params, 'batch_stats': batch_stats}).acc_encoder
  enc_vars = {'params': params['acc_encoder'], 'batch_stats': batch_stats['acc_encoder']}

  def enc_out(p, x):
    y, _ = enc.clone(parent=None).apply({'params': p, 'batch_stats': enc_vars['batch_stats']},
                                        x, train=True, mutable=['batch_stats'])
    return y

  bench('one encoder: forward', enc_out, enc_vars['params'], acc)
  bench('one encoder: forward + backward',
        jax.grad(lambda p, x: jnp.sum(enc_out(p, x) ** 2)), enc_vars['params'], acc)

  def convs_only(ws, xs):
    total = 0.0
    for w, x, (_, _, _, stride, _) in zip(ws, xs, conv_layers(), strict=True):
      y = jax.lax.conv_general_dilated(x, w, (stride,), 'SAME',
                                       dimension_numbers=('NWC', 'WIO', 'NWC'))
      total = total + jnp.sum(y * y)
    return total

  keys = jax.random.split(jax.random.key(0), 2 * len(conv_layers()))
  ws = [jax.random.normal(keys[2 * i], (k, ci, co)) * 0.1
        for i, (_, ci, co, _, k) in enumerate(conv_layers())]
  xs = [jax.random.normal(keys[2 * i + 1], (m, length, ci))
        for i, (length, ci, _, _, _) in enumerate(conv_layers())]
  bench('one encoder: its convolutions alone, forward + backward',
        jax.grad(convs_only, argnums=(0, 1)), ws, xs)
  z = jax.random.normal(jax.random.key(1), (b, N_IMU, PROJ[-1]))
  bench(f'InfoNCE forward + backward ({m} x {m} logits)',
        jax.grad(lambda a, g: losses.info_nce(a, g, TEMPERATURE)[0], argnums=(0, 1)), z, z)
  grads = jax.tree.map(jnp.ones_like, params)
  bench('AdamW update', lambda g, o, p: optax.apply_updates(p, tx.update(g, o, p)[0]),
        grads, opt_state, params)
  step = jax_train_step(model, tx)
  bench('full step', step, (params, batch_stats, opt_state), acc, gyr)
  return {'framework': 'breakdown', 'batch_size': b, 'parts': out}


def worker_check(args) -> dict:
  """Same function on both sides: copy the JAX init into PyTorch, compare loss and gradients."""
  tr = import_torch_reference()
  import jax
  import numpy as np
  import torch

  torch.set_num_threads(args.threads)
  model, tx = jax_parts()
  params, batch_stats, _ = jax_init(model, tx, seed=1)
  # Nonzero BatchNorm scales everywhere, so every gradient path is exercised.
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: x + 0.5 if 'norm2' in jax.tree_util.keystr(p) and 'scale' in
      jax.tree_util.keystr(p) else x, params)
  acc, gyr = fake_batch(args.check_batch, seed=2)
  (loss_j, (_, m_j)), g_j = jax.value_and_grad(jax_loss_fn(model), has_aux=True)(
      params, batch_stats, acc, gyr)
  tm = tr.ContrastiveModel(WIDTHS, 1, KERNEL, EMBED, PROJ)
  tm.train()
  tr.load_flax_params(tm, jax.device_get(params))
  za, zg = tm(torch.from_numpy(acc), torch.from_numpy(gyr))
  loss_t, m_t = tr.info_nce(za, zg, TEMPERATURE)
  loss_t.backward()
  grads_t = {n: p.grad.numpy() for n, p in tm.named_parameters()}
  # Map the JAX gradient tree onto PyTorch names with the same conversion as the weights.
  gt = tr.ContrastiveModel(WIDTHS, 1, KERNEL, EMBED, PROJ)
  tr.load_flax_params(gt, jax.device_get(g_j))
  grads_j = {n: p.detach().numpy() for n, p in gt.named_parameters()}
  rel = max(float(np.linalg.norm(grads_j[n] - grads_t[n]) / (np.linalg.norm(grads_j[n]) + 1e-12))
            for n in grads_t)
  per_enc = {name: int(count_jax_params(params[name])) for name in params}
  return {
      'framework': 'check', 'loss_jax': float(loss_j), 'loss_torch': float(loss_t),
      'top1_jax': float(m_j['top1']), 'top1_torch': float(m_t['top1']),
      'max_rel_grad_err': rel, 'params_jax': count_jax_params(params),
      'params_torch': tr.count_params(tm), 'params_by_module_jax': per_enc,
      'params_acc_encoder_torch': tr.count_params(tm, 'acc_encoder.'),
  }


WORKERS = {'matmul': worker_matmul, 'check': worker_check, 'breakdown': worker_breakdown}
SERVERS = {'jax': setup_jax, 'torch': setup_torch}


# ----------------------------------------------------------------------------- driver


def worker_cmd(kind: str, args, batch_size: int = 0) -> tuple[list[str], dict]:
  cmd = [sys.executable, os.path.abspath(__file__), f'--_worker={kind}',
         f'--batch_size={batch_size}', f'--threads={args.threads}',
         f'--matmul_size={args.matmul_size}', f'--matmul_repeats={args.matmul_repeats}',
         f'--matmul_per_round={args.matmul_per_round}',
         f'--dtype={args.dtype}', f'--torch_optimizer={args.torch_optimizer}',
         f'--check_batch={args.check_batch}']
  if args.torch_compile:
    cmd.append('--torch_compile')
  env = dict(os.environ)
  if kind == 'torch' and args.torch_omp_wait_policy != 'unset':
    env['OMP_WAIT_POLICY'] = args.torch_omp_wait_policy.upper()
  if args.xla_flags:
    env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') + ' ' + args.xla_flags).strip()
  return cmd, env


def run_worker(kind: str, args) -> dict:
  """One-shot worker (check, matmul) in a fresh subprocess."""
  cmd, env = worker_cmd(kind, args)
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
  for line in proc.stdout.splitlines():
    if line.startswith('RESULT '):
      return json.loads(line[len('RESULT '):])
  sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
  raise RuntimeError(f'{kind} worker failed with exit code {proc.returncode}')


class Server:
  """A framework's step, compiled in its own subprocess and run on request."""

  def __init__(self, kind: str, args, batch_size: int):
    cmd, env = worker_cmd(kind, args, batch_size)
    self.kind, self.batch_size = kind, batch_size
    self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
    self._expect('READY')

  def _expect(self, prefix: str) -> str:
    for line in self.proc.stdout:
      if line.startswith(prefix):
        return line[len(prefix):].strip()
    self.proc.wait()
    raise RuntimeError(f'{self.kind} worker (batch {self.batch_size}) exited with code '
                       f'{self.proc.returncode} before sending {prefix}')

  def step(self, call: str = 'step') -> float:
    self.proc.stdin.write(call + '\n')
    self.proc.stdin.flush()
    return float(self._expect('TIME '))

  def finish(self) -> dict:
    self.proc.stdin.write('quit\n')
    self.proc.stdin.flush()
    result = json.loads(self._expect('RESULT '))
    self.proc.wait()
    return result


def measure(frameworks: list[str], args, batch_size: int) -> dict:
  """Both frameworks in lock-step: JAX step, PyTorch step, JAX step, ... (the idle one waits on
  a pipe), so load from other processes on a shared machine hits both alike."""
  servers = {}
  try:
    for kind in frameworks:  # start (and compile) one after the other
      servers[kind] = Server(kind, args, batch_size)
    wall, busy = 0.0, 0.0
    for i in range(args.warmup + args.steps):
      for srv in servers.values():
        w0, b0 = time.perf_counter(), cpu_busy_seconds()
        srv.step()
        if i >= args.warmup:
          wall, busy = wall + time.perf_counter() - w0, busy + cpu_busy_seconds() - b0
      if 'jax' in servers:
        for _ in range(args.matmul_per_round):
          servers['jax'].step('matmul')
    out = {kind: srv.finish() for kind, srv in servers.items()}
    # CPU time used by anything else on the machine during the timed steps, in cores.
    own = sum(r['step_cpu_s'] * args.steps / (args.warmup + args.steps) for r in out.values())
    out['other_load'] = max(0.0, busy - own) / wall
    return out
  finally:
    for srv in servers.values():
      if srv.proc.poll() is None:
        srv.proc.kill()


def timed(result: dict, args) -> list[float]:
  return result['times'][args.warmup:]


def print_breakdown(args) -> int:
  cmd, env = worker_cmd('breakdown', args, args.breakdown)
  cmd.append(f'--steps={args.steps}')
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
  lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
  if not lines:
    sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
    raise RuntimeError(f'breakdown worker failed with exit code {proc.returncode}')
  parts = json.loads(lines[0][len('RESULT '):])['parts']
  total = parts['full step']['s']
  print(f'JAX step parts at B={args.breakdown} ({args.breakdown * N_IMU} site-windows), best of '
        f'{args.steps}, each compiled alone; {args.threads} threads; XLA_FLAGS='
        f'{(os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()!r}')
  for name, v in parts.items():
    print(f"  {name:60s} {v['s']:8.4f} s {100 * v['s'] / total:6.1f}% of the step "
          f"{v['flops'] / 1e9:8.2f} GFLOP {v['flops'] / v['s'] / 1e9:7.1f} GFLOP/s")
  return 0


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--batch_sizes', default='16,64,256', help='windows per step, comma separated')
  p.add_argument('--quick', action='store_true', help='smoke run: B=4,16, 1 warm-up, 2 steps')
  p.add_argument('--steps', type=int, default=5, help='timed steps per measurement')
  p.add_argument('--warmup', type=int, default=1, help='untimed steps first')
  p.add_argument('--threads', type=int, default=len(os.sched_getaffinity(0)),
                 help='CPUs (and threads) for both frameworks; default: all available')
  p.add_argument('--matmul_size', type=int, default=2048)
  p.add_argument('--matmul_repeats', type=int, default=10, help='standalone matmul repeats')
  p.add_argument('--matmul_per_round', type=int, default=2,
                 help='JAX matmuls timed after every lock-step round (the peak of the row)')
  p.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'),
                 help='JAX compute dtype (bfloat16 is not a like-for-like comparison)')
  p.add_argument('--xla_flags', default='', help='appended to XLA_FLAGS for the JAX workers')
  p.add_argument('--torch_optimizer', default='default', choices=('default', 'foreach', 'fused'))
  p.add_argument('--torch_compile', action='store_true', help='torch.compile the PyTorch step')
  p.add_argument('--torch_omp_wait_policy', default='passive',
                 choices=('passive', 'active', 'unset'),
                 help="OMP_WAIT_POLICY for PyTorch's OpenMP threads; spinning ('active', or "
                 "'unset' = the runtime's default) slows PyTorch several-fold whenever another "
                 'process uses a core')
  p.add_argument('--frameworks', default='jax,torch', help='which sides to time')
  p.add_argument('--check_batch', type=int, default=2, help='windows in the equivalence check')
  p.add_argument('--breakdown', type=int, default=0, metavar='B',
                 help='instead of the comparison, time the parts of the JAX step at batch B')
  p.add_argument('--json', default='', help='also write every raw result to this file')
  p.add_argument('--batch_size', type=int, default=0, help=argparse.SUPPRESS)
  p.add_argument('--_worker', default='', help=argparse.SUPPRESS)
  args = p.parse_args(argv)

  if args._worker:
    pin_cpus(args.threads)
    if args._worker in SERVERS:
      serve(SERVERS[args._worker], args)
    else:
      print('RESULT ' + json.dumps(WORKERS[args._worker](args)), flush=True)
    return 0

  if args.breakdown:
    return print_breakdown(args)
  frameworks = [f.strip() for f in args.frameworks.split(',') if f.strip()]
  if args.quick:
    args.batch_sizes, args.steps, args.warmup = '4,16', 2, 1
    args.matmul_size, args.matmul_repeats, args.matmul_per_round = 1024, 5, 1
  batch_sizes = [int(b) for b in args.batch_sizes.split(',')]
  if 'torch' in frameworks:
    try:
      import torch  # noqa: F401
    except ImportError:
      sys.exit(TORCH_MISSING)

  results = []
  print(f'CPUs/threads per framework: {args.threads} (of {os.cpu_count()}); shapes: B x {N_IMU} '
        f'IMUs x {WINDOW} x {AXES} per modality; JAX dtype {args.dtype}; XLA_FLAGS='
        f'{(os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()!r}; PyTorch '
        f'OMP_WAIT_POLICY {args.torch_omp_wait_policy}; load average {os.getloadavg()[0]:.2f}')
  if 'torch' in frameworks:
    chk = run_worker('check', args)
    results.append(chk)
    print(f"check: params JAX {chk['params_jax']:,} PyTorch {chk['params_torch']:,} "
          f"(per encoder JAX {chk['params_by_module_jax']['acc_encoder']:,}, PyTorch "
          f"{chk['params_acc_encoder_torch']:,}); loss JAX {chk['loss_jax']:.6f} PyTorch "
          f"{chk['loss_torch']:.6f}; max relative gradient difference "
          f"{chk['max_rel_grad_err']:.1e}")
    if (chk['params_jax'] != chk['params_torch']
        or abs(chk['loss_jax'] - chk['loss_torch']) > 1e-4 * max(1.0, abs(chk['loss_jax']))
        or chk['max_rel_grad_err'] > 1e-3):
      sys.exit('The PyTorch reference does not compute the same step as JAX; not timing it.')
  mm = run_worker('matmul', args)
  results.append(mm)
  line = (f"standalone matmul ({mm['n']}^3 float32, best of {args.matmul_repeats}): JAX "
          f"{mm['jax_flops_per_s'] / 1e9:.1f}")
  if 'torch_flops_per_s' in mm:
    line += f", PyTorch {mm['torch_flops_per_s'] / 1e9:.1f}"
  print(line + ' GFLOP/s')
  print(f'analytic forward MACs per site-window (one encoder + head): '
        f'{analytic_forward_macs_per_site_window():,}')

  rows = []
  for b in batch_sizes:
    row = measure(frameworks, args, b)
    row['batch_size'] = b
    results.extend([*(v for k, v in row.items() if k in SERVERS),
                    {'framework': 'other_load', 'batch_size': b, 'cores': row['other_load']}])
    rows.append(row)

  nan = float('nan')
  print(f"{'B':>5} {'JAX s/step':>11} {'PT s/step':>10} {'JAX win/s':>10} {'PT win/s':>9} "
        f"{'PT/JAX':>7} {'GFLOP/step':>11} {'JAX GFLOP/s':>12} {'peak':>6} {'%peak':>6} "
        f"{'JAX MB':>7} {'PT MB':>7} {'compile s':>9} {'other':>5}")
  for row in rows:
    b, rj, rt = row['batch_size'], row.get('jax', {}), row.get('torch', {})
    sj = statistics.median(timed(rj, args)) if rj else nan
    st = statistics.median(timed(rt, args)) if rt else nan
    flops = rj.get('flops', nan)
    mm_times = rj.get('matmul_times') or [nan]
    peak = 2 * args.matmul_size**3 / min(mm_times)
    print(f"{b:>5} {sj:>11.4f} {st:>10.4f} {b / sj:>10.1f} {b / st:>9.1f} {st / sj:>7.2f} "
          f"{flops / 1e9:>11.2f} {flops / sj / 1e9:>12.1f} {peak / 1e9:>6.1f} "
          f"{100 * flops / sj / peak:>5.1f}% "
          f"{rj.get('peak_rss_mb', nan):>7.0f} {rt.get('peak_rss_mb', nan):>7.0f} "
          f"{rj.get('compile_s', nan):>9.1f} {row['other_load']:>5.2f}")
  first = rows[0]
  print('s/step: median of the timed steps (fastest: ' + ', '.join(
      f"B={r['batch_size']} JAX {min(timed(r['jax'], args)):.4f}"
      + (f" PT {min(timed(r['torch'], args)):.4f}" if 'torch' in r else '')
      for r in rows if 'jax' in r) + '). PT/JAX > 1: JAX is faster.')
  print('MB: peak RSS of each fresh subprocess, framework included (after import: JAX '
        f"{first.get('jax', {}).get('rss_after_import_mb', nan):.0f} MB, PyTorch "
        f"{first.get('torch', {}).get('rss_after_import_mb', nan):.0f} MB). XLA temp buffers: "
        + ', '.join(f"B={r['batch_size']} {r['jax']['xla_temp_mb']:.0f} MB"
                    for r in rows if 'jax' in r) + '.')
  print(f'peak: best {args.matmul_size}^3 float32 JAX matmul (GFLOP/s), {args.matmul_per_round} '
        'timed after every lock-step round, so it saw the same load as the steps.')
  print('other: CPU cores busy with other processes while the row was timed (0 on an idle '
        'machine; above ~0.1 the figures are slowed by competition for the cores).')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=1)
  return 0


if __name__ == '__main__':
  sys.exit(main())
