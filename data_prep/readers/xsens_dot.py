"""Xsens DOT (Movella DOT) CSV exports of the DOT app: one file per sensor.

Layout (as the app writes it; e.g. ``Shank_D4CA6EF17860_20210830_170505.csv``)::

  sep=,
  DeviceTag:,Shank
  FirmwareVersion:,2.0.0
  AppVersion:,2021.0
  SyncStatus:,Synced            (newer firmware)
  OutputRate:,60Hz              (newer firmware)
  ...                           ('Key:,value' lines, a copyright line, a blank line)
  PacketCounter,SampleTimeFine,[Euler_X,...,]Acc_X,Acc_Y,Acc_Z,Gyr_X,Gyr_Y,Gyr_Z[,...]

``Acc_*`` is specific force in m/s^2 and ``Gyr_*`` angular rate in deg/s (Xsens DOT user
manual, as the issue states them); ``SampleTimeFine`` is the sensor clock in microseconds, an
unsigned 32-bit counter that wraps every 71.6 min (unwrapped here). The rate is the
``OutputRate`` line when the file has one, else the timestamps'. Exports made in a fusion mode
without the inertial data (only Euler / Quat / FreeAcc) lack Acc / Gyr and are refused, naming
the columns found. Leading rows with Acc and Gyr all exactly zero (seen in firmware 1.6 exports:
the first packet, before data) are dropped. The header lines were checked against real exports of
firmware 1.6 and 2.0 (a public repository converting DOT data for OpenSense), not the manual.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from data_prep import preprocess
from data_prep.readers import tables
from data_prep.readers.timestamps import Recording

ACC_COLS = ('Acc_X', 'Acc_Y', 'Acc_Z')
GYR_COLS = ('Gyr_X', 'Gyr_Y', 'Gyr_Z')
ACC_UNIT, GYR_UNIT = 'm/s^2', 'deg/s'
HEADER = 'PacketCounter,SampleTimeFine,...,Acc_X,Acc_Y,Acc_Z,Gyr_X,Gyr_Y,Gyr_Z'


def read_xsens_dot(path: str | os.PathLike, max_gap: int = 10) -> Recording:
  """One DOT sensor's CSV export: times (s), acc (m/s^2), gyr (rad/s), rate and device tag.

  The rows go on the grid of their ``PacketCounter`` through ``preprocess.fill_counter_gaps``
  (an identical repeat dropped with a warning, another repeat or a step back skips the trial,
  gaps up to ``max_gap`` packets interpolated, longer ones flagged in ``ok`` and never
  spliced, the 16-bit wrap unwrapped); a half-written last line is dropped with a warning."""
  path = tables.require_file(path, f'an Xsens DOT CSV export (header lines, then {HEADER})')
  with open(path, encoding='utf-8-sig', errors='replace') as f:
    lines = f.read().splitlines()
  header: dict[str, str] = {}
  row = None
  for i, line in enumerate(lines[:60]):
    if line.startswith('PacketCounter'):
      row = i
      break
    if ':' in line and ',' in line:
      key, value = line.split(',', 1)
      header[key.strip().rstrip(':').strip()] = value.strip()
  if row is None:
    raise ValueError(f'{path}: no column header line starting with PacketCounter in the first '
                     f'60 lines; expected an Xsens DOT export ("DeviceTag:,..." lines, then '
                     f'{HEADER})')
  table = pd.read_csv(io.StringIO('\n'.join(lines[row:])), sep=',')
  table.columns = [str(c).strip() for c in table.columns]
  missing = [c for c in ('SampleTimeFine',) + ACC_COLS + GYR_COLS if c not in table.columns]
  if missing:
    raise ValueError(f'{path}: line {row + 1}: no column(s) {missing}; found '
                     f'{list(table.columns)}; export the inertial data (Acc, Gyr) with '
                     f'SampleTimeFine: {HEADER}')
  if len(table) == 0:
    raise ValueError(f'{path}: the column header has no samples under it')
  at = tables.line_numbers(lines, row + 1, len(table))
  if at is not None:
    table, at = tables.drop_half_written_last_row(table, at, lines[at[-1] - 1], lines[row], ',',
                                                  path)

  def column(names):
    x = table[list(names)].to_numpy(np.float64)
    return preprocess.check_finite(x, f'columns {list(names)}', path, list(names), at)
  acc, gyr = column(ACC_COLS), column(GYR_COLS)
  stf = column(('SampleTimeFine',))[:, 0]
  t = np.unwrap(stf, period=2.0**32) * 1e-6
  ok = None
  if 'PacketCounter' in table:
    counter = column(('PacketCounter',))[:, 0]
    _, y, ok = preprocess.fill_counter_gaps(counter, np.c_[t, acc, gyr], max_gap=max_gap,
                                            where=path, lines=at)
    t, acc, gyr = y[:, 0], y[:, 1:4], y[:, 4:7]
    at = None  # rows are now packets (a dropped packet has no line)
  first = int(np.argmax(np.any(np.c_[acc, gyr] != 0.0, axis=1)))
  rate = None
  if 'OutputRate' in header:
    m = re.match(r'\s*([0-9.]+)', header['OutputRate'])
    if not m:
      raise ValueError(f'{path}: OutputRate is {header["OutputRate"]!r}, expected e.g. 60Hz')
    rate = float(m.group(1))
  return Recording(path=path, name=header.get('DeviceTag') or Path(path).stem,
                   time_s=t[first:], acc=preprocess.to_si(acc[first:], ACC_UNIT, 'acc'),
                   gyr=preprocess.to_si(gyr[first:], GYR_UNIT, 'gyr'), rate_hz=rate,
                   rate_source=f'{path} (OutputRate)',
                   ok=ok[first:] if ok is not None else None)
