"""The report's curve table: per (task, axis, arm, fraction) the mean and sd over test subjects of
the reference's curve metrics, each subject's values first averaged over its fine-tuning seeds."""

import math

import numpy as np
import pytest
import scipy.stats as sps

from ssl_imu_jax.evaluation import report


def _record(seed, fold, values, init='pretrained', fraction=1.0):
  """A curve cell's record (report._curve_record's keys) with per-subject metrics ``values``:
  {subject: rmse}; the other metrics derive from it so that every column is checked."""
  per = [{'axis': 'V', 'subject': s, 'n_samples': 100, 'rmse': v, 'rrmse': 10 * v,
          'r2': 1 - v, 'pearson_r': 1 - v / 2} for s, v in values.items()]
  return {'task': 'synthetic_walking_grf', 'init': init, 'protocol': 'full_from_probe',
          'fraction': fraction, 'fold': fold, 'seed': seed, 'norm_policy': 'train_subjects',
          'inputs': 'acc+gyr', 'steps': 10, 'training': {}, 'n_train': 50, 'n_test': 20,
          'train_subjects': [9], 'test_subjects': sorted(values), 'targets': ['grf_curve'],
          'units': ['BW'], 'curve': {'axes': ['ML', 'AP', 'V'], 'present': [False, False, True]},
          'curve_metrics': {'per_subject': per}}


def test_curve_summary_averages_seeds_per_subject_then_subjects(tmp_path):
  # subjects 1, 2 in fold 0 (two seeds), subject 3 in fold 1 (one seed)
  records = [_record(0, 0, {1: 0.10, 2: 0.20}), _record(1, 0, {1: 0.30, 2: 0.20}),
             _record(0, 1, {3: 0.50})]
  table = report.curve_summary(report.curves_frame(records))
  assert len(table) == 1
  row = table.iloc[0]
  per_subject = np.array([0.20, 0.20, 0.50])  # subject 1: mean of 0.1 and 0.3
  assert row.n_subjects == 3
  np.testing.assert_allclose(row.rmse, per_subject.mean())
  np.testing.assert_allclose(row.rmse_sd, per_subject.std(ddof=1))
  np.testing.assert_allclose(row.rrmse, 10 * per_subject.mean())
  np.testing.assert_allclose(row.r2, 1 - per_subject.mean())
  np.testing.assert_allclose(row.pearson_r_sd, per_subject.std(ddof=1) / 2)
  report.write_results(records, str(tmp_path))
  md = (tmp_path / 'summary.md').read_text()
  assert '## Curve targets' in md
  assert f'{per_subject.mean():.3f} ± {per_subject.std(ddof=1):.3f}' in md


def test_curve_headline_pairs_arms_over_subjects_and_reads_data_efficiency(tmp_path):
  # rmse per subject; pearson_r = 1 - rmse / 2, so a lower rmse is a higher r
  pre = {0.25: {1: 0.10, 2: 0.30, 3: 0.20}, 1.0: {1: 0.05, 2: 0.20, 3: 0.10}}
  rnd = {0.25: {1: 0.40, 2: 0.50, 3: 0.60}, 1.0: {1: 0.20, 2: 0.30, 3: 0.25}}
  records = [_record(0, 0, v, 'pretrained', f) for f, v in pre.items()]
  records += [_record(0, 0, v, 'random', f) for f, v in rnd.items()]
  head = report.curve_headline_frame(report.curves_frame(records))
  row = head[(head.metric == 'rmse') & (head.fraction == 0.25)].iloc[0]
  d = np.array([pre[0.25][s] - rnd[0.25][s] for s in (1, 2, 3)])
  half = sps.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
  assert row.axis == 'V' and row.n_subjects == 3
  assert row.pretrained == pytest.approx(0.2) and row.random == pytest.approx(0.5)
  assert row.delta == pytest.approx(d.mean())
  assert (row.delta_low, row.delta_high) == pytest.approx((d.mean() - half, d.mean() + half))
  a, b = ([arm[0.25][s] for s in (1, 2, 3)] for arm in (pre, rnd))
  assert row.p == pytest.approx(sps.ttest_rel(a, b).pvalue)
  r_row = head[(head.metric == 'pearson_r') & (head.fraction == 0.25)].iloc[0]
  assert r_row.delta == pytest.approx(-d.mean() / 2)
  eff = report.curve_efficiency_frame(report.curves_frame(records), n_boot=50)
  # pre-trained r at 25 %: 1 - 0.2 / 2 = 0.9 >= random's at 100 %: 1 - 0.25 / 2 = 0.875
  assert eff.axis.tolist() == ['V'] and eff.grid_fraction.tolist() == [0.25]
  report.write_results(records, str(tmp_path))
  assert (tmp_path / 'curve_headline.csv').exists() and (tmp_path / 'curve_efficiency.csv').exists()
  md = (tmp_path / 'summary.md').read_text()
  assert '## Curve targets: pre-trained vs random init, paired over test subjects' in md
  assert ('| synthetic_walking_grf | V | rrmse | full_from_probe | 25% | 2.000 | 5.000 | -3.000'
          in md)


def test_a_final_curve_models_card_carries_the_cv_curve_metrics():
  from ssl_imu_jax.evaluation import sweep
  from ssl_imu_jax.models import model_card

  records = [_record(0, 0, {1: 0.10, 2: 0.20}), _record(0, 1, {3: 0.60})]
  cv = sweep.cv_summary(records, 'synthetic_walking_grf', 'pretrained', 'full_from_probe', 1.0)
  v = cv['grf_curve']['curve_axes']['V']
  assert cv['grf_curve']['n_subjects'] == 3 and list(cv['grf_curve']['curve_axes']) == ['V']
  assert v['rmse'] == pytest.approx((0.3, np.std([0.1, 0.2, 0.6], ddof=1)))
  assert v['pearson_r'][0] == pytest.approx(1 - 0.3 / 2)
  config = {'data': {'dataset': 'synthetic_walking_grf', 'split': 'train',
                     'sample_rate_hz': 100.0, 'window_length': 128},
            'split': {'fold': -1, 'num_folds': 5, 'fold_seed': 0, 'fraction': 1.0},
            'train': {'steps': 10, 'batch_size': 16}, 'seed': 0}
  meta = {'config': config, 'targets': ['grf_curve'], 'units': ['BW'], 'final': True,
          'normalization': {'acc_std': 1.0}, 'train_subjects': [1, 2, 3], 'protocol': 'full',
          'encoder': 'transformer', 'curve': records[0]['curve']}
  card = model_card.render_finetune(meta, 10, cv=cv)
  assert '- `grf_curve` over 3 subjects (2 cells: pretrained / full_from_probe / 1' in card
  assert f"  - V: RMSE 0.3 ± {v['rmse'][1]:.4g}, rRMSE 3.0 ± " in card
