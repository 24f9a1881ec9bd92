r"""Pre-training throughput: the project's compiled step vs the same step in PyTorch (CPU).

One step is ``ssl_imu_jax.training.pretrain``'s train step for the reference pre-training
(``configs/paper.py`` -> ``pretrain``, the default argument): input normalisation, the shared
[3, 4, 6, 3] ResNet1D on acc and then on gyr, the projection heads (Dense-BatchNorm-ReLU-Dense),
the reference NCE loss (tau 0.1), backward, AdamW with the warm-up + cosine schedule and weight
decay on kernels only, and the logged norms, at the corpus's shapes (B windows x 17 MoVi IMUs x
128 samples x 3 axes per modality). The JAX side is not re-implemented here: it is
``pretrain.build_training`` (the model, optimiser, state and jitted, state-donating step that
``pretrain.run`` trains with). The PyTorch twin is ``torch_reference.py``. Each framework runs in
its own fresh subprocess pinned to the same CPUs; the two run their steps alternately (lock-step),
so load from other processes slows both alike.

  .venv/bin/pip install torch==2.13.0      # optional benchmark extra, never a core dependency
  .venv/bin/python benchmarks/pretrain_throughput.py                       # B = 16, 64, 256
  .venv/bin/python benchmarks/pretrain_throughput.py --quick               # smoke run
  .venv/bin/python benchmarks/pretrain_throughput.py --baseline            # + the step before
  .venv/bin/python benchmarks/pretrain_throughput.py --breakdown=64        # per part, both sides

Printed per batch size: s/step of each framework (median of the timed steps), windows/s, the ratio
(PyTorch s/step / JAX s/step, > 1 means JAX is faster), the step's FLOPs (XLA's cost analysis of
the model written with convolutions, i.e. what PyTorch computes; the compiled step's own count,
which includes the zeros of the banded matrix products, is printed too), the achieved FLOP/s as a
fraction of the float32 matmul peak (best 2048^3 JAX matmul, timed between the steps of the same
row), peak resident memory of each subprocess, and the CPU load other processes put on the
machine meanwhile. Before timing, a check copies the JAX initialisation into the PyTorch model and
compares parameter counts, the loss, every gradient and one optimiser update.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import lockstep  # noqa: E402  (the shared method: benchmarks/lockstep.py)
from lockstep import (  # noqa: E402  (the shared method: benchmarks/lockstep.py)
  TORCH_MISSING,
  Server,
  best_of,
  cpu_model,
  flops_of,
  jax_matmul_peak,
  pin_cpus,
  project_in_float64,
  rss_mb,
  serve,
  worker_matmul,
)

# configs/paper.py's pre-training corpus, synthetic_movi, has the 17 MoVi IMU sites
# (data_prep.records.MOVI_SITES; imu_sites=() keeps all of them); checked in pretrain_config().
N_SITES, AXES = 17, 3


# ----------------------------------------------------------------------------- helpers


def pretrain_config(batch_size: int):
  """configs/paper.py's ``pretrain`` sub-config (default argument) at batch ``batch_size``."""
  sys.path.insert(0, ROOT)
  from configs import paper

  cfg = paper.get_config('').pretrain
  if cfg.data.dataset != 'synthetic_movi' or tuple(cfg.data.imu_sites):
    raise SystemExit(f'expected the 17-site synthetic_movi corpus, got {cfg.data.dataset} '
                     f'sites {cfg.data.imu_sites}; update N_SITES')
  cfg.train.batch_size = batch_size
  return cfg


def fake_batch(batch_size: int, window: int, seed: int = 0):
  """Raw-unit-like acc (m/s^2) and gyr (rad/s) windows [B, N, T, 3] and their statistics."""
  import numpy as np

  rng = np.random.default_rng(seed)
  shape = (batch_size, N_SITES, window, AXES)
  acc = (9.81 + 3.0 * rng.normal(size=shape)).astype(np.float32)
  gyr = (0.1 + 1.5 * rng.normal(size=shape)).astype(np.float32)
  stats = {'acc_mean': float(acc.mean()), 'acc_std': float(acc.std()),
           'gyr_mean': float(gyr.mean()), 'gyr_std': float(gyr.std())}
  return acc, gyr, stats


# ----------------------------------------------------------------------------- JAX side


def use_plain_convolutions() -> None:
  """The step as it was before the banded-matmul convolutions: every conv through XLA's."""
  from ssl_imu_jax.models import resnet1d

  resnet1d._as_matmul = lambda *a, **k: False


def jax_training(args, batch_size: int):
  """(config, pretrain.build_training(...), batch on the data sharding, rng, stats)."""
  import jax

  from ssl_imu_jax.training import pretrain

  cfg = pretrain_config(batch_size)
  acc, gyr, stats = fake_batch(batch_size, cfg.data.window_length)
  setup = pretrain.build_training(cfg, (1,) + acc.shape[1:], stats)
  batch = jax.device_put({'acc': acc, 'gyr': gyr}, setup.data_sharding)
  return cfg, setup, batch, jax.random.key(cfg.seed), stats


def model_flops(cfg, setup, state, batch, rng) -> float:
  """XLA's FLOP count of the same step with every convolution as a convolution (the model's
  nominal FLOPs, what PyTorch computes), from the lowered (not compiled) program."""
  import jax

  from ssl_imu_jax.models import resnet1d
  from ssl_imu_jax.training import pretrain

  saved = resnet1d._as_matmul
  resnet1d._as_matmul = lambda *a, **k: False
  try:
    step = jax.jit(pretrain.make_train_step(cfg, setup.model, setup.tx, setup.schedule, 1))
    return flops_of(step.lower(state, batch, rng))
  finally:
    resnet1d._as_matmul = saved


def setup_jax(args):
  """Builds and compiles the project's step; returns (run_step, info, extras)."""
  import jax

  base_rss, _ = rss_mb()
  if args.plain_convs:
    use_plain_convolutions()
  cfg, setup, batch, rng, _ = jax_training(args, args.batch_size)
  t0 = time.perf_counter()
  compiled = setup.step_fn.lower(setup.state, batch, rng).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  nominal = model_flops(cfg, setup, setup.state, batch, rng)
  holder = {'state': setup.state}

  def run_step():
    holder['state'], metrics = compiled(holder['state'], batch, rng)
    metrics['loss'].block_until_ready()

  # The matmul peak, timed between the steps so that it sees the same load from other processes.
  n = args.matmul_size
  matmul = jax_matmul_peak(n)

  info = {
      'framework': 'jax_plain_convs' if args.plain_convs else 'jax',
      'batch_size': args.batch_size, 'compile_s': compile_s,
      'flops': nominal, 'flops_compiled': flops_of(compiled),
      'xla_temp_mb': getattr(mem, 'temp_size_in_bytes', 0) / 2**20,
      'rss_after_import_mb': base_rss,
      'params': int(sum(x.size for x in jax.tree.leaves(setup.state.params))),
      'jax_version': jax.__version__, 'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'matmul_size': n,
  }
  return run_step, info, {'matmul': matmul}


# ----------------------------------------------------------------------------- PyTorch side


def import_torch_reference():
  try:
    import torch  # noqa: F401
  except ImportError:
    sys.exit(TORCH_MISSING)
  sys.path.insert(0, HERE)
  import torch_reference

  return torch_reference


def torch_model(tr, cfg):
  enc = cfg.model.encoder
  return tr.ContrastiveModel(tuple(enc.widths), tuple(enc.blocks_per_stage), enc.kernel_size,
                             enc.stem_kernel, enc.stem_stride, tuple(cfg.model.projection_dims))


def setup_torch(args):
  """Builds the PyTorch twin, optimiser and batch; returns (run_step, info, extras)."""
  tr = import_torch_reference()
  import torch

  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  base_rss, _ = rss_mb()
  cfg = pretrain_config(args.batch_size)
  model = torch_model(tr, cfg)
  model.train()
  opt, lr_at = tr.make_optimizer(model, cfg.optimizer, cfg.train.steps, args.torch_optimizer)
  acc, gyr, stats = fake_batch(args.batch_size, cfg.data.window_length)
  acc, gyr = torch.from_numpy(acc), torch.from_numpy(gyr)
  step = torch.compile(tr.train_step) if args.torch_compile else tr.train_step
  counter = {'step': 0}

  def run_step():
    step(model, opt, lr_at, counter['step'], acc, gyr, stats, cfg.ssl.temperature)
    counter['step'] += 1

  info = {
      'framework': 'torch', 'batch_size': args.batch_size, 'rss_after_import_mb': base_rss,
      'params': tr.count_params(model), 'torch_version': torch.__version__,
      'threads': torch.get_num_threads(), 'optimizer': args.torch_optimizer,
      'compiled': args.torch_compile, 'mkldnn': torch.backends.mkldnn.is_available(),
  }
  return run_step, info, {}


def breakdown_jax(args) -> dict:
  """Seconds per part of the JAX step (each compiled alone, best of ``--steps``)."""
  import jax
  import jax.numpy as jnp
  import optax

  from ssl_imu_jax.models import resnet1d
  from ssl_imu_jax.training import losses, steps

  b = args.batch_size
  cfg, setup, batch, rng, stats = jax_training(args, b)
  enc_cfg = cfg.model.encoder
  widths, blocks = tuple(enc_cfg.widths), tuple(enc_cfg.blocks_per_stage)
  acc = steps.normalize(batch['acc'], stats['acc_mean'], stats['acc_std'])
  out = {}

  def bench(name, fn, *xs):
    compiled = jax.jit(fn).lower(*xs).compile()
    out[name] = {'s': best_of(lambda: jax.block_until_ready(compiled(*xs)), args.steps),
                 'flops': flops_of(compiled)}

  for i in range(len(widths) + 1):  # the stem, then the encoder up to stage i
    enc = resnet1d.ResNet1D(widths=widths[:max(i, 1)], blocks_per_stage=blocks[:i] or (0,),
                            kernel_size=enc_cfg.kernel_size, stem_kernel=enc_cfg.stem_kernel,
                            stem_stride=enc_cfg.stem_stride, stem_pool=enc_cfg.stem_pool)
    variables = enc.init(jax.random.key(0), acc[:1], train=False)

    def loss(p, x, enc=enc, bs=variables['batch_stats']):
      y, _ = enc.apply({'params': p, 'batch_stats': bs}, x, train=True, mutable=['batch_stats'])
      return jnp.sum(y * y)

    bench(f'encoder_upto_{i}', jax.grad(loss), variables['params'], acc)
  z = jax.random.normal(jax.random.key(1), (b, N_SITES, cfg.model.projection_dims[-1]))
  bench('loss', jax.grad(lambda a, g: losses.reference_nce(a, g, cfg.ssl.temperature)[0],
                         argnums=(0, 1)), z, z)
  params, opt_state = setup.state.params, setup.state.opt_state
  grads = jax.tree.map(jnp.ones_like, params)
  bench('adamw', lambda g, o, p: optax.apply_updates(p, setup.tx.update(g, o, p)[0]),
        grads, opt_state, params)
  compiled = setup.step_fn.lower(setup.state, batch, rng).compile()
  holder = {'state': setup.state}

  def full():
    holder['state'], m = compiled(holder['state'], batch, rng)
    m['loss'].block_until_ready()

  out['step'] = {'s': best_of(full, args.steps), 'flops': flops_of(compiled)}
  return out


def breakdown_torch(args) -> dict:
  """The same parts of the PyTorch twin's step (best of ``--steps``)."""
  tr = import_torch_reference()
  import torch

  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  b = args.batch_size
  cfg = pretrain_config(b)
  enc_cfg = cfg.model.encoder
  widths, blocks = tuple(enc_cfg.widths), tuple(enc_cfg.blocks_per_stage)
  acc, gyr, stats = fake_batch(b, cfg.data.window_length)
  acc_n = tr.normalize(torch.from_numpy(acc), stats['acc_mean'], stats['acc_std'])
  out = {}

  def bench(name, fn):
    out[name] = {'s': best_of(fn, args.steps)}

  for i in range(len(widths) + 1):
    enc = tr.ResNet1D(widths[:max(i, 1)], blocks[:i] or (0,), enc_cfg.kernel_size,
                      enc_cfg.stem_kernel, enc_cfg.stem_stride)
    enc.train()

    def fwd_bwd(enc=enc):
      enc.zero_grad(set_to_none=True)
      (enc(acc_n) ** 2).sum().backward()

    bench(f'encoder_upto_{i}', fwd_bwd)
  z = torch.randn(b, N_SITES, cfg.model.projection_dims[-1])
  za, zg = z.clone().requires_grad_(), z.clone().requires_grad_()
  bench('loss', lambda: tr.reference_nce(za, zg, cfg.ssl.temperature)[0].backward())
  model = torch_model(tr, cfg)
  model.train()
  opt, lr_at = tr.make_optimizer(model, cfg.optimizer, cfg.train.steps, args.torch_optimizer)
  for p in model.parameters():
    p.grad = torch.ones_like(p)
  bench('adamw', opt.step)
  acc_t, gyr_t = torch.from_numpy(acc), torch.from_numpy(gyr)
  bench('step', lambda: tr.train_step(model, opt, lr_at, 1, acc_t, gyr_t, stats,
                                      cfg.ssl.temperature))
  return out


def worker_breakdown(args) -> dict:
  return {'framework': 'breakdown', 'batch_size': args.batch_size, 'jax': breakdown_jax(args)}


def worker_breakdown_torch(args) -> dict:
  return {'framework': 'breakdown_torch', 'batch_size': args.batch_size,
          'torch': breakdown_torch(args)}


def float64_gradient_errors(tr, cfg, model, params0, bstats0, acc, gyr, stats) -> dict:
  """The project's gradient function and the PyTorch twin, both in float64, on the same batch.

  In float32 the two sides cannot be compared gradient by gradient: a ReLU input within float32
  rounding (~1e-5) of 0 lands on either side of the kink depending on the order of the sums, and
  the gradient of everything below it (e.g. the whole acc or gyr call of the shared encoder) then
  moves by ~1/sqrt(elements of that layer), 0.3-1.7% at B=4 -- as much between JAX float32 and
  JAX float64 as between JAX and PyTorch. In float64 no input comes that close, so the two agree
  to ~1e-13 and any difference of the functions shows. The JAX side is ``model`` cloned with
  dtype float64 under ``jax.enable_x64``; the project's explicit float32 casts (``x.astype(
  jnp.float32)`` at the encoder / head outputs and in the loss) are redirected to float64 while
  it is traced, by giving its modules a ``jnp`` whose ``float32`` is ``float64``.
  """
  import jax
  import jax.numpy as jnp
  import numpy as np
  import torch

  from ssl_imu_jax.training import pretrain, steps

  with project_in_float64():
    f64 = lambda t: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), t)  # noqa: E731
    x = {k: steps.normalize(jnp.asarray(v, jnp.float64), stats[f'{k}_mean'], stats[f'{k}_std'])
         for k, v in (('acc', acc), ('gyr', gyr))}
    grad_fn = jax.jit(pretrain.make_gradient_fn(cfg, model.clone(dtype=jnp.float64), 1))
    loss_j, _, _, g_j = grad_fn(f64(params0), f64(bstats0), x['acc'], x['gyr'])
    loss_j, g_j = np.asarray(loss_j), jax.device_get(g_j)
  if loss_j.dtype != np.float64:
    raise RuntimeError(f'the float64 JAX loss came out {loss_j.dtype}: a float32 cast in the '
                       'project that float64_gradient_errors does not redirect')

  tm = torch_model(tr, cfg)
  tm.train()
  tr.load_flax(tm, params0, bstats0)
  tm.double()
  za, zg = tm(*(tr.normalize(torch.from_numpy(v).double(), stats[f'{k}_mean'], stats[f'{k}_std'])
                for k, v in (('acc', acc), ('gyr', gyr))))
  loss_t, _ = tr.reference_nce(za, zg, cfg.ssl.temperature)
  loss_t.backward()
  grads_j = tr.flax_to_torch_names(g_j, dtype='float64')
  rel = lambda a, b: float(np.linalg.norm(a - b) / (np.linalg.norm(a) + 1e-30))  # noqa: E731
  errs = sorted(rel(grads_j[n], p.grad.numpy()) for n, p in tm.named_parameters())
  return {'loss_jax_f64': float(loss_j), 'loss_torch_f64': loss_t.item(),
          'max_rel_grad_err_f64': errs[-1], 'median_rel_grad_err_f64': errs[len(errs) // 2]}


def worker_check(args) -> dict:
  """Same function on both sides: the JAX initialisation copied into PyTorch; parameter counts,
  loss, gradients (the project's gradient function; in float32 and, the equivalence test, in
  float64: ``float64_gradient_errors``) and one optimiser update (the project's compiled step, at
  the end of the warm-up) compared."""
  tr = import_torch_reference()
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  import torch

  from ssl_imu_jax.training import pretrain, steps

  torch.set_num_threads(args.threads)
  b = args.check_batch
  cfg = pretrain_config(b)
  cfg.seed = 1
  acc, gyr, stats = fake_batch(b, cfg.data.window_length, seed=2)
  setup = pretrain.build_training(cfg, (1,) + acc.shape[1:], stats)
  params0 = jax.device_get(setup.state.params)
  bstats0 = jax.device_get(setup.state.batch_stats)
  norm = lambda x, k: steps.normalize(x, stats[f'{k}_mean'], stats[f'{k}_std'])  # noqa: E731
  loss_j, bstats_j, m_j, g_j = jax.jit(pretrain.make_gradient_fn(cfg, setup.model, 1))(
      setup.state.params, setup.state.batch_stats, norm(acc, 'acc'), norm(gyr, 'gyr'))

  tm = torch_model(tr, cfg)
  tm.train()
  tr.load_flax(tm, params0, bstats0)
  acc_t, gyr_t = torch.from_numpy(acc), torch.from_numpy(gyr)
  za, zg = tm(tr.normalize(acc_t, stats['acc_mean'], stats['acc_std']),
              tr.normalize(gyr_t, stats['gyr_mean'], stats['gyr_std']))
  loss_t, m_t = tr.reference_nce(za, zg, cfg.ssl.temperature)
  loss_t.backward()
  grads_t = {n: p.grad.numpy() for n, p in tm.named_parameters()}
  grads_j = tr.flax_to_torch_names(jax.device_get(g_j))
  rel = lambda a, b: float(np.linalg.norm(a - b) / (np.linalg.norm(a) + 1e-12))  # noqa: E731
  grad_errs = sorted(rel(grads_j[n], grads_t[n]) for n in grads_t)
  buffers_t = {n: v.numpy() for n, v in tm.named_buffers() if n.endswith('running_mean')}
  stats_j = tr.flax_to_torch_names({}, jax.device_get(bstats_j))
  mean_err = max(rel(stats_j[n], buffers_t[n]) for n in buffers_t)

  # One optimiser update at the peak learning rate: the schedule's step count (not Adam's) set
  # to the end of the warm-up, on both sides.
  warm = int(round(cfg.optimizer.warmup_fraction * cfg.train.steps))
  is_sched = lambda x: isinstance(x, optax.ScaleByScheduleState)  # noqa: E731
  opt_state = jax.tree.map(
      lambda x: x._replace(count=jnp.asarray(warm, x.count.dtype)) if is_sched(x) else x,
      setup.state.opt_state, is_leaf=is_sched)
  state = setup.state.replace(step=jnp.asarray(warm, jnp.int32), opt_state=opt_state)
  batch = jax.device_put({'acc': acc, 'gyr': gyr}, setup.data_sharding)
  new_state, _ = setup.step_fn(state, batch, jax.random.key(cfg.seed))
  upd_j = tr.flax_to_torch_names(jax.tree.map(lambda a, b: np.asarray(a) - b,
                                              jax.device_get(new_state.params), params0))
  tm2 = torch_model(tr, cfg)
  tm2.train()
  tr.load_flax(tm2, params0, bstats0)
  opt, lr_at = tr.make_optimizer(tm2, cfg.optimizer, cfg.train.steps)
  tr.train_step(tm2, opt, lr_at, warm, acc_t, gyr_t, stats, cfg.ssl.temperature)
  p0 = tr.flax_to_torch_names(params0)
  upd_t = {n: p.detach().numpy() - p0[n] for n, p in tm2.named_parameters()}
  update_err = rel(np.concatenate([upd_j[n].ravel() for n in upd_t]),
                   np.concatenate([upd_t[n].ravel() for n in upd_t]))
  f64 = float64_gradient_errors(tr, cfg, setup.model, params0, bstats0, acc, gyr, stats)
  return {
      **f64,
      'framework': 'check', 'loss_jax': float(loss_j), 'loss_torch': float(loss_t),
      'top1_jax': float(m_j['top1']), 'top1_torch': float(m_t['top1']),
      'max_rel_grad_err': grad_errs[-1], 'median_rel_grad_err': grad_errs[len(grad_errs) // 2],
      'max_rel_running_mean_err': mean_err,
      'max_rel_update_err': update_err, 'lr_checked': lr_at(warm),
      'params_jax': int(sum(np.size(x) for x in jax.tree.leaves(params0))),
      'params_torch': tr.count_params(tm),
      'params_encoder_torch': tr.count_params(tm, 'encoder.'),
      'tensors': len(grads_t),
  }


WORKERS = {'matmul': worker_matmul, 'check': worker_check, 'breakdown': worker_breakdown,
           'breakdown_torch': worker_breakdown_torch}
SERVERS = {'jax': setup_jax, 'jax_plain_convs': setup_jax, 'torch': setup_torch}


# ----------------------------------------------------------------------------- driver


def worker_cmd(kind: str, args, batch_size: int = 0) -> tuple[list[str], dict]:
  cmd = [sys.executable, os.path.abspath(__file__), f'--_worker={kind}',
         f'--batch_size={batch_size}', f'--threads={args.threads}',
         f'--matmul_size={args.matmul_size}', f'--matmul_repeats={args.matmul_repeats}',
         f'--matmul_per_round={args.matmul_per_round}', f'--steps={args.steps}',
         f'--torch_optimizer={args.torch_optimizer}', f'--check_batch={args.check_batch}']
  if args.torch_compile:
    cmd.append('--torch_compile')
  if kind == 'jax_plain_convs':
    cmd.append('--plain_convs')
  env = dict(os.environ)
  torch_side = kind in ('torch', 'check', 'breakdown_torch')
  if torch_side and args.torch_omp_wait_policy != 'unset':
    env['OMP_WAIT_POLICY'] = args.torch_omp_wait_policy.upper()
  if args.xla_flags:
    env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') + ' ' + args.xla_flags).strip()
  return cmd, env


def run_worker(kind: str, args, batch_size: int = 0) -> dict:
  """One-shot worker (check, matmul, breakdown) in a fresh subprocess."""
  cmd, env = worker_cmd(kind, args, batch_size)
  return lockstep.run_worker(cmd, env, kind)


def measure(frameworks: list[str], args, batch_size: int) -> dict:
  """Both frameworks in lock-step: JAX step, PyTorch step, JAX step, ... (the idle one waits on
  a pipe), so load from other processes on a shared machine hits both alike."""
  def start(kind):
    return Server(*worker_cmd(kind, args, batch_size), f'{kind} worker (batch {batch_size})')

  return lockstep.measure(frameworks, start, args)


def timed(result: dict, args) -> list[float]:
  return result['times'][args.warmup:]


def print_breakdown(args) -> int:
  b = args.breakdown
  parts = run_worker('breakdown', args, b)['jax']
  torch_parts = {}
  if 'torch' in args.frameworks:
    torch_parts = run_worker('breakdown_torch', args, b)['torch']
  n_stages = sum(1 for k in parts if k.startswith('encoder_upto_')) - 1
  print(f'{cpu_model()}; {args.threads} threads; B={b} ({b * N_SITES} site-windows per '
        f'modality); best of {args.steps}; each part compiled alone; XLA_FLAGS='
        f'{(os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()!r}')
  print(f"{'part (forward + backward)':58s} {'JAX s':>8s} {'%step':>6s} {'GFLOP':>7s} "
        f"{'GFLOP/s':>8s} {'PT s':>8s} {'PT/JAX':>7s}")

  def row(label, key, prev=None, times=1):
    sj = (parts[key]['s'] - (parts[prev]['s'] if prev else 0.0)) * times
    fl = (parts[key]['flops'] - (parts[prev]['flops'] if prev else 0.0)) * times
    line = (f'{label:58s} {sj:8.4f} {100 * sj / parts["step"]["s"]:5.1f}% {fl / 1e9:7.2f} '
            f'{fl / max(sj, 1e-9) / 1e9:8.1f}')
    if key in torch_parts:
      st = (torch_parts[key]['s'] - (torch_parts[prev]['s'] if prev else 0.0)) * times
      line += f' {st:8.4f} {st / max(sj, 1e-9):7.2f}'
    print(line)

  row('stem: conv k49/2 + BN + ReLU + max-pool (x2 modalities)', 'encoder_upto_0', times=2)
  for i in range(n_stages):
    row(f'stage {i} blocks (x2 modalities)', f'encoder_upto_{i + 1}', f'encoder_upto_{i}', 2)
  row('whole encoder (x2 modalities)', f'encoder_upto_{n_stages}', times=2)
  row('reference NCE loss', 'loss')
  row('AdamW update', 'adamw')
  row('full step (project step / twin train_step)', 'step')
  print('Stage rows are differences of the encoder cut after that stage and before it; the '
        'rest of the step (heads, normalisation, norms) is the full step minus the parts. '
        'GFLOP are XLA\'s counts of the compiled parts (banded matmuls include their zeros).')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump({'jax': parts, 'torch': torch_parts, 'batch_size': b}, f, indent=1)
  return 0


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--batch_sizes', default='16,64,256', help='windows per step, comma separated')
  p.add_argument('--quick', action='store_true', help='smoke run: B=4,16, 1 warm-up, 2 steps')
  p.add_argument('--steps', type=int, default=5, help='timed steps per measurement')
  p.add_argument('--warmup', type=int, default=1, help='untimed steps first')
  lockstep.add_common_args(p)
  p.add_argument('--baseline', action='store_true',
                 help='also time, in the same lock-step rounds, the project step with every '
                 'convolution through XLA (before the banded-matmul convolutions)')
  p.add_argument('--check_batch', type=int, default=4, help='windows in the equivalence check')
  p.add_argument('--grad_tol', type=float, default=1e-6,
                 help='largest relative difference of a gradient tensor the check accepts, both '
                 'sides in float64 (measured: 1e-13)')
  p.add_argument('--grad_tol_f32', type=float, default=5e-2,
                 help='the same in float32, a sanity bound only (the median must be below half '
                 'of it): a ReLU input within rounding of 0 flips the gradient below it by ~1e-2 '
                 'on either side alike (measured: max 4e-4 to 1.7e-2, JAX float32 vs float64 '
                 'as large)')
  p.add_argument('--breakdown', type=int, default=0, metavar='B',
                 help='instead of the comparison, time the parts of the step at batch B')
  p.add_argument('--json', default='', help='also write every raw result to this file')
  p.add_argument('--batch_size', type=int, default=0, help=argparse.SUPPRESS)
  p.add_argument('--plain_convs', action='store_true', help=argparse.SUPPRESS)
  p.add_argument('--_worker', default='', help=argparse.SUPPRESS)
  args = p.parse_args(argv)

  if args._worker:
    pin_cpus(args.threads)
    sys.path.insert(0, ROOT)
    if args._worker in SERVERS:
      serve(SERVERS[args._worker], args)
    else:
      print('RESULT ' + json.dumps(WORKERS[args._worker](args)), flush=True)
    return 0

  frameworks = [f.strip() for f in args.frameworks.split(',') if f.strip()]
  if 'torch' in frameworks:
    try:
      import torch  # noqa: F401
    except ImportError:
      sys.exit(TORCH_MISSING)
  if args.breakdown:
    return print_breakdown(args)
  if args.quick:
    args.batch_sizes, args.steps, args.warmup = '4,16', 2, 1
    args.matmul_size, args.matmul_repeats, args.matmul_per_round = 1024, 5, 1
  if args.baseline and 'jax' in frameworks:
    frameworks.insert(frameworks.index('jax') + 1, 'jax_plain_convs')
  batch_sizes = [int(b) for b in args.batch_sizes.split(',')]

  results = []
  print(f'{cpu_model()}; CPUs/threads per framework: {args.threads}; shapes: B x {N_SITES} '
        f'IMUs x 128 x {AXES} per modality (configs/paper.py pretrain); XLA_FLAGS='
        f'{(os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()!r}; PyTorch '
        f'OMP_WAIT_POLICY {args.torch_omp_wait_policy}; load average {os.getloadavg()[0]:.2f}')
  if 'torch' in frameworks:
    chk = run_worker('check', args)
    results.append(chk)
    print(f"check (B={args.check_batch}): params JAX {chk['params_jax']:,} PyTorch "
          f"{chk['params_torch']:,} (encoder {chk['params_encoder_torch']:,}); loss JAX "
          f"{chk['loss_jax']:.6f} PyTorch {chk['loss_torch']:.6f}; relative difference of the "
          f"{chk['tensors']} gradient tensors: max {chk['max_rel_grad_err']:.1e}, median "
          f"{chk['median_rel_grad_err']:.1e} (float32), max "
          f"{chk['max_rel_grad_err_f64']:.1e}, median {chk['median_rel_grad_err_f64']:.1e} "
          f"(float64); BatchNorm running means "
          f"{chk['max_rel_running_mean_err']:.1e}; "
          f"one AdamW update at lr {chk['lr_checked']:.0e} (whole update vector) "
          f"{chk['max_rel_update_err']:.1e}")
    if (chk['params_jax'] != chk['params_torch']
        or abs(chk['loss_jax'] - chk['loss_torch']) > 1e-4 * max(1.0, abs(chk['loss_jax']))
        or chk['median_rel_grad_err'] > args.grad_tol_f32 / 2
        or chk['max_rel_grad_err'] > args.grad_tol_f32
        or chk['max_rel_grad_err_f64'] > args.grad_tol):
      sys.exit('The PyTorch reference does not compute the same step as JAX; not timing it.')
  mm = run_worker('matmul', args)
  results.append(mm)
  line = (f"standalone matmul ({mm['n']}^3 float32, best of {args.matmul_repeats}): JAX "
          f"{mm['jax_flops_per_s'] / 1e9:.1f}")
  if 'torch_flops_per_s' in mm:
    line += f", PyTorch {mm['torch_flops_per_s'] / 1e9:.1f}"
  print(line + ' GFLOP/s')

  rows = []
  for b in batch_sizes:
    row = measure(frameworks, args, b)
    row['batch_size'] = b
    results.extend([*(v for k, v in row.items() if k in SERVERS),
                    {'framework': 'other_load', 'batch_size': b, 'cores': row['other_load']}])
    rows.append(row)

  nan = float('nan')
  base = ' before/JAX' if 'jax_plain_convs' in frameworks else ''
  print(f"{'B':>5} {'JAX s/step':>11} {'PT s/step':>10} {'JAX win/s':>10} {'PT win/s':>9} "
        f"{'PT/JAX':>7} {'GFLOP/step':>11} {'JAX GFLOP/s':>12} {'peak':>6} {'%peak':>6} "
        f"{'JAX MB':>7} {'PT MB':>7} {'compile s':>9} {'other':>5}"
        + (f" {'before s':>9} {'before %pk':>10}{base}" if base else ''))
  for row in rows:
    b, rj, rt = row['batch_size'], row.get('jax', {}), row.get('torch', {})
    sj = statistics.median(timed(rj, args)) if rj else nan
    st = statistics.median(timed(rt, args)) if rt else nan
    flops = rj.get('flops', nan)
    mm_times = rj.get('matmul_times') or [nan]
    peak = 2 * args.matmul_size**3 / min(mm_times)
    line = (f"{b:>5} {sj:>11.4f} {st:>10.4f} {b / sj:>10.1f} {b / st:>9.1f} {st / sj:>7.2f} "
            f"{flops / 1e9:>11.2f} {flops / sj / 1e9:>12.1f} {peak / 1e9:>6.1f} "
            f"{100 * flops / sj / peak:>5.1f}% "
            f"{rj.get('peak_rss_mb', nan):>7.0f} {rt.get('peak_rss_mb', nan):>7.0f} "
            f"{rj.get('compile_s', nan):>9.1f} {row['other_load']:>5.2f}")
    if base:
      sb = statistics.median(timed(row['jax_plain_convs'], args))
      line += f' {sb:>9.4f} {100 * flops / sb / peak:>9.1f}% {sb / sj:>10.2f}'
    print(line)
  print('s/step: median of the timed steps (fastest: ' + ', '.join(
      f"B={r['batch_size']} JAX {min(timed(r['jax'], args)):.4f}"
      + (f" PT {min(timed(r['torch'], args)):.4f}" if 'torch' in r else '')
      for r in rows if 'jax' in r) + '). PT/JAX > 1: JAX is faster.')
  print('GFLOP/step: XLA cost analysis of the step with its convolutions as convolutions (what '
        'PyTorch computes); the compiled step counts ' + ', '.join(
            f"{r['jax']['flops_compiled'] / 1e9:.2f}" for r in rows if 'jax' in r)
        + ' GFLOP (its banded matmuls multiply zeros too).')
  print('MB: peak RSS of each fresh subprocess, framework included (after import: JAX '
        f"{rows[0].get('jax', {}).get('rss_after_import_mb', nan):.0f} MB, PyTorch "
        f"{rows[0].get('torch', {}).get('rss_after_import_mb', nan):.0f} MB). XLA temp buffers: "
        + ', '.join(f"B={r['batch_size']} {r['jax']['xla_temp_mb']:.0f} MB"
                    for r in rows if 'jax' in r) + '.')
  print(f'peak: best {args.matmul_size}^3 float32 JAX matmul (GFLOP/s), {args.matmul_per_round} '
        'timed after every lock-step round, so it saw the same load as the steps.')
  print('other: CPU cores busy with other processes while the row was timed (0 on an idle '
        'machine; above ~0.1 the figures are slowed by competition for the cores).')
  if base:
    print('before: the same project step with every convolution through XLA '
          '(--baseline), timed in the same lock-step rounds; last column = before / after.')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=1)
  return 0


if __name__ == '__main__':
  sys.exit(main())
