"""The report's curve table: per (task, axis, arm, fraction) the mean and sd over test subjects of
the reference's curve metrics, each subject's values first averaged over its fine-tuning seeds."""

import numpy as np

from ssl_imu_jax.evaluation import report


def _record(seed, fold, values):
  """A curve cell's record (report._curve_record's keys) with per-subject metrics ``values``:
  {subject: rmse}; the other metrics derive from it so that every column is checked."""
  per = [{'axis': 'V', 'subject': s, 'n_samples': 100, 'rmse': v, 'rrmse': 10 * v,
          'r2': 1 - v, 'pearson_r': 1 - v / 2} for s, v in values.items()]
  return {'task': 'synthetic_walking_grf', 'init': 'pretrained', 'protocol': 'full_from_probe',
          'fraction': 1.0, 'fold': fold, 'seed': seed, 'norm_policy': 'train_subjects',
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
