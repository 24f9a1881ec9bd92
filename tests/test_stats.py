"""Tests of the sweep statistics against scipy and hand computations."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from ssl_imu_jax import stats

A = np.array([0.71, 0.64, 0.80, 0.55, 0.62, 0.77, 0.69])
B = np.array([0.60, 0.66, 0.70, 0.41, 0.50, 0.70, 0.52])


def test_paired_tests_match_scipy():
  wil, tt = stats.paired_tests(A, B, 'subjects')
  ref_w = sps.wilcoxon(A - B)
  ref_t = sps.ttest_rel(A, B)
  assert wil.test == stats.WILCOXON and tt.test == stats.PAIRED_T
  assert wil.paired_over == tt.paired_over == 'subjects'
  assert wil.n == tt.n == 7
  assert wil.statistic == pytest.approx(ref_w.statistic)
  assert wil.p_value == pytest.approx(ref_w.pvalue)
  assert tt.statistic == pytest.approx(ref_t.statistic)
  assert tt.p_value == pytest.approx(ref_t.pvalue)
  assert tt.mean_diff == pytest.approx(np.mean(A - B))
  # By hand: one negative difference (-0.02, the smallest |d|) -> W = 1, exact p = 2 * 2 / 2**7.
  assert wil.statistic == 1.0
  assert wil.p_value == pytest.approx(4 / 128)
  # t = mean(d) / (sd(d) / sqrt(n)).
  d = A - B
  assert tt.statistic == pytest.approx(d.mean() / (d.std(ddof=1) / math.sqrt(7)))


def test_paired_tests_drop_nan_pairs_and_say_so():
  a = np.append(A, np.nan)
  b = np.append(B, 0.3)
  wil, tt = stats.paired_tests(a, b, 'subjects')
  assert wil.n == tt.n == 7
  assert tt.p_value == pytest.approx(sps.ttest_rel(A, B).pvalue)
  assert '1 pair(s) with NaN dropped' in tt.note


def test_paired_tests_too_few_or_degenerate():
  wil, tt = stats.paired_tests([0.5], [0.4], 'folds')
  assert wil.p_value is None and tt.p_value is None
  assert 'n=1' in wil.note and 'n=1' in tt.note
  wil, tt = stats.paired_tests([0.5, 0.6, 0.7], [0.5, 0.6, 0.7], 'folds')
  assert wil.p_value is None and 'zero' in wil.note
  assert tt.p_value is None and 'zero variance' in tt.note
  # Five folds: the exact Wilcoxon p cannot go below 2/32 = 0.0625, and the note says so.
  wil, _ = stats.paired_tests([0.9, 0.8, 0.85, 0.7, 0.75], [0.5, 0.4, 0.45, 0.3, 0.35], 'folds')
  assert wil.p_value == pytest.approx(0.0625)
  assert '0.0625' in wil.note
  with pytest.raises(ValueError, match='length'):
    stats.paired_tests([1, 2], [1, 2, 3], 'folds')


def test_data_efficiency_hand_computed():
  fr = [1.0, 0.05, 0.1, 0.25, 0.5]  # unsorted on purpose
  pre = [0.85, 0.50, 0.60, 0.70, 0.80]
  rnd = [0.65, 0.30, 0.40, 0.50, 0.60]
  de = stats.data_efficiency(fr, pre, rnd)
  # Target 0.65 lies halfway between r(0.1) = 0.6 and r(0.25) = 0.7, so on a log axis the
  # crossing is the geometric mean sqrt(0.1 * 0.25) = 0.158114; 1 / 0.158114 = 6.3246.
  assert de.target_r == pytest.approx(0.65)
  assert de.fraction == pytest.approx(math.sqrt(0.025))
  assert de.times_less == pytest.approx(1 / math.sqrt(0.025))
  assert de.delta_r_full == pytest.approx(0.20)
  assert not de.lower_bound
  assert de.text().startswith('6.3x less labelled data')


def test_data_efficiency_exact_hit_not_reached_and_lower_bound():
  fr = [0.1, 0.5, 1.0]
  de = stats.data_efficiency(fr, [0.4, 0.6, 0.7], [0.3, 0.5, 0.6])
  assert de.fraction == pytest.approx(0.5) and de.times_less == pytest.approx(2.0)
  de = stats.data_efficiency(fr, [0.3, 0.4, 0.5], [0.3, 0.5, 0.6])
  assert de.fraction is None and de.times_less is None
  assert de.delta_r_full == pytest.approx(-0.1)
  assert de.text().startswith('not reached')
  de = stats.data_efficiency(fr, [0.7, 0.8, 0.9], [0.3, 0.5, 0.6])
  assert de.fraction == pytest.approx(0.1) and de.lower_bound
  assert de.text().startswith('>= 10.0x')
  # Non-monotonic curve: the first upward crossing counts (between 0.1 and 0.25).
  de = stats.data_efficiency([0.05, 0.1, 0.25, 0.5, 1.0], [0.5, 0.55, 0.75, 0.6, 0.8],
                             [0.1, 0.2, 0.3, 0.4, 0.65])
  expected = math.exp(math.log(0.1) + 0.5 * (math.log(0.25) - math.log(0.1)))
  assert de.fraction == pytest.approx(expected)


def test_data_efficiency_bad_input():
  with pytest.raises(ValueError, match='fractions must be in'):
    stats.data_efficiency([0.0, 1.0], [0.1, 0.2], [0.1, 0.2])
  with pytest.raises(ValueError, match='equal-length'):
    stats.data_efficiency([0.5, 1.0], [0.1], [0.1, 0.2])


def test_mean_sd():
  m, sd, n = stats.mean_sd([0.5, np.nan, 0.7, 0.9])
  assert (m, n) == (pytest.approx(0.7), 3)
  assert sd == pytest.approx(0.2)
  m, sd, n = stats.mean_sd([0.5])
  assert m == 0.5 and math.isnan(sd) and n == 1


GRID = [0.1, 0.16, 0.25, 0.4, 0.63, 1.0]
PRE = [0.80, 0.84, 0.88, 0.89, 0.90, 0.91]
RND = [0.70, 0.75, 0.80, 0.84, 0.86, 0.87]


def test_data_efficiency_grid_paper_example():
  # Target = random at 100 % = 0.87; pre-trained first reaches it at 25 % (0.88; 0.84 at 16 %).
  order = [3, 0, 5, 1, 4, 2]  # unsorted on purpose
  g = stats.data_efficiency_grid([GRID[i] for i in order], [PRE[i] for i in order],
                                 [RND[i] for i in order])
  assert g.target_r == pytest.approx(0.87)
  assert g.fraction == 0.25
  assert g.percent_less == pytest.approx(75.0)
  assert g.times_less == pytest.approx(4.0)
  assert not g.lower_bound
  assert g.text() == 'reached at 25 % (75 % less data, 4.0x)'
  # The interpolated figure lies between the grid points: 0.87 is 3/4 of the way from 0.84 to
  # 0.88, so on a log axis 0.16 * (0.25 / 0.16) ** 0.75.
  de = stats.data_efficiency(GRID, PRE, RND)
  assert de.fraction == pytest.approx(0.16 * (0.25 / 0.16) ** 0.75)
  assert 4.0 < de.times_less < 6.25


def test_data_efficiency_grid_not_reached_first_point_full_and_nan():
  g = stats.data_efficiency_grid(GRID, [0.5, 0.6, 0.7, 0.8, 0.85, 0.86], RND)
  assert g.fraction is None and g.percent_less is None and g.times_less is None
  assert g.text().startswith('not reached at any swept fraction')
  g = stats.data_efficiency_grid(GRID, [0.88, 0.89, 0.9, 0.9, 0.91, 0.92], RND)
  assert g.fraction == 0.1 and g.times_less == pytest.approx(10.0)
  assert g.percent_less == pytest.approx(90.0) and g.lower_bound
  assert 'the smallest swept fraction' in g.text()
  # Reached only at the full fraction itself: no saving.
  g = stats.data_efficiency_grid(GRID, [0.5, 0.6, 0.7, 0.8, 0.85, 0.87], RND)
  assert g.fraction == 1.0 and g.percent_less == 0.0 and g.times_less == 1.0
  # A NaN point never counts as reached: the next grid point does.
  g = stats.data_efficiency_grid(GRID, [0.80, 0.84, np.nan, 0.89, 0.90, 0.91], RND)
  assert g.fraction == 0.4 and g.times_less == pytest.approx(2.5)
  g = stats.data_efficiency_grid(GRID, PRE, RND[:-1] + [np.nan])
  assert g.fraction is None and g.text().startswith('not computable')


def noisy_subjects(n=12, sd=0.02, seed=1):
  rng = np.random.default_rng(seed)
  return (np.array(PRE) + rng.normal(0, sd, (n, len(GRID))),
          np.array(RND) + rng.normal(0, sd, (n, len(GRID))))


def test_bootstrap_efficiency_deterministic_and_contains_point_estimate():
  pre, rnd = noisy_subjects()
  b1 = stats.bootstrap_efficiency(pre, rnd, GRID, n_boot=500, seed=3)
  b2 = stats.bootstrap_efficiency(pre, rnd, GRID, n_boot=500, seed=3)
  b3 = stats.bootstrap_efficiency(pre, rnd, GRID, n_boot=500, seed=4)
  assert b1 == b2
  assert b1.times_less_ci != b3.times_less_ci
  assert b1.n_subjects == 12 and b1.n_boot == 500 and b1.max_times_less == pytest.approx(10.0)
  point = stats.data_efficiency(GRID, pre.mean(0), rnd.mean(0))
  grid = stats.data_efficiency_grid(GRID, pre.mean(0), rnd.mean(0))
  lo, hi = b1.times_less_ci
  assert lo is not None and hi is not None
  assert lo <= point.times_less <= hi and lo < hi
  assert b1.fraction_ci[0] <= grid.fraction <= b1.fraction_ci[1]
  assert b1.p_reach == 1.0


def test_bootstrap_efficiency_degenerate_when_subjects_identical():
  pre = np.tile(PRE, (8, 1))
  rnd = np.tile(RND, (8, 1))
  b = stats.bootstrap_efficiency(pre, rnd, GRID, n_boot=200, seed=0)
  point = stats.data_efficiency(GRID, PRE, RND).times_less
  assert b.times_less_ci[0] == pytest.approx(point) and b.times_less_ci[1] == pytest.approx(point)
  assert b.fraction_ci == (0.25, 0.25)
  assert b.p_reach == 1.0
  # Never reached in any resample: both ends undefined, said in words.
  b = stats.bootstrap_efficiency(np.tile(RND, (8, 1)) - 0.1, rnd, GRID, n_boot=200)
  assert b.p_reach == 0.0 and b.times_less_ci == (None, None) and b.fraction_ci == (None, None)
  assert 'not reached to not reached' in b.text()


def test_bootstrap_efficiency_resamples_subjects_paired_and_skips_nan():
  # Target 0.80. Resampling subjects [0, 0] reaches it at 10 %, [1, 1] never (max 0.74),
  # [0, 1] at 40 % (mean 0.805), so the interval spans "never" to 10x.
  pre = np.array([[0.95, 0.95, 0.95, 0.95, 0.95, 0.95],
                  [0.50, 0.55, 0.60, 0.66, 0.70, 0.74]])
  rnd = np.array([[0.80] * 6, [0.80] * 6])
  b = stats.bootstrap_efficiency(pre, rnd, GRID, n_boot=400, seed=0)
  assert b.times_less_ci == (None, pytest.approx(10.0))
  assert b.fraction_ci == (0.1, None)
  assert 0.6 < b.p_reach < 0.9  # P(not [1, 1]) = 3/4
  assert b.text().startswith('bootstrap 95 % interval not reached to >= 10.0x')
  # Subjects differ a lot in level but each gains the same from pre-training: with the same
  # subjects drawn for both inits every resample reaches at 25 %; unpaired draws would not.
  level = np.array([[-0.3], [0.0], [0.05], [0.1]])
  b = stats.bootstrap_efficiency(np.array(PRE) + level, np.array(RND) + level, GRID, n_boot=300)
  assert b.fraction_ci == (0.25, 0.25) and b.p_reach == 1.0
  # A NaN of one subject at one fraction is skipped in that fraction's mean.
  pre_nan = pre.copy()
  pre_nan[1, 0] = np.nan
  b = stats.bootstrap_efficiency(pre_nan, rnd, GRID, n_boot=50)
  assert b.fraction_ci[0] == 0.1
  with pytest.raises(ValueError, match='n_subjects'):
    stats.bootstrap_efficiency(pre[:, :3], rnd, GRID)


def test_within_subject_r_averages_seeds_then_subjects():
  rows = pd.DataFrame({
      'subject': ['1', '2', '3', '1', '2', '3', '4'],
      'seed': [0, 0, 0, 1, 1, 1, 0],
      'pearson_r': [0.8, 0.6, 0.9, 0.6, np.nan, 0.1, 0.99],
      'n_test': [10, 10, 10, 10, 10, 2, 2],
  })
  w = stats.within_subject_r(rows)
  # Subject 1: (0.8 + 0.6) / 2; 2: 0.6 (NaN dropped); 3: 0.9 (seed 1 has 2 windows); 4: none.
  assert w.per_subject.to_dict() == pytest.approx({'1': 0.7, '2': 0.6, '3': 0.9, '4': np.nan},
                                                  nan_ok=True)
  assert w.mean == pytest.approx((0.7 + 0.6 + 0.9) / 3)
  assert w.sd == pytest.approx(np.std([0.7, 0.6, 0.9], ddof=1))
  assert (w.n_subjects, w.n_seeds) == (3, 2)
  w0 = stats.within_subject_r(rows.drop(columns='seed').iloc[:3])
  assert w0.mean == pytest.approx(np.mean([0.8, 0.6, 0.9])) and w0.n_seeds == 1
  with pytest.raises(ValueError, match='mix cells'):
    stats.within_subject_r(rows.drop(columns='seed'))
