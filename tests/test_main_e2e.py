"""End to end through main.py (subprocesses): prepare -> pretrain -> finetune at tiny size."""

import json
import os
import subprocess
import sys

import chex
import numpy as np
import pandas as pd
import pytest
from conftest import xla_env_default

from configs import pretrain as pretrain_config
from ssl_imu_jax.training import checkpointing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(workdir, *args, check=True):
  """main.py as the README runs it. The pre-training gets XLA's defaults (as a user's run has
  them): its time goes to running steps (its 60-step run: 48 s -> 27 s of CPU against the suite's
  TEST_XLA_FLAGS). The other stages keep the suite's flags: their time goes to compiling (the
  tiny fine-tuning: 57 s -> 36 s of CPU, evaluate 12 -> 10 s, embed 10 -> 7 s)."""
  cmd = [sys.executable, os.path.join(ROOT, 'main.py'), f'--workdir={workdir}', *args]
  env = dict(os.environ)
  if '--config=configs/pretrain.py:tiny' in args:
    env = xla_env_default(env)
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
  if check and proc.returncode != 0:
    raise AssertionError(f'{cmd} failed:\n{proc.stderr[-3000:]}')
  return proc


@pytest.fixture(scope='module')
def e2e_run(tmp_path_factory):
  """The README's tiny command block as written (prepare -> pretrain -> finetune -> embed ->
  evaluate) in a temporary runs/tiny, then an embed with --xla_cache_dir=none."""
  from test_readme import readme_commands

  wd = str(tmp_path_factory.mktemp('e2e'))
  commands = readme_commands()
  assert len(commands) == 5 and all(c.startswith('python main.py ') for c in commands)
  logs = []
  for cmd in commands:
    args = cmd.replace('runs/tiny', wd).split()[2:]
    proc = run_main(wd, *[a for a in args if not a.startswith('--workdir=')])
    logs.append(proc.stdout + proc.stderr)
  logs.append(run_main(os.path.join(wd, 'emb'), '--config=configs/embed.py:tiny',
                       f'--config.checkpoint={wd}/pretrain', f'--config.data_dir={wd}/tfds',
                       '--xla_cache_dir=none').stderr)
  E2E_LOGS[:] = logs
  return wd


E2E_LOGS: list[str] = []


def test_the_readme_block_writes_what_it_says(e2e_run):
  wd = e2e_run
  assert os.path.isdir(os.path.join(wd, 'pretrain', 'checkpoints'))
  assert os.path.isfile(os.path.join(wd, 'report', 'summary.md'))
  assert [p for p in os.listdir(os.path.join(wd, 'embed')) if p.endswith('_embeddings.npy')]
  assert os.path.isfile(os.path.join(wd, 'evaluate', 'metrics.json'))
  assert 'within-subject r' in E2E_LOGS[4]


def test_xla_cache_dir_none_keeps_no_cache(e2e_run):
  """The tests' runs share the session's cache ($SSL_IMU_JAX_XLA_CACHE), so no work directory
  gets its own; 'none' uses none; without flag or variable it is <workdir>/xla_cache."""
  import main

  shared = os.environ['SSL_IMU_JAX_XLA_CACHE']
  assert os.path.isdir(shared) and os.listdir(shared)
  assert not os.path.exists(os.path.join(e2e_run, 'xla_cache'))
  assert os.path.isdir(os.path.join(e2e_run, 'emb', 'embed'))
  assert not os.path.exists(os.path.join(e2e_run, 'emb', 'xla_cache'))
  assert main.xla_cache_dir('', '/w', {}) == os.path.join('/w', 'xla_cache')
  assert main.xla_cache_dir('', '/w', {'SSL_IMU_JAX_XLA_CACHE': '/c'}) == '/c'
  assert main.xla_cache_dir('/f', '/w', {'SSL_IMU_JAX_XLA_CACHE': '/c'}) == '/f'
  assert main.xla_cache_dir('none', '/w', {'SSL_IMU_JAX_XLA_CACHE': '/c'}) == ''


def test_normal_runs_print_no_library_warnings(e2e_run):
  """Warnings show (the project's own matter), so TFDS / Orbax noise must not: no custom-config
  or missing-metadata lines in a pretrain, finetune or embed run."""
  lines = [ln for log in E2E_LOGS for ln in log.splitlines()
           if ln.startswith(('W1', 'WARNING', 'E1')) or 'custom data configuration' in ln]
  assert len(E2E_LOGS) == 6 and lines == []


def test_pipeline_writes_checkpoints_and_report(e2e_run):
  wd = e2e_run
  ck = os.path.join(wd, 'pretrain', 'checkpoints')
  steps = pretrain_config.get_config('tiny').train.steps
  assert checkpointing.Checkpointer(ck).latest_step() == steps
  with open(os.path.join(ck, 'config.json')) as f:
    assert json.load(f)['train']['steps'] == steps
  df = pd.read_csv(os.path.join(wd, 'report', 'results.csv'))
  for col in ('task', 'init', 'protocol', 'fraction', 'fold', 'pearson_r', 'r2', 'rmse',
              'n_train', 'n_test'):
    assert col in df.columns
  pooled = df[df['subject'].astype(str) == 'all']
  assert len(pooled) == 1 and pooled['init'].iloc[0] == 'pretrained'
  assert np.isfinite(pooled[['pearson_r', 'r2', 'rmse']].to_numpy()).all()
  assert os.path.getsize(os.path.join(wd, 'report', 'summary.md')) > 0
  with open(os.path.join(wd, 'finetune', 'result.json')) as f:
    res = json.load(f)
  assert not set(res['train_subjects']) & set(res['test_subjects'])
  assert res['n_train'] > 0 and res['n_test'] > 0


def test_restored_encoder_equals_the_saved_one(e2e_run):
  saved = checkpointing.restore_raw(os.path.join(e2e_run, 'pretrain', 'checkpoints'))
  probe = checkpointing.restore_raw(os.path.join(e2e_run, 'finetune', 'probe', 'checkpoints'))
  # One encoder shared by acc and gyr; the linear probe leaves its weights as pre-trained (its
  # BatchNorm statistics adapt to the downstream data, as in the reference).
  chex.assert_trees_all_equal(probe['params']['encoder'], saved['params']['encoder'])
  assert set(probe['batch_stats']) == {'encoder'}
  assert 'head' in probe['params'] and 'acc_projection' not in probe['params']


def test_rerun_resumes_instead_of_starting_over(e2e_run):
  import json

  ck = os.path.join(e2e_run, 'pretrain', 'checkpoints')
  before = checkpointing.restore_raw(ck)
  proc = run_main(e2e_run, '--config=configs/pretrain.py:tiny')
  assert 'train step' not in proc.stderr  # nothing left to train
  chex.assert_trees_all_equal(checkpointing.restore_raw(ck)['params'], before['params'])
  # run.json keeps every invocation of the work directory (the provenance results/ commits)
  with open(os.path.join(e2e_run, 'run.json')) as f:
    run = json.load(f)
  calls = run['invocations']
  assert len(calls) == 6 and all(c['completed'] for c in calls) and run['completed']
  assert calls[-1]['command'].endswith('--config=configs/pretrain.py:tiny')
  assert run['wall_s'] == pytest.approx(sum(c['wall_s'] for c in calls), abs=0.2)
  assert run['code']['commit'] and run['machine']['cpu_count']


# The command-line mistakes below each run main.py's entry point (absl's app.run with
# main.parse_flags, as `python main.py` does) in a process of its own, forked from one Python
# process that imported main.py, TFDS and the data set registry once: a fresh interpreter per
# command paid those imports again each time. Each child has its own work directory, sys.argv,
# unparsed flags, stdout and stderr (file descriptors 1 and 2); an exception that escapes is
# written as the interpreter writes it (a traceback, exit status 1).
CLI_DRIVER = """\
import json, os, sys, traceback
sys.path.insert(0, {root!r})
from absl import app
import data_prep, main, tensorflow_datasets  # noqa: F401 -- imported once, before the forks
cases, results, out = sys.argv[1], sys.argv[2], []
for i, argv in enumerate(json.load(open(cases))):
  err = f'{{results}}.{{i}}.stderr'
  pid = os.fork()
  if pid == 0:
    fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    os.dup2(fd, 2)
    sys.argv = argv
    try:
      app.run(main.main, argv=argv, flags_parser=main.parse_flags)
      code = 0
    except SystemExit as e:
      code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
      traceback.print_exc()
      code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
  _, status = os.waitpid(pid, 0)
  out.append({{'returncode': os.waitstatus_to_exitcode(status), 'stderr': open(err).read()}})
json.dump(out, open(results, 'w'))
"""

MISTAKES = [
    (('--config=configs/finetune.py:tiny', '--config.train.stepz=3'),
     "--config.train.stepz: config.train has no key 'stepz'; did you mean config.train.steps?"),
    (('--config=configs/sweep.py:tiny',),
     "config.init_from (the pre-training checkpoint dir, or several) is required"),
    (('--config=configs/pretrain.py:small',),
     "configs/pretrain.py:small: config argument must be 'size[,variant]'"),
    (('--config=configs/finetune.py:tiny', '--config.stage=fly'), 'config key stage='),
    (('--config=configs/prepare.py:tiny', "--config.datasets=('movi_imu',)"),
     'movi_imu: config key data.manual_dir is empty'),
    # a wrong data set name, before anything is built: the key and the valid names
    (('--config=configs/finetune.py:tiny', '--config.data.dataset=synthetic_walking_gfr'),
     "config key data.dataset: unknown data set 'synthetic_walking_gfr'; did you mean "
     "'synthetic_walking_grf'? (valid names: camargo2021, "),
    (('--config=configs/sweep.py:tiny', "--config.datasets=('synthetic_walking_grf','kfm')",
      "--config.inits=('random',)"),
     "config key datasets: unknown data set 'kfm'"),
    (('--config=configs/prepare.py:tiny', "--config.datasets=('synthetic_movi','movi')"),
     "config key datasets: unknown data set 'movi'; did you mean 'movi_imu'?"),
]
VERBOSE = ('--config=configs/finetune.py:tiny', '--config.stage=fly', '--verbose')


@pytest.fixture(scope='module')
def cli_runs(tmp_path_factory):
  """{case: (returncode, stderr, workdir)} of MISTAKES' commands (by index) and 'verbose'."""
  tmp = tmp_path_factory.mktemp('cli')
  cases = {i: args for i, (args, _) in enumerate(MISTAKES)} | {'verbose': VERBOSE}
  argvs = [[os.path.join(ROOT, 'main.py'), f'--workdir={tmp / str(k)}', *args]
           for k, args in cases.items()]
  (tmp / 'driver.py').write_text(CLI_DRIVER.format(root=ROOT))
  (tmp / 'argv.json').write_text(json.dumps(argvs))
  proc = subprocess.run([sys.executable, str(tmp / 'driver.py'), str(tmp / 'argv.json'),
                         str(tmp / 'out.json')], cwd=ROOT, capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((tmp / 'out.json').read_text())
  return {k: (r['returncode'], r['stderr'], tmp / str(k))
          for k, r in zip(cases, results, strict=True)}


def _one_line_error(returncode: int, stderr: str) -> str:
  """A user's mistake: exit status 2 and one 'error:' line on stderr, no traceback."""
  assert returncode == 2, stderr[-2000:]
  assert 'Traceback' not in stderr, stderr[-2000:]
  errs = [ln for ln in stderr.splitlines() if ln.startswith('error: ')]
  assert len(errs) == 1, stderr[-2000:]
  return errs[0]


@pytest.mark.parametrize('case,expected', list(enumerate(e for _, e in MISTAKES)))
def test_user_mistakes_are_one_line(cli_runs, case, expected):
  returncode, stderr, workdir = cli_runs[case]
  line = _one_line_error(returncode, stderr)
  assert expected in line
  assert not os.path.exists(os.path.join(workdir, 'tfds'))  # nothing was built


def test_config_mistakes_show_before_any_data_is_built(tmp_path):
  from configs import finetune as finetune_config
  from configs import paper as paper_config
  from ssl_imu_jax.errors import ConfigError
  from ssl_imu_jax.evaluation import experiment
  from ssl_imu_jax.training import finetune

  cfg = paper_config.get_config('tiny')
  cfg.sweep.protocols = ('linear_probe', 'full_from_prob')
  with pytest.raises(ConfigError, match=r'^config.sweep.protocols must be a non-empty subset'):
    experiment.run(cfg, str(tmp_path))  # not after the pre-trainings
  cfg = paper_config.get_config('tiny')
  cfg.sweep.datasets = ('synthetic_walking_grf', 'nope')
  with pytest.raises(ConfigError, match=r"^config key sweep.datasets: unknown data set 'nope'"):
    experiment.run(cfg, str(tmp_path))
  cfg = finetune_config.get_config('tiny')
  cfg.protocol = 'probe'
  with pytest.raises(ConfigError, match='config key protocol must be one of'):
    finetune.prepare(cfg, str(tmp_path / 'ft'), str(tmp_path / 'tfds'))
  cfg.protocol, cfg.init_from = 'linear_probe', str(tmp_path / 'no_such_run')
  with pytest.raises(FileNotFoundError, match='config key init_from'):
    finetune.prepare(cfg, str(tmp_path / 'ft'), str(tmp_path / 'tfds'))
  assert sorted(os.listdir(tmp_path)) == ['ft']  # no records, no pre-training


def test_convert_names_its_own_flags(tmp_path, capsys):
  from data_prep import convert

  assert convert.main(['--dataset=movi_imu', f'--data_dir={tmp_path}']) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: movi_imu: --manual_dir is not given;')
  assert 'data.manual_dir' not in err
  assert convert.main(['--dataset=movi', f'--data_dir={tmp_path}']) == 2
  err = capsys.readouterr().err.splitlines()
  assert len(err) == 1 and err[0].startswith('error: --dataset=movi: unknown data set (valid names')


def test_verbose_shows_the_traceback(cli_runs):
  returncode, stderr, _ = cli_runs['verbose']
  assert returncode != 0 and 'Traceback' in stderr and 'ConfigError' in stderr


def test_prepare_plot_draws_the_synthetic_signals(tmp_path):
  from configs import prepare
  from ssl_imu_jax import stages

  cfg = prepare.get_config('tiny')
  cfg.datasets = ()  # nothing to build: only the plot
  cfg.plot = True
  stages.run(cfg, str(tmp_path))
  assert (tmp_path / 'report' / 'signals.png').stat().st_size > 10_000


def test_run_json_records_an_invocation_at_its_start_and_its_end(tmp_path):
  """A run still going is traced to its code (publish.collect of report_partial/)."""
  import json

  import main

  path = tmp_path / 'run.json'
  with main.run_record(str(tmp_path)):
    during = json.loads(path.read_text())
  after = json.loads(path.read_text())
  assert during['invocations'][-1].get('finished_utc') is None and not during['completed']
  assert during['code']['commit'] == after['code']['commit'] == after['invocations'][-1]['commit']
  assert after['invocations'][-1]['finished_utc'] and after['completed']
  assert len(after['invocations']) == 1
  # Two invocations at once (a report-only run beside a long one): neither drops the other.
  with main.run_record(str(tmp_path)):
    with main.run_record(str(tmp_path)):
      pass
  calls = json.loads(path.read_text())['invocations']
  assert len(calls) == 3 and all(c['finished_utc'] for c in calls)
