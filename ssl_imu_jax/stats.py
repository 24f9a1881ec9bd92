"""Statistics of a sweep: paired tests pre-trained vs random init, and the data-efficiency figure.

The claim under test is data efficiency: with a pre-trained encoder, how much less labelled data
reaches the accuracy a randomly initialised model gets from all of it. Both tests here say what
they computed on and, when they cannot be computed, why.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

WILCOXON = 'Wilcoxon signed-rank'
PAIRED_T = 'paired t'


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
  """

  test: str
  paired_over: str
  n: int
  mean_diff: float
  statistic: float | None
  p_value: float | None
  note: str = ''


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
    tt = PairedTest(PAIRED_T, paired_over, n, mean_diff, float(res.statistic), float(res.pvalue),
                    drop_note.rstrip('; '))
  return wil, tt


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
  """The data-efficiency figure from mean r per fraction of both inits.

  The reference is random init at the largest fraction. Scanning fractions upwards, the first
  segment where the pre-trained curve goes from below to at-or-above the reference is
  interpolated linearly in (log fraction, r). NaN points of the pre-trained curve are skipped.
  """
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
  f, pre, rnd = f[order], pre[order], rnd[order]
  full, target, pre_full = float(f[-1]), float(rnd[-1]), float(pre[-1])
  delta = pre_full - target
  ok = np.isfinite(pre)
  f, pre = f[ok], pre[ok]

  def result(frac: float | None, lower: bool = False) -> DataEfficiency:
    return DataEfficiency(full, target, pre_full, delta, frac,
                          None if frac is None else full / frac, lower)

  if not math.isfinite(target) or f.size == 0:
    return result(None)
  reached = pre >= target
  if not reached.any():
    return result(None)
  i = int(np.argmax(reached))
  if i == 0:
    return result(float(f[0]), lower=True)
  lf0, lf1 = np.log(f[i - 1]), np.log(f[i])
  t = (target - pre[i - 1]) / (pre[i] - pre[i - 1])
  return result(float(np.exp(lf0 + t * (lf1 - lf0))))


def mean_sd(x: Sequence[float]) -> tuple[float, float, int]:
  """Mean, sample sd (ddof=1; NaN for n < 2) and n of the finite values."""
  x = np.asarray(x, dtype=np.float64).ravel()
  x = x[np.isfinite(x)]
  n = int(x.size)
  if n == 0:
    return float('nan'), float('nan'), 0
  sd = float(x.std(ddof=1)) if n > 1 else float('nan')
  return float(x.mean()), sd, n
