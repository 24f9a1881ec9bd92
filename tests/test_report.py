"""Tests of results.csv, summary.md and the figures, on fake fine-tune results."""

import csv

import numpy as np
import pytest
from scipy import stats as sps

from ssl_imu_jax import report

SUBJECTS = list(range(10))
FOLDS = {s: s % 5 for s in SUBJECTS}
WINDOWS_PER_SUBJECT = 6


def fake_result(fold, fraction, init, protocol, targets=('peak_vgrf',), units=('BW',), seed=0,
                short_subject=None):
  """A train_and_evaluate-shaped result: better with pre-training and with more data."""
  rng = np.random.default_rng([fold, int(fraction * 100), len(init), len(protocol), seed])
  test = [s for s in SUBJECTS if FOLDS[s] == fold]
  train = [s for s in SUBJECTS if FOLDS[s] != fold]
  counts = [2 if s == short_subject else WINDOWS_PER_SUBJECT for s in test]
  sid = np.repeat(test, counts)
  y_true = rng.normal(2.0, 0.3, size=(len(sid), len(targets)))
  noise = (0.05 if init == 'pretrained' else 0.2) / np.sqrt(fraction)
  y_pred = y_true + rng.normal(0, noise, size=y_true.shape)
  return {
      'predictions': {'subject_id': sid, 'y_true': y_true, 'y_pred': y_pred},
      'targets': list(targets), 'units': list(units),
      'n_train': int(round(fraction * 48)), 'n_test': len(sid),
      'train_subjects': train, 'test_subjects': test, 'metrics': {},
  }


def sweep_records(task='toy', fractions=(0.25, 1.0), **kw):
  return [report.make_record(fake_result(k, f, i, p, **kw), task=task, init=i, protocol=p,
                             fraction=f, fold=k, steps=20)
          for k in range(5) for f in fractions for i in ('pretrained', 'random')
          for p in ('linear_probe', 'full')]


def test_results_csv_columns_and_rows(tmp_path):
  recs = sweep_records() + sweep_records('toy2', targets=('kfm', 'kam'), units=('%BW*BH',) * 2)
  table = report.write_results(recs, str(tmp_path))
  with open(tmp_path / 'results.csv') as f:
    rows = list(csv.DictReader(f))
  assert set(report.COLUMNS) <= set(rows[0])
  # Per record and target: one pooled row + one per test subject (2 per fold here).
  n_cells = 5 * 2 * 2 * 2
  assert len(rows) == n_cells * 1 * (1 + 2) + n_cells * 2 * (1 + 2)
  pooled = [r for r in rows if r['subject'] == 'all']
  assert len(pooled) == n_cells * 3
  assert {int(r['n_test']) for r in pooled} == {2 * WINDOWS_PER_SUBJECT}
  # A pooled row and a subject row equal the hand computation on the fake predictions.
  res = fake_result(3, 0.25, 'random', 'full')
  yt, yp = res['predictions']['y_true'][:, 0], res['predictions']['y_pred'][:, 0]
  sid = res['predictions']['subject_id']

  def row(subject):
    return next(r for r in rows if r['task'] == 'toy' and r['fold'] == '3' and
                r['fraction'] == '0.25' and r['init'] == 'random' and r['protocol'] == 'full' and
                r['subject'] == subject)

  assert float(row('all')['pearson_r']) == pytest.approx(sps.pearsonr(yt, yp)[0])
  assert float(row('all')['rmse']) == pytest.approx(np.sqrt(np.mean((yt - yp) ** 2)))
  m = sid == 8
  assert float(row('8')['pearson_r']) == pytest.approx(sps.pearsonr(yt[m], yp[m])[0])
  assert int(row('8')['n_test']) == WINDOWS_PER_SUBJECT
  assert int(row('8')['n_train']) == 12 and int(row('8')['n_train_subjects']) == 8
  # No subject is tested in two folds.
  subj = {(r['task'], r['target'], r['subject']): r['fold'] for r in rows if r['subject'] != 'all'}
  for r in rows:
    if r['subject'] != 'all':
      assert subj[(r['task'], r['target'], r['subject'])] == r['fold']
  assert 'pretrained / full' in table and 'toy2: kam (%BW*BH)' in table


def test_summary_has_table_tests_and_efficiency(tmp_path):
  recs = sweep_records()
  report.write_results(recs, str(tmp_path), title='T')
  md = (tmp_path / 'summary.md').read_text()
  df = report.results_frame(recs)
  pooled = df[(df.subject == 'all') & (df.init == 'pretrained') & (df.protocol == 'full') &
              (df.fraction == 1.0)]
  mean, sd = pooled.pearson_r.mean(), pooled.pearson_r.std(ddof=1)
  assert f'{mean:.3f} ± {sd:.3f}' in md
  assert 'Wilcoxon signed-rank' in md and 'paired t' in md
  assert 'Every cell trained 20 steps.' in md
  # Subjects paired: 10 pairs; folds: 5 pairs with the smallest attainable p stated.
  rows = report.paired_test_rows(df, 'toy', 'peak_vgrf')
  assert {(r[2], r[3]) for r in rows} == {('folds', '5'), ('subjects', '10')}
  assert len(rows) == 2 * 2 * 2
  assert '0.0625' in md
  eff = report.efficiency_results(df, 'toy', 'peak_vgrf')
  assert set(eff) == {'linear_probe', 'full'}
  assert f'Δr at 100% = {eff["full"].delta_r_full:.3f}' in md
  assert f'- full: {eff["full"].text()}' in md


def test_single_run_report(tmp_path):
  rec = report.make_record(fake_result(0, 1.0, 'pretrained', 'full'), task='toy',
                           init='pretrained', protocol='full', fraction=1.0, fold=0)
  table = report.write_results([rec], str(tmp_path / 'rep'))
  rows = list(csv.DictReader(open(tmp_path / 'rep' / 'results.csv')))
  assert len(rows) == 3
  md = (tmp_path / 'rep' / 'summary.md').read_text()
  assert 'needs cells of both inits' in md
  assert 'pretrained / full' in table


def test_plots_written(tmp_path):
  recs = sweep_records(fractions=(0.1, 0.5, 1.0))
  report.write_report(recs, str(tmp_path))
  for name in ('toy_data_efficiency.png', 'toy_scatter.png'):
    data = (tmp_path / name).read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 5000
  assert '![toy_scatter.png](toy_scatter.png)' in (tmp_path / 'summary.md').read_text()


def test_make_record_errors():
  res = fake_result(0, 1.0, 'random', 'full')
  bad = dict(res)
  del bad['n_train']
  with pytest.raises(ValueError, match="lacks key.*n_train"):
    report.make_record(bad, task='toy', init='random', protocol='full', fraction=1.0, fold=0)
  bad = dict(res, train_subjects=res['train_subjects'] + [res['test_subjects'][0]])
  with pytest.raises(ValueError, match='both the training and the test'):
    report.make_record(bad, task='toy', init='random', protocol='full', fraction=1.0, fold=0)
  bad = dict(res, targets=['a', 'b'], units=['x', 'y'])
  with pytest.raises(ValueError, match='do not match 2 targets'):
    report.make_record(bad, task='toy', init='random', protocol='full', fraction=1.0, fold=0)
  with pytest.raises(ValueError, match='no cell records'):
    report.write_results([], '/nonexistent')


def test_subjects_with_too_few_windows_are_left_out_of_subject_pairs(tmp_path):
  recs = sweep_records(short_subject=4)
  report.write_results(recs, str(tmp_path))
  df = report.results_frame(recs)
  rows = report.paired_test_rows(df, 'toy', 'peak_vgrf')
  subj_rows = [r for r in rows if r[2] == 'subjects']
  assert subj_rows and all(r[3] == '9' for r in subj_rows)
  assert all('1 pair(s) with NaN dropped' in r[9] for r in subj_rows)
  md = (tmp_path / 'summary.md').read_text()
  assert 'Test windows per subject: min 2, median 6, max 6.' in md
