"""A run that stops when asked: Ctrl-C / SIGTERM at a step boundary, resumable to the same result;
a copied work directory re-reports and resumes; config paths compare relative to the work
directory (older absolute ones included).

The subprocess tests run main.py through a small launcher (in the test's tmp dir) that registers
the toy builders and, from a given training pass and step on, touches a file and sleeps a little
before each batch, so the test's SIGINT lands mid-training whatever the machine's load. One
pre-training and one sweep are run unbroken (the references: in the test's own process, from the
same arguments and with the same XLA flags, so the same programs), one of each interrupted with
SIGINT in a subprocess and rerun; the sweep fine-tunes from the pre-training in its own work
directory, so its cells' configs hold paths inside it.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import chex
import numpy as np
import pandas as pd
import pytest
from absl import flags
from conftest import TEST_XLA_FLAGS
from ml_collections import config_flags

from configs import sweep as sweep_config
from ssl_imu_jax import stages
from ssl_imu_jax.evaluation import sweep
from ssl_imu_jax.training import interrupt, trainer

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
TIMEOUT_S = 300
PRE_STEPS = 8
CELL_STEPS = 6
LINE = re.compile(r'^interrupted at step (\d+) of (\d+) in (.+); rerun the same command to resume$')

LAUNCHER = '''\
"""main.py with the toy builders registered; from training pass READY_PASS, step READY_STEP on,
touches READY_FILE and sleeps STEP_DELAY_S before each batch."""
import os
import sys
import time

sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
import toy_data  # noqa: E402

toy_data.register()
from ssl_imu_jax.data import input_pipeline  # noqa: E402

_real = input_pipeline.train_iterator
_passes = [0]


def _slowed(*args, **kwargs):
  _passes[0] += 1
  this = _passes[0]
  for step, batch in _real(*args, **kwargs):
    if this == int(os.environ.get('READY_PASS', '0')) and step >= int(os.environ['READY_STEP']):
      open(os.environ['READY_FILE'], 'a').close()
      time.sleep(float(os.environ['STEP_DELAY_S']))
    yield step, batch


input_pipeline.train_iterator = _slowed
from absl import app  # noqa: E402

import main  # noqa: E402

app.run(main.main, flags_parser=main.parse_flags)
'''


@pytest.fixture(scope='module')
def launch(tmp_path_factory):
  """``launch(workdir, args, ready=(pass, step) | None) -> (returncode, output)``; with
  ``ready`` the run gets SIGINT once it has reached that pass and step."""
  tmp = tmp_path_factory.mktemp('interrupt')
  launcher = tmp / 'launch_main.py'
  launcher.write_text(LAUNCHER.format(root=str(ROOT), tests=str(TESTS)))
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  # The session's XLA cache (shared by the xdist workers; test_kill_resume.py pre-trains the same
  # programs with the same flags), so that each program compiles once per test run. Named in the
  # environment, not with main.py's --xla_cache_dir: jax puts the command's --xla* arguments in
  # its cache keys, and the references run in this process, whose command has none.
  shared = {'tfds': tmp / 'tfds', 'cache': os.environ['SSL_IMU_JAX_TEST_CACHE']}
  env.update(JAX_PLATFORMS='cpu', XLA_FLAGS=TEST_XLA_FLAGS, SSL_IMU_JAX_XLA_CACHE=shared['cache'])

  def run(workdir: Path, args: list[str], ready: tuple[int, int] | None = None):
    t0 = time.time()
    workdir.mkdir(parents=True, exist_ok=True)
    ready_file = workdir / 'ready'
    run_env = {**env, 'READY_FILE': str(ready_file), 'READY_PASS': str(ready[0] if ready else 0),
               'READY_STEP': str(ready[1] if ready else 0), 'STEP_DELAY_S': '0.5'}
    cmd = [sys.executable, str(launcher), f'--workdir={workdir}'] + [
        a.format(**shared, wd=workdir) for a in args]
    with open(workdir / 'log.txt', 'w') as log:
      proc = subprocess.Popen(cmd, cwd=ROOT, env=run_env, stdout=log, stderr=subprocess.STDOUT)
      if ready:
        deadline = time.time() + TIMEOUT_S
        while not ready_file.exists() and proc.poll() is None and time.time() < deadline:
          time.sleep(0.05)
        if proc.poll() is None:
          os.kill(proc.pid, signal.SIGINT)
      try:
        rc = proc.wait(timeout=TIMEOUT_S)
      except subprocess.TimeoutExpired:
        proc.kill()
        raise
    if ready_file.exists():
      ready_file.unlink()
    run.seconds.append(round(time.time() - t0, 1))
    return rc, (workdir / 'log.txt').read_text()

  def reference(workdir: Path, args: list[str]):
    """What ``run(workdir, args)`` computes unbroken, in this process when it compiles with the
    subprocess's XLA flags (the same programs, from the same XLA cache): the config parsed from
    the same command-line arguments, run by the stage main.py runs."""
    if sorted(os.environ.get('XLA_FLAGS', '').split()) != sorted(TEST_XLA_FLAGS.split()):
      _ok(*run(workdir, args))  # other flags here: the subprocess compiles as the cut runs do
      return
    t0 = time.time()
    argv = ['main.py'] + [a.replace('--config=configs/', f'--config={ROOT}/configs/')
                          .format(**shared, wd=workdir) for a in args]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file('config', None, '', flag_values=values, lock_config=True,
                                    sys_argv=argv)
    values(argv)
    workdir.mkdir(parents=True, exist_ok=True)
    stages.run(values.config, str(workdir))
    run.seconds.append(round(time.time() - t0, 1))

  run.tmp, run.seconds, run.reference = tmp, [], reference
  return run


PRETRAIN = ['--config=configs/pretrain.py:tiny', '--config.data.dataset=toy_unlabelled',
            '--config.data.window_length=32', '--config.data_dir={tfds}',
            f'--config.train.steps={PRE_STEPS}', '--config.train.checkpoint_every=4',
            '--config.train.log_every=1', '--config.train.batch_size=8',
            '--config.model.encoder.widths=(8,16)', '--config.model.encoder.blocks_per_stage=(1,1)',
            '--config.model.encoder.kernel_size=3']
SWEEP = ['--config=configs/sweep.py:tiny', "--config.datasets=('toy_labelled',)",
         '--config.num_folds=2', '--config.folds=(0,)', '--config.fractions=(1.0,)',
         "--config.inits=('pretrained',)",
         '--config.init_from={wd}/pretrain/checkpoints', '--config.finetune.data_dir={tfds}',
         '--config.finetune.data.window_length=32', f'--config.finetune.train.steps={CELL_STEPS}',
         '--config.finetune.train.batch_size=8']


def _ok(rc, err):
  assert rc == 0, err[-4000:]


def _interrupted(rc, err) -> re.Match:
  """Exit status 130 and one 'interrupted at step N ...' line, no traceback."""
  assert rc == 130, err[-4000:]
  assert 'Traceback' not in err and 'Exception ignored' not in err, err[-4000:]
  lines = [ln for ln in err.splitlines() if ln.startswith('interrupted')]
  assert len(lines) == 1, err[-4000:]
  match = LINE.match(lines[0])
  assert match, lines[0]
  return match


@pytest.fixture(scope='module')
def runs(launch):
  """Reference and interrupted-then-resumed pre-training and sweep (workdirs 'ref' and 'cut')."""
  ref, cut = launch.tmp / 'ref', launch.tmp / 'cut'
  out, t0 = {'ref': ref, 'cut': cut}, time.time()
  launch.reference(ref, PRETRAIN)
  out['pre_cut'] = launch(cut, PRETRAIN, ready=(1, 4))  # past the step-4 checkpoint
  out['pre_steps_at_cut'] = sorted(int(d.name) for d in (cut / 'pretrain' / 'checkpoints').iterdir()
                                   if d.name.isdigit())
  out['pre_resumed'] = launch(cut, PRETRAIN)
  launch.reference(ref, SWEEP)
  # the second training pass is fold 0's full_from_probe cell (after its linear probe)
  out['sweep_cut'] = launch(cut, SWEEP, ready=(2, 2))
  out['sweep_resumed'] = launch(cut, SWEEP)
  out['seconds'] = time.time() - t0
  print(f'interrupt runs: {out["seconds"]:.0f} s ({launch.seconds})')
  return out


def test_sigint_stops_pretraining_at_a_step_with_a_checkpoint_and_resumes_it(runs):
  from ssl_imu_jax.training import checkpointing

  match = _interrupted(*runs['pre_cut'])
  step = int(match.group(1))
  assert 4 < step < PRE_STEPS and int(match.group(2)) == PRE_STEPS
  assert match.group(3) == 'pretrain'
  assert step in runs['pre_steps_at_cut']  # saved at the step it stopped at
  _ok(*runs['pre_resumed'])
  assert f'resuming from step {step}' in runs['pre_resumed'][1]
  ckpts = runs['cut'] / 'pretrain' / 'checkpoints'
  # The interrupted run's extra checkpoint is gone: the same checkpoints as an unbroken run.
  steps = sorted(int(d.name) for d in ckpts.iterdir() if d.name.isdigit())
  assert steps == sorted(int(d.name) for d in (runs['ref'] / 'pretrain' / 'checkpoints').iterdir()
                         if d.name.isdigit())
  ref = checkpointing.restore_raw(str(runs['ref'] / 'pretrain' / 'checkpoints'))
  got = checkpointing.restore_raw(str(ckpts))
  assert int(ref['step']) == int(got['step']) == PRE_STEPS
  for key in ('params', 'batch_stats', 'opt_state'):
    chex.assert_trees_all_close(got[key], ref[key], atol=1e-6, rtol=0)
  rows = [json.loads(ln) for ln in (runs['cut'] / 'pretrain' / 'metrics.jsonl').open()]
  assert sorted(r['step'] for r in rows if 'train/loss' in r) == list(range(1, PRE_STEPS + 1))


def _results(workdir: Path, report: str = 'report_folds0') -> pd.DataFrame:
  df = pd.read_csv(workdir / report / 'results.csv', dtype={'subject': str})
  return df.sort_values(['fold', 'protocol', 'subject']).reset_index(drop=True)


def test_sigint_stops_a_sweep_in_its_cell_and_the_rerun_gives_the_same_table(runs):
  match = _interrupted(*runs['sweep_cut'])
  step = int(match.group(1))
  assert 2 < step < CELL_STEPS and int(match.group(2)) == CELL_STEPS
  assert match.group(3) == ('sweep cell toy_labelled fold0 frac1 seed0 '
                            'pretrained_full_from_probe, 1 of 2 cells done')
  _ok(*runs['sweep_resumed'])
  assert '1 of 2 cells done before (skipped); 1 to train' in runs['sweep_resumed'][1]
  ref, got = _results(runs['ref']), _results(runs['cut'])
  assert len(ref) == len(got) > 2
  num = ref.select_dtypes('number').columns
  pd.testing.assert_frame_equal(got.drop(columns=num), ref.drop(columns=num))
  np.testing.assert_allclose(got[num].to_numpy(float), ref[num].to_numpy(float), rtol=1e-5,
                             atol=1e-6)


def _sweep_cfg(workdir: Path, tfds: Path, report_only=False):
  """SWEEP's config, in process."""
  c = sweep_config.get_config('tiny')
  c.datasets, c.num_folds, c.folds = ('toy_labelled',), 2, (0,)
  c.fractions, c.inits = (1.0,), ('pretrained',)
  c.init_from = str(workdir / 'pretrain' / 'checkpoints')
  c.report_only = report_only
  c.finetune.data_dir = str(tfds)
  c.finetune.data.window_length = 32
  c.finetune.train.steps, c.finetune.train.batch_size = CELL_STEPS, 8
  return c


def _no_training(cfg, workdir):
  raise AssertionError(f'retrained {workdir}')


def _marker_configs(workdir: Path):
  return sorted(workdir.glob('sweep/*/fold*/frac*/seed*/*/' + sweep.CELL_FILE))


def test_a_copied_sweep_re_reports_and_resumes_without_retraining(runs, tmp_path):
  copy = tmp_path / 'copy'
  shutil.copytree(runs['ref'], copy, ignore=shutil.ignore_patterns('xla_cache'))
  tfds = runs['ref'].parent / 'tfds'
  stored = json.loads(next(m for m in _marker_configs(copy) if 'full_from_probe' in str(m))
                      .read_text())['config']
  assert stored['probe_from'].startswith(trainer.WORKDIR + '/sweep/toy_labelled/')
  assert stored['init_from'] == trainer.WORKDIR + '/pretrain/checkpoints'
  before = _results(runs['ref'])
  sweep.run(_sweep_cfg(copy, tfds, report_only=True), str(copy), train_fn=_no_training)
  pd.testing.assert_frame_equal(_results(copy, 'report_partial'), before)
  sweep.run(_sweep_cfg(copy, tfds), str(copy), train_fn=_no_training)
  pd.testing.assert_frame_equal(_results(copy), before)

  # Written by an older version: absolute paths, inside the work directory it was written in
  # (resumed in place) or inside the one it was copied from.
  written = {m: m.read_text() for m in _marker_configs(copy)}
  for old_root in (copy, runs['ref']):
    for marker, text in written.items():
      done = json.loads(text)
      done['config'] = {k: v.replace(trainer.WORKDIR, str(old_root)) if isinstance(v, str) else v
                        for k, v in done['config'].items()}
      marker.write_text(json.dumps(done))
    sweep.run(_sweep_cfg(copy, tfds), str(copy), train_fn=_no_training)
    pd.testing.assert_frame_equal(_results(copy), before)


def test_the_first_signal_asks_the_second_ends_and_handlers_come_back():
  before = {s: signal.getsignal(s) for s in interrupt.SIGNALS}
  with interrupt.stop_on_signals(), interrupt.checked():
    assert interrupt.requested() is None
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.01)
    assert interrupt.requested() == signal.SIGTERM
    # a second signal takes the default action (ends the process at once)
    assert all(signal.getsignal(s) == signal.SIG_DFL for s in interrupt.SIGNALS)
    with pytest.raises(interrupt.Interrupted) as info, interrupt.activity('sweep cell x'):
      interrupt.check(3, 6)
  assert info.value.exit_code == 143
  assert info.value.line() == ('interrupted at step 3 of 6 in sweep cell x; rerun the same '
                               'command to resume')
  assert {s: signal.getsignal(s) for s in interrupt.SIGNALS} == before
  assert interrupt.requested() is None


def test_a_signal_outside_a_checked_loop_stops_at_once():
  with interrupt.stop_on_signals(), interrupt.activity('prepare'):
    with pytest.raises(interrupt.Interrupted) as info:
      os.kill(os.getpid(), signal.SIGINT)
      time.sleep(1.0)  # not reached: the handler raises
  assert info.value.exit_code == 130
  assert info.value.line() == 'interrupted in prepare; rerun the same command to resume'
