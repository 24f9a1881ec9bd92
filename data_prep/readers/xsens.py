"""Xsens MT Manager text exports (tab-separated), both header variants.

Variant 1 (MT Manager 4.x "//" header, e.g. ../shared/data/real_imu/)::

  // Start Time: 0
  // Sample rate: 120.0Hz
  // Scenario: 5.9
  // Firmware Version: 2.5.1
  Counter  Acc_X  Acc_Y  Acc_Z  Gyr_X  Gyr_Y  Gyr_Z  Mag_X ...

Variant 2 (one plain line, e.g. the IPOL gait set)::

  Acquisition frequency: 100 Hz
  PacketCounter  Acc_X  Acc_Y  Acc_Z  Gyr_X  Gyr_Y  Gyr_Z  Mag_X ...

Other ``key: value`` header lines (with or without ``//``) are kept in ``header``; the sample rate
is read from ``Sample rate``, ``Update Rate`` or ``Acquisition frequency``. Xsens writes
acceleration in m/s^2 (``Acc_*``, specific force, gravity included) and angular rate in rad/s
(``Gyr_*``); both are returned as written (no unit guessing).
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from data_prep import preprocess
from data_prep.readers import tables

_RATE_KEYS = ('sample rate', 'update rate', 'acquisition frequency', 'sampling frequency')
_COUNTER_COLS = ('PacketCounter', 'Counter', 'SampleCounter')
ACC_COLS = ('Acc_X', 'Acc_Y', 'Acc_Z')
GYR_COLS = ('Gyr_X', 'Gyr_Y', 'Gyr_Z')


@dataclasses.dataclass
class XsensExport:
  """One parsed export. ``table`` holds every numeric column under its Xsens name; ``lines``
  the file's line number (from 1) of each of its rows, for messages."""

  path: str
  sample_rate_hz: float
  header: dict[str, str]
  table: pd.DataFrame
  variant: str
  lines: np.ndarray | None = None

  @property
  def counter(self) -> np.ndarray | None:
    for c in _COUNTER_COLS:
      if c in self.table:
        return self.table[c].to_numpy(dtype=np.float64)
    return None

  def columns(self, names: tuple[str, ...] | list[str]) -> np.ndarray:
    """[T, len(names)] float64; a KeyError naming the file and the missing columns."""
    missing = [c for c in names if c not in self.table.columns]
    if missing:
      raise KeyError(f'{self.path}: missing column(s) {missing}; found {list(self.table.columns)}')
    x = self.table[list(names)].to_numpy(dtype=np.float64)
    return preprocess.check_finite(x, f'columns {list(names)}', self.path, list(names),
                                   self.lines)

  def acc(self) -> np.ndarray:
    """[T, 3] specific force, m/s^2 (sensor frame)."""
    return self.columns(ACC_COLS)

  def gyr(self) -> np.ndarray:
    """[T, 3] angular rate, rad/s (sensor frame)."""
    return self.columns(GYR_COLS)


def _parse_rate(text: str) -> float | None:
  m = re.search(r'([-+]?\d+(?:\.\d*)?)', text)
  return float(m.group(1)) if m else None


def read_xsens_txt(path: str | os.PathLike, sample_rate_hz: float | None = None,
                   rel_tol: float = 0.01) -> XsensExport:
  """Reads an MT Manager text export.

  Args:
    path: the .txt file.
    sample_rate_hz: the expected rate. Required when the header states none; when both exist
      they must agree within ``rel_tol`` (a ValueError otherwise).
  """
  path = os.fspath(path)
  if not Path(path).is_file():
    raise FileNotFoundError(f'{path}: Xsens text export not found (expected a tab-separated MT '
                            f'Manager export with a header row containing Acc_X ... Gyr_Z)')
  with open(path, encoding='utf-8', errors='replace') as f:
    lines = f.read().splitlines()
  header: dict[str, str] = {}
  header_row = None
  for i, line in enumerate(lines[:50]):
    s = line.strip()
    if not s:
      continue
    if s.startswith('//'):
      s = s[2:].strip()
      if ':' in s:
        k, v = s.split(':', 1)
        header[k.strip()] = v.strip()
      continue
    if 'Acc_X' in s or any(s.startswith(c) for c in _COUNTER_COLS):
      header_row = i
      break
    if ':' in s:
      k, v = s.split(':', 1)
      header[k.strip()] = v.strip()
      continue
    break
  if header_row is None:
    raise ValueError(f'{path}: no Xsens header row found (expected a line with PacketCounter/'
                     f'Counter and Acc_X, Acc_Y, ..., after optional "//" or "key: value" lines)')
  variant = 'comment' if lines[0].lstrip().startswith('//') else 'plain'
  row = lines[header_row]
  sep = '\t' if '\t' in row else (';' if ';' in row else ',')
  body = '\n'.join(lines[header_row:])
  table = pd.read_csv(io.StringIO(body), sep=sep)
  table = table.loc[:, [c for c in table.columns
                        if not (str(c).startswith('Unnamed') and table[c].isna().all())]]
  table.columns = [str(c).strip() for c in table.columns]
  if len(table) == 0:
    raise ValueError(f'{path}: the export has a header but no samples')
  data_lines = [i + 1 for i in range(header_row + 1, len(lines)) if lines[i].strip()]
  line_nos = np.asarray(data_lines if len(data_lines) == len(table) else
                        np.arange(len(table)) + header_row + 2, dtype=np.int64)
  table, line_nos = tables.drop_half_written_last_row(table, line_nos, lines[line_nos[-1] - 1], row,
                                               sep, path)
  rate = None
  for k, v in header.items():
    if k.lower() in _RATE_KEYS:
      rate = _parse_rate(v)
  if rate is None and sample_rate_hz is None:
    raise ValueError(f'{path}: no sample rate in the header ({list(header)}); pass '
                     f'sample_rate_hz')
  if rate is not None and sample_rate_hz is not None and (
      abs(rate - sample_rate_hz) > rel_tol * sample_rate_hz):
    raise ValueError(f'{path}: header says {rate:g} Hz, expected {sample_rate_hz:g} Hz')
  return XsensExport(path=path, sample_rate_hz=float(rate or sample_rate_hz), header=header,
                     table=table, variant=variant, lines=line_nos)



def write_xsens_txt(path: str | os.PathLike, acc: np.ndarray, gyr: np.ndarray,
                    sample_rate_hz: float, variant: str = 'plain',
                    counter: np.ndarray | None = None, mag: np.ndarray | None = None) -> None:
  """Writes an export in either header variant (fixtures, and turning arrays into Xsens files)."""
  acc = np.asarray(acc, dtype=np.float64)
  n = acc.shape[0]
  counter = np.arange(n) if counter is None else np.asarray(counter)
  mag = np.zeros((n, 3)) if mag is None else np.asarray(mag)
  cols = np.column_stack([counter, acc, np.asarray(gyr, dtype=np.float64), mag])
  if variant == 'plain':
    head = [f'Acquisition frequency: {sample_rate_hz:g} Hz',
            'PacketCounter\tAcc_X\tAcc_Y\tAcc_Z\tGyr_X\tGyr_Y\tGyr_Z\tMag_X\tMag_Y\tMag_Z']
    nl = '\n'
  elif variant == 'comment':
    head = ['// Start Time: 0', f'// Sample rate: {sample_rate_hz:.1f}Hz', '// Scenario: 5.9',
            '// Firmware Version: 2.5.1',
            'Counter\tAcc_X\tAcc_Y\tAcc_Z\tGyr_X\tGyr_Y\tGyr_Z\tMag_X\tMag_Y\tMag_Z\t']
    nl = '\r\n'
  else:
    raise ValueError(f"variant must be 'plain' or 'comment', got {variant!r}")
  buf = io.StringIO()
  np.savetxt(buf, cols, fmt=['%d'] + ['%.6f'] * 9, delimiter='\t',
             newline=('\t' if variant == 'comment' else '') + nl)
  with open(path, 'w', encoding='utf-8', newline='') as f:
    f.write(nl.join(head) + nl + buf.getvalue())
