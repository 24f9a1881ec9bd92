"""A real multi-process run: main.py pre-training in 2 processes x 4 CPU devices (joined with
jax.distributed over gloo) equals 1 process x 8 devices; process 0 alone builds the data and
writes the shared files; single-host stages refuse several processes with one line."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import TEST_XLA_FLAGS

from ssl_imu_jax.training import checkpointing

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
TOL = 1e-5
LAUNCHER = f'''\
import sys
sys.path.insert(0, {str(ROOT)!r})
sys.path.insert(0, {str(TESTS)!r})
import toy_data
toy_data.register()
from absl import app
import main
app.run(main.main)
'''
PRETRAIN = ['--config=configs/pretrain.py:tiny', '--config.data.dataset=toy_unlabelled',
            '--config.data.window_length=32', '--config.train.steps=4',
            '--config.train.batch_size=16', '--config.train.checkpoint_every=2',
            '--config.train.log_every=1', '--config.model.encoder.widths=(8,16)',
            '--config.model.encoder.blocks_per_stage=(1,1)']


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _env(devices: int, cache: Path, process: tuple[int, int, int] | None = None) -> dict:
  # The suite's XLA flags (conftest.TEST_XLA_FLAGS), as in test_multidevice.py: compiling
  # dominates these four tiny steps, and both runs are compiled with the same flags.
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices} {TEST_XLA_FLAGS}',
             JAX_COMPILATION_CACHE_DIR=str(cache))
  for k in ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID'):
    env.pop(k, None)
  if process is not None:
    port, n, i = process
    env.update(JAX_COORDINATOR_ADDRESS=f'localhost:{port}', JAX_NUM_PROCESSES=str(n),
               JAX_PROCESS_ID=str(i))
  return env


def _run_processes(launcher: Path, args: list[str], n: int, devices: int, cache: Path):
  port = _free_port()
  procs = [subprocess.Popen([sys.executable, str(launcher), *args],
                            env=_env(devices, cache, (port, n, i)), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(n)]
  out = []
  for p in procs:
    stdout, stderr = p.communicate(timeout=600)
    out.append((p.returncode, stdout, stderr))
  return out


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('multiprocess')
  launcher = tmp / 'launch_main.py'
  launcher.write_text(LAUNCHER)
  cache = tmp / 'xla_cache'
  one = subprocess.run(
      [sys.executable, str(launcher), *PRETRAIN, f'--workdir={tmp / "one"}',
       f'--config.data_dir={tmp / "tfds_one"}'],
      env=_env(8, cache), cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert one.returncode == 0, one.stderr[-3000:]
  two = _run_processes(launcher, [*PRETRAIN, f'--workdir={tmp / "two"}',
                                  f'--config.data_dir={tmp / "tfds_two"}'], 2, 4, cache)
  for rc, _, err in two:
    assert rc == 0, err[-3000:]
  return {'tmp': tmp, 'two': two}


def test_two_processes_of_four_devices_equal_one_process_of_eight(runs):
  one = checkpointing.restore_raw(str(runs['tmp'] / 'one' / 'pretrain' / 'checkpoints'))
  two = checkpointing.restore_raw(str(runs['tmp'] / 'two' / 'pretrain' / 'checkpoints'))
  assert int(one['step']) == int(two['step']) == 4
  for key in ('params', 'batch_stats', 'opt_state'):
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(
        jax.tree.leaves(one[key]), jax.tree.leaves(two[key]), strict=True))
    assert diff <= TOL, (key, diff)
  first = checkpointing.restore_raw(str(runs['tmp'] / 'two' / 'pretrain' / 'checkpoints'), 2)
  moved = max(float(np.max(np.abs(a - b))) for a, b in zip(
      jax.tree.leaves(first['params']), jax.tree.leaves(two['params']), strict=True))
  assert moved > 100 * TOL  # the steps changed the parameters: equality is not trivial


def test_the_processes_joined_and_only_process_0_wrote(runs):
  (_, _, err0), (_, _, err1) = runs['two']
  assert '4 steps on 8 cpu device(s)' in err0  # one run over both processes' devices
  assert '[pretrain]' not in err1  # progress and metrics come from process 0 only
  run = runs['tmp'] / 'two' / 'pretrain'
  with open(run / 'metrics.jsonl') as f:
    steps = [json.loads(ln)['step'] for ln in f if 'train/loss' in ln]
  assert steps == [1, 2, 3, 4]
  assert (run / 'checkpoints' / 'MODEL_CARD.md').is_file()
  assert json.loads((run / 'checkpoints' / 'config.json').read_text())['train']['steps'] == 4
  built = list((runs['tmp'] / 'tfds_two').glob('toy_unlabelled/*/*/dataset_info.json'))
  assert len(built) == 1  # built once, by process 0, and read by both


def test_single_host_stages_refuse_several_processes(tmp_path, monkeypatch):
  from configs import finetune as finetune_config
  from ssl_imu_jax import stages
  from ssl_imu_jax.errors import ConfigError

  monkeypatch.setattr(jax, 'process_count', lambda: 2)  # as if a launcher had joined 2 hosts
  with pytest.raises(ConfigError, match=r"stage 'finetune' runs on one host .* 2 processes"):
    stages.run(finetune_config.get_config('tiny'), str(tmp_path))
