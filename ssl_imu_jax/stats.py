"""Statistics of a sweep: paired tests pre-trained vs random init, and the data-efficiency figure.

The claim under test is data efficiency: with a pre-trained encoder, how much less labelled data
reaches the accuracy a randomly initialised model gets from all of it. The paper's headline
metric is the within-subject r (Pearson r over one test subject's windows, averaged over seeds,
then over subjects), tested with a paired t over subjects, and its data efficiency is read at the
swept fractions (``data_efficiency_grid``); ``data_efficiency`` interpolates between them and
``bootstrap_efficiency`` gives that figure an interval over subjects. Every test here says what it
computed on and, when it cannot be computed, why.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

WILCOXON = 'Wilcoxon signed-rank'
PAIRED_T = 'paired t'
# A subject's r from fewer windows is left out (with 2 windows r is always +-1).
MIN_SUBJECT_WINDOWS = 3


@dataclasses.dataclass(frozen=True)
class PairedTest:
  """One paired comparison a - b (a = pre-trained, b = random init).

  Attributes:
    test: WILCOXON or PAIRED_T.
    paired_over: what the pairs are ('folds' or 'subjects').
    n: number of complete pairs (pairs with a NaN on either side are dropped).
    mean_diff: mean of a - b over the pairs (NaN if n == 0).
    statistic: scipy's statistic (Wilcoxon: W, the smaller rank sum; t: Student's t), or None.
    p_value: two-sided p, or None when the test could not be run.
    note: why the test was not run, or a caveat on the p value ('' if none).
    ci95: the t interval (95 %) of the mean difference (paired t only; None if not run).
  """

  test: str
  paired_over: str
  n: int
  mean_diff: float
  statistic: float | None
  p_value: float | None
  note: str = ''
  ci95: tuple[float, float] | None = None

  def diff_text(self, digits: int = 3) -> str:
    """'+0.054 [-0.021, +0.129]' (the interval where there is one)."""
    if not math.isfinite(self.mean_diff):
      return 'n/a'
    text = f'{self.mean_diff:+.{digits}f}'
    if self.ci95 is not None:
      text += f' [{self.ci95[0]:+.{digits}f}, {self.ci95[1]:+.{digits}f}]'
    return text


def paired_tests(a: Sequence[float], b: Sequence[float],
                 paired_over: str) -> tuple[PairedTest, PairedTest]:
  """Two-sided Wilcoxon signed-rank and paired t tests of a against b.

  Pairs with a NaN (e.g. Pearson r of a subject whose labels are constant) are dropped. With too
  few pairs or no variation in the differences the test is not run and ``note`` says why.
  """
  a = np.asarray(a, dtype=np.float64).ravel()
  b = np.asarray(b, dtype=np.float64).ravel()
  if a.shape != b.shape:
    raise ValueError(f'paired samples differ in length: {a.shape[0]} vs {b.shape[0]}')
  keep = np.isfinite(a) & np.isfinite(b)
  d = a[keep] - b[keep]
  n = int(d.size)
  mean_diff = float(d.mean()) if n else float('nan')
  dropped = int((~keep).sum())
  drop_note = f'{dropped} pair(s) with NaN dropped; ' if dropped else ''

  def skipped(test: str, reason: str) -> PairedTest:
    return PairedTest(test, paired_over, n, mean_diff, None, None, drop_note + reason)

  # Wilcoxon: needs at least one non-zero difference; with n non-zero differences the exact
  # two-sided p can never fall below 2 / 2**n, which is worth stating for 5 folds (0.0625).
  # scipy.stats costs ~1.5 s to import; only the paired tests need it, so every process that
  # merely computes metrics (each fine-tuning, each prediction) does not pay for it.
  from scipy import stats as sps

  nonzero = int(np.count_nonzero(d))
  if n < 2:
    wil = skipped(WILCOXON, f'n={n} pairs: too few for a test (need >= 2)')
  elif nonzero == 0:
    wil = skipped(WILCOXON, 'all differences are zero')
  else:
    res = sps.wilcoxon(d)
    min_p = 2.0 / 2.0**nonzero
    note = drop_note
    if min_p > 0.05:
      note += f'with {nonzero} non-zero differences the smallest attainable p is {min_p:.3g}'
    wil = PairedTest(WILCOXON, paired_over, n, mean_diff, float(res.statistic), float(res.pvalue),
                     note.rstrip('; '))

  if n < 2:
    tt = skipped(PAIRED_T, f'n={n} pairs: too few for a test (need >= 2)')
  elif np.allclose(d, d[0], rtol=1e-9, atol=1e-12):
    tt = skipped(PAIRED_T, 'the differences have zero variance (t undefined)')
  else:
    res = sps.ttest_rel(a[keep], b[keep])
    half = float(sps.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n))
    tt = PairedTest(PAIRED_T, paired_over, n, mean_diff, float(res.statistic), float(res.pvalue),
                    drop_note.rstrip('; '), (mean_diff - half, mean_diff + half))
  return wil, tt


@dataclasses.dataclass(frozen=True)
class WithinSubjectR:
  """The within-subject r (or another metric) of one (task, target, init, protocol, fraction).

  Attributes:
    per_subject: r per test subject (index: subject), the mean over seeds of the r on that
      subject's test windows; NaN for a subject with no usable r (too few windows or r undefined).
    mean: mean of per_subject over subjects (the headline r); NaN if there are none.
    sd: sample sd (ddof=1) over subjects; NaN for fewer than 2.
    n_subjects: subjects with a finite r.
    n_seeds: distinct seeds in the rows.
  """

  per_subject: pd.Series
  mean: float
  sd: float
  n_subjects: int
  n_seeds: int


def within_subject_r(rows: pd.DataFrame, min_windows: int = MIN_SUBJECT_WINDOWS,
                     metric: str = 'pearson_r') -> WithinSubjectR:
  """Per-subject r averaged over seeds, and its mean over subjects (the paper's metric).

  ``rows`` are the per-subject rows (columns subject, ``metric``, n_test and optionally seed;
  a missing seed column counts as seed 0) of the cells of one (task, target, init, protocol,
  fraction): each subject is tested in one fold, so it has one row per seed. Rows with fewer
  than ``min_windows`` test windows or a NaN r are left out before averaging over seeds, so the
  paired test over subjects has one pair per subject, not per subject and seed.
  """
  seed = rows['seed'] if 'seed' in rows else pd.Series(0, index=rows.index)
  frame = pd.DataFrame({'subject': rows['subject'], 'seed': seed,
                        'r': rows[metric].astype(float), 'n': rows['n_test']})
  dup = frame[frame.duplicated(['subject', 'seed'], keep=False)]
  if len(dup):
    pairs = sorted({(str(s), int(k)) for s, k in zip(dup.subject, dup.seed, strict=True)})
    raise ValueError(f'within_subject_r: (subject, seed) {pairs[:5]} occur in more than one row; '
                     f'the rows mix cells of different inits, protocols, fractions or folds')
  usable = frame.r.where((frame.n >= min_windows) & np.isfinite(frame.r))
  per_subject = usable.groupby(frame.subject).mean().rename(metric)
  m, sd, n = mean_sd(per_subject.to_numpy())
  return WithinSubjectR(per_subject, m, sd, n, int(frame.seed.nunique()))


def _check_curves(fractions: Sequence[float], pretrained_r: Sequence[float],
                  random_r: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The curves as float arrays sorted by fraction (checked)."""
  f = np.asarray(fractions, dtype=np.float64)
  pre = np.asarray(pretrained_r, dtype=np.float64)
  rnd = np.asarray(random_r, dtype=np.float64)
  if not (f.shape == pre.shape == rnd.shape) or f.ndim != 1 or f.size == 0:
    raise ValueError(f'fractions, pretrained_r and random_r must be equal-length 1-D, got '
                     f'{f.shape}, {pre.shape}, {rnd.shape}')
  if np.any(~(f > 0)) or np.any(f > 1):
    raise ValueError(f'fractions must be in (0, 1], got {f.tolist()}')
  if np.unique(f).size != f.size:
    raise ValueError(f'fractions must be distinct, got {f.tolist()}')
  order = np.argsort(f)
  return f[order], pre[order], rnd[order]


def _crossing(f: np.ndarray, pre: np.ndarray, target: float) -> tuple[int | None, float | None]:
  """(index of the first swept fraction where pre >= target, interpolated crossing fraction).

  ``f`` sorted ascending; NaN points of ``pre`` are skipped; (None, None) if never reached.
  """
  ok = np.flatnonzero(np.isfinite(pre))
  if not math.isfinite(target) or ok.size == 0:
    return None, None
  reached = pre[ok] >= target
  if not reached.any():
    return None, None
  k = int(np.argmax(reached))
  i = int(ok[k])
  if k == 0:
    return i, float(f[i])
  j = int(ok[k - 1])
  lf0, lf1 = np.log(f[j]), np.log(f[i])
  t = (target - pre[j]) / (pre[i] - pre[j])
  return i, float(np.exp(lf0 + t * (lf1 - lf0)))


@dataclasses.dataclass(frozen=True)
class DataEfficiency:
  """Where the pre-trained curve reaches the random-init model's r with all the training data.

  Attributes:
    full_fraction: the largest fraction in the sweep (normally 1.0): the reference point.
    target_r: random-init mean r at ``full_fraction``.
    pretrained_full_r: pre-trained mean r at ``full_fraction``.
    delta_r_full: pretrained_full_r - target_r.
    fraction: smallest fraction at which the pre-trained mean r reaches target_r, linearly
      interpolated on log fraction; None if never reached.
    times_less: full_fraction / fraction (N in "N x less labelled data"); None if not reached.
    lower_bound: True when already reached at the smallest swept fraction, so the true N may be
      larger than reported (no extrapolation below the sweep).
  """

  full_fraction: float
  target_r: float
  pretrained_full_r: float
  delta_r_full: float
  fraction: float | None
  times_less: float | None
  lower_bound: bool

  def text(self) -> str:
    """One sentence a person reads, e.g. '6.3x less labelled data (reached at 15.8 %)'."""
    if self.fraction is None:
      if not math.isfinite(self.target_r):
        return 'not computable (random-init r at the full fraction is undefined)'
      return (f'not reached (pre-trained r never reaches random-init r = {self.target_r:.3f} '
              f'at {self.full_fraction:.0%})')
    prefix = '>= ' if self.lower_bound else ''
    return (f'{prefix}{self.times_less:.1f}x less labelled data (pre-trained reaches random-init '
            f'r = {self.target_r:.3f} at {self.fraction:.1%} of the training data)')


def data_efficiency(fractions: Sequence[float], pretrained_r: Sequence[float],
                    random_r: Sequence[float]) -> DataEfficiency:
  """The data-efficiency figure from mean r per fraction of both inits, interpolated.

  The reference is random init at the largest fraction. Scanning fractions upwards, the first
  segment where the pre-trained curve goes from below to at-or-above the reference is
  interpolated linearly in (log fraction, r). NaN points of the pre-trained curve are skipped.
  """
  f, pre, rnd = _check_curves(fractions, pretrained_r, random_r)
  full, target, pre_full = float(f[-1]), float(rnd[-1]), float(pre[-1])
  i, frac = _crossing(f, pre, target)
  lower = i is not None and not np.isfinite(pre[:i]).any()
  return DataEfficiency(full, target, pre_full, pre_full - target, frac,
                        None if frac is None else full / frac, lower)


def _pct(x: float) -> str:
  return f'{x * 100:.3g} %'


@dataclasses.dataclass(frozen=True)
class GridEfficiency:
  """Data efficiency read at the swept fractions, as the paper reads it.

  Attributes:
    full_fraction: the largest swept fraction (normally 1.0): the reference point.
    target_r: random-init mean r at ``full_fraction``.
    fraction: smallest swept fraction whose pre-trained mean r >= target_r; None if none.
    percent_less: (1 - fraction / full_fraction) * 100; None if not reached.
    times_less: full_fraction / fraction; None if not reached.
    lower_bound: True when reached at the smallest swept fraction (the true N may be larger).
  """

  full_fraction: float
  target_r: float
  fraction: float | None
  percent_less: float | None
  times_less: float | None
  lower_bound: bool

  def text(self) -> str:
    """E.g. 'reached at 25 % (75 % less data, 4.0x)'."""
    if self.fraction is None:
      if not math.isfinite(self.target_r):
        return 'not computable (random-init r at the full fraction is undefined)'
      return (f'not reached at any swept fraction (random-init r = {self.target_r:.3f} at '
              f'{_pct(self.full_fraction)})')
    first = ', the smallest swept fraction' if self.lower_bound else ''
    return (f'reached at {_pct(self.fraction)}{first} ({self.percent_less:.3g} % less data, '
            f'{self.times_less:.1f}x)')


def data_efficiency_grid(fractions: Sequence[float], pretrained_r: Sequence[float],
                         random_r: Sequence[float]) -> GridEfficiency:
  """Smallest swept fraction whose pre-trained mean r reaches random init's at the largest one.

  No interpolation: with the paper's grid (10, 16, 25, 40, 63, 100 %) the answer is one of the
  grid points. NaN points of the pre-trained curve never count as reached.
  """
  f, pre, rnd = _check_curves(fractions, pretrained_r, random_r)
  full, target = float(f[-1]), float(rnd[-1])
  i, _ = _crossing(f, pre, target)
  if i is None:
    return GridEfficiency(full, target, None, None, None, False)
  frac = float(f[i])
  return GridEfficiency(full, target, frac, (1.0 - frac / full) * 100.0, full / frac,
                        not np.isfinite(pre[:i]).any())


@dataclasses.dataclass(frozen=True)
class BootstrapEfficiency:
  """Bootstrap over test subjects of the data-efficiency figures.

  Attributes:
    n_boot: number of resamples.
    seed: seed of the resampling (same seed, same result).
    n_subjects: subjects resampled.
    p_reach: share of resamples in which the pre-trained mean r reaches random init's mean r at
      the full fraction at some swept fraction.
    times_less_ci: (2.5, 97.5) percentiles of the interpolated times_less; an end is None when it
      falls on resamples that never reach the target (counted as less efficient than any reach).
    fraction_ci: (2.5, 97.5) percentiles of the grid-point fraction; None likewise.
    max_times_less: largest figure the sweep can show (full / smallest fraction): an end equal
      to it is a lower bound.
  """

  n_boot: int
  seed: int
  n_subjects: int
  p_reach: float
  times_less_ci: tuple[float | None, float | None]
  fraction_ci: tuple[float | None, float | None]
  max_times_less: float

  def text(self) -> str:
    """E.g. 'bootstrap 95 % interval 3.1x to >= 10.0x (...)'."""
    lo, hi = (_fmt_times(x, self.max_times_less) for x in self.times_less_ci)
    return (f'bootstrap 95 % interval {lo} to {hi} ({self.n_boot} resamples of the '
            f'{self.n_subjects} test subjects; target reached in {self.p_reach:.0%} of them)')


def _fmt_times(x: float | None, cap: float) -> str:
  if x is None:
    return 'not reached'
  return f'>= {x:.1f}x' if x >= cap * (1 - 1e-12) else f'{x:.1f}x'


def _order_statistic(values: np.ndarray, q: float) -> float:
  """The q-quantile as an observed value (inverted CDF): no averaging across 'not reached'."""
  v = np.sort(values)
  return float(v[max(math.ceil(q * v.size) - 1, 0)])


def bootstrap_efficiency(per_subject_pre: np.ndarray, per_subject_rand: np.ndarray,
                         fractions: Sequence[float], n_boot: int = 1000,
                         seed: int = 0) -> BootstrapEfficiency:
  """Percentile intervals of the data-efficiency figures, resampling test subjects.

  per_subject_* are [n_subjects, n_fractions] within-subject r of the same subjects in the same
  order (NaN allowed). Each resample draws subjects with replacement, the same draw for both
  inits (the comparison is paired), takes the mean over the drawn subjects per fraction (NaN
  skipped) and recomputes the grid-point fraction and the interpolated times_less. Trained
  models are not resampled: the interval covers the spread over subjects only, not over seeds.
  """
  pre = np.asarray(per_subject_pre, dtype=np.float64)
  rnd = np.asarray(per_subject_rand, dtype=np.float64)
  f = np.asarray(fractions, dtype=np.float64)
  if pre.ndim != 2 or pre.shape != rnd.shape or pre.shape[1] != f.size:
    raise ValueError(f'per_subject_pre {pre.shape} and per_subject_rand {rnd.shape} must both '
                     f'be [n_subjects, {f.size} fractions]')
  if pre.shape[0] == 0:
    raise ValueError('bootstrap_efficiency: no subjects to resample')
  if n_boot < 1:
    raise ValueError(f'n_boot must be >= 1, got {n_boot}')
  order = np.argsort(f)
  f, _, _ = _check_curves(f, f, f)
  pre, rnd = pre[:, order], rnd[:, order]
  full = float(f[-1])
  idx = np.random.default_rng(seed).integers(0, pre.shape[0], size=(n_boot, pre.shape[0]))
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)  # all-NaN columns give NaN means
    pre_b = np.nanmean(pre[idx], axis=1)
    target_b = np.nanmean(rnd[idx, -1], axis=1)
  grid = np.full(n_boot, np.inf)
  times = np.zeros(n_boot)
  for b in range(n_boot):
    i, frac = _crossing(f, pre_b[b], float(target_b[b]))
    if i is not None:
      grid[b], times[b] = f[i], full / frac
  reached = np.isfinite(grid)

  def ends(values: np.ndarray, missing: float) -> tuple[float | None, float | None]:
    out = (_order_statistic(values, 0.025), _order_statistic(values, 0.975))
    return tuple(None if x == missing else x for x in out)

  return BootstrapEfficiency(int(n_boot), int(seed), int(pre.shape[0]), float(reached.mean()),
                             ends(times, 0.0), ends(grid, np.inf), full / float(f[0]))


def mean_sd(x: Sequence[float]) -> tuple[float, float, int]:
  """Mean, sample sd (ddof=1; NaN for n < 2) and n of the finite values."""
  x = np.asarray(x, dtype=np.float64).ravel()
  x = x[np.isfinite(x)]
  n = int(x.size)
  if n == 0:
    return float('nan'), float('nan'), 0
  sd = float(x.std(ddof=1)) if n > 1 else float('nan')
  return float(x.mean()), sd, n
