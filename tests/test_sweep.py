"""Tests of the sweep orchestration with a fake fine-tune function (no training)."""

import csv
import json
import os

import numpy as np
import pytest

import data_prep
from configs import sweep as sweep_config
from data_prep import records
from ssl_imu_jax.data import input_pipeline, splits
from ssl_imu_jax.evaluation import features, sweep

N_SUBJECTS = 7
WINDOWS = 4  # per subject
SUBJECT_IDS = np.repeat(np.arange(100, 100 + N_SUBJECTS), WINDOWS)


class FakeTrain:
  """Stands in for finetune.train_and_evaluate: real splits, fake predictions, counts calls."""

  def __init__(self, fail_after=None, ids=SUBJECT_IDS, target=('peak_kfm', '%BW*BH')):
    self.calls = []
    self.fail_after = fail_after
    self.ids = ids
    self.target = target

  def __call__(self, cfg, workdir):
    if self.fail_after is not None and len(self.calls) >= self.fail_after:
      raise RuntimeError('killed')
    self.calls.append((cfg, workdir))
    s, ids = cfg.split, self.ids
    folds = splits.assign_folds(ids, s.num_folds, s.fold_seed)
    train_idx, test_idx = splits.fold_indices(ids, folds, s.fold)
    train_idx = splits.fraction_indices(train_idx, s.fraction, s.fraction_seed)
    rng = np.random.default_rng([s.fold, int(s.fraction * 100), len(cfg.init_from), len(workdir)])
    y_true = rng.normal(3.0, 0.5, (len(test_idx), 1))
    noise = (0.1 if cfg.init_from else 0.4) / np.sqrt(s.fraction)
    return {
        'predictions': {'subject_id': ids[test_idx], 'y_true': y_true,
                        'y_pred': y_true + rng.normal(0, noise, y_true.shape)},
        'targets': [self.target[0]], 'units': [self.target[1]],
        'n_train': len(train_idx), 'n_test': len(test_idx),
        'train_subjects': sorted(set(ids[train_idx].tolist())),
        'test_subjects': sorted(set(ids[test_idx].tolist())),
        'metrics': {},
    }


def make_config(tmp_path, **kw):
  c = sweep_config.get_config('tiny')
  c.datasets = ('toy_a', 'toy_b')
  c.num_folds = 3
  c.fractions = (1.0, 0.5)
  c.seeds = (0, 1)
  c.inits = ('pretrained', 'random')  # the deep arms (fake); the features arm: tests below
  c.init_from = str(tmp_path / 'ckpt')
  os.makedirs(c.init_from, exist_ok=True)
  c.finetune.train.steps = 7
  for k, v in kw.items():
    setattr(c, k, v)
  return c


def subject_ids_fn(cfg):
  return SUBJECT_IDS


N_CELLS = 2 * 3 * 2 * 2 * 2 * 2  # datasets x folds x fractions x seeds x inits x protocols


def test_sweep_runs_every_cell_once_with_same_steps(tmp_path, capsys):
  fake = FakeTrain()
  cfg = make_config(tmp_path)
  report_dir = sweep.run(cfg, str(tmp_path / 'w'), train_fn=fake, subject_ids_fn=subject_ids_fn)
  assert report_dir == str(tmp_path / 'w' / 'report')
  assert len(fake.calls) == N_CELLS
  assert len({wd for _, wd in fake.calls}) == N_CELLS
  assert {c.train.steps for c, _ in fake.calls} == {7}
  done_before = set()
  for c, wd in fake.calls:
    init = 'pretrained' if c.init_from else 'random'
    assert wd == sweep.cell_dir(str(tmp_path / 'w'), c.data.dataset, c.split.fold,
                                c.split.fraction, init, c.protocol, c.seed)
    assert c.init_from in ('', cfg.init_from)
    assert c.data_dir == str(tmp_path / 'w' / 'tfds')
    assert c.split.fraction_seed == cfg.fraction_seed + c.seed
    assert not c.train.progress  # no per-step lines from the cells of a sweep
    if c.protocol == 'full_from_probe':  # starts from its own seed's probe, trained before it
      assert c.probe_from == sweep.cell_dir(str(tmp_path / 'w'), c.data.dataset, c.split.fold,
                                            c.split.fraction, init, 'linear_probe', c.seed)
      assert c.probe_from in done_before
    else:
      assert c.probe_from == ''
    done_before.add(wd)
  assert {c.seed for c, _ in fake.calls} == {0, 1}
  assert os.path.isdir(tmp_path / 'w' / 'sweep' / 'toy_a' / 'fold2' / 'frac0.5' / 'seed1' /
                       'random_full_from_probe')
  out = capsys.readouterr().out
  assert 'full_from_probe' in out and 'data efficiency' in out
  # One line per cell, each with the sweep's progress bar; the last one full.
  bars = [ln for ln in out.splitlines() if ln.startswith('[') and '] ' in ln and ' cells' not in ln]
  assert len(bars) == N_CELLS
  assert f'] 1/{N_CELLS} ' in bars[0]
  assert bars[-1].startswith(f'[{"#" * 20}] {N_CELLS}/{N_CELLS} ')


def test_progress_bar_by_hand():
  assert sweep.progress_bar(0, 8, 8) == '[........] 0/8'
  assert sweep.progress_bar(3, 8, 8) == '[###.....] 3/8'
  assert sweep.progress_bar(8, 8, 8) == '[########] 8/8'


def test_folds_json_puts_each_subject_in_one_fold(tmp_path):
  sweep.run(make_config(tmp_path), str(tmp_path / 'w'), train_fn=FakeTrain(),
            subject_ids_fn=subject_ids_fn)
  with open(tmp_path / 'w' / 'sweep' / 'toy_a' / 'folds.json') as f:
    saved = json.load(f)
  folds = {int(s): f for s, f in saved['folds'].items()}
  assert folds == splits.assign_folds(SUBJECT_IDS, 3, 0)
  assert set(folds) == set(SUBJECT_IDS.tolist())
  # Every subject is tested in exactly one fold, the one folds.json names, and never trained on
  # in that fold.
  with open(tmp_path / 'w' / 'report' / 'results.csv') as f:
    rows = [r for r in csv.DictReader(f) if r['subject'] != 'all' and r['task'] == 'toy_a']
  tested = {}
  for r in rows:
    tested.setdefault(int(r['subject']), set()).add(int(r['fold']))
  assert tested == {s: {f} for s, f in folds.items()}


def test_resume_skips_completed_cells(tmp_path):
  cfg = make_config(tmp_path)
  killed = FakeTrain(fail_after=10)
  with pytest.raises(RuntimeError, match='killed') as info:
    sweep.run(cfg, str(tmp_path / 'w'), train_fn=killed, subject_ids_fn=subject_ids_fn)
  assert any('rerun to resume' in n for n in info.value.__notes__)
  markers = [os.path.join(d, sweep.CELL_FILE) for d in {wd for _, wd in killed.calls}]
  assert len(markers) == 10 and all(os.path.exists(m) for m in markers)
  resumed = FakeTrain()
  sweep.run(cfg, str(tmp_path / 'w'), train_fn=resumed, subject_ids_fn=subject_ids_fn)
  assert len(resumed.calls) == N_CELLS - 10
  assert not {wd for _, wd in resumed.calls} & {wd for _, wd in killed.calls}
  again = FakeTrain()
  sweep.run(cfg, str(tmp_path / 'w'), train_fn=again, subject_ids_fn=subject_ids_fn)
  assert again.calls == []
  with open(tmp_path / 'w' / 'report' / 'results.csv') as f:
    rows = list(csv.DictReader(f))
  # One pooled row per cell plus one row per test subject (each subject once per fold set).
  assert len([r for r in rows if r['subject'] == 'all']) == N_CELLS
  assert len(rows) == N_CELLS + 2 * 2 * 2 * 2 * 2 * N_SUBJECTS
  leftovers = [f for _, _, fs in os.walk(tmp_path / 'w') for f in fs if '.tmp' in f]
  assert leftovers == []
  for name in ('toy_a_data_efficiency.png', 'toy_b_scatter.png'):
    assert (tmp_path / 'w' / 'report' / name).stat().st_size > 5000


def test_changed_config_is_an_error_not_a_silent_mix(tmp_path):
  cfg = make_config(tmp_path, datasets=('toy_a',), fractions=(1.0,))
  sweep.run(cfg, str(tmp_path / 'w'), train_fn=FakeTrain(), subject_ids_fn=subject_ids_fn)
  cfg.finetune.train.steps = 8
  with pytest.raises(ValueError, match=r'train.steps: 7 -> 8'):
    sweep.run(cfg, str(tmp_path / 'w'), train_fn=FakeTrain(), subject_ids_fn=subject_ids_fn)
  cfg.finetune.train.steps = 7
  cfg.fold_seed = 1
  with pytest.raises(ValueError, match='another fold assignment'):
    sweep.run(cfg, str(tmp_path / 'w'), train_fn=FakeTrain(), subject_ids_fn=subject_ids_fn)


def test_fold_mismatch_between_sweep_and_finetune_is_caught(tmp_path):
  def shifted(cfg):
    return SUBJECT_IDS + 1000  # the sweep sees other subjects than fine-tuning does

  with pytest.raises(ValueError, match='fold assignment disagrees'):
    sweep.run(make_config(tmp_path), str(tmp_path / 'w'), train_fn=FakeTrain(),
              subject_ids_fn=shifted)


def test_config_validation(tmp_path):
  cfg = make_config(tmp_path, init_from='')
  with pytest.raises(ValueError, match='config.init_from'):
    sweep.validate_config(cfg)
  cfg = make_config(tmp_path, init_from=str(tmp_path / 'missing'))
  with pytest.raises(FileNotFoundError, match='config.init_from'):
    sweep.validate_config(cfg)
  sweep.validate_config(make_config(tmp_path, init_from='', inits=('random',)))
  with pytest.raises(ValueError, match='config.fractions'):
    sweep.validate_config(make_config(tmp_path, fractions=(0.0, 1.0)))
  with pytest.raises(ValueError, match='config.protocols'):
    sweep.validate_config(make_config(tmp_path, protocols=('frozen',)))
  with pytest.raises(ValueError, match='config.seeds'):
    sweep.validate_config(make_config(tmp_path, seeds=(1, 1)))
  c = sweep_config.get_config('default')
  assert c.stage == 'sweep' and c.fractions == (0.1, 0.16, 0.25, 0.4, 0.63, 1.0)  # the paper's
  assert c.num_folds == 5 and c.inits == ('pretrained', 'random', 'features')
  assert c.protocols == ('linear_probe', 'full_from_probe') and c.finetune.stage == 'finetune'
  assert c.task_data.synthetic_running_valr.sample_rate_hz == 200.0
  assert c.task_data.synthetic_running_valr.window_length == 64
  assert sweep.task_data(c, 'synthetic_walking_kfm').sample_rate_hz == 100.0
  assert sweep_config.get_config('default,two_encoder').protocols == ('linear_probe', 'full')


class TinyBuilder(records.ImuWindowBuilder):
  """Three subjects with 2, 3 and 1 windows."""

  SITES = ('shank',)
  TARGETS = {'y': 'BW'}
  WITH_GYR = False

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples()}

  def _generate_examples(self):
    t = self.builder_config.window_length
    for i, s in enumerate([3, 3, 5, 5, 5, 9]):
      yield i, self.example(np.full((1, t, 3), float(i)), None, s, 0, {'y': 1.0}, f'window {i}')


def test_dataset_subject_ids_reads_tfds(tmp_path, monkeypatch):
  monkeypatch.setattr(data_prep, 'get_builder_class', lambda name: TinyBuilder)
  cfg = sweep.cell_config(make_config(tmp_path), str(tmp_path / 'tfds'), 'tiny_builder', 0, 1.0,
                          'random', 'full')
  cfg.data.window_length = 8
  ids = sweep.dataset_subject_ids(cfg)
  assert sorted(ids.tolist()) == [3, 3, 5, 5, 5, 9]
  cfg.data.split = 'test'
  with pytest.raises(ValueError, match="no split 'test'"):
    sweep.dataset_subject_ids(cfg)


def test_cell_timer_learns_per_dataset_init_and_protocol_without_compilation():
  timer = sweep.CellTimer()
  kfm = ('kfm', 0, 1.0, 'random', 'full_from_probe', 0)
  valr = ('valr', 0, 1.0, 'random', 'full_from_probe', 0)
  timer.add(kfm, 30.0, compile_seconds=10.0)  # the first cell of a program compiles it
  timer.add(kfm, 22.0)
  timer.add(valr, 2.0)
  assert timer.estimate(('kfm', 3, 0.1, 'random', 'full_from_probe', 1)) == 21.0
  # no pre-trained kfm cell yet: its data set and protocol; then its own
  assert timer.estimate(('kfm', 3, 0.1, 'pretrained', 'full_from_probe', 1)) == 21.0
  timer.add(('kfm', 1, 1.0, 'pretrained', 'full_from_probe', 0), 12.0)
  assert timer.estimate(('kfm', 3, 0.1, 'pretrained', 'full_from_probe', 1)) == 12.0
  assert timer.estimate(('kfm', 3, 0.1, 'random', 'linear_probe', 1)) == 18.0  # its data set
  grf = ('grf', 0, 1.0, 'random', 'linear_probe', 0)
  assert timer.estimate(grf) == 14.0  # every cell (20, 22, 2, 12)
  # one compilation (the mean of those measured: 10 and 0) for the program not run yet
  assert timer.left([kfm, valr, grf]) == 21.0 + 2.0 + 14.0 + 5.0


def test_compile_clock_counts_what_jax_compiles():
  import jax

  with sweep.compile_clock() as clock:
    jax.jit(lambda x: x * 3.0 + 1.0).lower(2.0).compile()
  assert clock.seconds > 0.0
  seen = clock.seconds
  jax.jit(lambda x: x * 5.0).lower(2.0).compile()  # after the clock stopped
  assert clock.seconds == seen


def test_a_subset_of_folds_reports_apart_from_the_full_report(tmp_path, capsys):
  cfg = make_config(tmp_path, datasets=('toy_a',), fractions=(1.0,))
  sweep.run(cfg, str(tmp_path / 'w'), train_fn=FakeTrain(), subject_ids_fn=subject_ids_fn)
  full = (tmp_path / 'w' / 'report' / 'summary.md').read_text()
  cfg.folds = (0,)
  out_dir = sweep.run(cfg, str(tmp_path / 'w'), train_fn=FakeTrain(),
                      subject_ids_fn=subject_ids_fn)
  assert out_dir == str(tmp_path / 'w' / 'report_folds0')
  assert (tmp_path / 'w' / 'report' / 'summary.md').read_text() == full
  assert '1 fold(s)' in (tmp_path / 'w' / 'report_folds0' / 'summary.md').read_text()
  assert 'folds 0 of 3 only' in capsys.readouterr().out


def test_a_sweep_run_in_pieces_trains_without_reporting(tmp_path):
  cfg = make_config(tmp_path, datasets=('toy_a',), fractions=(1.0,))
  cfg.folds = (1,)
  fake = FakeTrain()
  assert sweep.run(cfg, str(tmp_path / 'w'), train_fn=fake, subject_ids_fn=subject_ids_fn,
                   write_report=False) == ''
  assert fake.calls and not list((tmp_path / 'w').glob('report*'))


def test_cadence_keys_never_block_a_resume(tmp_path):
  cfg = make_config(tmp_path, datasets=('toy_a',), fractions=(1.0,))
  sweep.run(cfg, str(tmp_path / 'w'), train_fn=FakeTrain(), subject_ids_fn=subject_ids_fn)
  cell = next(iter(sweep.plan(cfg)))
  marker = os.path.join(sweep.cell_dir(str(tmp_path / 'w'), *cell), sweep.CELL_FILE)
  with open(marker) as f:
    done = json.load(f)
  done['config']['train.checkpoint_every'] = 999  # written by an older version, or other cadence
  with open(marker, 'w') as f:
    json.dump(done, f)
  again = FakeTrain()
  sweep.run(cfg, str(tmp_path / 'w'), train_fn=again, subject_ids_fn=subject_ids_fn)
  assert again.calls == []


def test_report_only_reports_the_finished_cells_and_trains_nothing(tmp_path):
  cfg = make_config(tmp_path)
  with pytest.raises(RuntimeError, match='killed'):
    sweep.run(cfg, str(tmp_path / 'w'), train_fn=FakeTrain(fail_after=10),
              subject_ids_fn=subject_ids_fn)
  cfg.report_only = True
  idle = FakeTrain()
  out_dir = sweep.run(cfg, str(tmp_path / 'w'), train_fn=idle, subject_ids_fn=subject_ids_fn)
  assert idle.calls == [] and out_dir == str(tmp_path / 'w' / 'report_partial')
  assert f'PARTIAL: {N_CELLS - 10} cells not trained yet' in (
      tmp_path / 'w' / 'report_partial' / 'summary.md').read_text()
  assert not (tmp_path / 'w' / 'report').exists()
  with pytest.raises(ValueError, match='no finished cell'):
    sweep.run(cfg, str(tmp_path / 'empty'), train_fn=idle, subject_ids_fn=subject_ids_fn)


def test_the_feature_baseline_is_one_cell_per_fold_fraction_and_seed(tmp_path):
  cfg = make_config(tmp_path, inits=('pretrained', 'random', 'features'))
  sweep.validate_config(cfg)
  cells = list(sweep.plan(cfg))
  feat = [c for c in cells if c[3] == 'features']
  assert len(feat) == 2 * 3 * 2 * 2 and {c[4] for c in feat} == {'ridge'}  # not per protocol
  assert len(cells) == N_CELLS + len(feat)
  assert sweep.cell_dir('w', *feat[-1]) == os.path.join('w', 'sweep', 'toy_b', 'fold2',
                                                        'frac1', 'seed1', 'features_ridge')
  dataset, fold, fraction, _, _, seed = feat[-1]
  fc = sweep.cell_config(cfg, 'data', dataset, fold, fraction, 'features', 'ridge', seed, 'w')
  deep = sweep.cell_config(cfg, 'data', dataset, fold, fraction, 'random', 'full_from_probe',
                           seed, 'w')
  assert (fc.init_from, fc.protocol, fc.seed) == ('', 'ridge', seed)
  for key in ('num_folds', 'fold', 'fold_seed', 'fraction', 'fraction_seed'):
    assert fc.split[key] == deep.split[key], key
  assert fc.data == deep.data and 'train' not in fc and 'model' not in fc
  assert fc.split.validation_fraction == deep.split.get('validation_fraction', 0.2)
  assert list(fc.ridge.alphas) == list(features.ALPHAS)
  sweep.validate_config(make_config(tmp_path, init_from='', inits=('features',)))
  with pytest.raises(ValueError, match='config.inits'):
    sweep.validate_config(make_config(tmp_path, inits=('ridge',)))


def test_feature_cells_are_never_grouped_with_deep_cells():
  def item(init, protocol, fold):
    return (('d', fold, 1.0, init, protocol, 0), None, f'{init}{fold}', '', {})

  pending = [item(i, p, k) for k in range(3)
             for i, p in (('random', 'linear_probe'), ('features', 'ridge'),
                          ('pretrained', 'linear_probe'))]
  groups = list(sweep.cell_groups(pending, 4))
  assert [len(g) for g in groups] == [1, 1, 1, 4, 2]
  assert all(g[0][0][3] == 'features' for g in groups[:3])
  assert all(x[0][3] != 'features' for g in groups[3:] for x in g)
  assert sum(len(g) for g in groups) == len(pending)


def test_a_sweep_with_the_feature_baseline_reports_it_beside_random_init(tmp_path, toy_dirs):
  from conftest import tiny_finetune_config

  c = sweep_config.get_config('tiny')
  c.datasets = ('toy_labelled',)
  c.inits = ('random', 'features')
  c.fractions = (0.5, 1.0)
  c.finetune = tiny_finetune_config()
  c.finetune.data_dir = toy_dirs['data_dir']
  ids = input_pipeline.subject_ids(toy_dirs['labelled'], 'train')
  fake, calls = FakeTrain(ids=ids, target=('y', 'BW')), []

  def feats(cfg, workdir):
    calls.append(workdir)
    return features.train_and_evaluate(cfg, workdir)

  wd = str(tmp_path / 'w')
  report_dir = sweep.run(c, wd, train_fn=fake, features_fn=feats)
  assert len(calls) == 5 * 2 and len(fake.calls) == 5 * 2 * 2
  assert all(w.endswith('features_ridge') for w in calls)
  with open(os.path.join(report_dir, 'results.csv')) as f:
    rows = list(csv.DictReader(f))
  feat = [r for r in rows if r['init'] == 'features']
  assert feat and {r['protocol'] for r in feat} == {'ridge'}
  assert len([r for r in feat if r['subject'] == 'all']) == 10
  with open(os.path.join(report_dir, 'headline.csv')) as f:
    head = list(csv.DictReader(f))
  assert {r['protocol'] for r in head} == {'linear_probe', 'full_from_probe'}  # no 'ridge' row
  for frac in ('0.5', '1.0'):
    at = [r for r in head if r['fraction'] == frac]
    subj = [r for r in feat if r['fraction'] == frac and r['subject'] != 'all']
    by_hand = np.mean([float(r['pearson_r']) for r in subj])
    assert len(subj) == 10 and len(at) == 2
    assert all(float(r['within_r_features']) == pytest.approx(by_hand) for r in at)
    assert all(r['delta_r_vs_features'] == '' for r in at)  # no pre-trained arm to compare
  md = open(os.path.join(report_dir, 'summary.md')).read()
  assert '| fraction | features (ridge) | linear_probe: pretrained |' in md
  assert 'features / ridge' in md and 'Every deep cell trained' in md
  # Resume: nothing retrained; the deep arms' training keys do not touch the features cells,
  # the split does.
  sweep.run(c, wd, train_fn=fake, features_fn=feats)
  assert len(calls) == 10 and len(fake.calls) == 20
  c.inits = ('features',)
  c.finetune.train.steps = 99
  sweep.run(c, wd, train_fn=fake, features_fn=feats)
  assert len(calls) == 10
  c.finetune.split.validation_fraction = 0.5
  with pytest.raises(ValueError, match=r'split.validation_fraction: 0.0 -> 0.5'):
    sweep.run(c, wd, train_fn=fake, features_fn=feats)


def test_a_copied_work_directory_re_reports_and_resumes_without_retraining(tmp_path):
  import shutil

  def cfg_in(wd, **kw):  # init_from inside the work directory, as the paper stage's
    os.makedirs(wd / 'pretrain' / 'checkpoints', exist_ok=True)
    return make_config(tmp_path, datasets=('toy_a',), fractions=(1.0,), seeds=(0,),
                       init_from=str(wd / 'pretrain' / 'checkpoints'), **kw)

  wd, copy = tmp_path / 'w', tmp_path / 'copy'
  sweep.run(cfg_in(wd), str(wd), train_fn=FakeTrain(), subject_ids_fn=subject_ids_fn)
  table = (wd / 'report' / 'results.csv').read_text()
  shutil.copytree(wd, copy)
  idle = FakeTrain()
  sweep.run(cfg_in(copy, report_only=True), str(copy), train_fn=idle,
            subject_ids_fn=subject_ids_fn)
  assert (copy / 'report_partial' / 'results.csv').read_text() == table
  sweep.run(cfg_in(copy), str(copy), train_fn=idle, subject_ids_fn=subject_ids_fn)
  assert idle.calls == [] and (copy / 'report' / 'results.csv').read_text() == table
  # Cells an older version finished hold absolute paths: inside the work directory they were
  # written in (resumed in place, or copied from there) they are the same place.
  markers = sorted(copy.glob(f'sweep/*/*/*/*/*/{sweep.CELL_FILE}'))
  written = {m: json.loads(m.read_text()) for m in markers}
  assert any(d['config']['probe_from'].startswith('<workdir>/sweep/') for d in written.values())
  for old_root in (copy, wd):
    for marker, done in written.items():
      old = {k: v.replace('<workdir>', str(old_root)) if isinstance(v, str) else v
             for k, v in done['config'].items()}
      marker.write_text(json.dumps({**done, 'config': old}))
    sweep.run(cfg_in(copy), str(copy), train_fn=idle, subject_ids_fn=subject_ids_fn)
    assert idle.calls == []
  # another pre-training is still a change
  with pytest.raises(ValueError, match='init_from'):
    sweep.run(cfg_in(tmp_path / 'other'), str(copy), train_fn=idle,
              subject_ids_fn=subject_ids_fn)
