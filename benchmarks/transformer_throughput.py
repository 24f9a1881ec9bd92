r"""Masked-reconstruction pre-training throughput: the project's compiled Transformer step vs
the reference model's step in PyTorch (CPU), by the method of pretrain_throughput.py.

One step is ``ssl_imu_jax.training.pretrain``'s masked train step (``configs/pretrain.py:masked``,
built by ``pretrain.build_training``, the function ``pretrain.run`` trains with): the windows scaled
by one std per modality, laid out as one token per time step (every site's acc, then gyr: 48
channels for the reference's 8 IMUs), one contiguous block of 12.5 % of the 128 steps per sample
replaced by the learned input-space mask token, Linear(48 -> 192) + sinusoid (base 2T), six
post-LN layers (192 wide, 8 heads, feed-forward 512, dropout 0.1), Linear(192 -> 48), MSE on the
masked steps, backward, AdamW (1e-4, decay 0.01 on every parameter, cosine x warm-up factor) and
the logged norms. The PyTorch twin is ``torch_transformer_reference.py``: the reference's own
``nn.TransformerEncoderLayer`` stack, the same parameters (copied from the JAX initialisation
for the check), the same loss and optimiser. Each framework runs in its own fresh subprocess
pinned to the same CPUs, their steps alternating (lock-step, benchmarks/lockstep.py), with the
float32 matmul peak timed between the rounds.

  .venv/bin/pip install torch==2.13.0      # optional benchmark extra, never a core dependency
  .venv/bin/python benchmarks/transformer_throughput.py                     # B = 16, 64
  .venv/bin/python benchmarks/transformer_throughput.py --quick             # smoke run
  .venv/bin/python benchmarks/transformer_throughput.py --dtypes float32,bfloat16 --dropouts 0.1,0

Per row (batch size x compute dtype x dropout): s/step of each framework (median of the timed
steps), windows/s, JAX/PyTorch speed ratio (PyTorch s/step over JAX s/step: > 1 means JAX is
faster), the step's FLOPs from XLA's cost analysis of the compiled JAX step, JAX's achieved
FLOP/s as a fraction of the float32 matmul peak timed in the same rounds, peak RSS, and the CPU
cores other processes used meanwhile. With dropout 0 the JAX step's attention is the fused
``jax.nn.dot_product_attention``; with dropout > 0 in training it is flax's explicit
softmax-dropout path (models/transformer.py). ``bfloat16`` rows: JAX with
``train.compute_dtype='bfloat16'`` (parameters float32), PyTorch under CPU bfloat16 autocast
(``--torch_bf16 float32`` keeps it in float32).

Before timing, a check (dropout 0, the same batch and the same mask on both sides) compares
parameter counts, the loss and every gradient (float32, and float64 on both sides), and one
optimiser update of the project's compiled step against the twin's step.
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

SITES, AXES = 8, 3  # the reference's 8 IMUs -> 48 token channels


# ----------------------------------------------------------------------------- shared set-up


def masked_config(batch_size: int, size: str = '', dropout: float | None = None,
                  dtype: str = 'float32'):
  """``configs/pretrain.py:<size>,masked`` at batch ``batch_size`` (dropout and compute dtype
  overridden where given)."""
  sys.path.insert(0, ROOT)
  from configs import pretrain as pretrain_cfg

  cfg = pretrain_cfg.get_config(','.join(p for p in (size, 'masked') if p))
  cfg.train.batch_size = batch_size
  cfg.train.compute_dtype = dtype
  if dropout is not None:
    cfg.model.transformer.dropout = float(dropout)
  return cfg


def fake_batch(batch_size: int, window: int, sites: int = SITES, seed: int = 0):
  """Raw-unit-like acc (m/s^2) and gyr (rad/s) windows [B, N, T, 3] and their scale-only
  statistics (means 0, one pooled std per modality: ``ssl.normalization='scale'``)."""
  import numpy as np

  rng = np.random.default_rng(seed)
  shape = (batch_size, sites, window, AXES)
  acc = (9.81 + 3.0 * rng.normal(size=shape)).astype(np.float32)
  gyr = (0.1 + 1.5 * rng.normal(size=shape)).astype(np.float32)
  stats = {'acc_mean': 0.0, 'acc_std': float(acc.std()),
           'gyr_mean': 0.0, 'gyr_std': float(gyr.std())}
  return acc, gyr, stats


def import_twin():
  try:
    import torch  # noqa: F401
  except ImportError:
    sys.exit(lockstep.TORCH_MISSING)
  import torch_transformer_reference

  return torch_transformer_reference


def twin_model(tt, cfg, channels: int, length: int):
  t = cfg.model.transformer
  return tt.MaskedTransformer(channels, length, int(t.width), int(t.depth), int(t.heads),
                              int(t.ff), float(t.dropout), float(t.pos_base_factor))


def check_equivalence(cfg, batch_size: int = 4, sites: int = SITES, seed: int = 2,
                      threads: int = 0) -> dict:
  """The project's masked step and the twin on the same batch and mask, dropout off.

  The JAX initialisation is copied into the twin. Compared: parameter counts; the loss and every
  gradient of the project's loss (``make_masked_train_step``'s: ``masked_inputs``, the model in
  training mode, ``losses.masked_mse`` against ``imu_tokens``) in float32 and, both sides
  recomputed in double precision, in float64; one update of the project's compiled step
  (``build_training``'s ``step_fn``, at the end of the warm-up, its own mask) against the twin's
  step with that mask; the twin's learning rate against the project's schedule."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  import torch

  from ssl_imu_jax.models.transformer import contiguous_mask, imu_tokens
  from ssl_imu_jax.training import losses, pretrain, train_state

  tt = import_twin()
  if threads:
    torch.set_num_threads(threads)
  cfg = cfg.copy_and_resolve_references()
  cfg.train.batch_size = batch_size
  cfg.model.transformer.dropout = 0.0
  cfg.train.compute_dtype = 'float32'
  length = cfg.data.window_length
  acc, gyr, stats = fake_batch(batch_size, length, sites, seed)
  setup = pretrain.build_training(cfg, (1, sites, length, AXES), stats)
  state = setup.state
  params0 = jax.device_get(state.params)
  ratio = float(cfg.ssl.mask_ratio)
  rng = jax.random.key(cfg.seed)
  mask = contiguous_mask(jax.random.key(seed), batch_size, length, ratio)

  def project_loss(model):
    def loss_fn(params, acc, gyr, mask):
      a, g = pretrain.masked_inputs(state, {'acc': acc, 'gyr': gyr}, True)
      _, recon = model.apply({'params': params}, a, g, mask, train=True,
                             rngs={'dropout': jax.random.key(0)})
      return losses.masked_mse(recon, imu_tokens(a, g), mask)
    return jax.jit(jax.value_and_grad(loss_fn))

  loss_j, g_j = project_loss(setup.model)(state.params, acc, gyr, mask)
  loss_j, g_j = float(loss_j), tt.flax_to_torch_names(jax.device_get(g_j))

  def twin(dtype=torch.float32):
    tm = twin_model(tt, cfg, imu_tokens(acc[:1], gyr[:1]).shape[-1], length)
    tm.train()
    tt.load_flax(tm, params0)
    return tm.to(dtype)

  acc_t, gyr_t, mask_t = torch.from_numpy(acc), torch.from_numpy(gyr), torch.from_numpy(
      np.array(mask))
  tm = twin()
  loss_t = tt.loss_of(tm, acc_t, gyr_t, stats, mask_t)
  loss_t.backward()
  rel = lambda a, b: float(np.linalg.norm(a - b) / (np.linalg.norm(a) + 1e-30))  # noqa: E731
  errs = sorted(rel(g_j[n], p.grad.numpy()) for n, p in tm.named_parameters())

  # float64 on both sides: what is left is a difference of the functions, or float32 rounding
  # that float64 cannot remove: jax.nn.dot_product_attention computes its softmax in float32
  # whatever the input dtype (the fused path), which bounds the agreement at ~1e-8.
  with lockstep.project_in_float64():
    f64 = lambda t: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), t)  # noqa: E731
    loss_j64, g_j64 = project_loss(setup.model.clone(dtype=jnp.float64))(
        f64(params0), jnp.asarray(acc, jnp.float64), jnp.asarray(gyr, jnp.float64), mask)
    loss_j64, g_j64 = np.asarray(loss_j64), jax.device_get(g_j64)
  if loss_j64.dtype != np.float64:
    raise RuntimeError(f'the float64 JAX loss came out {loss_j64.dtype}')
  g_j64 = tt.flax_to_torch_names(g_j64, dtype='float64')
  tm64 = twin(torch.float64)
  loss_t64 = tt.loss_of(tm64, acc_t.double(), gyr_t.double(), stats, mask_t)
  loss_t64.backward()
  errs64 = sorted(rel(g_j64[n], p.grad.numpy()) for n, p in tm64.named_parameters())

  # One update of the project's compiled step at the end of the warm-up (schedule count set
  # there, Adam's count 0), against the twin's step with the mask that step draws.
  warm = int(round(cfg.optimizer.warmup_fraction * cfg.train.steps))
  is_sched = lambda x: isinstance(x, optax.ScaleByScheduleState)  # noqa: E731
  opt_state = jax.tree.map(
      lambda x: x._replace(count=jnp.asarray(warm, x.count.dtype)) if is_sched(x) else x,
      state.opt_state, is_leaf=is_sched)
  st = state.replace(step=jnp.asarray(warm, jnp.int32), opt_state=opt_state)
  step_mask = contiguous_mask(pretrain.masked_step_rngs(rng, warm)[1], batch_size, length, ratio)
  batch = jax.device_put({'acc': acc, 'gyr': gyr}, setup.data_sharding)
  new_state, m_step = setup.step_fn(st, batch, rng)
  upd_j = tt.flax_to_torch_names(jax.tree.map(lambda a, b: np.asarray(a) - b,
                                              jax.device_get(new_state.params), params0))
  tm2 = twin()
  opt, lr_at = tt.make_optimizer(tm2, cfg.optimizer, cfg.train.steps)
  loss_step_t, _ = tt.train_step(tm2, opt, lr_at, warm, acc_t, gyr_t, stats, ratio,
                                 mask=torch.from_numpy(np.array(step_mask)))
  p0 = tt.flax_to_torch_names(params0)
  upd_t = {n: p.detach().numpy() - p0[n] for n, p in tm2.named_parameters()}
  update_err = rel(np.concatenate([upd_j[n].ravel() for n in upd_t]),
                   np.concatenate([upd_t[n].ravel() for n in upd_t]))
  schedule = train_state.make_schedule(cfg.optimizer, cfg.train.steps)
  probe = sorted({0, 1, warm - 1, warm, warm + 1, cfg.train.steps // 2, cfg.train.steps - 1})
  lr_err = max(abs(float(schedule(s)) - lr_at(s)) / cfg.optimizer.learning_rate for s in probe)
  return {
      'framework': 'check', 'batch_size': batch_size, 'tensors': len(errs),
      'params_jax': int(sum(np.size(x) for x in jax.tree.leaves(params0))),
      'params_torch': tt.count_params(tm),
      'params_layers_torch': tt.count_params(tm, 'encoder.layers.'),
      'loss_jax': loss_j, 'loss_torch': loss_t.item(),
      'max_rel_grad_err': errs[-1], 'median_rel_grad_err': errs[len(errs) // 2],
      'loss_jax_f64': float(loss_j64), 'loss_torch_f64': loss_t64.item(),
      'max_rel_grad_err_f64': errs64[-1], 'median_rel_grad_err_f64': errs64[len(errs64) // 2],
      'loss_step_jax': float(m_step['loss']), 'loss_step_torch': float(loss_step_t),
      'max_rel_update_err': update_err, 'lr_checked': lr_at(warm), 'max_rel_lr_err': lr_err,
  }


# ----------------------------------------------------------------------------- workers


def setup_jax(args):
  """The project's masked step, built and compiled; (run_step, info, extras)."""
  import jax

  from ssl_imu_jax.training import pretrain

  base_rss, _ = lockstep.rss_mb()
  cfg = masked_config(args.batch_size, args.size, args.dropout, args.dtype)
  length = cfg.data.window_length
  acc, gyr, stats = fake_batch(args.batch_size, length, args.sites)
  setup = pretrain.build_training(cfg, (1, args.sites, length, AXES), stats)
  batch = jax.device_put({'acc': acc, 'gyr': gyr}, setup.data_sharding)
  rng = jax.random.key(cfg.seed)
  t0 = time.perf_counter()
  compiled = setup.step_fn.lower(setup.state, batch, rng).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  holder = {'state': setup.state}

  def run_step():
    holder['state'], metrics = compiled(holder['state'], batch, rng)
    metrics['loss'].block_until_ready()

  info = {
      'framework': 'jax', 'batch_size': args.batch_size, 'dtype': args.dtype,
      'dropout': float(cfg.model.transformer.dropout), 'compile_s': compile_s,
      'flops': lockstep.flops_of(compiled),
      'xla_temp_mb': getattr(mem, 'temp_size_in_bytes', 0) / 2**20,
      'rss_after_import_mb': base_rss,
      'params': int(sum(x.size for x in jax.tree.leaves(setup.state.params))),
      'jax_version': jax.__version__, 'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'matmul_size': args.matmul_size,
  }
  return run_step, info, {'matmul': lockstep.jax_matmul_peak(args.matmul_size)}


def setup_torch(args):
  """The twin, its optimiser and the batch (a new mask per step, drawn as the reference does)."""
  tt = import_twin()
  import torch

  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  base_rss, _ = lockstep.rss_mb()
  cfg = masked_config(args.batch_size, args.size, args.dropout, args.dtype)
  length = cfg.data.window_length
  acc, gyr, stats = fake_batch(args.batch_size, length, args.sites)
  model = twin_model(tt, cfg, 2 * AXES * args.sites, length)
  model.train()
  opt, lr_at = tt.make_optimizer(model, cfg.optimizer, cfg.train.steps, args.torch_optimizer)
  acc, gyr = torch.from_numpy(acc), torch.from_numpy(gyr)
  autocast = args.dtype == 'bfloat16' and args.torch_bf16 == 'autocast'
  step = torch.compile(tt.train_step) if args.torch_compile else tt.train_step
  counter = {'step': 0}
  ratio = float(cfg.ssl.mask_ratio)

  def run_step():
    step(model, opt, lr_at, counter['step'], acc, gyr, stats, ratio, autocast=autocast)
    counter['step'] += 1

  info = {
      'framework': 'torch', 'batch_size': args.batch_size, 'rss_after_import_mb': base_rss,
      'params': tt.count_params(model), 'torch_version': torch.__version__,
      'threads': torch.get_num_threads(), 'optimizer': args.torch_optimizer,
      'compiled': args.torch_compile, 'autocast_bf16': autocast,
  }
  return run_step, info, {}


def worker_check(args) -> dict:
  cfg = masked_config(args.check_batch, args.size)
  return check_equivalence(cfg, args.check_batch, args.sites, threads=args.threads)


WORKERS = {'matmul': lockstep.worker_matmul, 'check': worker_check}
SERVERS = {'jax': setup_jax, 'torch': setup_torch}


# ----------------------------------------------------------------------------- driver


def worker_cmd(kind: str, args, batch_size: int = 0, dtype: str = 'float32',
               dropout: float | None = None) -> tuple[list[str], dict]:
  cmd = [sys.executable, os.path.abspath(__file__), f'--_worker={kind}',
         f'--batch_size={batch_size}', f'--threads={args.threads}', f'--dtype={dtype}',
         f'--size={args.size}', f'--sites={args.sites}', f'--matmul_size={args.matmul_size}',
         f'--matmul_repeats={args.matmul_repeats}', f'--torch_optimizer={args.torch_optimizer}',
         f'--torch_bf16={args.torch_bf16}', f'--check_batch={args.check_batch}']
  if dropout is not None:
    cmd.append(f'--dropout={dropout}')
  if args.torch_compile:
    cmd.append('--torch_compile')
  env = dict(os.environ)
  if kind in ('torch', 'check') and args.torch_omp_wait_policy != 'unset':
    env['OMP_WAIT_POLICY'] = args.torch_omp_wait_policy.upper()
  if args.xla_flags:
    env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') + ' ' + args.xla_flags).strip()
  return cmd, env


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--batch_sizes', default='16,64', help='windows per step, comma separated')
  p.add_argument('--dtypes', default='float32', help='JAX compute dtypes: float32,bfloat16')
  p.add_argument('--dropouts', default='0.1',
                 help='dropout rates to time (0.1: the reference, attention through the '
                 'explicit path in training; 0: the fused path)')
  p.add_argument('--quick', action='store_true', help='smoke run: B=4, 1 warm-up, 2 steps')
  p.add_argument('--steps', type=int, default=3, help='timed steps per row')
  p.add_argument('--warmup', type=int, default=1, help='untimed rounds first')
  p.add_argument('--size', default='', help="configs/pretrain.py size ('' reference, 'tiny')")
  p.add_argument('--sites', type=int, default=SITES, help='IMUs (tokens have 6 x sites channels)')
  p.add_argument('--torch_bf16', default='autocast', choices=('autocast', 'float32'),
                 help='the PyTorch side of bfloat16 rows')
  lockstep.add_common_args(p)
  p.add_argument('--check_batch', type=int, default=4, help='windows in the equivalence check')
  p.add_argument('--grad_tol', type=float, default=1e-6,
                 help='largest relative gradient difference accepted in float64 (the fused '
                 "attention's softmax stays float32: ~1e-8 measured)")
  p.add_argument('--grad_tol_f32', type=float, default=1e-3,
                 help='largest relative gradient difference accepted in float32')
  p.add_argument('--json', default='', help='also write every raw result to this file')
  p.add_argument('--batch_size', type=int, default=0, help=argparse.SUPPRESS)
  p.add_argument('--dtype', default='float32', help=argparse.SUPPRESS)
  p.add_argument('--dropout', type=float, default=None, help=argparse.SUPPRESS)
  p.add_argument('--_worker', default='', help=argparse.SUPPRESS)
  args = p.parse_args(argv)

  if args._worker:
    lockstep.pin_cpus(args.threads)
    sys.path.insert(0, ROOT)
    if args._worker in SERVERS:
      lockstep.serve(SERVERS[args._worker], args)
    else:
      print('RESULT ' + json.dumps(WORKERS[args._worker](args)), flush=True)
    return 0

  frameworks = [f.strip() for f in args.frameworks.split(',') if f.strip()]
  if 'torch' in frameworks:
    import_twin()
  if args.quick:
    args.batch_sizes, args.steps, args.warmup = '4', 2, 1
    args.matmul_size, args.matmul_repeats, args.matmul_per_round = 1024, 5, 1
  batch_sizes = [int(b) for b in args.batch_sizes.split(',')]
  dtypes = [d.strip() for d in args.dtypes.split(',') if d.strip()]
  dropouts = [float(d) for d in args.dropouts.split(',') if d.strip()]

  results = []
  print(f'{lockstep.cpu_model()}; CPUs/threads per framework: {args.threads}; shapes: B x '
        f'{args.sites} IMUs x 128 x {AXES} per modality ({2 * AXES * args.sites} token '
        f'channels; configs/pretrain.py:{args.size + "," if args.size else ""}masked); '
        f'XLA_FLAGS={(os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()!r}; '
        f'PyTorch OMP_WAIT_POLICY {args.torch_omp_wait_policy}; load average '
        f'{os.getloadavg()[0]:.2f}')
  if 'torch' in frameworks:
    chk = lockstep.run_worker(*worker_cmd('check', args), 'check')
    results.append(chk)
    print(f"check (B={chk['batch_size']}, dropout 0, same batch and mask): params JAX "
          f"{chk['params_jax']:,} PyTorch {chk['params_torch']:,} (six layers "
          f"{chk['params_layers_torch']:,}); loss JAX {chk['loss_jax']:.6f} PyTorch "
          f"{chk['loss_torch']:.6f}; relative difference of the {chk['tensors']} gradient "
          f"tensors: max {chk['max_rel_grad_err']:.1e}, median {chk['median_rel_grad_err']:.1e} "
          f"(float32), max {chk['max_rel_grad_err_f64']:.1e}, median "
          f"{chk['median_rel_grad_err_f64']:.1e} (float64); one step of the compiled project "
          f"step vs the twin's at lr {chk['lr_checked']:.1e}: loss {chk['loss_step_jax']:.6f} "
          f"vs {chk['loss_step_torch']:.6f}, update {chk['max_rel_update_err']:.1e}; schedule "
          f"{chk['max_rel_lr_err']:.1e}")
    if (chk['params_jax'] != chk['params_torch']
        or abs(chk['loss_jax'] - chk['loss_torch']) > 1e-5 * max(1.0, abs(chk['loss_jax']))
        or chk['max_rel_grad_err'] > args.grad_tol_f32
        or chk['max_rel_grad_err_f64'] > args.grad_tol
        or chk['max_rel_lr_err'] > 1e-6):
      sys.exit('The PyTorch twin does not compute the same step as JAX; not timing it.')
  mm = lockstep.run_worker(*worker_cmd('matmul', args), 'matmul')
  results.append(mm)
  line = (f"standalone matmul ({mm['n']}^3 float32, best of {args.matmul_repeats}): JAX "
          f"{mm['jax_flops_per_s'] / 1e9:.1f}")
  if 'torch_flops_per_s' in mm:
    line += f", PyTorch {mm['torch_flops_per_s'] / 1e9:.1f}"
  print(line + ' GFLOP/s', flush=True)

  rows = []
  for b in batch_sizes:
    for dtype in dtypes:
      for dropout in dropouts:
        def start(kind, b=b, dtype=dtype, dropout=dropout):
          return lockstep.Server(*worker_cmd(kind, args, b, dtype, dropout),
                                 f'{kind} worker (B={b}, {dtype}, dropout {dropout})')

        row = lockstep.measure(frameworks, start, args)
        row.update(batch_size=b, dtype=dtype, dropout=dropout)
        results.extend([*(v for k, v in row.items() if k in SERVERS),
                        {'framework': 'other_load', 'batch_size': b, 'dtype': dtype,
                         'dropout': dropout, 'cores': row['other_load']}])
        rows.append(row)
        print_row(row, args, header=len(rows) == 1)

  print('s/step: median of the timed steps (fastest: ' + ', '.join(
      f"B={r['batch_size']} {r['dtype']} d{r['dropout']:g} JAX {min(timed(r['jax'], args)):.3f}"
      + (f" PT {min(timed(r['torch'], args)):.3f}" if 'torch' in r else '')
      for r in rows if 'jax' in r) + '). PT/JAX > 1: JAX is faster.')
  print('GFLOP/step: XLA cost analysis of the compiled JAX step. %peak: JAX GFLOP/s over the '
        f'best {args.matmul_size}^3 float32 JAX matmul timed {args.matmul_per_round}x after every '
        'lock-step round (same load). MB: peak RSS of each subprocess. other: CPU cores other '
        'processes used while the row was timed.')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=1)
  return 0


def timed(result: dict, args) -> list[float]:
  return result['times'][args.warmup:]


def print_row(row: dict, args, header: bool) -> None:
  nan = float('nan')
  if header:
    print(f"{'B':>4} {'dtype':>8} {'drop':>4} {'JAX s/step':>10} {'PT s/step':>9} "
          f"{'JAX win/s':>9} {'PT win/s':>8} {'PT/JAX':>6} {'GFLOP/step':>10} "
          f"{'JAX GFLOP/s':>11} {'peak':>6} {'%peak':>6} {'JAX MB':>6} {'PT MB':>6} "
          f"{'compile s':>9} {'other':>5}")
  rj, rt = row.get('jax', {}), row.get('torch', {})
  sj = statistics.median(timed(rj, args)) if rj else nan
  st = statistics.median(timed(rt, args)) if rt else nan
  flops = rj.get('flops', nan)
  peak = 2 * args.matmul_size**3 / min(rj.get('matmul_times') or [nan])
  print(f"{row['batch_size']:>4} {row['dtype']:>8} {row['dropout']:>4g} {sj:>10.3f} {st:>9.3f} "
        f"{row['batch_size'] / sj:>9.1f} {row['batch_size'] / st:>8.1f} {st / sj:>6.2f} "
        f"{flops / 1e9:>10.2f} {flops / sj / 1e9:>11.1f} {peak / 1e9:>6.1f} "
        f"{100 * flops / sj / peak:>5.1f}% {rj.get('peak_rss_mb', nan):>6.0f} "
        f"{rt.get('peak_rss_mb', nan):>6.0f} {rj.get('compile_s', nan):>9.1f} "
        f"{row['other_load']:>5.2f}", flush=True)


if __name__ == '__main__':
  sys.exit(main())
