"""Timestamps -> one uniform time base: time units, checks, and resampling on the real times.

Devices and CSV exports stamp every sample; the builders want samples on a uniform grid at one
rate. ``on_grid`` keeps the samples as they are when every step is within ``tol`` (1 %) of the
sample interval and the series start together; otherwise (jitter, dropped samples, sensors that
start apart) it interpolates each series linearly at its real times onto ``start + k / rate``
over the time span they share, and says so in one log line. The packet-counter rule holds for
timestamps too: a row written twice (timestamp and values repeated) loses its copy with a
warning; a timestamp repeated with other values, time going back, or a gap of more than
``max_gap`` sample intervals (interpolation would invent the movement; never spliced) is a
``preprocess.TrialError`` naming the file and its line (where the reader knows it; else the data
row, counted from 1 after the header).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np

from data_prep import preprocess

log = logging.getLogger(__name__)

TIME_UNITS = {'s': 1.0, 'ms': 1e-3, 'us': 1e-6}
_TIME_ALIASES = {'sec': 's', 'msec': 'ms', 'usec': 'us', 'µs': 'us', 'μs': 'us'}


@dataclasses.dataclass
class Recording:
  """One sensor as read from its device files: times (s), acc (m/s^2), gyr (rad/s), sensor frame.

  ``rate_hz`` is the rate the device files state (None: only the timestamps tell) and
  ``rate_source`` where they state it, for error messages; ``lines`` the file's line number of
  each sample (messages), ``ok`` False inside packet-counter gaps over max_gap (None: no counter).
  """

  path: str
  name: str
  time_s: np.ndarray
  acc: np.ndarray
  gyr: np.ndarray
  rate_hz: float | None = None
  rate_source: str = ''
  lines: np.ndarray | None = None
  ok: np.ndarray | None = None


def time_factor(unit: str, where: str = '') -> float:
  """Seconds per ``unit`` ('s', 'ms' or 'us'); a ValueError naming ``where`` otherwise."""
  u = str(unit).strip().lower()
  u = _TIME_ALIASES.get(u, u)
  if u not in TIME_UNITS:
    raise ValueError(f'{where}: {unit!r} is not a time unit; expected one of {list(TIME_UNITS)}')
  return TIME_UNITS[u]


def to_seconds(t: np.ndarray, unit: str, where: str = '') -> np.ndarray:
  """A time column in ``unit`` as float64 seconds."""
  return np.asarray(t, dtype=np.float64) * time_factor(unit, where)


def _at(i: int, lines: np.ndarray | None) -> str:
  """Data row i (from 0) as a message names it: the file's line where known."""
  return f'file line {int(lines[i])}' if lines is not None else f'data row {i + 1}'


def _checked(t: np.ndarray, x: np.ndarray, rate_hz: float, where: str, max_gap: float,
             lines: np.ndarray | None = None):
  """(t, x) without repeated rows, and the largest step error in sample intervals.

  A timestamp repeated with identical values is a row written twice: the copy is dropped with a
  warning naming the lines. Repeated with other values (which is right is unknown) or going back,
  it is a ``TrialError`` (the packet-counter rule, ``preprocess.fill_counter_gaps``).
  """
  t = np.asarray(t, dtype=np.float64)
  x = np.asarray(x, dtype=np.float64)
  if t.ndim != 1 or x.shape[0] != t.shape[0] or t.size < 2:
    raise preprocess.TrialError(f'{where}: need a 1-D time column of 2+ samples matching the '
                                f'data, got times {t.shape} for data {x.shape}')
  preprocess.check_finite(t, 'time column', where, lines=lines)
  d = np.diff(t)
  if (d < 0).any():
    i = int(np.argmax(d < 0))
    raise preprocess.TrialError(f'{where}: time goes back at {_at(i + 1, lines)} ({t[i]:.6f} -> '
                                f'{t[i + 1]:.6f} s)')
  rep = np.flatnonzero(d == 0)
  same = np.all(x[rep] == x[rep + 1], axis=tuple(range(1, x.ndim))) if rep.size else rep
  if rep.size and not same.all():
    i = int(rep[np.argmin(same)])
    raise preprocess.TrialError(f'{where}: timestamp {t[i]:.6f} s repeated with other values at '
                                f'{_at(i, lines)} and {_at(i + 1, lines)}; which row is right is '
                                f'unknown')
  if rep.size:
    log.warning('%s: %d row(s) written twice (identical timestamp and values; the first at %s and '
                '%s): the copies are dropped', where, rep.size, _at(int(rep[0]), lines),
                _at(int(rep[0]) + 1, lines))
  rows = np.flatnonzero(np.r_[True, d > 0])
  t, x = t[rows], x[rows]
  lines = lines[rows] if lines is not None else None
  if t.size < 2:
    raise preprocess.TrialError(f'{where}: all {len(d) + 1} timestamps are equal')
  d = np.diff(t) * rate_hz  # steps in sample intervals
  if (d > max_gap).any():
    i = int(np.argmax(d > max_gap))
    at = f'file line {int(lines[i + 1])}' if lines is not None else f'data row {rows[i + 1] + 1}'
    raise preprocess.TrialError(
        f'{where}: time jumps by {d[i] / rate_hz:.3f} s ({d[i]:.0f} sample intervals at '
        f'{rate_hz:g} Hz) at {at}; interpolating would invent the movement there: split the '
        f'recording at the gap')
  return t, x, float(np.abs(d - 1.0).max())


def on_grid(times: Sequence[np.ndarray], values: Sequence[np.ndarray], rate_hz: float,
            where: Sequence[str], tol: float = 0.01, max_gap: float = 10.0,
            lines: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray]:
  """Samples of one or more series on one uniform grid at ``rate_hz``.

  Args:
    times: per series, its timestamps in seconds (one clock shared by all series).
    values: per series, [T_i, C_i] values at those times.
    where: per series, the file it came from (errors and the log line name it).
    tol: steps within ``tol`` of 1 / rate_hz (and starts within tol of one interval) count as
      uniform: the samples are kept as they are, the series cut to the shortest.
    lines: per series, the file's line number of each sample (messages), or None.
  Returns:
    per series, [n, C_i] float64 on the same grid.
  """
  rate_hz = float(rate_hz)
  ts, xs, spread = [], [], []
  for t, x, w, ln in zip(times, values, where, lines or [None] * len(times), strict=True):
    t, x, worst = _checked(t, x, rate_hz, w, max_gap, ln)
    ts.append(t)
    xs.append(x)
    spread.append(worst)
  dropped = [len(t0) - len(t) for t0, t in zip(times, ts, strict=True)]
  start = max(float(t[0]) for t in ts)
  offset = max((start - float(t[0])) * rate_hz for t in ts)
  names = ', '.join(dict.fromkeys(where))
  repeated = f'; {sum(dropped)} repeated timestamp(s) dropped' if sum(dropped) else ''
  if max(spread) <= tol and offset <= tol:
    if repeated:
      log.info('%s: %s', names, repeated[2:])
    n = min(len(x) for x in xs)
    return [x[:n] for x in xs]
  end = min(float(t[-1]) for t in ts)
  if end <= start:
    raise preprocess.TrialError(f'{names}: the sensors share no time span (starts up to '
                                f'{offset / rate_hz:.3f} s apart, one ends at {end:.3f} s); '
                                f'their clocks are not synchronised')
  n = int(np.floor((end - start) * rate_hz + 1e-6)) + 1
  grid = start + np.arange(n) / rate_hz
  import scipy.interpolate  # noqa: PLC0415 (scipy: ~1.5 s to import; loaded where used)
  out = [scipy.interpolate.interp1d(t, x, axis=0, assume_sorted=True)(
      np.clip(grid, t[0], t[-1])) for t, x in zip(ts, xs, strict=True)]
  why = []
  if max(spread) > tol:
    why.append(f'steps up to {100 * max(spread):.0f} % off the {1000 / rate_hz:.4g} ms sample '
               f'interval')
  if offset > tol:
    why.append(f'sensors starting up to {1000 * offset / rate_hz:.1f} ms apart')
  log.warning('%s: timestamps with %s; resampled onto a uniform %g Hz grid by linear '
              'interpolation at the real times (%d -> %d samples)%s', names, ' and '.join(why),
              rate_hz, max(len(t) for t in ts), n, repeated)
  return out
