r"""Runs one stage of ssl_imu_jax; the config says which.

  python main.py --config=configs/demo.py:tiny --workdir=runs/demo_tiny
  python main.py --config=configs/pretrain.py --workdir=runs/pre --config.train.steps=10000

Stages: prepare | pretrain | finetune | sweep | paper | objectives | budget | predict | evaluate |
embed | demo | release.
A mistake in the command, config or data is one line on stderr and exit status 2
(``--verbose`` shows its traceback); any other error is a bug and keeps its traceback.
Ctrl-C or SIGTERM stops a run at the next step boundary with a checkpoint (a second one at once):
one line says where, rerunning the same command resumes; exit status 130 / 143
(ssl_imu_jax/training/interrupt.py).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from ssl_imu_jax import errors, stages
from ssl_imu_jax.training import interrupt

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (path[:arg]).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for data, checkpoints and reports.')
_XLA_CACHE = flags.DEFINE_string(
    'xla_cache_dir', '', "Persistent XLA compilation cache ('' = $SSL_IMU_JAX_XLA_CACHE if set, "
    "else <workdir>/xla_cache; 'none' = off). Cells of a sweep share compiled steps through it.")
_VERBOSE = flags.DEFINE_bool('verbose', False, 'Tracebacks for mistakes in the command or config.')
flags.mark_flags_as_required(['config', 'workdir'])


def xla_cache_dir(flag: str, workdir: str, environ=os.environ) -> str:
  """The compilation cache a run uses ('' = none): the flag, else $SSL_IMU_JAX_XLA_CACHE (one
  cache shared by several work directories, e.g. a test session's), else <workdir>/xla_cache."""
  if flag == 'none':
    return ''
  return flag or environ.get('SSL_IMU_JAX_XLA_CACHE', '') or os.path.join(workdir, 'xla_cache')


def enable_compilation_cache(path: str) -> None:
  import jax

  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)


def _fail(message: str) -> None:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def _config_spec(argv: list[str]) -> str:
  for a in argv:
    if a.startswith('--config='):
      return a.split('=', 1)[1]
  return ''


def _unknown_key(argv: list[str]) -> str | None:
  """The first ``--config.a.b=...`` override naming a key the config does not have, explained."""
  import importlib.util

  spec = _config_spec(argv)
  path, _, arg = spec.partition(':')
  try:
    module_spec = importlib.util.spec_from_file_location('_user_config', path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg or None)
  except Exception:  # noqa: BLE001 -- the original error is reported instead
    return None
  for a in argv:
    if not a.startswith('--config.'):
      continue
    key = a[len('--config.'):].split('=', 1)[0]
    node, done = config, []
    for part in key.split('.'):
      if not hasattr(node, 'keys') or part not in node.keys():
        where = 'config' + ''.join(f'.{d}' for d in done)
        have = sorted(node.keys()) if hasattr(node, 'keys') else []
        close = difflib.get_close_matches(part, have, n=1)
        hint = f'; did you mean {where}.{close[0]}?' if close else f'; it has {have}'
        return f'--config.{key}: {where} has no key {part!r}{hint}'
      node, done = node[part], done + [part]
  return None


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing, with config mistakes (unknown key, bad argument) as one line."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    if '--verbose' in argv:
      raise
    explained = _unknown_key(argv) if isinstance(e, AttributeError | KeyError) else None
    _fail(explained or f'{_config_spec(argv) or "--config"}: {_last_error_line(e)}')
    raise  # not reached


def _last_error_line(e: BaseException) -> str:
  """A config file's own error, without the traceback config_flags folds into its message."""
  lines = [ln for ln in str(e).splitlines() if ln.strip()]
  if len(lines) > 1 and 'Traceback' in str(e):
    last = lines[-1]
    match = re.match(r'^[\w.]+(?:Error|Exception): (.*)$', last)
    return match.group(1) if match else last
  return errors.one_line(e)


@contextlib.contextmanager
def run_record(workdir: str):
  """``<workdir>/run.json``: the command, code version and machine of every invocation of this
  work directory (a resumed run has several), their times and the total wall time; results/
  provenance (ssl_imu_jax.evaluation.publish collect) reads it."""
  import time
  import uuid

  from ssl_imu_jax import files, parallel
  from ssl_imu_jax.evaluation import publish

  if not parallel.is_writer():
    yield
    return
  path = os.path.join(workdir, publish.RUN_INFO)
  stamp = publish.run_stamp()
  this = {'command': ' '.join(sys.argv), 'started_utc': stamp['started_utc'],
          'commit': stamp['code'].get('commit'), 'dirty': stamp['code'].get('dirty'),
          'id': uuid.uuid4().hex[:12]}

  def write(ok: bool) -> None:
    # Re-read: another invocation (say a report-only one) may have recorded itself meanwhile.
    old = {}
    if os.path.isfile(path):
      with open(path, encoding='utf-8') as f:
        old = json.load(f)
    runs = [r for r in old.get('invocations', []) if r.get('id') != this['id']] + [this]
    runs.sort(key=lambda r: r.get('started_utc') or '')
    os.makedirs(workdir, exist_ok=True)
    files.write_json_atomic(path, {
        **stamp, 'command': this['command'], 'started_utc': runs[0]['started_utc'],
        'finished_utc': this.get('finished_utc'), 'completed': ok,
        'wall_s': round(sum(r.get('wall_s') or 0.0 for r in runs), 1), 'invocations': runs})

  # Recorded at the start too, so what a run still going writes (report_partial/) is traced to
  # this invocation's code; an invocation without finished_utc never finished (or still runs).
  write(False)
  t0 = time.time()
  ok = False
  try:
    yield
    ok = True
  finally:
    this.update({'finished_utc': publish.utc_now(), 'wall_s': round(time.time() - t0, 1),
                 'completed': ok})
    write(ok)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  from ssl_imu_jax import parallel

  parallel.maybe_initialize_distributed()
  logging.set_verbosity(logging.WARNING)  # our warnings show; TFDS noise is silenced at source
  import tensorflow_datasets as tfds

  tfds.disable_progress_bar()
  workdir = os.path.abspath(_WORKDIR.value)
  cache = xla_cache_dir(_XLA_CACHE.value, workdir)
  if cache:
    enable_compilation_cache(cache)
  import jax

  # One process: a signal stops it at the next step boundary. Several processes (a multi-host
  # run) keep Python's default handling: each would stop at its own step, out of step.
  stoppable = interrupt.stop_on_signals() if jax.process_count() == 1 else contextlib.nullcontext()
  try:
    with stoppable, run_record(workdir):
      stages.run(_CONFIG.value, workdir)
      if interrupt.requested() is not None:
        print('the stop request came after the last step: the run is complete', file=sys.stderr)
  except errors.USER_ERRORS as e:
    if _VERBOSE.value:
      raise
    _fail(errors.one_line(e))
  except interrupt.Interrupted as e:
    print(e.line(), file=sys.stderr, flush=True)
    sys.exit(e.exit_code)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
