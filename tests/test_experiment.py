"""The paper stage's per-task pre-training plan and the budget curve, on the toy data sets."""

import csv
import json
import os

import pytest
from conftest import tiny_finetune_config, tiny_pretrain_config

from configs import budget as budget_config
from configs import paper as paper_config
from configs import release as release_config
from ssl_imu_jax.errors import ConfigError
from ssl_imu_jax.evaluation import experiment


def test_one_pretraining_per_distinct_rate_and_window():
  c = paper_config.get_config('default')
  plans = experiment.pretrain_configs(c)
  # loading rate 200 Hz / 64, peak vGRF 200 Hz / 128, peak KFM 100 Hz / 128
  assert sorted(plans) == [(100.0, 128), (200.0, 64), (200.0, 128)]
  for (rate, window), p in plans.items():
    assert p.data.sample_rate_hz == rate and p.data.window_length == window
    assert p.data.dataset == 'synthetic_movi' and p.data.options.drop_static
    assert p.ssl.loss == 'reference_nce' and p.model.encoder.shared
  c.sweep.task_data.synthetic_walking_grf.sample_rate_hz = 100.0  # now shared with KFM
  assert sorted(experiment.pretrain_configs(c)) == [(100.0, 128), (200.0, 64)]
  assert c.sweep.seeds == (0, 1) and c.pretrain.train.steps == 10_000
  assert paper_config.get_config('cpu,ipol').sweep.datasets[-1] == 'ipol_gait'


def test_budget_curve_on_intermediate_checkpoints(tmp_path, toy_dirs, pretrained):
  c = budget_config.get_config('tiny')
  c.data_dir = toy_dirs['data_dir']
  with pytest.raises(ValueError, match='config.pretrain_run is required'):
    experiment.budget_curve(c, str(tmp_path))
  c.pretrain_run = pretrained['workdir']
  c.sweep.datasets = ('toy_labelled',)
  c.sweep.fractions = (1.0,)
  c.sweep.folds = (0,)
  c.sweep.finetune = tiny_finetune_config()
  c.sweep.finetune.model.encoder.widths = (4, 4)  # the random arm must not use this
  c.steps = (3, 99)
  with pytest.raises(ValueError, match=r'config.steps \[99\]'):
    experiment.budget_curve(c, str(tmp_path))
  c.steps = (3, 6)
  report_dir = experiment.budget_curve(c, str(tmp_path))
  with open(os.path.join(report_dir, 'budget.csv')) as f:
    rows = list(csv.DictReader(f))
  assert sorted({int(r['step']) for r in rows}) == [3, 6]
  assert {r['protocol'] for r in rows} == {'linear_probe', 'full_from_probe'}
  for r in rows:
    assert float(r['delta_r']) == pytest.approx(
        float(r['within_r_pretrained']) - float(r['within_r_random']), abs=1e-9)
    assert int(r['windows_seen']) == int(r['step']) * tiny_pretrain_config().train.batch_size
  # The random arm is trained once and shared; the two budgets differ in their encoders.
  by_step = {int(r['step']): float(r['within_r_pretrained']) for r in rows
             if r['protocol'] == 'linear_probe'}
  assert by_step[3] != by_step[6]
  assert os.path.isdir(tmp_path / 'budget' / 'random' / 'sweep')
  with open(tmp_path / 'budget' / 'random' / 'sweep' / 'sweep_config.json') as f:
    rnd_encoder = json.load(f)['finetune']['model']['encoder']
  assert rnd_encoder == json.loads(pretrained['config'].model.encoder.to_json())
  with open(os.path.join(pretrained['workdir'], 'metrics.jsonl')) as f:
    evals = {json.loads(x)['step']: json.loads(x) for x in f if 'eval/top1' in x}
  six = [r for r in rows if int(r['step']) == 6][0]
  assert float(six['retrieval_top1']) == pytest.approx(evals[6]['eval/top1'])
  assert (tmp_path / 'report' / 'budget_curve.png').stat().st_size > 5000


def test_random_arm_takes_the_pretrained_architecture(tmp_path, pretrained):
  from configs import sweep as sweep_config
  from ssl_imu_jax.evaluation import sweep

  c = sweep_config.get_config('tiny')
  c.datasets = ('toy_labelled',)
  c.finetune = tiny_finetune_config()
  c.finetune.model.encoder.widths = (4, 4)  # would silently differ from the checkpoint
  c.init_from = pretrained['workdir']
  rnd = sweep.cell_config(c, str(tmp_path), 'toy_labelled', 0, 1.0, 'random', 'linear_probe')
  pre = sweep.cell_config(c, str(tmp_path), 'toy_labelled', 0, 1.0, 'pretrained',
                          'linear_probe')
  assert rnd.init_from == '' and pre.init_from == pretrained['workdir']
  assert list(rnd.model.encoder.widths) == list(pretrained['config'].model.encoder.widths)
  c.inits = ('random',)  # the baseline alone keeps its own architecture
  alone = sweep.cell_config(c, str(tmp_path), 'toy_labelled', 0, 1.0, 'random', 'linear_probe')
  assert tuple(alone.model.encoder.widths) == (4, 4)


def test_paper_comparison_table_and_targets(tmp_path):
  from ssl_imu_jax.evaluation import report

  head = [  # task, fraction, pre, rand, delta, p
      ('synthetic_walking_kfm', 0.1, 0.80, 0.70, 0.10, 0.01),
      ('synthetic_walking_kfm', 0.25, 0.88, 0.80, 0.08, 0.01),
      ('synthetic_walking_kfm', 1.0, 0.91, 0.87, 0.04, 0.02),
      ('synthetic_running_valr', 0.1, 0.50, 0.60, -0.10, 0.3),
      ('synthetic_running_valr', 1.0, 0.62, 0.60, 0.02, 0.04),
  ]
  with open(tmp_path / 'headline.csv', 'w') as f:
    f.write(','.join(report.HEADLINE_COLUMNS) + '\n')
    for task, frac, pre, rnd, d, p in head:
      f.write(f'{task},y,full_from_probe,{frac},{pre},{rnd},0.1,0.1,17,{d},{d - 0.01},'
              f'{d + 0.01},2.0,{p},0.5,0.5\n')
  with open(tmp_path / 'efficiency.csv', 'w') as f:
    f.write(','.join(report.EFFICIENCY_COLUMNS) + '\n')
    f.write('synthetic_walking_kfm,y,full_from_probe,0.25,75.0,4.0,4.4,2.0,10.0,0.99\n')
    f.write('synthetic_running_valr,y,full_from_probe,,,,,,,0.2\n')
  md = experiment.paper_comparison(str(tmp_path))
  kfm = next(ln for ln in md.splitlines() if ln.startswith('| synthetic_walking_kfm (y) | 0.87'))
  assert '0.870 → 0.910 (+0.040 [+0.030, +0.050])' in kfm
  assert '75 % less; 4.4× (2.0× to ≥ 10.0×)' in kfm
  assert kfm.endswith('| met |')
  valr = next(ln for ln in md.splitlines() if ln.startswith('| synthetic_running_valr (y) | 0.87'))
  assert 'missed: Δr ≥ 0.03 with p < 0.05, pre-trained at ≤ 25%' in valr
  assert '| synthetic_walking_kfm (y) | 0.800 / 0.700 | 0.880 / 0.800 | 0.910 / 0.870 |' in md
  assert 'feature baseline' not in md  # no feature-baseline cells: no column for them
  # With the feature baseline: its r after the two arms', and the pre-trained arm against it.
  with open(tmp_path / 'headline.csv', 'w') as f:
    f.write(','.join(report.HEADLINE_COLUMNS) + '\n')
    for task, frac, pre, rnd, d, p in head:
      f.write(f'{task},y,full_from_probe,{frac},{pre},{rnd},0.1,0.1,17,{d},{d - 0.01},'
              f'{d + 0.01},2.0,{p},0.5,0.5,0.85,0.1,{pre - 0.85},{pre - 0.9},{pre - 0.8},'
              f'3.0,0.004,17,0.8\n')
  md = experiment.paper_comparison(str(tmp_path))
  assert '/ feature baseline (ridge) at each fraction' in md
  assert '| synthetic_walking_kfm (y) | 0.800 / 0.700 / 0.850 | 0.880 / 0.800 / 0.850 |' in md
  kfm = next(ln for ln in md.splitlines() if ln.startswith('| synthetic_walking_kfm (y) | 0.87'))
  assert kfm.endswith('| met | 0.850 → 0.910 (+0.060 [+0.010, +0.110]), p = 0.004 |')
  # One fraction (the demo): data efficiency is not judged, only the Δr target.
  with open(tmp_path / 'headline.csv', 'w') as f:
    f.write(','.join(report.HEADLINE_COLUMNS) + '\n')
    f.write('synthetic_walking_kfm,y,full_from_probe,1.0,0.91,0.87,0.1,0.1,17,0.04,0.03,0.05,'
            '2.0,0.02,0.5,0.5\n')
  md = experiment.paper_comparison(str(tmp_path))
  kfm = next(ln for ln in md.splitlines() if ln.startswith('| synthetic_walking_kfm (y) | 0.87'))
  assert kfm.endswith('| — (one fraction swept) | Δr ≥ 0.03 with p < 0.05: met; data '
                      'efficiency not judged (one fraction) |')


def test_the_demo_fine_tunes_from_the_released_weights_of_each_task():
  from configs import demo as demo_config
  from ssl_imu_jax.training import checkpointing

  c = demo_config.get_config()
  assert not c.pretrain_from_scratch and demo_config.get_config('tiny').pretrain_from_scratch
  ckpts = experiment.released_checkpoints(experiment.pretrain_configs(c))
  assert [os.path.basename(p) for p in ckpts] == [
      'synthetic_movi_200hz_64', 'synthetic_movi_200hz_128', 'synthetic_movi_100hz_128']
  assert all(p.startswith(checkpointing.weights_root()) for p in ckpts)
  c.sweep.task_data.synthetic_walking_kfm.window_length = 256  # no release at 100 Hz / 256
  with pytest.raises(ConfigError, match=r'weights/synthetic_movi_100hz_256 .*'
                                        r'--config.pretrain_from_scratch=True'):
    experiment.released_checkpoints(experiment.pretrain_configs(c))


def test_paper_stage_from_released_weights_pretrains_nothing(tmp_path, toy_dirs, pretrained,
                                                             monkeypatch):
  from ssl_imu_jax.deploy import release
  from ssl_imu_jax.training import checkpointing

  rcfg = release_config.get_config()
  rcfg.update({'checkpoint': pretrained['workdir'], 'out_dir': str(tmp_path / 'weights'),
               'reproduce': 'x', 'licence': 'toy'})
  released = release.export(rcfg)  # named <dataset>_<rate>hz_<T>, as the paper stage looks up
  monkeypatch.setattr(checkpointing, 'weights_root', lambda: str(tmp_path / 'weights'))
  c = paper_config.get_config('tiny')
  c.pretrain = tiny_pretrain_config()
  c.pretrain_from_scratch = False
  c.data_dir = toy_dirs['data_dir']
  c.sweep.datasets = ('toy_labelled',)
  c.sweep.task_data = {}
  c.sweep.fractions = (1.0,)
  c.sweep.folds = (0,)
  c.sweep.protocols = ('linear_probe',)
  c.sweep.finetune = tiny_finetune_config()
  c.sweep.finetune.train.steps = 2
  work = tmp_path / 'work'
  experiment.run(c, str(work))
  assert not [d for d in os.listdir(work) if d.startswith('pretrain')]
  with open(work / 'sweep' / 'toy_labelled' / 'fold0' / 'frac1' / 'seed0' /
            'pretrained_linear_probe' / 'sweep_cell.json') as f:
    assert json.load(f)['config']['init_from'] == released
