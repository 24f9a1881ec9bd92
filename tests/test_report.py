"""Tests of results.csv, summary.md and the figures, on fake fine-tune results."""

import csv

import numpy as np
import pytest
from scipy import stats as sps

from ssl_imu_jax import stats
from ssl_imu_jax.evaluation import report

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
  noise = {'pretrained': 0.05, 'features': 0.1}.get(init, 0.2) / np.sqrt(fraction)
  y_pred = y_true + rng.normal(0, noise, size=y_true.shape)
  return {
      'predictions': {'subject_id': sid, 'y_true': y_true, 'y_pred': y_pred},
      'targets': list(targets), 'units': list(units),
      'n_train': int(round(fraction * 48)), 'n_test': len(sid),
      'train_subjects': train, 'test_subjects': test, 'metrics': {},
  }


def sweep_records(task='toy', fractions=(0.25, 1.0), seeds=(0,),
                  protocols=('linear_probe', 'full'), **kw):
  return [report.make_record(fake_result(k, f, i, p, seed=s, **kw), task=task, init=i,
                             protocol=p, fraction=f, fold=k, steps=20, seed=s,
                             norm_policy='train_subjects')
          for k in range(5) for f in fractions for i in ('pretrained', 'random')
          for p in protocols for s in seeds]


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
  assert 'Every cell trained 20 steps (no validation subjects' in md
  # Subjects paired: 10 pairs; folds: 5 pairs with the smallest attainable p stated.
  rows = report.paired_test_rows(df, 'toy', 'peak_vgrf')
  assert {(r[2], r[3]) for r in rows} == {('folds', '5'), ('subjects', '10')}
  assert len(rows) == 2 * 2 * 2
  assert '0.0625' in md
  eff = report.efficiency_results(df, 'toy', 'peak_vgrf')
  assert set(eff) == {'linear_probe', 'full'}
  assert f'Δr at 100% = {eff["full"].delta_r_full:.3f}' in md
  assert f'- full: {eff["full"].text()}' in md
  # The within-subject headline comes first, its cells computed here from the subject rows.
  assert md.index('Within-subject r') < md.index('Pooled r (over all test windows of a fold)')
  subj = df[(df.subject != 'all') & (df.init == 'pretrained') & (df.protocol == 'full') &
            (df.fraction == 1.0)]
  r = subj.pearson_r.to_numpy()
  assert len(r) == 10
  first_full_row = next(line for line in md.splitlines() if line.startswith('| 100% |'))
  assert f'| {r.mean():.3f} ± {r.std(ddof=1):.3f} |' in first_full_row
  head = report.headline_efficiency(df, 'toy', 'peak_vgrf')
  assert f'- full: {head["full"].grid.text()}; interpolated' in md
  assert head['full'].bootstrap.text() in md
  assert 'Input normalisation: train_subjects.' in md
  assert 'features' not in md  # no feature-baseline cells: the report as before


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


def hand_record(sid, y_true, y_pred, init='pretrained', fold=0, seed=0, fraction=1.0,
                protocol='full', train=(90, 91), **kw):
  sid = np.asarray(sid)
  res = {'predictions': {'subject_id': sid, 'y_true': np.asarray(y_true, float)[:, None],
                         'y_pred': np.asarray(y_pred, float)[:, None]},
         'targets': ['y'], 'units': ['BW'], 'n_train': 10, 'n_test': len(sid),
         'train_subjects': list(train), 'test_subjects': sorted(set(sid.tolist()))}
  return report.make_record(res, task='hand', init=init, protocol=protocol, fraction=fraction,
                            fold=fold, seed=seed, **kw)


def test_within_subject_r_by_hand_differs_from_pooled(tmp_path):
  # Within each subject the predictions run against the truth, but the subjects' levels are
  # predicted right, so pooled r is high and within-subject r negative.
  sid = [1, 1, 1, 1, 2, 2, 2, 2]
  y_true = [1.0, 2.0, 3.0, 4.0, 11.0, 12.0, 13.0, 14.0]
  y_pred = [2.5, 2.0, 1.5, 1.2, 13.0, 12.4, 11.6, 11.0]
  r1 = np.corrcoef(y_true[:4], y_pred[:4])[0, 1]
  r2 = np.corrcoef(y_true[4:], y_pred[4:])[0, 1]
  pooled = np.corrcoef(y_true, y_pred)[0, 1]
  assert pooled > 0.9 and r1 < -0.9 and r2 < -0.9
  recs = [hand_record(sid, y_true, y_pred)]
  df = report.results_frame(recs)
  w = report.within_subject_results(df, 'hand', 'y')[('full', 1.0, 'pretrained')]
  assert w.per_subject.to_dict() == pytest.approx({'1': r1, '2': r2})
  assert w.mean == pytest.approx((r1 + r2) / 2)
  assert w.sd == pytest.approx(np.std([r1, r2], ddof=1))
  report.write_results(recs, str(tmp_path))
  head = list(csv.DictReader(open(tmp_path / 'headline.csv')))
  assert len(head) == 1
  assert float(head[0]['within_r_pretrained']) == pytest.approx((r1 + r2) / 2)
  assert float(head[0]['pooled_r_pretrained']) == pytest.approx(pooled)
  assert head[0]['within_r_random'] == '' and int(head[0]['n_subjects']) == 2


def two_seed_records():
  """Six subjects in three folds, two seeds, both inits; returns (records, hand per-subject r)."""
  rng = np.random.default_rng(7)
  recs, r = [], {}
  for init, noise in (('pretrained', 0.3), ('random', 0.8)):
    for fold in range(3):
      test = [2 * fold, 2 * fold + 1]
      train = [s for s in range(6) if s not in test]
      for seed in (0, 1):
        sid = np.repeat(test, 5)
        y_true = rng.normal(0, 1, sid.size)
        y_pred = y_true + rng.normal(0, noise, sid.size)
        recs.append(hand_record(sid, y_true, y_pred, init=init, fold=fold, seed=seed,
                                train=train))
        for s in test:
          m = sid == s
          r.setdefault((init, s), []).append(np.corrcoef(y_true[m], y_pred[m])[0, 1])
  return recs, r


def test_paired_t_over_subjects_averages_seeds_and_matches_scipy(tmp_path):
  recs, r = two_seed_records()
  pre = [np.mean(r[('pretrained', s)]) for s in range(6)]
  rnd = [np.mean(r[('random', s)]) for s in range(6)]
  ref = sps.ttest_rel(pre, rnd)
  head = report.headline_frame(report.results_frame(recs))
  assert len(head) == 1
  row = head.iloc[0]
  assert row.n_subjects == 6  # subjects, not subjects x seeds
  assert row.t == pytest.approx(ref.statistic) and row.p == pytest.approx(ref.pvalue)
  assert row.within_r_pretrained == pytest.approx(np.mean(pre))
  assert row.sd_random == pytest.approx(np.std(rnd, ddof=1))
  assert row.delta_r == pytest.approx(np.mean(pre) - np.mean(rnd))
  # Pairs of subject x seed would be another test.
  flat = sps.ttest_rel(sum((r[('pretrained', s)] for s in range(6)), []),
                       sum((r[('random', s)] for s in range(6)), []))
  assert row.t != pytest.approx(flat.statistic)
  # Fold-paired tests pair (fold, seed): 3 folds x 2 seeds.
  rows = report.paired_test_rows(report.results_frame(recs), 'hand', 'y', over=('folds',))
  assert [x[3] for x in rows] == ['6']
  report.write_results(recs, str(tmp_path))
  md = (tmp_path / 'summary.md').read_text()
  assert '3 fold(s), 2 seed(s), 6 test subject(s).' in md
  # The 95 % t interval of the mean per-subject difference, by hand.
  d = np.asarray(pre) - np.asarray(rnd)
  half = sps.t.ppf(0.975, 5) * d.std(ddof=1) / np.sqrt(6)
  assert row.delta_r_low == pytest.approx(d.mean() - half)
  assert row.delta_r_high == pytest.approx(d.mean() + half)
  ci = f'{d.mean():+.3f} [{d.mean() - half:+.3f}, {d.mean() + half:+.3f}]'
  assert f'| 100% | full | 6 | {ci} | {ref.statistic:.2f} |' in md
  assert f'- Δr at 100%, full: {ci} (pre-trained' in md


def test_records_without_seed_keep_working_and_duplicates_are_refused(tmp_path):
  rec = report.make_record(fake_result(0, 1.0, 'random', 'full'), task='toy', init='random',
                           protocol='full', fraction=1.0, fold=0, seed=3, norm_policy='global')
  assert (rec['seed'], rec['norm_policy']) == (3, 'global')
  i = report.COLUMNS.index('fold')
  assert report.COLUMNS[i + 1:i + 3] == ('seed', 'norm_policy')
  old = {k: v for k, v in rec.items() if k not in ('seed', 'norm_policy')}
  df = report.results_frame([old])
  assert set(df.seed) == {0} and set(df.norm_policy) == {''}
  report.write_results([old], str(tmp_path))
  rows = list(csv.DictReader(open(tmp_path / 'results.csv')))
  assert {(r['seed'], r['norm_policy']) for r in rows} == {('0', '')}
  assert len(report.results_frame([old, rec])) == 6  # seeds 0 and 3: two cells
  with pytest.raises(ValueError, match='same cell'):
    report.results_frame([old, dict(old)])


HEADLINE_CSV = ['task', 'target', 'protocol', 'fraction', 'within_r_pretrained',
                'within_r_random', 'sd_pretrained', 'sd_random', 'n_subjects', 'delta_r',
                'delta_r_low', 'delta_r_high', 't', 'p', 'pooled_r_pretrained', 'pooled_r_random',
                'within_r_features', 'sd_features', 'delta_r_vs_features',
                'delta_r_vs_features_low', 'delta_r_vs_features_high', 't_vs_features',
                'p_vs_features', 'n_subjects_vs_features', 'pooled_r_features']
EFFICIENCY_CSV = ['task', 'target', 'protocol', 'grid_fraction', 'percent_less',
                  'times_less_grid', 'times_less_interp', 'ci_low', 'ci_high', 'p_reach']


def test_headline_and_efficiency_csv(tmp_path):
  protocols = ('zeta', 'full', 'adapter', 'full_from_probe', 'linear_probe')
  fractions = (0.1, 0.25, 1.0)
  recs = sweep_records(fractions=fractions, protocols=protocols)
  report.write_results(recs, str(tmp_path))
  with open(tmp_path / 'headline.csv') as f:
    reader = csv.DictReader(f)
    head = list(reader)
  assert reader.fieldnames == HEADLINE_CSV
  order = ['linear_probe', 'full_from_probe', 'full', 'adapter', 'zeta']
  assert [(r['protocol'], float(r['fraction'])) for r in head] == [
      (p, f) for p in order for f in fractions]
  with open(tmp_path / 'efficiency.csv') as f:
    reader = csv.DictReader(f)
    eff = list(reader)
  assert reader.fieldnames == EFFICIENCY_CSV
  assert [r['protocol'] for r in eff] == order
  # Recompute one protocol's figures from the headline means and the subject rows.
  df = report.results_frame(recs)
  means = {init: [float(r[f'within_r_{init}']) for r in head if r['protocol'] == 'full']
           for init in ('pretrained', 'random')}
  sub = df[(df.subject != 'all') & (df.protocol == 'full')]
  for init in ('pretrained', 'random'):
    by_hand = [sub[(sub.init == init) & (sub.fraction == f)].pearson_r.mean() for f in fractions]
    assert means[init] == pytest.approx(by_hand)
  grid = stats.data_efficiency_grid(fractions, means['pretrained'], means['random'])
  interp = stats.data_efficiency(fractions, means['pretrained'], means['random'])
  row = next(r for r in eff if r['protocol'] == 'full')
  assert float(row['grid_fraction']) == pytest.approx(grid.fraction)
  assert float(row['percent_less']) == pytest.approx(grid.percent_less)
  assert float(row['times_less_grid']) == pytest.approx(grid.times_less)
  assert float(row['times_less_interp']) == pytest.approx(interp.times_less)
  assert float(row['ci_low']) <= float(row['times_less_interp']) <= float(row['ci_high'])
  # p_reach by hand: every test subject's pre-trained r at the full fraction is above its own
  # random-init r there, so every resample of subjects reaches the target.
  full = {init: sub[(sub.init == init) & (sub.fraction == 1.0)].set_index('subject').pearson_r
          for init in ('pretrained', 'random')}
  assert (full['pretrained'] > full['random'].reindex(full['pretrained'].index)).all()
  assert float(row['p_reach']) == 1.0
  md = (tmp_path / 'summary.md').read_text()
  assert md.index('linear_probe: pretrained') < md.index('full_from_probe: pretrained') < md.index(
      'full: pretrained') < md.index('adapter: pretrained') < md.index('zeta: pretrained')


def test_one_fraction_claims_no_data_efficiency(tmp_path):
  rng = np.random.default_rng(7)
  recs = []
  for init in ('pretrained', 'random'):
    sid = np.repeat([1, 2, 3], 4)
    y = rng.normal(size=(12, 1))
    recs.append(report.make_record(
        {'predictions': {'subject_id': sid, 'y_true': y, 'y_pred': y + rng.normal(size=y.shape)},
         'targets': ['y'], 'units': ['BW'], 'n_train': 10, 'n_test': 12, 'train_subjects': [9],
         'test_subjects': [1, 2, 3]}, task='t', init=init, protocol='full_from_probe',
        fraction=1.0, fold=0))
  report.write_results(recs, str(tmp_path))
  md = (tmp_path / 'summary.md').read_text()
  assert 'x less labelled data' not in md and '≥' not in md.split('Data efficiency')[1]
  assert 'not computed: one fraction (100' in md and 'not computed (one fraction swept)' in md


def three_arm_records(fractions=(0.25, 1.0), protocols=('linear_probe', 'full')):
  """The deep arms' records plus the feature baseline: one ridge cell per fold and fraction."""
  return sweep_records(fractions=fractions, protocols=protocols) + [
      report.make_record(fake_result(k, f, 'features', 'ridge'), task='toy', init='features',
                         protocol='ridge', fraction=f, fold=k, seed=0,
                         norm_policy='train_subjects') for k in range(5) for f in fractions]


def test_the_feature_baseline_stands_beside_every_protocol(tmp_path):
  recs = three_arm_records()
  report.write_results(recs, str(tmp_path))
  df = report.results_frame(recs)
  with open(tmp_path / 'headline.csv') as f:
    head = list(csv.DictReader(f))
  assert [(r['protocol'], r['fraction']) for r in head] == [
      (p, f) for p in ('linear_probe', 'full') for f in ('0.25', '1.0')]  # no 'ridge' rows
  sub = df[df.subject != 'all']
  for r in head:
    frac = float(r['fraction'])

    def per_subject(init, protocol, frac=frac):
      rows = sub[(sub.init == init) & (sub.protocol == protocol) & (sub.fraction == frac)]
      return rows.set_index('subject').pearson_r.sort_index()

    feat = per_subject('features', 'ridge')
    pre = per_subject('pretrained', r['protocol'])
    assert len(feat) == 10 and float(r['within_r_features']) == pytest.approx(feat.mean())
    assert float(r['sd_features']) == pytest.approx(feat.std(ddof=1))
    assert float(r['delta_r_vs_features']) == pytest.approx(pre.mean() - feat.mean())
    ref = sps.ttest_rel(pre.to_numpy(), feat.to_numpy())
    assert float(r['t_vs_features']) == pytest.approx(ref.statistic)
    assert float(r['p_vs_features']) == pytest.approx(ref.pvalue)
    d = (pre - feat).to_numpy()
    half = sps.t.ppf(0.975, 9) * d.std(ddof=1) / np.sqrt(10)
    assert float(r['delta_r_vs_features_low']) == pytest.approx(d.mean() - half)
    assert float(r['delta_r_vs_features_high']) == pytest.approx(d.mean() + half)
    assert int(r['n_subjects_vs_features']) == 10 and int(r['n_subjects']) == 10
    pooled = df[(df.subject == 'all') & (df.init == 'features') & (df.fraction == frac)]
    assert float(r['pooled_r_features']) == pytest.approx(pooled.pearson_r.mean())
  # The pre-trained vs random columns are what they were without the third arm.
  two = report.headline_frame(report.results_frame(sweep_records()))
  three = report.headline_frame(df)
  old = [c for c in HEADLINE_CSV[4:] if 'features' not in c]
  absent = two[[c for c in HEADLINE_CSV if 'features' in c]]
  assert len(old) == 12 and (absent.pop('n_subjects_vs_features') == 0).all()
  assert absent.isna().all().all()  # no feature baseline: its columns empty
  np.testing.assert_allclose(three[old].to_numpy(float), two[old].to_numpy(float))
  md = (tmp_path / 'summary.md').read_text()
  row = next(line for line in md.splitlines() if line.startswith('| 100% | '))
  assert row.startswith(f'| 100% | {float(head[1]["within_r_features"]):.3f} ± ')
  assert md.count('| fraction | features (ridge) | linear_probe: pretrained |') == 1
  assert 'full: Δr vs features' in md and 'features / ridge' in md
  assert 'Pre-trained vs the feature baseline' in md
  assert '- Δr vs features at 100%, full: ' in md
  folds = report.paired_test_rows(df, 'toy', 'peak_vgrf', over=('folds',), b='features')
  assert [(x[0], x[1], x[3]) for x in folds] == [
      (f, p, '5') for p in ('linear_probe', 'full') for f in ('0.25', '1')]


def test_the_data_efficiency_plot_draws_the_feature_baseline_in_every_panel(tmp_path,
                                                                             monkeypatch):
  plt = report.pyplot()
  figs = []
  monkeypatch.setattr(plt, 'close', figs.append)
  report.plot_data_efficiency(report.results_frame(three_arm_records()), 'toy',
                              str(tmp_path / 'eff.png'))
  axes = figs[0].axes
  assert [ax.get_title().split('\n')[1] for ax in axes] == ['linear_probe', 'full']
  for ax in axes:
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {'pretrained', 'random', 'features (ridge)'} <= set(labels)
    assert len(ax.containers) == 3  # one error-bar line per arm
  plt.close(figs[0])
