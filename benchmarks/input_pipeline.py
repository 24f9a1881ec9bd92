r"""Input pipeline: batches per second from TFDS records against the pre-training step, and
resident memory against corpus size, in memory and streamed (``data.stream``).

  .venv/bin/python benchmarks/input_pipeline.py                  # about 2-3 min on 2 cores
  .venv/bin/python benchmarks/input_pipeline.py --strides=0,32,16 --steps=4  # 3 sizes, 4 rounds
  .venv/bin/python benchmarks/input_pipeline.py --data_dir=/tmp/ipb  # keep / reuse the records
  .venv/bin/python benchmarks/input_pipeline.py --strides=0,32,16,8 --memory_only  # memory alone

Corpora: ``synthetic_movi`` (17 IMUs, 100 Hz, T = 128) at size ``tiny``, built by the project's
builder (``input_pipeline.ensure_built``) into a temporary directory, once per ``--strides``
entry: a shorter window stride cuts more (overlapping) windows from the same simulated walks, so
the corpus grows without simulating more (0 = non-overlapping).

Throughput, on the largest corpus at batch ``--batch`` (64, ``configs/pretrain.py``'s default):

- the baseline: the compiled pre-training step (``pretrain.build_training`` with
  ``configs/pretrain.py``'s default config, the step ``pretrain.run`` trains with), timed alone
  on a batch already on the device; its steps/s is the rate training consumes batches;
- ``input_pipeline.train_iterator`` (the iterator ``trainer.fit`` reads, device batches out) over
  the split in memory and streamed (``RecordArray``: each batch decoded from the ArrayRecord
  files), with ``--prefetch`` grain threads and with none, timed alone;
- the step fed by the streamed iterator, as a pre-training run with ``data.stream=True`` runs,
  alternated with the step alone round by round (medians), so both see the same outside load.

Ratio = batches/s / the step's steps/s: above 1 the input keeps up with training.

Memory: one fresh subprocess per corpus and mode loads the split (``load_split``) and gathers
``--batches`` host batches; resident memory (VmRSS) after the imports is its baseline, and the
table gives the growth over it and its peak (VmHWM) against the signals' size in float32.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MB = 1024 * 1024


def vm_kb(field: str) -> int:
  """A field of /proc/self/status in kB (VmRSS: resident now, of which RssAnon is the process's
  own memory and RssFile mapped files; VmHWM: peak resident)."""
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith(field + ':'):
        return int(line.split()[1])
  raise KeyError(field)


def data_config(stride: int):
  sys.path.insert(0, ROOT)
  from configs import common

  c = common.data_config('synthetic_movi', 'tiny')
  c.window_stride = int(stride)
  return c


def folder_bytes(path: str) -> int:
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


# ----------------------------------------------------------------------------- memory (child)


def rss_child(path: str, stream: bool, batch: int, batches: int) -> dict:
  """Runs in a fresh process: resident memory after imports, after loading, after batches."""
  import numpy as np

  from ssl_imu_jax.data import input_pipeline

  input_pipeline._source(path, 'train')  # TFDS's own start-up cost is part of the baseline
  base, base_anon = vm_kb('VmRSS'), vm_kb('RssAnon')
  t0 = time.perf_counter()
  ws = input_pipeline.load_split(path, 'train', stream=stream)
  load_s = time.perf_counter() - t0
  loaded = vm_kb('VmRSS')
  for step in range(batches):
    idx = input_pipeline.batch_indices(step, batch, len(ws), seed=0)
    input_pipeline.gather(ws, idx, with_targets=False)
  return {'windows': len(ws), 'signal_bytes': 2 * len(ws) * int(np.prod(ws.acc.shape[1:])) * 4,
          'base_kb': base, 'base_anon_kb': base_anon, 'loaded_kb': loaded,
          'after_kb': vm_kb('VmRSS'), 'after_anon_kb': vm_kb('RssAnon'),
          'peak_kb': vm_kb('VmHWM'), 'load_s': load_s}


def measure_rss(path: str, stream: bool, args) -> dict:
  cmd = [sys.executable, os.path.abspath(__file__), '--_rss', path, '--_stream', str(int(stream)),
         '--batch', str(args.batch), '--batches', str(args.batches)]
  out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- throughput


def block(tree):
  import jax

  jax.block_until_ready(tree)
  return tree


def time_iterator(make_iter, n: int) -> float:
  """Seconds per batch over ``n`` batches after the first (which starts the threads)."""
  it = make_iter(n + 1)
  block(next(it))
  t0 = time.perf_counter()
  for _ in range(n):
    block(next(it))
  dt = (time.perf_counter() - t0) / n
  it.close()
  return dt


def throughput(path: str, args) -> list[dict]:
  import jax
  import numpy as np

  from configs import pretrain as pretrain_config
  from ssl_imu_jax.data import input_pipeline
  from ssl_imu_jax.training import pretrain

  mem = input_pipeline.load_split(path, 'train')
  streamed = input_pipeline.load_split(path, 'train', stream=True)
  idx = np.arange(len(mem))
  cfg = pretrain_config.get_config('default')
  cfg.train.batch_size = args.batch
  stats = input_pipeline.fit_input_stats(mem, idx)
  t0 = time.perf_counter()
  setup = pretrain.build_training(cfg, (1,) + mem.acc.shape[1:], stats)
  init_s = time.perf_counter() - t0
  dsh, rng = setup.data_sharding, jax.random.key(0)
  batch = input_pipeline.to_global(input_pipeline.gather(mem, idx[:args.batch], False), dsh)
  state = setup.state
  t0 = time.perf_counter()
  state, m = block(setup.step_fn(state, batch, rng))
  compile_s = time.perf_counter() - t0

  def iterator(ws, prefetch):
    return lambda n: input_pipeline.train_iterator(ws, idx, args.batch, 0, 0, n, dsh,
                                                   prefetch=prefetch)

  rows = []
  for name, ws in (('in memory', mem), ('streamed', streamed)):
    for prefetch in (0, args.prefetch):
      s = time_iterator(iterator(ws, prefetch), args.batches)
      rows.append({'what': f'train_iterator, {name}, prefetch {prefetch}', 's_per_batch': s})

  # The step alone (on a batch already on the device) and the step fed by the streamed iterator
  # (its threads decode the next batches while the step runs), alternated round by round so
  # that both see the same load from other processes.
  it = iterator(streamed, args.prefetch)(args.steps + 1)
  block(next(it))  # starts the threads
  alone, fed = [], []
  for _ in range(args.steps):
    t0 = time.perf_counter()
    state, m = block(setup.step_fn(state, batch, rng))
    alone.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    _, b = next(it)
    state, m = block(setup.step_fn(state, b, rng))
    fed.append(time.perf_counter() - t0)
  step_s = statistics.median(alone)
  rows.insert(0, {'what': f'pre-training step alone (baseline; compile {compile_s:.0f} s, init '
                          f'{init_s:.0f} s)', 's_per_batch': step_s})
  rows.append({'what': f'step fed by the streamed iterator, prefetch {args.prefetch}',
               's_per_batch': statistics.median(fed)})
  for r in rows:
    r['batches_per_s'] = 1.0 / r['s_per_batch']
    r['ratio'] = step_s / r['s_per_batch']
  return rows


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--batch', type=int, default=64, help='windows per batch (17 IMUs each)')
  p.add_argument('--strides', default='0,16',
                 help='window strides of the corpora (0 = non-overlapping); the last, most '
                      'windows, is the throughput corpus')
  p.add_argument('--batches', type=int, default=12, help='timed pipeline batches')
  p.add_argument('--steps', type=int, default=2,
                 help='rounds of one step alone + one step fed by the stream')
  p.add_argument('--prefetch', type=int, default=2, help="grain threads (config train.prefetch)")
  p.add_argument('--memory_only', action='store_true', help='the memory table alone')
  p.add_argument('--data_dir', default='', help='records here, kept (default: a temp dir)')
  p.add_argument('--json', default='', help='also write the figures to this JSON file')
  p.add_argument('--_rss', default='', help=argparse.SUPPRESS)
  p.add_argument('--_stream', type=int, default=0, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  sys.path.insert(0, ROOT)
  if args._rss:
    print(json.dumps(rss_child(args._rss, bool(args._stream), args.batch, args.batches)))
    return 0

  import jax

  from ssl_imu_jax.data import input_pipeline

  t_start = time.perf_counter()
  cpu = next((ln.split(':', 1)[1].strip() for ln in open('/proc/cpuinfo')
              if ln.startswith('model name')), '?')
  print(f'# {cpu}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; '
        f'jax {jax.__version__}, {jax.devices()[0].platform}')
  data_dir = args.data_dir or tempfile.mkdtemp(prefix='input_pipeline_bench_')
  try:
    corpora = []
    for stride in [int(s) for s in args.strides.split(',')]:
      t0 = time.perf_counter()
      path = input_pipeline.ensure_built(data_config(stride), data_dir)
      corpora.append({'stride': stride, 'path': path, 'build_s': time.perf_counter() - t0,
                      'disk_bytes': folder_bytes(path)})

    print(f'\n## Resident memory against corpus size (batch {args.batch}, {args.batches} '
          f'batches gathered; growth over the process after its imports, VmRSS)\n')
    print('| corpus (windows, stride) | records on disk | signals float32 | in memory: growth '
          '(anonymous) / peak | streamed: growth (anonymous) / peak | streamed / in memory | '
          'load in memory / streamed |')
    print('|---|---:|---:|---:|---:|---:|---:|')
    for c in corpora:
      c['memory'] = measure_rss(c['path'], False, args)
      c['stream'] = measure_rss(c['path'], True, args)
      grow = {k: (c[k]['after_kb'] - c[k]['base_kb']) / 1024 for k in ('memory', 'stream')}
      anon = {k: (c[k]['after_anon_kb'] - c[k]['base_anon_kb']) / 1024
              for k in ('memory', 'stream')}
      peak = {k: (c[k]['peak_kb'] - c[k]['base_kb']) / 1024 for k in ('memory', 'stream')}
      c['growth_mb'], c['anon_growth_mb'], c['peak_growth_mb'] = grow, anon, peak
      print(f"| {c['memory']['windows']} (stride {c['stride'] or 128}) | "
            f"{c['disk_bytes'] / MB:.0f} MB | {c['memory']['signal_bytes'] / MB:.0f} MB | "
            f"{grow['memory']:.0f} ({anon['memory']:.0f}) / {peak['memory']:.0f} MB | "
            f"{grow['stream']:.0f} ({anon['stream']:.0f}) / {peak['stream']:.0f} MB | "
            f"{grow['stream'] / max(grow['memory'], 1e-9):.2f} | "
            f"{c['memory']['load_s']:.1f} / {c['stream']['load_s']:.1f} s |")

    big, rows = corpora[-1], []
    if not args.memory_only:
      rows = throughput(big['path'], args)
      print(f"\n## Batches per second against the pre-training step (corpus of "
            f"{big['memory']['windows']} windows, batch {args.batch} x 17 IMUs x 128 samples)\n")
      print('| what | s per batch | batches/s | ratio to the step |')
      print('|---|---:|---:|---:|')
      for r in rows:
        print(f"| {r['what']} | {r['s_per_batch']:.3f} | {r['batches_per_s']:.2f} | "
              f"{r['ratio']:.2f} |")
    total = time.perf_counter() - t_start
    builds = ', '.join(f"{c['build_s']:.0f}" for c in corpora)
    print(f'\n# total {total:.0f} s (builds {builds} s); load average {os.getloadavg()[0]:.1f} '
          f'at the end')
    if args.json:
      with open(args.json, 'w') as f:
        json.dump({'cpu': cpu, 'corpora': corpora, 'throughput': rows, 'total_s': total}, f,
                  indent=2)
  finally:
    if not args.data_dir:
      shutil.rmtree(data_dir, ignore_errors=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
