"""What the framework-vs-framework benchmarks share (pretrain_throughput.py: the ResNet step,
transformer_throughput.py: the masked Transformer step).

The method: each framework's step runs in its own fresh subprocess, pinned to the same CPUs with
the same thread count; the driver alternates them (lock-step: the idle one blocks on a pipe), so
load from other processes on a shared machine slows both alike; the float32 matmul peak is timed
between the steps of each row under the same load; peak RSS per subprocess; the CPU time other
processes used meanwhile is reported. A worker script calls ``serve(setup, args)`` with a
``setup(args) -> (run_step, info, extras)``; the driver starts it with ``Server(cmd, env)`` and
times it with ``measure``.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import time

TORCH_MISSING = ('PyTorch is not installed; it is an optional benchmark extra. Install it with\n'
                 "  .venv/bin/pip install torch==2.13.0   (or: pip install -e '.[bench]')")


def pin_cpus(threads: int) -> list[int]:
  """Restrict this process to ``threads`` CPUs (both XLA and PyTorch size their pools from it)."""
  cpus = sorted(os.sched_getaffinity(0))[:threads]
  os.sched_setaffinity(0, cpus)
  os.environ['OMP_NUM_THREADS'] = os.environ['MKL_NUM_THREADS'] = str(threads)
  return cpus


def cpu_model() -> str:
  """The CPU's model name and its widest vector ISA (from /proc/cpuinfo)."""
  name, flags = 'unknown CPU', set()
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        key, _, value = line.partition(':')
        if key.strip() == 'model name' and name == 'unknown CPU':
          name = value.strip()
        elif key.strip() == 'flags' and not flags:
          flags = set(value.split())
  except OSError:
    pass
  isa = ('AVX-512' if 'avx512f' in flags else 'AVX2' if 'avx2' in flags else 'SSE')
  extra = [x for x, f in (('FMA', 'fma'), ('AMX', 'amx_tile'), ('AVX512-BF16', 'avx512_bf16'))
           if f in flags]
  return f"{name} ({', '.join([isa, *extra])}; {os.cpu_count()} CPUs)"


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


def time_steps(run_step, warmup: int, steps: int) -> list[float]:
  for _ in range(warmup):
    run_step()
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    run_step()
    times.append(time.perf_counter() - t0)
  return times


def best_of(fn, steps: int) -> float:
  fn()
  return min(time_steps(fn, 0, steps))


def flops_of(lowered_or_compiled) -> float:
  """XLA's cost-analysis FLOP count of a lowered or compiled program."""
  cost = lowered_or_compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return float(cost.get('flops', float('nan')))


def jax_matmul_peak(n: int):
  """A compiled n^3 float32 JAX matmul, as a zero-argument call (the peak timed in the rows)."""
  import jax
  import jax.numpy as jnp

  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  matmul = jax.jit(lambda x, y: x @ y).lower(a, a).compile()
  matmul(a, a).block_until_ready()
  return lambda: matmul(a, a).block_until_ready()


def worker_matmul(args) -> dict:
  """float32 matmul peak of JAX (the denominator) and, for context, of PyTorch
  (``args.matmul_size``, ``args.matmul_repeats``, ``args.threads``)."""
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


@contextlib.contextmanager
def project_in_float64():
  """Trace the project's code in float64: ``jax.enable_x64`` and, for every loaded
  ``ssl_imu_jax`` module, a ``jnp`` whose ``float32`` is ``float64`` (the project casts some
  outputs to float32 explicitly). For equivalence checks, where float32 rounding (e.g. a ReLU
  input within rounding of 0) would hide or fake a difference of the two functions."""
  import types

  import jax
  import jax.numpy as jnp

  jnp64 = types.ModuleType('jax.numpy, float32 -> float64')
  jnp64.__dict__.update(jnp.__dict__)
  jnp64.float32 = jnp.float64
  patched = [m for name, m in list(sys.modules.items())
             if name.startswith('ssl_imu_jax') and getattr(m, 'jnp', None) is jnp]
  try:
    for m in patched:
      m.jnp = jnp64
    with jax.enable_x64(True):
      yield
  finally:
    for m in patched:
      m.jnp = jnp


# ----------------------------------------------------------------------------- the protocol


def serve(setup, args) -> None:
  """Worker side of the lock-step protocol: ``setup(args)`` builds and compiles the step; then
  'step' (or an extra such as 'matmul') runs and times one call, 'quit' reports."""
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


def run_worker(cmd: list[str], env: dict, label: str) -> dict:
  """A one-shot worker (check, matmul, breakdown) in a fresh subprocess; its RESULT line."""
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
  for line in proc.stdout.splitlines():
    if line.startswith('RESULT '):
      return json.loads(line[len('RESULT '):])
  sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
  raise RuntimeError(f'{label} worker failed with exit code {proc.returncode}')


class Server:
  """A framework's step, compiled in its own subprocess (``serve``) and run on request."""

  def __init__(self, cmd: list[str], env: dict, label: str):
    self.label = label
    self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
    self._expect('READY')

  def _expect(self, prefix: str) -> str:
    for line in self.proc.stdout:
      if line.startswith(prefix):
        return line[len(prefix):].strip()
    self.proc.wait()
    raise RuntimeError(f'{self.label} exited with code {self.proc.returncode} before sending '
                       f'{prefix}')

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


def measure(kinds: list[str], start, args, peak_kind: str = 'jax') -> dict:
  """The servers ``start(kind)`` of ``kinds`` in lock-step: first's step, second's step, ...,
  then ``args.matmul_per_round`` matmuls on ``peak_kind``'s server, per round; ``args.warmup``
  untimed rounds, then ``args.steps`` timed ones. Returns {kind: its RESULT, 'other_load': CPU
  cores other processes used during the timed steps}."""
  servers = {}
  try:
    for kind in kinds:  # start (and compile) one after the other
      servers[kind] = start(kind)
    wall, busy = 0.0, 0.0
    for i in range(args.warmup + args.steps):
      for srv in servers.values():
        w0, b0 = time.perf_counter(), cpu_busy_seconds()
        srv.step()
        if i >= args.warmup:
          wall, busy = wall + time.perf_counter() - w0, busy + cpu_busy_seconds() - b0
      if peak_kind in servers:  # the peak of the row, timed under the same load
        for _ in range(args.matmul_per_round):
          servers[peak_kind].step('matmul')
    out = {kind: srv.finish() for kind, srv in servers.items()}
    own = sum(r['step_cpu_s'] * args.steps / (args.warmup + args.steps) for r in out.values())
    out['other_load'] = max(0.0, busy - own) / wall
    return out
  finally:
    for srv in servers.values():
      if srv.proc.poll() is None:
        srv.proc.kill()


def add_common_args(p) -> None:
  """The flags every lock-step benchmark takes: CPUs, the matmul peak, XLA flags, the PyTorch
  side's optimiser / compile / OpenMP policy, and which sides to time."""
  p.add_argument('--threads', type=int, default=len(os.sched_getaffinity(0)),
                 help='CPUs (and threads) for both frameworks; default: all available')
  p.add_argument('--matmul_size', type=int, default=2048)
  p.add_argument('--matmul_repeats', type=int, default=10, help='standalone matmul repeats')
  p.add_argument('--matmul_per_round', type=int, default=2,
                 help='JAX matmuls timed after every lock-step round (the peak of the row)')
  p.add_argument('--xla_flags', default='', help='appended to XLA_FLAGS for the JAX workers')
  p.add_argument('--torch_optimizer', default='default', choices=('default', 'foreach', 'fused'))
  p.add_argument('--torch_compile', action='store_true', help='torch.compile the PyTorch step')
  p.add_argument('--torch_omp_wait_policy', default='passive',
                 choices=('passive', 'active', 'unset'),
                 help="OMP_WAIT_POLICY for PyTorch's OpenMP threads; spinning ('active', or "
                 "'unset' = the runtime's default) slows PyTorch several-fold whenever another "
                 'process uses a core')
  p.add_argument('--frameworks', default='jax,torch', help='which sides to time (jax, torch)')
