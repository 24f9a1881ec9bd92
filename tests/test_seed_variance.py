"""Variance over seeds: Δr over pre-training and fine-tuning seeds, and the paper stage's seeds."""

import csv
import os

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_finetune_config, tiny_pretrain_config
from test_report import fake_result

from configs import paper as paper_config
from ssl_imu_jax.errors import ConfigError
from ssl_imu_jax.evaluation import experiment, report

FRACTIONS = (0.25, 1.0)
PROTOCOL = 'full_from_probe'


def cells(inits, seeds, noise_seed=0, task='toy'):
  """Records of every fold and fraction; ``noise_seed`` draws other predictions for the same
  cells (another pre-trained encoder)."""
  out = []
  for k in range(5):
    for f in FRACTIONS:
      for i in inits:
        p = 'ridge' if i == 'features' else PROTOCOL
        for s in seeds:
          res = fake_result(k, f, i, p, seed=100 * noise_seed + s)
          out.append(report.make_record(res, task=task, init=i, protocol=p, fraction=f, fold=k,
                                        steps=20, seed=s))
  return out


def within_r(records, init, fraction, seed):
  """Hand computation: Pearson r on each test subject's windows, mean over subjects."""
  rs = []
  for rec in records:
    if rec['init'] != init or rec['fraction'] != fraction or rec['seed'] != seed:
      continue
    sid = np.asarray(rec['predictions']['subject_id'])
    yt = np.asarray(rec['predictions']['y_true'])[:, 0]
    yp = np.asarray(rec['predictions']['y_pred'])[:, 0]
    rs += [np.corrcoef(yt[sid == s], yp[sid == s])[0, 1] for s in np.unique(sid)]
  assert len(rs) == 10
  return float(np.mean(rs))


def test_seed_variance_frame_against_a_hand_computation(tmp_path):
  main = cells(('pretrained', 'random', 'features'), (0, 1, 2))
  further = {1: cells(('pretrained',), (0,), noise_seed=1),
             2: cells(('pretrained',), (0,), noise_seed=2)}
  by_seed = {0: main, **further}
  frame = report.seed_variance_frame(by_seed, finetune_seed=0)
  assert list(frame.columns) == list(report.VARIANCE_COLUMNS)
  # 2 fractions x {random, features} x {pretrain_seed, finetune_seed}
  assert len(frame) == 8 and set(frame.protocol) == {PROTOCOL}
  for f in FRACTIONS:
    for versus in ('random', 'features'):
      pre = {k: within_r(recs, 'pretrained', f, 0) - within_r(main, versus, f, 0)
             for k, recs in by_seed.items()}
      ft = {s: within_r(main, 'pretrained', f, s) - within_r(main, versus, f, s)
            for s in (0, 1, 2)}
      for over, want, fixed in (('pretrain_seed', pre, 0), ('finetune_seed', ft, 0)):
        row = frame[(frame.fraction == f) & (frame.versus == versus) & (frame.over == over)]
        assert len(row) == 1
        row = row.iloc[0]
        vals = np.array(list(want.values()))
        assert row.n_seeds == 3 and row.fixed_seed == fixed and row.seeds == '0;1;2'
        assert [float(v) for v in row.delta_r_values.split(';')] == pytest.approx(vals)
        assert row.delta_r_mean == pytest.approx(vals.mean())
        assert row.delta_r_sd == pytest.approx(vals.std(ddof=1))
        assert (row.delta_r_min, row.delta_r_max) == pytest.approx((vals.min(), vals.max()))
  # Seed 0's value is the same in both: the main encoder at fine-tuning seed 0.
  a = frame[frame.over == 'pretrain_seed'].delta_r_values.str.split(';').str[0]
  b = frame[frame.over == 'finetune_seed'].delta_r_values.str.split(';').str[0]
  assert list(a) == list(b)
  # The headline columns are headline.csv's Δr (all fine-tuning seeds) and its interval.
  head = report.headline_frame(report.results_frame(main))
  full = head[head.fraction == 1.0].iloc[0]
  row = frame[(frame.fraction == 1.0) & (frame.versus == 'random')].iloc[0]
  assert (row.headline_delta_r, row.headline_delta_r_low, row.headline_delta_r_high) == (
      pytest.approx((full.delta_r, full.delta_r_low, full.delta_r_high)))
  md = report.write_seed_variance(by_seed, str(tmp_path), 0)
  assert (tmp_path / 'variance.csv').exists() and 'Variance over seeds' in (
      tmp_path / 'variance.md').read_text()
  assert f'{row.delta_r_mean:+.3f} ± {row.delta_r_sd:.3f}' in md
  # A task of one pre-training seed has fine-tuning-seed rows only; one seed of each: no rows.
  other = cells(('pretrained', 'random'), (0, 1), task='toy2')
  frame = report.seed_variance_frame({0: main + other, 1: further[1]})
  assert set(frame[frame.task == 'toy2'].over) == {'finetune_seed'}
  assert report.seed_variance_frame({0: cells(('pretrained', 'random'), (0,))}).empty


def tiny_paper_config(toy_dirs):
  c = paper_config.get_config('tiny')
  c.pretrain = tiny_pretrain_config()
  c.pretrain.train.update({'steps': 2, 'checkpoint_every': 2, 'eval_every': 2})
  c.data_dir = toy_dirs['data_dir']
  c.sweep.datasets = ('toy_labelled',)
  c.sweep.task_data = {}
  c.sweep.fractions = (1.0,)
  c.sweep.num_folds = 2
  c.sweep.protocols = ('linear_probe',)
  c.sweep.finetune = tiny_finetune_config()
  c.sweep.finetune.train.steps = 2
  c.pretrain_seeds = (0, 1)
  c.seed_datasets = ('toy_labelled',)
  return c


def test_config_errors_name_the_key(tmp_path, toy_dirs):
  c = tiny_paper_config(toy_dirs)
  for key, value, match in (
      ('pretrain_seeds', (0, 1, 1), r'config.pretrain_seeds must be distinct integers'),
      ('pretrain_seeds', (2, 1), r'config.pretrain_seeds\[0\] = 2 .* config.pretrain.seed = 0'),
      ('seed_datasets', ('toy_labelled', 'nope'), r'config.seed_datasets must be distinct data '
                                                  r'sets of config.sweep.datasets'),
      ('seed_datasets', (), r'config.seed_datasets is empty'),
      ('pretrain_from_scratch', False, r'config.pretrain_from_scratch=False .* one pre-training')):
    bad = c.copy_and_resolve_references()
    bad[key] = value
    with pytest.raises(ConfigError, match=match):
      experiment.run(bad, str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'w')  # refused before any work
  cpu = paper_config.get_config('cpu')
  assert experiment.seed_plan(cpu) == (0, [1, 2], ['synthetic_walking_kfm'])
  assert cpu.sweep.seeds == (0, 1, 2) and cpu.sweep.fractions == (0.1, 0.25, 1.0)
  assert experiment.seed_plan(paper_config.get_config('tiny')) == (0, [], [])


def test_paper_stage_with_two_pretraining_seeds(tmp_path, toy_dirs, capsys):
  c = tiny_paper_config(toy_dirs)
  work = tmp_path / 'work'
  report_dir = experiment.run(c, str(work))
  key = next(iter(experiment.pretrain_configs(c)))
  main_dir, seed_dir = experiment.pretrain_dir(str(work), key), experiment.seed_pretrain_dir(
      str(work), key, 1)
  assert seed_dir == main_dir + '_seed1' and os.path.isdir(os.path.join(seed_dir, 'checkpoints'))
  sweep_dir = work / 'pretrain_seed1' / 'sweep' / 'toy_labelled'
  inits = {d.name for d in sweep_dir.glob('fold*/frac*/seed*/*')
           if (d / 'sweep_cell.json').exists()}
  assert inits == {'pretrained_linear_probe'}
  assert {d.name for d in sweep_dir.glob('fold*/frac*/seed*')} == {'seed0'}
  # The variance rows equal a recomputation from the two reports' results.csv.
  main = pd.read_csv(os.path.join(report_dir, 'results.csv'))
  other = pd.read_csv(work / 'pretrain_seed1' / 'report' / 'results.csv')
  assert set(other.init) == {'pretrained'}

  def within(df, init):
    sub = df[(df.init == init) & (df.subject != 'all') & (df.seed == 0)]
    sub = sub[sub.n_test >= report.MIN_SUBJECT_WINDOWS]
    return sub.pearson_r.mean()

  with open(os.path.join(report_dir, 'variance.csv')) as f:
    rows = [r for r in csv.DictReader(f) if r['over'] == 'pretrain_seed']
  assert {r['versus'] for r in rows} == {'random', 'features'}
  for r in rows:
    base = within(main, r['versus'])
    want = [within(main, 'pretrained') - base, within(other, 'pretrained') - base]
    assert r['seeds'] == '0;1' and r['fixed_seed'] == '0'
    assert [float(v) for v in r['delta_r_values'].split(';')] == pytest.approx(want)
    assert float(r['delta_r_sd']) == pytest.approx(np.std(want, ddof=1))
  assert '## Variance over seeds' in open(os.path.join(report_dir, 'summary.md')).read()
  # A rerun trains nothing new: no pre-training step, no cell.
  marks = {p: p.stat().st_mtime_ns for p in work.rglob('sweep_cell.json')}
  ckpts = {p: p.stat().st_mtime_ns for p in work.glob('pretrain_*/checkpoints/[0-9]*')}
  capsys.readouterr()
  experiment.run(c, str(work))
  out = capsys.readouterr()
  assert {p: p.stat().st_mtime_ns for p in work.rglob('sweep_cell.json')} == marks
  assert {p: p.stat().st_mtime_ns for p in work.glob('pretrain_*/checkpoints/[0-9]*')} == ckpts
  assert len(ckpts) >= 2
  assert out.out.count('; 0 to train') == 2  # the main sweep and seed 1's
