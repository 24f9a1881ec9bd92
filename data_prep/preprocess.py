"""Signal preprocessing shared by the real-data builders.

Resampling (scipy), windowing, the static-window filter of the reference code, unit conversion
to SI, plausibility checks of declared units against the data, sample-rate checks, gap filling
on packet counters, subject splits, and the generator-or-Beam fan-out used by every builder.
All functions take time on axis 0 unless stated and never loop over samples in Python.
"""

from __future__ import annotations

import fractions
import logging
import os
import pathlib
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

# scipy's subpackages are imported where used: ~1.5 s per process, and every process that
# reads records imports the builders (and so this module) whether it filters or not.

G = 9.81  # m/s^2; the project-wide value (conventions: "+9.81 on the up axis when still").

# Unit name -> factor to SI (m/s^2, rad/s, N). Names are matched after `_norm_unit`.
ACC_UNITS = {'m/s^2': 1.0, 'g': G, 'mg': G / 1000.0}
GYR_UNITS = {'rad/s': 1.0, 'deg/s': np.pi / 180.0}
FORCE_UNITS = {'n': 1.0, 'kn': 1000.0}
_ALIASES = {
    'm/s2': 'm/s^2', 'ms-2': 'm/s^2', 'm/s/s': 'm/s^2', 'mps2': 'm/s^2', 'm/s²': 'm/s^2',
    'gs': 'g', 'gravity': 'g', 'milli-g': 'mg',
    'rad/sec': 'rad/s', 'rads': 'rad/s', 'rad.s-1': 'rad/s', 'rad/s^1': 'rad/s',
    'deg/sec': 'deg/s', 'degs': 'deg/s', 'dps': 'deg/s', '°/s': 'deg/s', 'deg.s-1': 'deg/s',
    'newton': 'n', 'newtons': 'n',
}

log = logging.getLogger(__name__)


class TrialError(ValueError):
  """One recording fails a data check (NaN run, time base, units, packet counter): builders
  leave its trial out with a warning instead of failing the whole build (see ``fan_out``)."""


# ----------------------------------------------------------------------------------------------
# Units

def _norm_unit(unit: str) -> str:
  u = str(unit).strip().lower().replace(' ', '')
  return _ALIASES.get(u, u)


def unit_factor(unit: str, quantity: str, where: str = '') -> float:
  """Factor that turns values in ``unit`` into SI for ``quantity`` ('acc', 'gyr' or 'force')."""
  table = {'acc': ACC_UNITS, 'gyr': GYR_UNITS, 'force': FORCE_UNITS}.get(quantity)
  if table is None:
    raise ValueError(f'{where}: unknown quantity {quantity!r}; expected acc, gyr or force')
  u = _norm_unit(unit)
  if u not in table:
    raise ValueError(f'{where}: unit {unit!r} is not a known {quantity} unit; expected one of '
                     f'{sorted(table)}')
  return table[u]


def to_si(x: np.ndarray, unit: str, quantity: str, where: str = '') -> np.ndarray:
  """x converted from ``unit`` to SI (m/s^2, rad/s or N), as float64."""
  return np.asarray(x, dtype=np.float64) * unit_factor(unit, quantity, where)


# ----------------------------------------------------------------------------------------------
# Checks

def check_finite(x: np.ndarray, field: str, where: str, columns: Sequence[str] | None = None,
                 lines: np.ndarray | None = None, row_name: str = 'data row') -> np.ndarray:
  """x unchanged; a TrialError at the first NaN/Inf naming where the file has it.

  ``columns``: the name of each column of x [rows, C] (a 1-D x is one column, ``field``);
  ``lines``: the file's line number of each row (from 1, header lines counted). Without lines
  the row is counted from 1 as ``row_name`` (HDF5 rows, C3D analog samples).
  """
  x = np.asarray(x)
  bad = ~np.isfinite(x)
  if bad.any():
    b2 = bad.reshape(len(bad), -1)
    r, c = (int(i) for i in np.argwhere(b2)[0])
    names = list(columns) if columns is not None else (
        [field] if x.ndim == 1 else [f'{field}[{j}]' for j in range(b2.shape[1])])
    hit = [names[j] for j in np.flatnonzero(b2.any(axis=0))]
    at = (f'line {int(lines[r])}' if lines is not None
          else f'{row_name} {r + 1} (counting from 1)')
    raise TrialError(f'{where}: {at}, column {names[c]!r} is NaN/Inf ({int(bad.sum())} NaN/Inf '
                     f'value(s) in {hit}); clean or crop the recording first')
  return x


def finite_steps(x: np.ndarray, cols: list[str], where: str) -> np.ndarray:
  """Indices of the steps of x [n_steps, T, F] without NaN/Inf. Each other step is dropped with
  a warning naming the step (its number as stored) and the fields, so a bad sample costs its
  step, not the subject. Callers keep the returned numbers for every later message and key."""
  bad = ~np.isfinite(np.asarray(x))
  hit = bad.any(axis=(1, 2))
  for n in np.flatnonzero(hit):
    fields = [cols[i] for i in np.flatnonzero(bad[n].any(axis=0))]
    log.warning('%s step %d: %d NaN/Inf samples in %s (first at sample %d of the step, counting '
                'from 1): that step is dropped, the other steps are kept', where, n,
                int(bad[n].sum()), fields, int(np.argmax(bad[n].any(axis=1))) + 1)
  keep = np.flatnonzero(~hit)
  if not keep.size:
    raise TrialError(f'{where}: every one of the {len(hit)} steps has NaN/Inf samples')
  return keep


def rate_from_time(time_s: np.ndarray, where: str = '') -> float:
  """Sampling rate implied by a time column (median step), in Hz."""
  t = np.asarray(time_s, dtype=np.float64)
  if t.ndim != 1 or t.size < 3:
    raise TrialError(f'{where}: need a 1-D time column of 3+ samples, got shape {t.shape}')
  dt = np.median(np.diff(t))
  if not dt > 0:
    raise TrialError(f'{where}: time column is not increasing (median step {dt})')
  return float(1.0 / dt)


def check_sample_rate(time_s: np.ndarray, expected_hz: float, where: str,
                      rel_tol: float = 0.02) -> float:
  """The rate implied by ``time_s``; a ValueError if it is not ``expected_hz`` within rel_tol."""
  fs = rate_from_time(time_s, where)
  if abs(fs - expected_hz) > rel_tol * expected_hz:
    raise TrialError(f'{where}: time column implies {fs:.3f} Hz, expected {expected_hz:g} Hz '
                     f'(tolerance {rel_tol:.0%})')
  return fs


def still_segment(acc: np.ndarray, sample_rate_hz: float, duration_s: float = 1.0,
                  gyr: np.ndarray | None = None) -> tuple[int, int, float]:
  """The stillest ``duration_s`` stretch: (start, end, std of |acc| there in input units).

  Stillness is the standard deviation of the acceleration magnitude (plus that of the gyro
  magnitude when given), found with a sliding window, vectorised.
  """
  acc = np.asarray(acc, dtype=np.float64)
  n = acc.shape[0]
  w = max(2, min(n, int(round(duration_s * sample_rate_hz))))
  mag = np.linalg.norm(acc, axis=-1)
  score = np.lib.stride_tricks.sliding_window_view(mag, w).std(axis=-1)
  acc_std = score.copy()
  if gyr is not None:
    gmag = np.linalg.norm(np.asarray(gyr, dtype=np.float64), axis=-1)
    score = score + np.lib.stride_tricks.sliding_window_view(gmag, w).std(axis=-1)
  i = int(np.argmin(score))
  return i, i + w, float(acc_std[i])


def check_imu_units(acc_si: np.ndarray, gyr_si: np.ndarray | None, sample_rate_hz: float,
                    where: str, acc_unit: str = 'm/s^2', gyr_unit: str = 'rad/s',
                    g_tol: float = 0.2, still_s: float = 1.0) -> dict[str, float]:
  """Checks converted IMU data [T, 3] against physics; a contradiction raises ValueError.

  * In the stillest ``still_s`` segment (if its |acc| varies by under 5 % of its mean) the
    acceleration magnitude must be within ``g_tol`` (relative) of 9.81 m/s^2. Values near 1
    mean the data are in g but were declared m/s^2, and near 96 the reverse: the error says so.
  * Gyro: the 99.9th percentile of |gyr| above 40 rad/s (2300 deg/s, beyond common sensor ranges)
    means deg/s declared as rad/s; clear movement in the accelerometer with |gyr| never above
    0.35 rad/s (20 deg/s) means rad/s declared as deg/s.
  Returns the measured figures (for metadata and logs).
  """
  acc = np.asarray(acc_si, dtype=np.float64)
  s0, s1, s_std = still_segment(acc, sample_rate_hz, still_s, gyr_si)
  still_mag = float(np.median(np.linalg.norm(acc[s0:s1], axis=-1)))
  out = {'still_start': float(s0), 'still_acc_norm': still_mag, 'still_acc_std': s_std}
  if s_std > 0.05 * still_mag:
    log.warning('%s: no still segment (best |acc| std %.2f, %.0f %% of its mean); accelerometer '
                'unit check skipped', where, s_std, 100 * s_std / max(still_mag, 1e-9))
  else:
    ratio = still_mag / G
    if abs(ratio - 1.0) > g_tol:
      hint = ''
      for name, f in ACC_UNITS.items():
        if abs(still_mag / unit_factor(acc_unit, 'acc') * f / G - 1.0) < g_tol:
          hint = f'; the data look like {name}'
      raise TrialError(
          f'{where}: accelerometer declared in {acc_unit!r} reads |acc| = {still_mag:.3f} m/s^2 '
          f'while still (samples {s0}-{s1}), expected about {G} m/s^2{hint}')
  if gyr_si is not None:
    gmag = np.linalg.norm(np.asarray(gyr_si, dtype=np.float64), axis=-1)
    g999 = float(np.percentile(gmag, 99.9))
    acc_range = float(np.percentile(np.abs(np.linalg.norm(acc, axis=-1) - G), 99))
    out.update({'gyr_p999': g999, 'acc_dev_p99': acc_range})
    if g999 > 40.0:
      raise TrialError(f'{where}: gyro declared in {gyr_unit!r} reaches {g999:.1f} rad/s '
                       f'(99.9th percentile), beyond any body-worn sensor range; the data look '
                       f'like deg/s')
    if acc_range > 3.0 and g999 < 0.35:
      raise TrialError(f'{where}: gyro declared in {gyr_unit!r} never exceeds {g999:.3f} rad/s '
                       f'while the accelerometer shows movement (|acc|-g up to {acc_range:.1f} '
                       f'm/s^2); the data look like rad/s')
  return out


# ----------------------------------------------------------------------------------------------
# Filtering and resampling

def lowpass(x: np.ndarray, sample_rate_hz: float, cutoff_hz: float, order: int = 4,
            axis: int = 0) -> np.ndarray:
  """Zero-phase Butterworth low-pass (scipy sosfiltfilt); order is that of one pass."""
  import scipy.signal

  sos = scipy.signal.butter(order, cutoff_hz, btype='low', fs=sample_rate_hz, output='sos')
  return scipy.signal.sosfiltfilt(sos, np.asarray(x, dtype=np.float64), axis=axis)


def resampled_length(n: int, from_hz: float, to_hz: float) -> int:
  return int(round(n * float(to_hz) / float(from_hz)))


def resample(x: np.ndarray, from_hz: float, to_hz: float, method: str = 'auto',
             axis: int = 0) -> np.ndarray:
  """x resampled from ``from_hz`` to ``to_hz`` along ``axis``.

  Methods:
    'auto' (the default): 'polyphase' where the rate goes down (anti-aliased), 'linear' where
      it goes up.
    'linear': linear interpolation over a normalised time axis, as the reference code did for
      MoVi (``interp1d``); output length round(n * to / from). No anti-alias filter.
    'polyphase': scipy.signal.resample_poly with the rate ratio up/down as a fraction: upsample
      by `up`, low-pass with scipy's default Kaiser-window FIR (beta 5, cut-off at the lower of
      the two Nyquist rates), keep every `down`-th sample; edges padded by a fitted line.
    'decimate': every k-th sample for an integer ratio (the Camargo reference for 1000 -> 200 Hz).
  """
  import scipy.interpolate
  import scipy.signal

  x = np.asarray(x, dtype=np.float64)
  if from_hz <= 0 or to_hz <= 0:
    raise ValueError(f'sample rates must be positive, got {from_hz} -> {to_hz}')
  if float(from_hz) == float(to_hz):
    return x.copy()
  n = x.shape[axis]
  if method == 'auto':
    method = 'polyphase' if float(to_hz) < float(from_hz) else 'linear'
  if method == 'linear':
    n_out = resampled_length(n, from_hz, to_hz)
    if n < 2 or n_out < 1:
      raise ValueError(f'cannot resample {n} samples from {from_hz} to {to_hz} Hz')
    f = scipy.interpolate.interp1d(np.linspace(0.0, 1.0, n), x, axis=axis, assume_sorted=True)
    return f(np.linspace(0.0, 1.0, n_out))
  if method == 'polyphase':
    frac = fractions.Fraction(float(to_hz) / float(from_hz)).limit_denominator(1000)
    return scipy.signal.resample_poly(x, frac.numerator, frac.denominator, axis=axis,
                                      padtype='line')
  if method == 'decimate':
    ratio = float(from_hz) / float(to_hz)
    k = int(round(ratio))
    if abs(ratio - k) > 1e-9 or k < 1:
      raise ValueError(f"'decimate' needs an integer rate ratio, got {from_hz}/{to_hz}")
    return np.take(x, np.arange(0, n, k), axis=axis)
  raise ValueError(f"unknown resampling method {method!r}; expected 'auto', 'linear', "
                   "'polyphase' or 'decimate'")


def rescale_index(idx: np.ndarray | int, from_hz: float, to_hz: float) -> np.ndarray:
  """Sample indices at ``from_hz`` mapped to the nearest sample at ``to_hz``."""
  return np.rint(np.asarray(idx, dtype=np.float64) * float(to_hz) / float(from_hz)).astype(np.int64)


def fill_counter_gaps(counter: np.ndarray, x: np.ndarray, max_gap: int = 10,
                      period: int = 65536, where: str = '',
                      lines: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray]:
  """Puts rows on the sample grid of a packet counter and interpolates dropped packets.

  Args:
    counter: packet counter per row (Xsens ``PacketCounter``; wraps at ``period``).
    x: [n_rows, C] values.
    max_gap: gaps of more than this many missing samples are flagged in the mask (never
      spliced: the caller leaves out every window that touches them), with one warning.
    lines: the file's line number of each row, for the messages (default: data rows from 1).
  Returns:
    (grid, y, ok): grid = counter values first..last, y = [len(grid), C] values linearly
    interpolated on the grid, ok = bool per grid sample, False inside gaps longer than max_gap.

  A packet written twice (a repeated counter whose rows hold identical values) is unambiguous:
  the copy is dropped with a warning. Any other repeat or step back is a ``TrialError``. A jump
  back of more than half the period is the counter wrapping around (unwrapped, not an error).
  """
  c = np.asarray(counter, dtype=np.float64)
  ln = np.arange(1, len(c) + 1) if lines is None else np.asarray(lines, dtype=np.int64)
  unit = 'data row' if lines is None else 'line'
  rows = np.arange(1, len(c) + 1)
  c = np.unwrap(c, period=period) if period else c
  c = np.rint(c).astype(np.int64)
  x = np.asarray(x, dtype=np.float64)
  rep = np.flatnonzero(np.diff(c) == 0)
  copies = [i for i in rep if np.array_equal(x[i], x[i + 1])]
  if copies:
    for i in copies:
      at = f' at file lines {ln[i]} and {ln[i + 1]}' if lines is not None else ''
      log.warning('%s: packet %d written twice (data rows %d and %d, identical values)%s: the '
                  'copy is dropped', where, c[i], i + 1, i + 2, at)
    keep = np.ones(len(c), bool)
    keep[np.asarray(copies) + 1] = False
    c, x, ln, rows = c[keep], x[keep], ln[keep], rows[keep]
  if np.any(np.diff(c) <= 0):
    i = int(np.argmax(np.diff(c) <= 0))
    what = 'repeated with other values' if c[i + 1] == c[i] else 'goes back'
    at = f'file line {ln[i + 1]}: ' if lines is not None else ''
    raise TrialError(f'{where}: packet counter is not increasing at data row {rows[i + 1]} '
                     f'({at}counter {c[i]} -> {c[i + 1]}, {what}; which row is right is unknown; '
                     f'data rows count from 1 after the header)')
  import scipy.interpolate

  grid = np.arange(c[0], c[-1] + 1)
  x2 = x.reshape(x.shape[0], -1)
  y = scipy.interpolate.interp1d(c, x2, axis=0, assume_sorted=True)(grid).reshape(
      (len(grid),) + x.shape[1:])
  missing = np.diff(c) - 1  # missing samples after each row
  ok = np.ones(len(grid), dtype=bool)
  big = np.flatnonzero(missing > max_gap)
  if big.size:
    j = big[np.argmax(missing[big])]
    log.warning('%s: %d counter gap(s) of more than max_gap=%d packets (largest: %d missing '
                'after file %s %d, counter %d -> %d): not interpolated, windows touching them are '
                'left out', where, big.size, max_gap, missing[j], unit, ln[j], c[j], c[j + 1])
    # Mark grid samples strictly between the rows bracketing each long gap.
    marks = np.zeros(len(grid) + 1, dtype=np.int64)
    np.add.at(marks, c[big] - c[0] + 1, 1)
    np.add.at(marks, c[big + 1] - c[0], -1)
    ok = np.cumsum(marks[:-1]) == 0
  return grid, y, ok


# ----------------------------------------------------------------------------------------------
# Windowing

def window_starts(n: int, length: int, stride: int = 0) -> np.ndarray:
  """Start indices of the windows of ``length`` every ``stride`` (0 = length) inside n samples."""
  stride = int(stride) or int(length)
  if length <= 0 or stride <= 0:
    raise ValueError(f'window length and stride must be positive, got {length}, {stride}')
  if n < length:
    return np.zeros((0,), dtype=np.int64)
  return np.arange(0, n - length + 1, stride, dtype=np.int64)


def windows(x: np.ndarray, length: int, stride: int = 0) -> np.ndarray:
  """[n_win, length, ...] windows of x (time on axis 0), as a copy."""
  x = np.asarray(x)
  starts = window_starts(x.shape[0], length, stride)
  if starts.size == 0:
    return np.zeros((0, length) + x.shape[1:], dtype=x.dtype)
  view = np.lib.stride_tricks.sliding_window_view(x, length, axis=0)  # [n-L+1, ..., L]
  return np.moveaxis(view[starts], -1, 1).copy()


def take_windows(x: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
  """[n, length, ...] windows of x at the given start indices (all must fit)."""
  x = np.asarray(x)
  starts = np.asarray(starts, dtype=np.int64)
  if starts.size and (starts.min() < 0 or starts.max() + length > x.shape[0]):
    raise ValueError(f'window starts {starts.min()}..{starts.max()} with length {length} do not '
                     f'fit in {x.shape[0]} samples')
  return x[starts[:, None] + np.arange(length)[None, :]]


def dynamic_mask(acc_windows: np.ndarray, threshold_g: float = 0.2, unit: str = 'm/s^2',
                 time_axis: int = -2) -> np.ndarray:
  """True for windows that are not static, per the reference criterion (datasets.md 5.1).

  A window is kept when the mean over all accelerometer channels of their standard deviation
  over time is at least ``threshold_g`` (in g). ``acc_windows``: [n_win, ..., T, 3] with time on
  ``time_axis``; values in ``unit``.
  """
  a = np.asarray(acc_windows, dtype=np.float64) * (unit_factor(unit, 'acc') / G)
  std = a.std(axis=time_axis)
  return std.reshape(std.shape[0], -1).mean(axis=1) >= threshold_g


# ----------------------------------------------------------------------------------------------
# Splits and the generator / Beam fan-out

def parse_id_list(spec: Any) -> list[int]:
  """'81-88,90' or [81, 82] or 81 -> sorted unique ints."""
  if spec is None or spec == '':
    return []
  if isinstance(spec, (int, np.integer)):
    return [int(spec)]
  if isinstance(spec, str):
    out: list[int] = []
    for part in spec.replace(' ', '').split(','):
      if not part:
        continue
      if '-' in part:
        a, b = part.split('-', 1)
        out.extend(range(int(a), int(b) + 1))
      else:
        out.append(int(part))
    return sorted(set(out))
  return sorted({int(v) for v in spec})


def split_subjects(subjects: Sequence[int], validation: Any = None,
                   validation_fraction: float = 0.1) -> dict[str, list[int]]:
  """Disjoint train/validation subject lists for unlabelled corpora.

  ``validation`` (ids, or '81-88' style) wins; otherwise the last ceil(fraction * n) subjects in
  id order (at least one when there are two or more subjects) go to validation.
  """
  subs = sorted({int(s) for s in subjects})
  val = [s for s in parse_id_list(validation) if s in subs]
  if not val and len(subs) >= 2 and validation_fraction > 0:
    k = max(1, int(np.ceil(validation_fraction * len(subs))))
    val = subs[-k:]
  train = [s for s in subs if s not in val]
  return {'train': train, 'validation': val}


def fan_out(items: Sequence[Any], fn: Callable[[Any], Iterable[tuple[str, dict]]],
            use_beam: bool = False, where: str = '', skipped: list[str] | None = None,
            strict: bool = False):
  """Examples from ``fn(item)`` for every item: a generator, or a Beam PTransform.

  The default path is a plain generator. With ``use_beam`` (builder option ``beam=1``) it
  returns ``beam.Create(items) | beam.FlatMap(fn)``, which TFDS runs on the runner given by
  ``tfds build --beam_pipeline_options=...``; apache-beam is then imported lazily.
  An item whose data fail a check (``TrialError``) is left out whole, with one warning line, and
  its reason appended to ``skipped`` (generator path; Beam workers log it); ``strict`` (builder
  option ``strict=True``) makes it an error instead. A split that yields nothing raises a
  ValueError naming ``where`` and the first reasons.
  """
  if use_beam:
    try:
      import apache_beam as beam  # noqa: PLC0415 (optional extra)
    except ImportError as e:
      raise ImportError("option beam=1 needs apache-beam: pip install -e '.[beam]'") from e
    return beam.Create(list(items)) | beam.FlatMap(_or_skip, fn, None, strict)
  return _counted(items, fn, where, skipped, strict)


def _or_skip(item, fn, skipped, strict=False):
  """fn(item) as a list, or [] (with a warning) when its data fail a check."""
  try:
    return list(fn(item))
  except TrialError as e:
    if strict:
      raise ValueError(f'{e} (option strict=True: a bad trial stops the build)') from None
    log.warning('skipped: %s', e)
    if skipped is not None:
      skipped.append(str(e))
    return []


def _counted(items, fn, where, skipped, strict=False):
  n = 0
  reasons = [] if skipped is None else skipped
  for item in items:
    for kv in _or_skip(item, fn, reasons, strict):
      n += 1
      yield kv
  if n == 0:
    why = f' Skipped: {"; ".join(reasons[:3])}' if reasons else ''
    raise ValueError(f'{where}: no examples from {len(items)} source item(s); check the data, '
                     f'the window length against the recording length, and the static-window '
                     f'threshold.{why}')


# ----------------------------------------------------------------------------------------------
# Builder plumbing: manual_dir checks and option parsing

def manual_dir(dl_manager: Any, layout: str) -> pathlib.Path:
  """The TFDS manual_dir as a local Path; a FileNotFoundError showing the layout if absent/empty.

  (TFDS itself raises an AssertionError there, its text holding the builder's instructions,
  layout included; this says it once, as the documented error type.)
  """
  try:
    path = dl_manager.manual_dir
  except AssertionError as e:
    m = re.match(r'Manual directory (.*?) does not exist or is empty', str(e))
    where = m.group(1) if m else '(not given)'
    raise FileNotFoundError(f'manual_dir {where} does not exist or is empty. Expected layout:\n'
                            f'{layout}') from None
  return require_dir(path, layout)


def require_dir(path: Any, layout: str) -> pathlib.Path:
  """``path`` as a local Path if it is a directory; else a FileNotFoundError showing the layout.

  (Local or mounted file systems only: a distributed Beam runner needs manual_dir on a shared
  mount.)
  """
  p = pathlib.Path(os.fspath(path)) if path is not None else None
  if p is None or not p.is_dir():
    raise FileNotFoundError(f'manual_dir {path} does not exist or is not a directory. Expected '
                            f'layout:\n{layout}')
  return p


def as_bool(v: Any) -> bool:
  """Option value -> bool ('1', 'true', 'yes', True -> True; '0', 'false', '', None -> False)."""
  if isinstance(v, str):
    s = v.strip().lower()
    if s in ('1', 'true', 'yes', 'on'):
      return True
    if s in ('0', 'false', 'no', 'off', '', 'none'):
      return False
    raise ValueError(f'option value {v!r} is not a boolean (use true/false)')
  return bool(v)


def as_list(v: Any) -> list[str]:
  """Option value -> list of str ('a+b', 'a,b', ['a', 'b'])."""
  if v is None or v == '':
    return []
  if isinstance(v, str):
    return [s for s in v.replace('+', ',').split(',') if s]
  return [str(s) for s in v]
