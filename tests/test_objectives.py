"""The objectives comparison (issue 27): its config, its checks, and its table against a hand
computation on made-up cell records."""

import math
import os

import numpy as np
import pandas as pd
import pytest
import scipy.stats as sps

from configs import objectives as objectives_config
from configs import paper as paper_config
from ssl_imu_jax.errors import ConfigError
from ssl_imu_jax.evaluation import objectives, report, sweep

SUBJECTS = (3, 5, 8)
N_WIN = 12  # windows per test subject (>= report.MIN_SUBJECT_WINDOWS)


def test_config_arms_share_corpus_and_budget_and_span_the_ratio_curve():
  c = objectives_config.get_config('cpu')
  objectives.validate(c)  # no data built: names and budgets only
  ratios = {a: float(c.arms[a].ssl.mask_ratio) for a in c.arms.keys()
            if objectives.objective(c.arms[a]) == 'masked'}
  assert sorted(ratios.values()) == [0.0625, 0.125, 0.25, 0.5]
  assert ratios['masked_12_5'] == 0.125 and objectives.backbone(c.arms.masked_12_5) == 'transformer'
  assert objectives.backbone(c.arms.nce_resnet) == 'resnet'
  # the crossed pairing: NCE on the Transformer, which keeps the Transformer's optimiser
  nt = c.arms.nce_transformer
  assert objectives.objective(nt) == 'nce' and objectives.architecture(nt) == 'transformer_separate'
  assert nt.optimizer.learning_rate == c.arms.masked_12_5.optimizer.learning_rate == 1e-4
  assert c.arms.nce_resnet.optimizer.learning_rate == 1e-3
  assert c.arms.nce_resnet.train.steps == c.arms.masked_50.train.steps == 800
  assert c.groups.curves.task_data[objectives_config.TASK]['targets'] == ('grf_curve',)
  assert 'features' in c.groups.curves.inits and 'features' in c.groups.peaks.inits


def test_validate_names_the_arm_key_that_breaks_the_shared_budget():
  c = objectives_config.get_config('tiny')
  c.arms.masked_50.train.steps = 7
  with pytest.raises(ConfigError, match=r'config\.arms\.masked_50\.train\.steps = 7 differs'):
    objectives.validate(c)
  c = objectives_config.get_config('tiny')
  c.groups.peaks.inits = ('random',)
  with pytest.raises(ConfigError, match=r"config\.groups\.peaks\.inits must hold 'pretrained'"):
    objectives.validate(c)


def test_plan_runs_each_backbone_baseline_once_with_the_arm_architecture(tmp_path):
  c = objectives_config.get_config('tiny')
  plan = objectives.plan(c, str(tmp_path), str(tmp_path / 'tfds'))
  peaks = {label: cfg for group, label, _, cfg in plan if group == 'peaks'}
  curves = {label: cfg for group, label, _, cfg in plan if group == 'curves'}
  assert sorted(c.arms.keys()) == ['masked_12_5', 'masked_50', 'nce_resnet', 'nce_transformer']
  baselines = {'random_resnet', 'random_transformer', 'random_transformer_separate'}
  # the masking-ratio curve on the curves only (config.group_arms)
  assert set(curves) == set(c.arms.keys()) | baselines
  assert set(peaks) == set(c.group_arms.peaks) | baselines
  assert curves['masked_50'].folds == (0,) and curves['masked_50'].fractions == (1.0,)
  assert curves['masked_50'].inits == ('pretrained',)
  assert curves['masked_50'].init_from.endswith('pretrain_masked_50/checkpoints')
  base = [cfg for label, cfg in peaks.items() if label.startswith('random_')]
  assert sorted(len(b.inits) for b in base) == [1, 1, 2]  # the feature baseline runs once
  rt = peaks['random_transformer'].finetune.model
  assert rt.backbone == 'transformer'
  assert rt.transformer == c.arms.masked_12_5.model.transformer
  assert rt.transformer.modalities == 'joint'
  # the NCE Transformer's random init tokenises as it does: acc and gyr tokens apart
  rs = peaks['random_transformer_separate'].finetune.model
  assert rs.backbone == 'transformer' and rs.transformer.modalities == 'separate'
  assert peaks['random_resnet'].finetune.model.encoder == c.arms.nce_resnet.model.encoder


def test_group_arms_must_name_groups_and_arms():
  c = objectives_config.get_config('tiny')
  c.group_arms.peaks = ('nce_resnet', 'masked_99')
  with pytest.raises(ConfigError, match=r"config\.group_arms\.peaks names \['masked_99'\]"):
    objectives.validate(c)
  c = objectives_config.get_config('tiny')
  c.group_arms.steps = ('nce_resnet',)
  with pytest.raises(ConfigError, match=r'config\.group_arms\.steps: not a group'):
    objectives.validate(c)


def test_rounds_cut_each_sweep_into_the_cells_it_would_train_whole(tmp_path):
  """Round by round, every sweep trains exactly its own cells, each with the config (hence the
  fingerprint) the whole sweep gives it; smallest fraction first."""
  c = objectives_config.get_config('cpu')
  c.groups.peaks.folds, c.groups.curves.folds = (0, 2), (2,)
  sweeps = objectives.plan(c, str(tmp_path), str(tmp_path / 'tfds'))
  todo = objectives.rounds(sweeps)
  assert todo == [(0.1, 0), (0.1, 2), (0.25, 0), (0.25, 2), (1.0, 0), (1.0, 2)]
  for _, _, sdir, scfg in sweeps:
    whole = {cell: sweep.cell_config(scfg, 'D', *cell, workdir=sdir) for cell in sweep.plan(scfg)}
    cut = {}
    for fraction, fold in todo:
      part = objectives.restricted(scfg, fraction, fold)
      if part is None:
        assert not any(k[1] == fold and k[2] == fraction for k in whole)
        continue
      for cell in sweep.plan(part):
        assert cell not in cut  # each cell in one round only
        cut[cell] = sweep.cell_config(part, 'D', *cell, workdir=sdir)
    assert cut.keys() == whole.keys()
    assert all(cut[k].to_dict() == whole[k].to_dict() for k in whole)


def test_run_interleaves_rounds_then_reports_each_sweep_whole(tmp_path, monkeypatch):
  from ssl_imu_jax.training import pretrain

  c = objectives_config.get_config('tiny')
  c.groups.curves.fractions, c.groups.peaks.fractions = (0.5, 1.0), (1.0,)
  calls = []
  monkeypatch.setattr(pretrain, 'run', lambda *a, **k: None)
  monkeypatch.setattr(sweep, 'run', lambda cfg, sdir, write_report=True: calls.append(
      (os.path.relpath(sdir, tmp_path), tuple(cfg.fractions), write_report)))
  monkeypatch.setattr(sweep, 'done_records', lambda cfg, sdir: [])
  objectives.run(c, str(tmp_path))
  sweeps = [(os.path.relpath(d, tmp_path), tuple(s.fractions))
            for _, _, d, s in objectives.plan(c, str(tmp_path), '')]
  curves = [d for d, fr in sweeps if 0.5 in fr]
  assert curves and len(curves) < len(sweeps)
  # round (0.5, fold 0): the curves' sweeps only; round (1.0, 0): every sweep; then each whole
  assert calls == ([(d, (0.5,), False) for d in curves] + [(d, (1.0,), False) for d, _ in sweeps]
                   + [(d, fr, True) for d, fr in sweeps])
  assert (tmp_path / 'report_partial' / 'objectives.md').exists()
  assert (tmp_path / 'report' / 'objectives.md').exists()


def _scalar_record(init, protocol, fold_subjects, rng, noise):
  sid, y_true, y_pred = [], [], []
  for s in fold_subjects:
    t = rng.normal(size=N_WIN)
    sid += [s] * N_WIN
    y_true += t.tolist()
    y_pred += (t + noise[s] * rng.normal(size=N_WIN)).tolist()
  result = {'predictions': {'subject_id': sid, 'y_true': [[v] for v in y_true],
                            'y_pred': [[v] for v in y_pred]},
            'targets': ['peak'], 'units': ['BW'], 'n_train': 10, 'n_test': len(sid),
            'train_subjects': [1, 2], 'test_subjects': list(fold_subjects)}
  rec = report.make_record(result, task='toy', init=init, protocol=protocol, fraction=1.0,
                           fold=0)
  return rec, {s: np.corrcoef(np.array(y_true)[np.array(sid) == s],
                              np.array(y_pred)[np.array(sid) == s])[0, 1] for s in fold_subjects}


def _curve_record(init, rrmse):
  per = [{'subject': s, 'axis': 'V', 'n_samples': 50, 'rmse': 0.1 * rrmse[s], 'rrmse': rrmse[s],
          'r2': 0.9, 'pearson_r': 0.95} for s in SUBJECTS]
  return {'task': 'toy', 'init': init, 'protocol': 'linear_probe', 'fraction': 1.0, 'fold': 0,
          'seed': 0, 'n_train': 10, 'n_test': 30, 'train_subjects': [1, 2],
          'test_subjects': list(SUBJECTS), 'targets': ['grf_curve'], 'units': ['BW'],
          'curve': {'name': 'grf_curve', 'axes': ['ML', 'AP', 'V'],
                    'present': [False, False, True]},
          'curve_metrics': {'per_subject': per}, 'predictions': {'subject_id': [], 'file': ''}}


def test_a_partial_report_holds_only_the_finished_rounds(tmp_path, monkeypatch):
  """A cell trained ahead of its round (by an earlier plan) stays out of report_partial/."""
  c = objectives_config.get_config('tiny')
  rng = np.random.default_rng(1)
  recs = []
  for fraction in (0.5, 1.0):
    rec, _ = _scalar_record('pretrained', 'linear_probe', SUBJECTS, rng,
                            dict.fromkeys(SUBJECTS, 0.5))
    recs.append(dict(rec, fraction=fraction))
  monkeypatch.setattr(sweep, 'done_records', lambda cfg, sdir: recs)
  sweeps = objectives.plan(c, str(tmp_path), '')[:1]
  out = objectives.write_report(c, sweeps, str(tmp_path / 'p'), quiet=True, only=[(0.5, 0)])
  assert set(pd.read_csv(os.path.join(out, 'results.csv')).fraction) == {0.5}
  out = objectives.write_report(c, sweeps, str(tmp_path / 'w'), quiet=True)
  assert set(pd.read_csv(os.path.join(out, 'results.csv')).fraction) == {0.5, 1.0}


def test_convergence_of_records_counts_each_cell_s_training_curves_included():
  """report.convergence_frame on records (scalar and curve cells) equals it on the results frame
  where both apply, and counts the cells still improving at their budget by hand."""
  rng = np.random.default_rng(0)
  scalar = []
  for fold, (still, epochs) in enumerate(((True, 40.0), (False, 12.0), (False, 20.0))):
    rec, _ = _scalar_record('random', 'linear_probe', SUBJECTS, rng,
                            dict.fromkeys(SUBJECTS, 0.5))
    rec.update(fold=fold, training={'budget_epochs': 40.0, 'epochs_run': epochs,
                                    'best_epoch': epochs - 1, 'stopped_early': not still,
                                    'still_improving': still, 'late_improvement': 0.01})
    scalar.append(rec)
  by_records = report.convergence_frame(scalar)
  pd.testing.assert_frame_equal(by_records, report.convergence_frame(
      report.results_frame(scalar)), check_dtype=False)
  row = by_records.iloc[0]
  assert (row.cells, row.still_improving, row.stopped_early) == (3, 1, 2)
  assert (row.epochs_run_min, row.epochs_run_max, row.epochs_run_median) == (12.0, 40.0, 20.0)
  curve = dict(_curve_record('masked_12_5', dict.fromkeys(SUBJECTS, 5.0)),
               training={'budget_epochs': 40.0, 'epochs_run': 40.0, 'still_improving': True,
                         'stopped_early': False})
  c = report.convergence_frame([curve])
  assert (c.init.tolist(), c.still_improving.tolist()) == (['masked_12_5'], [1])


def test_comparison_frame_matches_a_hand_computation():
  c = objectives_config.get_config('tiny')
  arms = {a: c.arms[a] for a in ('nce_resnet', 'masked_12_5')}
  rng = np.random.default_rng(0)
  noise = {'nce_resnet': {3: 0.3, 5: 0.5, 8: 0.2}, 'random_resnet': {3: 0.9, 5: 0.6, 8: 1.2},
           'masked_12_5': {3: 0.4, 5: 0.4, 8: 0.4}, 'random_transformer': {3: 1.0, 5: 1.0, 8: 0.5},
           'features': {3: 0.7, 5: 0.7, 8: 0.7}}
  records, r = [], {}
  for label, nz in noise.items():
    init = {'nce_resnet': 'pretrained', 'masked_12_5': 'pretrained', 'features': 'features'}.get(
        label, 'random')
    protocol = 'ridge' if label == 'features' else 'linear_probe'
    rec, r[label] = _scalar_record(init, protocol, SUBJECTS, rng, nz)
    records += objectives.relabel([rec], label, 'peaks')
  rrmse = {'nce_resnet': {3: 10.0, 5: 12.0, 8: 9.0}, 'random_resnet': {3: 14.0, 5: 13.0, 8: 15.0},
           'masked_12_5': {3: 8.0, 5: 9.0, 8: 10.0},
           'random_transformer': {3: 11.0, 5: 11.0, 8: 11.0}}
  for label, vals in rrmse.items():
    records += objectives.relabel([_curve_record(
        'pretrained' if label in arms else 'random', vals)], label, 'curves')

  frame = objectives.comparison_frame(records, arms)

  peak = frame[(frame.group == 'peaks') & (frame.arm == 'masked_12_5')].iloc[0]
  d = np.array([r['masked_12_5'][s] - r['random_transformer'][s] for s in SUBJECTS])
  half = sps.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
  assert peak.versus == 'random_transformer' and peak.mask_ratio == 0.125
  assert peak.value == pytest.approx(np.mean([r['masked_12_5'][s] for s in SUBJECTS]))
  assert peak.delta == pytest.approx(d.mean())
  assert (peak.delta_low, peak.delta_high) == pytest.approx((d.mean() - half, d.mean() + half))
  df = np.array([r['masked_12_5'][s] - r['features'][s] for s in SUBJECTS])
  assert peak.value_features == pytest.approx(np.mean([r['features'][s] for s in SUBJECTS]))
  assert peak.delta_vs_features == pytest.approx(df.mean())
  nce = frame[(frame.group == 'peaks') & (frame.arm == 'nce_resnet')].iloc[0]
  assert nce.versus == 'random_resnet' and math.isnan(nce.mask_ratio)
  assert nce.delta == pytest.approx(np.mean([r['nce_resnet'][s] - r['random_resnet'][s]
                                             for s in SUBJECTS]))
  base = frame[(frame.group == 'peaks') & (frame.arm == 'random_resnet')].iloc[0]
  assert base.objective == 'none' and base.backbone == 'resnet' and math.isnan(base.delta)

  curve = frame[(frame.group == 'curves') & (frame.arm == 'nce_resnet')
                & (frame.metric == 'rrmse')].iloc[0]
  assert curve.axis == 'V' and curve.value == pytest.approx(31.0 / 3)
  assert curve.delta == pytest.approx(np.mean([-4.0, -1.0, -6.0]))
  assert curve.n_pairs == 3 and math.isnan(curve.value_features)
  text = objectives.comparison_markdown(frame)
  assert '## curves: toy grf_curve axis V, rrmse, linear_probe' in text
  assert f'| nce_resnet | {31.0 / 3:.3f} ({-11.0 / 3:+.3f} [' in text

  # the per-subject rows behind the table (report/results.csv, report/curves.csv)
  rows = objectives.subject_frames(records)
  res = rows['results']
  assert set(res.group) == {'peaks'} and set(res.init) == set(noise)
  one = res[(res.init == 'masked_12_5') & (res.subject != 'all')].set_index('subject')
  assert one.pearson_r.to_dict() == pytest.approx({str(k): v for k, v in r['masked_12_5'].items()})
  cur = rows['curves']
  assert set(cur.group) == {'curves'} and set(cur.init) == set(rrmse)
  v = cur[(cur.init == 'nce_resnet') & (cur.axis == 'V')].set_index('subject').rrmse
  assert {k: v[str(k)] for k in SUBJECTS} == pytest.approx(rrmse['nce_resnet'])


def test_a_toy_comparison_runs_every_part_reports_and_resumes(tmp_path, toy_dirs, capsys):
  """configs/objectives.py:tiny at toy size, peaks by linear probe only (the curve rows are
  checked above on made-up records, LP -> FT in test_sweep.py): NCE on the ResNet and the masked
  Transformer pre-train on one corpus, each fine-tunes beside the random init of its own backbone
  and the feature baseline, the comparison pairs them over test subjects, a rerun trains nothing."""
  from conftest import TOY_ENCODER

  c = objectives_config.get_config('tiny')
  for name in ('masked_50', 'nce_transformer'):
    del c.arms[name]
  del c.groups['curves']
  del c.group_arms['curves']
  c.group_arms.peaks = ()
  c.task = 'toy_labelled'
  c.data_dir = toy_dirs['data_dir']
  for name in c.arms.keys():
    p = c.arms[name]
    p.data.update(dataset='toy_unlabelled', imu_sites=('a', 'b'), options={}, window_length=32)
    p.model.encoder.update(TOY_ENCODER)
    p.train.update(steps=4, batch_size=8, eval_every=4, checkpoint_every=4, progress=False,
                   prefetch=0)
  g = c.groups.peaks
  g.datasets, g.task_data = ('toy_labelled',), {'toy_labelled': {'window_length': 32}}
  g.protocols = ('linear_probe',)
  g.finetune.train.update(steps=4, batch_size=8, progress=False, prefetch=0)
  g.finetune.model.encoder.update(TOY_ENCODER)
  objectives.run(c, str(tmp_path))
  frame = pd.read_csv(tmp_path / 'report' / 'objectives.csv')
  arms = frame[frame.arm.isin(['nce_resnet', 'masked_12_5'])]
  assert set(arms.arm) == {'nce_resnet', 'masked_12_5'}
  assert set(zip(arms.arm, arms.versus, strict=True)) == {('nce_resnet', 'random_resnet'),
                                                          ('masked_12_5', 'random_transformer')}
  assert set(arms.protocol) == {'linear_probe'}
  assert (arms.n_pairs == arms.n_subjects).all() and (arms.n_subjects >= 2).all()
  assert arms.delta.notna().all() and arms.value_features.notna().all()
  assert set(frame.arm) == {'nce_resnet', 'masked_12_5', 'random_resnet', 'random_transformer'}
  assert (tmp_path / 'report_partial' / 'objectives.md').exists()
  conv = pd.read_csv(tmp_path / 'report' / 'convergence.csv')
  assert set(conv.init) == set(frame.arm) and set(conv.group) == {'peaks'}
  assert (conv.cells == 1).all() and (conv.epochs_run_max > 0).all()  # 4 steps: 1/4 epoch
  first = (tmp_path / 'report' / 'objectives.csv').read_text()
  capsys.readouterr()
  objectives.run(c, str(tmp_path))
  out = capsys.readouterr().out
  assert out.count('0 to train') == 8 and 'to train' in out  # 4 sweeps, round then whole
  assert (tmp_path / 'report' / 'objectives.csv').read_text() == first


def test_the_real_running_variant_pretrains_the_sacrum_and_splits_the_runners_trials():
  c = objectives_config.get_config('cpu,real_running')
  objectives.validate(c)
  assert list(c.groups.keys()) == ['curves'] and c.task == 'real_running_grf'
  g = c.groups.curves
  assert g.datasets == ('real_running_grf',) and g.finetune.split.unit == 'trial'
  assert 'features' in g.inits and g.task_data['real_running_grf']['targets'] == ('grf_curve',)
  # the small file's own budget (REAL_EPOCHS), the CPU budget's patience; the synthetic groups
  # keep the CPU budget
  assert g.finetune.train.epochs == objectives_config.REAL_EPOCHS > paper_config.CPU_EPOCHS
  assert g.finetune.train.patience_epochs == paper_config.CPU_PATIENCE
  synthetic = objectives_config.get_config('cpu').groups
  assert {s.finetune.train.epochs for s in synthetic.values()} == {paper_config.CPU_EPOCHS}
  for name in c.arms.keys():
    p = c.arms[name]
    assert p.data.imu_sites == ('Hip',) and p.data.dataset == 'synthetic_movi'
    assert (p.data.sample_rate_hz, p.data.window_length) == (100.0, 128)
    assert p.data.use_gyr == (objectives.objective(p) == 'nce')  # the task has no gyroscope
  assert sorted(c.arms.keys()) == ['masked_12_5', 'nce_resnet', 'nce_transformer']


def test_a_report_over_trials_says_it_is_within_subject(tmp_path):
  c = objectives_config.get_config('tiny,real_running')
  objectives.write_report(c, [], str(tmp_path), quiet=True)
  text = (tmp_path / 'objectives.md').read_text()
  assert 'the units are the trials of one subject' in text and 'within-subject' in text
  plain = objectives_config.get_config('tiny')
  objectives.write_report(plain, [], str(tmp_path / 'plain'), quiet=True)
  assert 'trials of one subject' not in (tmp_path / 'plain' / 'objectives.md').read_text()
