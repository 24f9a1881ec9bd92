r"""Where `make test`'s CPU goes: per test file, the share of the run's CPU and what it paid for.

  .venv/bin/python benchmarks/suite_costs.py                 # the whole suite, as `make test`
  .venv/bin/python benchmarks/suite_costs.py tests/test_finetune.py tests/test_sweep.py -n 1
  .venv/bin/python benchmarks/suite_costs.py --main --config=configs/demo.py --workdir=/tmp/d \
      --config.sweep.folds="(0,)"                          # one main.py run, the same timers

Runs pytest as `make test` does (2 xdist workers, a file each at a time, slowest files first)
with this module loaded as a plugin (``-p suite_costs``). In each worker it attributes to the
test file that is running:

- the process's CPU (every thread of the worker; not its subprocesses),
- jax's tracing, lowering to MLIR and backend (XLA) compilation, from ``jax.monitoring``'s
  duration events, and the persistent compilation cache's hits and misses,
- the wall time the test spent inside ``Checkpointer.save`` / ``wait`` / ``close`` (Orbax) and
  inside ``input_pipeline.ensure_built`` (building a data set, the synthetic simulator included),
  and the number of checkpoint saves.

The run's whole CPU (controller, workers and every subprocess they waited for) comes from
``getrusage(RUSAGE_CHILDREN)``; the table gives each file's CPU as a share of it and the
totals' shares, so that the figures compare across machines. Extra arguments go to pytest
(paths, ``-n``, ``-k``). With ``--main`` the same timers wrap one ``main.py`` run in this process
(its arguments follow), e.g. to see what a `make demo` fold pays for.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ENV = 'SUITE_COSTS_DIR'
_JAX_EVENTS = {'/jax/core/compile/jaxpr_trace_duration': 'trace_s',
               '/jax/core/compile/jaxpr_to_mlir_module_duration': 'lower_s',
               '/jax/core/compile/backend_compile_duration': 'compile_s'}
_COUNT_EVENTS = {'/jax/compilation_cache/cache_hits': 'cache_hits',
                 '/jax/compilation_cache/cache_misses': 'cache_misses'}

# ---- the plugin (inside each pytest worker) ------------------------------------------------

_STATS: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
_CURRENT = ['(collection)']


def _add(key: str, value: float) -> None:
  _STATS[_CURRENT[0]][key] += value


def _timed(fn, key: str, count: str | None = None):
  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    t = time.perf_counter()
    try:
      return fn(*args, **kwargs)
    finally:
      _add(key, time.perf_counter() - t)
      if count:
        _add(count, 1)
  return wrapper


def pytest_configure(config):
  """Listens to jax's compile events and times checkpoint writes and data builds (only when
  run by this script: the plugin is inert without $SUITE_COSTS_DIR)."""
  del config
  if not os.environ.get(_ENV):
    return
  import jax.monitoring

  from ssl_imu_jax.data import input_pipeline
  from ssl_imu_jax.training import checkpointing

  jax.monitoring.register_event_duration_secs_listener(
      lambda event, duration, **kw: _JAX_EVENTS.get(event) and _add(_JAX_EVENTS[event], duration))
  jax.monitoring.register_event_listener(
      lambda event, **kw: _COUNT_EVENTS.get(event) and _add(_COUNT_EVENTS[event], 1))
  cls = checkpointing.Checkpointer
  cls.save = _timed(cls.save, 'checkpoint_s', 'saves')
  cls.wait = _timed(cls.wait, 'checkpoint_s')
  cls.close = _timed(cls.close, 'checkpoint_s')
  # Callers import the module, not the name, so patching the module attribute reaches them.
  input_pipeline.ensure_built = _timed(input_pipeline.ensure_built, 'build_s')


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
  """Attributes what the test (its fixtures included) costs to its file."""
  del nextitem
  _CURRENT[0] = item.path.name
  t = time.process_time()
  yield
  _add('cpu_s', time.process_time() - t)


def pytest_sessionfinish(session):
  del session
  out = os.environ.get(_ENV)
  if not out or not _STATS:  # xdist's controller runs no test (its workers report)
    return
  me = resource.getrusage(resource.RUSAGE_SELF)
  kids = resource.getrusage(resource.RUSAGE_CHILDREN)
  record = {'files': {k: dict(v) for k, v in _STATS.items()},
            'process_cpu_s': me.ru_utime + me.ru_stime,
            'subprocess_cpu_s': kids.ru_utime + kids.ru_stime}
  name = os.environ.get('PYTEST_XDIST_WORKER', 'main')
  with open(os.path.join(out, f'{name}.json'), 'w', encoding='utf-8') as f:
    json.dump(record, f)


# ---- the runner -----------------------------------------------------------------------------

_COLUMNS = ('cpu_s', 'trace_s', 'lower_s', 'compile_s', 'cache_hits', 'cache_misses',
            'checkpoint_s', 'saves', 'build_s')


def _table(records: list[dict], run_cpu: float, top: int) -> str:
  per_file: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  for r in records:
    for name, stats in r['files'].items():
      per_file[name].update(stats)
  total = collections.Counter()
  for stats in per_file.values():
    total.update(stats)
  head = ('| file | CPU s | % of run | trace s | lower s | compile s | cache hits / misses '
          '| checkpoint s (saves) | data build s |\n|---|---|---|---|---|---|---|---|---|')
  row = lambda name, s: (
      f"| {name} | {s['cpu_s']:.1f} | {100 * s['cpu_s'] / run_cpu:.1f} | {s['trace_s']:.1f} | "
      f"{s['lower_s']:.1f} | {s['compile_s']:.1f} | {s['cache_hits']:.0f} / "
      f"{s['cache_misses']:.0f} | {s['checkpoint_s']:.1f} ({s['saves']:.0f}) | "
      f"{s['build_s']:.1f} |")
  ranked = sorted(per_file.items(), key=lambda kv: -kv[1]['cpu_s'])
  lines = [head] + [row(n, s) for n, s in ranked[:top]] + [row('**all files**', total)]
  workers = sum(r['process_cpu_s'] for r in records)
  subs = sum(r['subprocess_cpu_s'] for r in records)
  jax_s = total['trace_s'] + total['lower_s'] + total['compile_s']
  share = lambda x: f'{x:.0f} s ({100 * x / run_cpu:.0f} %)'
  rest = run_cpu - workers - subs
  lines += ['', f'run CPU {run_cpu:.0f} s: in the test processes {share(workers)}, in their '
            f'subprocesses {share(subs)}' + (f', elsewhere (controller, start-up) {share(rest)}'
                                            if rest > 0.5 else '') + '.',
            f'In the test processes: trace + lower + compile {share(jax_s)} of CPU; blocked in '
            f"checkpoint writes {share(total['checkpoint_s'])} and building data sets "
            f"{share(total['build_s'])} of wall."]
  return '\n'.join(lines)


def _run_main(argv: list[str]) -> int:
  """main.py with ``argv`` in this process, under the plugin's timers (one row: 'main.py')."""
  from absl import app

  sys.path.insert(0, ROOT)
  os.environ[_ENV] = os.environ.get(_ENV) or 'main'
  pytest_configure(None)
  _CURRENT[0] = 'main.py'
  import main as stages_main  # noqa: PLC0415

  t, usage0 = time.time(), resource.getrusage(resource.RUSAGE_SELF)
  rc = 0
  try:
    app.run(stages_main.main, argv=['main.py', *argv], flags_parser=stages_main.parse_flags)
  except SystemExit as e:
    rc = e.code if isinstance(e.code, int) else 1
  usage = resource.getrusage(resource.RUSAGE_SELF)
  _add('cpu_s', usage.ru_utime + usage.ru_stime - usage0.ru_utime - usage0.ru_stime)
  kids = resource.getrusage(resource.RUSAGE_CHILDREN)
  record = {'files': {k: dict(v) for k, v in _STATS.items()},
            'process_cpu_s': _STATS['main.py']['cpu_s'], 'subprocess_cpu_s':
            kids.ru_utime + kids.ru_stime}
  print(f'\nmain.py exit status {rc}; {time.time() - t:.0f} s of wall\n')
  print(_table([record], record['process_cpu_s'] + record['subprocess_cpu_s'], 1))
  return rc


def main(argv: list[str]) -> int:
  if argv[:1] == ['--main']:
    return _run_main(argv[1:])
  top = 25
  args = list(argv)
  if not any(a.startswith('-n') for a in args):
    args = ['-n', '2'] + args
  if not any(os.path.exists(os.path.join(ROOT, a.split('::')[0])) for a in args):
    args.append('tests')
  out = tempfile.mkdtemp(prefix='suite_costs_')
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONDONTWRITEBYTECODE'}
  env[_ENV] = out
  env['PYTHONPATH'] = os.pathsep.join(
      [os.path.join(ROOT, 'benchmarks')] + [p for p in [env.get('PYTHONPATH')] if p])
  cmd = [sys.executable, '-m', 'pytest', '-p', 'suite_costs', '--dist', 'loadfile',
         '--no-loadscope-reorder', '-q', *args]
  try:
    t = time.time()
    rc = subprocess.call(cmd, cwd=ROOT, env=env)
    wall = time.time() - t
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    records = []
    for name in sorted(os.listdir(out)):
      with open(os.path.join(out, name), encoding='utf-8') as f:
        records.append(json.load(f))
  finally:
    shutil.rmtree(out, ignore_errors=True)
  run_cpu = usage.ru_utime + usage.ru_stime
  print(f'\npytest exit status {rc}; {wall:.0f} s of wall, {run_cpu:.0f} s of CPU '
        f'({os.cpu_count()} cores)\n')
  print(_table(records, run_cpu, top))
  return rc


if __name__ == '__main__':  # the guard matters: data builders start spawned processes
  sys.exit(main(sys.argv[1:]))
