"""Exact resume after SIGKILL: main.py pre-training killed mid-run and rerun equals an unbroken run.

main.py runs in subprocesses through a small launcher (written to the test's tmp dir) that
registers the toy builders, which main.py cannot see, and records the step every training pass
starts from. The killed run is slowed from step 4 on (a 1 s sleep per batch, in the launcher only)
so the kill lands between the step-4 checkpoint and the last step whatever the machine's load;
the reference and the resumed run go at full speed. All runs share one data directory, one XLA
cache and the same XLA flags.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import chex
import jax
import numpy as np
import pytest
from conftest import TEST_XLA_FLAGS

from ssl_imu_jax.training import checkpointing

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
STEPS = 8
KILL_AFTER = 4  # kill once a checkpoint of at least this step is complete
TIMEOUT_S = 300

LAUNCHER = '''\
"""main.py with the toy builders registered; logs each training pass's start step."""
import inspect
import os
import sys
import time

sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
import toy_data  # noqa: E402

toy_data.register()
from ssl_imu_jax.data import input_pipeline  # noqa: E402

_real = input_pipeline.train_iterator


def _logged(*args, **kwargs):
  start_step = inspect.signature(_real).bind(*args, **kwargs).arguments['start_step']
  with open(os.environ['START_LOG'], 'a') as f:
    f.write(f'{{start_step}}\\n')
  delay = float(os.environ.get('STEP_DELAY_S', '0'))
  for step, batch in _real(*args, **kwargs):
    if step >= {kill_after}:  # slow only where the kill must land
      time.sleep(delay)
    yield step, batch


input_pipeline.train_iterator = _logged
from absl import app  # noqa: E402

import main  # noqa: E402

app.run(main.main)
'''


def _steps(ckpt_dir: Path) -> list[int]:
  """Completed checkpoint steps (Orbax renames a finished save to its bare step number)."""
  if not ckpt_dir.is_dir():
    return []
  return sorted(int(d.name) for d in ckpt_dir.iterdir() if d.name.isdigit())


def _losses(workdir: Path) -> dict[int, float]:
  """Logged training loss per step; a step logged twice is an error (a resumed run drops the
  rows logged after the checkpoint it resumes from)."""
  out = {}
  with open(workdir / 'pretrain' / 'metrics.jsonl') as f:
    for line in f:
      row = json.loads(line)
      if 'train/loss' in row:
        assert row['step'] not in out, f'step {row["step"]} logged twice'
        out[row['step']] = row['train/loss']
  return out


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('kill_resume')
  launcher = tmp / 'launch_main.py'
  launcher.write_text(LAUNCHER.format(root=str(ROOT), tests=str(TESTS), kill_after=KILL_AFTER))
  cmd_base = [sys.executable, str(launcher), '--config=configs/pretrain.py:tiny',
              '--config.data.dataset=toy_unlabelled', '--config.data.window_length=32',
              f'--config.data_dir={tmp / "tfds"}', f'--config.train.steps={STEPS}',
              '--config.train.checkpoint_every=2', '--config.train.log_every=1',
              '--config.train.progress=False', '--config.train.batch_size=8',
              # A smaller encoder than 'tiny' and the suite's XLA flags: compiling dominates. The
              # steps, batch and encoder are test_interrupt.py's pre-training's, and the XLA cache
              # is the session's (shared by the xdist workers): its programs are compiled once.
              # The cache is named in the environment (SSL_IMU_JAX_XLA_CACHE), not with
              # --xla_cache_dir: jax puts the command's --xla* arguments in its cache keys, and
              # test_interrupt.py's references run in the pytest process.
              '--config.model.encoder.widths=(8,16)',
              '--config.model.encoder.blocks_per_stage=(1,1)',
              '--config.model.encoder.kernel_size=3']
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env['JAX_PLATFORMS'] = 'cpu'
  env['XLA_FLAGS'] = TEST_XLA_FLAGS
  env['SSL_IMU_JAX_XLA_CACHE'] = os.environ['SSL_IMU_JAX_TEST_CACHE']

  def start(name: str, delay: float = 0.0) -> tuple[subprocess.Popen, Path]:
    workdir = tmp / name
    workdir.mkdir(exist_ok=True)
    run_env = {**env, 'START_LOG': str(workdir / 'starts.txt'), 'STEP_DELAY_S': str(delay)}
    log = open(workdir / 'log.txt', 'a')  # noqa: SIM115 -- closed when the run ends
    proc = subprocess.Popen(cmd_base + [f'--workdir={workdir}'], cwd=ROOT, env=run_env,
                            stdout=log, stderr=subprocess.STDOUT)
    proc.log = log
    return proc, workdir

  def finish(proc, workdir):
    try:
      rc = proc.wait(timeout=TIMEOUT_S)
    finally:
      proc.log.close()
    if rc:
      pytest.fail(f'main.py in {workdir} exited with {rc}:\n'
                  f'{(workdir / "log.txt").read_text()[-4000:]}')

  timings = {}
  # The unbroken reference (it also builds the toy data set and fills the XLA cache).
  t0 = time.time()
  proc, ref = start('reference')
  finish(proc, ref)
  timings['reference_s'] = time.time() - t0

  # Killed with SIGKILL once a checkpoint of step >= KILL_AFTER is complete.
  t0 = time.time()
  proc, resumed = start('resumed', delay=1.0)
  ckpt = resumed / 'pretrain' / 'checkpoints'
  deadline = time.time() + TIMEOUT_S
  while not any(s >= KILL_AFTER for s in _steps(ckpt)):
    if proc.poll() is not None:
      proc.log.close()
      pytest.fail(f'run ended ({proc.returncode}) before a step-{KILL_AFTER} checkpoint:\n'
                  f'{(resumed / "log.txt").read_text()[-4000:]}')
    if time.time() > deadline:
      proc.kill()
      pytest.fail(f'no step-{KILL_AFTER} checkpoint in {ckpt} after {TIMEOUT_S} s')
    time.sleep(0.05)
  alive_at_kill = proc.poll() is None
  os.kill(proc.pid, signal.SIGKILL)
  rc_killed = proc.wait(timeout=60)
  proc.log.close()
  at_kill = {'steps': _steps(ckpt), 'entries': sorted(d.name for d in ckpt.iterdir()),
             'params': checkpointing.restore_raw(str(ckpt))['params']}
  timings['killed_s'] = time.time() - t0

  t0 = time.time()
  proc, _ = start('resumed')
  finish(proc, resumed)
  timings['resume_s'] = time.time() - t0
  print(f'kill/resume timings: {timings}; checkpoints at kill: {at_kill["entries"]}')
  return {'ref': ref, 'resumed': resumed, 'alive_at_kill': alive_at_kill,
          'rc_killed': rc_killed, 'at_kill': at_kill, 'timings': timings}


def test_kill_landed_mid_run(runs):
  assert runs['alive_at_kill']
  assert runs['rc_killed'] == -signal.SIGKILL
  steps = runs['at_kill']['steps']
  assert steps and KILL_AFTER <= steps[-1] < STEPS, runs['at_kill']['entries']
  starts = [int(s) for s in (runs['resumed'] / 'starts.txt').read_text().split()]
  # First pass from scratch, second from the latest checkpoint that survived the kill.
  assert starts == [0, steps[-1]]
  assert [int(s) for s in (runs['ref'] / 'starts.txt').read_text().split()] == [0]


def test_resumed_run_equals_unbroken_run(runs):
  ref = checkpointing.restore_raw(str(runs['ref'] / 'pretrain' / 'checkpoints'))
  got = checkpointing.restore_raw(str(runs['resumed'] / 'pretrain' / 'checkpoints'))
  assert int(ref['step']) == int(got['step']) == STEPS
  for key in ('params', 'batch_stats', 'opt_state', 'norm'):
    chex.assert_trees_all_close(got[key], ref[key], atol=1e-6, rtol=0)
  # Equality is not trivial: the parameters moved after the checkpoint the run resumed from.
  moved = max(float(np.max(np.abs(a - b))) for a, b in zip(
      jax.tree.leaves(ref['params']), jax.tree.leaves(runs['at_kill']['params']), strict=True))
  assert moved > 1e-4


def test_resumed_losses_match_unbroken_run(runs):
  ref, got = _losses(runs['ref']), _losses(runs['resumed'])
  assert sorted(ref) == sorted(got) == list(range(1, STEPS + 1))
  np.testing.assert_allclose([got[s] for s in sorted(got)], [ref[s] for s in sorted(ref)],
                             atol=1e-6, rtol=0)
