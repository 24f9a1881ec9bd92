"""Shared fixtures: toy data sets and tiny configs for the spine's tests."""

import contextlib
import fcntl
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / 'shared' / 'data'
sys.path.insert(0, os.path.dirname(__file__))

import toy_data  # noqa: E402

toy_data.register()


# The toy runs' encoder: the tiny ResNet cut to two stages (1 block each). What the tests check
# of a run (checkpoints, resuming, splits, reports, equivalences) does not depend on the depth,
# and tracing + compiling a step costs a third less (test_models.py checks the four-stage nets).
TOY_ENCODER = {'widths': (8, 16), 'blocks_per_stage': (1, 1)}


def tiny_pretrain_config(window_length: int = 32):
  from configs import pretrain

  c = pretrain.get_config('tiny')
  c.model.encoder.update(TOY_ENCODER)
  c.data.dataset = 'toy_unlabelled'
  c.data.window_length = window_length
  c.train.steps = 6
  c.train.batch_size = 8
  c.train.log_every = 2
  c.train.checkpoint_every = 3
  c.train.eval_every = 6
  c.train.progress = False
  c.train.prefetch = 0
  return c


def tiny_finetune_config(window_length: int = 32):
  from configs import finetune

  c = finetune.get_config('tiny')
  c.model.encoder.update(TOY_ENCODER)
  c.data.dataset = 'toy_labelled'
  c.data.window_length = window_length
  c.train.steps = 6
  c.train.batch_size = 8
  c.train.log_every = 2
  c.train.progress = False
  c.train.prefetch = 0
  return c


def killed_at_step(monkeypatch, step: int) -> None:
  """Makes the training iterator raise KeyboardInterrupt (a kill) when it reaches ``step``,
  until the test restores it with ``monkeypatch.undo()``."""
  from ssl_imu_jax.data import input_pipeline

  real = input_pipeline.train_iterator

  def dies(*args, **kwargs):
    for s, batch in real(*args, **kwargs):
      if s == step:
        raise KeyboardInterrupt('simulated kill')
      yield s, batch

  monkeypatch.setattr(input_pipeline, 'train_iterator', dies)


@pytest.fixture
def optimised_xla(monkeypatch):
  """XLA's default backend (LLVM) optimisation for the programs this test compiles in process.

  The suite compiles with it off (pytest_configure): most tests compile many tiny programs and run
  a few steps of each. A test whose time goes to running steps (a hundred or more, a real encoder)
  asks for this instead: jax.jit gets compiler_options={'xla_backend_optimization_level': 3} (the
  XLA default), e.g. 100 tiny pre-training steps on 17 sites: 63 s -> 37 s of CPU. The programs the
  package keeps for reuse are set aside for the test and put back after it, so no other test runs
  a program compiled here (nor this one a program compiled without it): tests that compare runs
  compare programs compiled alike.
  """
  import functools

  import jax

  from ssl_imu_jax.training import finetune, multicell, pretrain, trainer

  monkeypatch.setattr(jax, 'jit', functools.partial(
      jax.jit, compiler_options={'xla_backend_optimization_level': XLA_DEFAULT_OPT_LEVEL}))
  for module, name in ((finetune, '_PROGRAMS'), (multicell, '_GROUP_STEPS'),
                       (pretrain, '_PROGRAMS'), (trainer, '_GATHER_STEPS')):
    monkeypatch.setattr(module, name, {})


XLA_DEFAULT_OPT_LEVEL = 3


def xla_env_default(env: dict) -> dict:
  """``env`` for a subprocess, with the suite's TEST_XLA_FLAGS taken out of XLA_FLAGS (XLA's
  defaults, as a user's run has them): for main.py runs whose time goes to running steps."""
  names = {f.split('=')[0] for f in TEST_XLA_FLAGS.split()}
  flags = [f for f in env.get('XLA_FLAGS', '').split() if f.split('=')[0] not in names]
  return {**env, 'XLA_FLAGS': ' '.join(flags)}


def eight_device_env() -> dict:
  """This process's environment for a subprocess on 8 simulated CPU devices, with the suite's
  XLA flags (TEST_XLA_FLAGS): both meshes of an equality check compile alike."""
  env = dict(os.environ)
  flags = [f for f in env.get('XLA_FLAGS', '').split()
           if not f.startswith('--xla_force_host_platform_device_count')]
  for flag in TEST_XLA_FLAGS.split():
    if not any(f.split('=')[0] == flag.split('=')[0] for f in flags):
      flags.append(flag)
  env['XLA_FLAGS'] = ' '.join(flags + ['--xla_force_host_platform_device_count=8'])
  env['JAX_PLATFORMS'] = 'cpu'
  return env


@pytest.fixture(scope='session')
def toy_dirs(tmp_path_factory):
  """Built toy data sets (once per session): {'data_dir', 'unlabelled', 'labelled'}."""
  from ssl_imu_jax.data import input_pipeline

  data_dir = str(tmp_path_factory.mktemp('tfds'))
  return {
      'data_dir': data_dir,
      'unlabelled': input_pipeline.ensure_built(tiny_pretrain_config().data, data_dir),
      'labelled': input_pipeline.ensure_built(tiny_finetune_config().data, data_dir),
  }


@pytest.fixture(scope='session')
def pretrained(tmp_path_factory, toy_dirs):
  """A tiny pre-training run: {'workdir', 'ckpt_dir', 'out', 'config'}."""
  from ssl_imu_jax.training import pretrain

  cfg = tiny_pretrain_config()
  workdir = str(tmp_path_factory.mktemp('pre'))
  out = pretrain.run(cfg, workdir, toy_dirs['data_dir'])
  return {'workdir': workdir, 'ckpt_dir': out['checkpoint_dir'], 'out': out, 'config': cfg}


@contextlib.contextmanager
def shared_tfds(name: str):
  """A TFDS data dir shared by the whole test run (both xdist workers; removed at its end), held
  under a lock named ``name`` (say, the data set and its knobs) so that the two workers never
  build the same set at once: the first builds it, the other finds it complete. For tests that
  read a synthetic set, not for those that test its building."""
  root = os.environ['SSL_IMU_JAX_TEST_DATA']
  with open(os.path.join(root, f'.{name}.lock'), 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield root
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


# The slowest test files (fixtures included), slowest first, as measured with --durations:
# `make test` hands whole files to its two workers in collection order (--dist loadfile
# --no-loadscope-reorder), so the long files start first and the short ones fill in at the end,
# and the two workers finish together instead of one running a long file alone.
SLOW_FILES = ('test_pretrain.py', 'test_finetune.py', 'test_main_e2e.py', 'test_interrupt.py',
              'test_masked_pretrain.py', 'test_predict.py', 'test_models.py',
              'test_multiprocess.py', 'test_multidevice.py', 'test_sweep.py', 'test_attention.py',
              'test_multicell.py', 'test_seed_variance.py', 'test_finetune_transformer.py',
              'test_finetune_curves.py', 'test_synthetic_builders.py', 'test_predict_curves.py',
              'test_kill_resume.py', 'test_transformer_twin.py', 'test_experiment.py',
              'test_objectives.py', 'test_losses.py', 'test_encoder_api.py')


def pytest_collection_modifyitems(items):
  """Puts SLOW_FILES' tests first, in that order (the others keep theirs after them)."""
  rank = {name: i for i, name in enumerate(SLOW_FILES)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


# XLA flags of the whole test run (pytest_configure) and of the subprocesses that set their own
# XLA_FLAGS: compiling dominates the tests' tiny programs, and these make it cheaper. Backend (LLVM)
# optimisation off (test_finetune.py + test_pretrain.py: 588 s -> 478 s under load), and XLA:CPU's
# older fusion emitters instead of its new MLIR ones (compiling a tiny pre-training step: 7.6 s ->
# 3.4 s of CPU, its steps as fast). The programs are the same HLO, only compiled differently.
TEST_XLA_FLAGS = '--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false'


def pytest_configure(config):
  """No LLVM optimisation, and one persistent XLA compilation cache per test run, shared by the
  xdist workers (they inherit the controller's environment) and by the main.py subprocesses the
  tests start ($SSL_IMU_JAX_XLA_CACHE): the many tiny runs compile the same programs once. The
  process that made it removes it at the end (pytest_unconfigure), so no run leaves a cache in
  the temp folder.
  """
  import tempfile

  import jax

  # TEST_XLA_FLAGS for the whole run, the workers and the main.py subprocesses (they inherit the
  # environment; jax reads XLA_FLAGS when its backend starts, after this).
  flags = os.environ.get('XLA_FLAGS', '').split()
  for flag in TEST_XLA_FLAGS.split():
    if not any(f.split('=')[0] == flag.split('=')[0] for f in flags):
      flags.append(flag)
  os.environ['XLA_FLAGS'] = ' '.join(flags)
  cache = os.environ.get('SSL_IMU_JAX_TEST_CACHE')
  if not cache:
    cache = tempfile.mkdtemp(prefix='ssl_imu_jax_test_xla_')
    os.environ['SSL_IMU_JAX_TEST_CACHE'] = cache
    config.stash[_CACHE_OWNED] = cache
  os.environ.setdefault('SSL_IMU_JAX_XLA_CACHE', cache)
  if not os.environ.get('SSL_IMU_JAX_TEST_DATA'):  # shared_tfds: built once per run
    os.environ['SSL_IMU_JAX_TEST_DATA'] = tempfile.mkdtemp(prefix='ssl_imu_jax_test_data_')
    config.stash[_DATA_OWNED] = os.environ['SSL_IMU_JAX_TEST_DATA']
  jax.config.update('jax_compilation_cache_dir', cache)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


_CACHE_OWNED = pytest.StashKey[str]()
_DATA_OWNED = pytest.StashKey[str]()


def pytest_unconfigure(config):
  import shutil

  for key in (_CACHE_OWNED, _DATA_OWNED):
    path = config.stash.get(key, None)
    if path:
      shutil.rmtree(path, ignore_errors=True)
