"""Tests of the sweep statistics against scipy and hand computations."""

import math

import numpy as np
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
