"""x-io Technologies exports: x-IMU3 ``Inertial.csv`` and NGIMU ``sensors.csv`` + ``Settings.txt``.

Both loggers write one folder per device, holding one CSV per message type.

x-IMU3 (x-IMU3 GUI data logger; folders such as ``x-IMU3 673B204B (UDP)``)::

  Inertial.csv  Timestamp (us),Gyroscope X (deg/s),Gyroscope Y (deg/s),Gyroscope Z (deg/s),
                Accelerometer X (g),Accelerometer Y (g),Accelerometer Z (g)

The rate is not written beside the data: it comes from the timestamps (device clock, in
microseconds since power-on unless the devices were synchronised). Real logs drop the odd sample
(a 40 ms step at 50 Hz), which ``timestamps.on_grid`` interpolates over.

NGIMU (SD card or GUI session; folders such as ``NGIMU-Blue - 0029D0B4``)::

  sensors.csv   Time (s),Gyroscope X (deg/s),Gyroscope Y (deg/s),Gyroscope Z (deg/s),
                Accelerometer X (g),Accelerometer Y (g),Accelerometer Z (g),
                Magnetometer X (uT),Magnetometer Y (uT),Magnetometer Z (uT),Barometer (hPa)
  Settings.txt  one '<OSC address>, <value>' line per setting; the sensors message rate is
                the line '/rate/sensors, 50f' (Hz, 'f' marks a float)

The ``/rate/sensors`` key is taken from the Settings.txt of x-io's own example session
(github.com/xioTechnologies/NGIMU-MATLAB-Import-Logged-Data-Example), not from the NGIMU user
manual, which was not available here. NGIMU logs can repeat a row: a row repeated whole is
dropped with a warning (x-io's import script removes repeated rows too); a timestamp repeated
with other values skips the trial (``timestamps.on_grid``). Neither format has a packet counter:
the timestamps are checked instead (no going back, gaps over 10 intervals never spliced). A
half-written last line (the logger stopped mid-write) is dropped with a warning.

Units are read from each column header, ``Name (unit)``, and converted to SI with
``preprocess.unit_factor`` (g -> 9.81 m/s^2, the project's value; deg/s -> rad/s); a header that
lacks a column or whose unit is unknown is an error naming the file and line 1.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from data_prep import preprocess
from data_prep.readers import tables
from data_prep.readers.timestamps import Recording, time_factor

XIMU3_FILE = 'Inertial.csv'
NGIMU_FILE = 'sensors.csv'
NGIMU_SETTINGS = 'Settings.txt'
NGIMU_RATE_KEY = '/rate/sensors'
_AXES = ('X', 'Y', 'Z')
XIMU3_HEADER = ('Timestamp (us),' + ','.join(f'Gyroscope {a} (deg/s)' for a in _AXES) + ','
                + ','.join(f'Accelerometer {a} (g)' for a in _AXES))
NGIMU_HEADER = ('Time (s),' + ','.join(f'Gyroscope {a} (deg/s)' for a in _AXES) + ','
                + ','.join(f'Accelerometer {a} (g)' for a in _AXES) + ','
                + ','.join(f'Magnetometer {a} (uT)' for a in _AXES) + ',Barometer (hPa)')
_CELL = re.compile(r'^\s*(.*?)\s*\(([^()]*)\)\s*$')


def data_file(path: str | os.PathLike, file_name: str) -> str:
  """The device's data file: ``path`` itself, or ``file_name`` inside the folder ``path``."""
  p = Path(os.fspath(path))
  return tables.require_file(p / file_name if p.is_dir() else p,
                             f'the x-io export {file_name} of one device')


def _read(path: str, time_name: str, expected: str):
  """Times (s), acc (m/s^2) and gyr (rad/s) [T, 3] of an x-io CSV, units from its header, and
  the file line of each row (None where unknown). A half-written last line (the logger stopped
  mid-write) is dropped with a warning (``tables.drop_half_written_last_row``)."""
  with open(path, encoding='utf-8-sig', errors='replace') as f:
    text = f.read().splitlines()
  head = text[0].strip() if text else ''
  cells = head.split(',')
  cols: dict[str, tuple[int, str]] = {}
  for i, cell in enumerate(cells):
    m = _CELL.match(cell)
    if m:
      cols[m.group(1)] = (i, m.group(2))
  need = [time_name] + [f'{q} {a}' for q in ('Gyroscope', 'Accelerometer') for a in _AXES]
  missing = [n for n in need if n not in cols]
  if missing:
    raise ValueError(f'{path}: line 1: no column(s) {missing} (as "Name (unit)"); expected the '
                     f'header {expected!r}, found {head[:200]!r}')
  try:
    table = pd.read_csv(path, encoding='utf-8-sig')
  except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
    raise ValueError(f'{path}: not a regular CSV table ({e})') from e
  if len(table) == 0:
    raise ValueError(f'{path}: the header has no samples under it')
  lines = tables.line_numbers(text, 1, len(table))
  if lines is not None:
    table, lines = tables.drop_half_written_last_row(table, lines, text[lines[-1] - 1], head, ',',
                                                     path)

  def block(names: list[str], quantity: str) -> np.ndarray:
    x = table.iloc[:, [cols[n][0] for n in names]].to_numpy(dtype=np.float64)
    x = preprocess.check_finite(x, f'columns {names}', path,
                                [cells[cols[n][0]].strip() for n in names], lines)
    units = {cols[n][1] for n in names}
    if len(units) != 1:
      raise ValueError(f'{path}: line 1: columns {names} have different units {sorted(units)}')
    return preprocess.to_si(x, units.pop(), quantity, f'{path}: line 1: {names[0]}')

  t = table.iloc[:, cols[time_name][0]].to_numpy(dtype=np.float64)
  t = preprocess.check_finite(t, f'column {time_name!r}', path,
                              [cells[cols[time_name][0]].strip()], lines)
  t = t * time_factor(cols[time_name][1], f'{path}: line 1: column {time_name!r}')
  acc = block([f'Accelerometer {a}' for a in _AXES], 'acc')
  gyr = block([f'Gyroscope {a}' for a in _AXES], 'gyr')
  return t, acc, gyr, lines


def read_ximu3(path: str | os.PathLike) -> Recording:
  """One x-IMU3 device: its export folder or its ``Inertial.csv``. Rate from the timestamps."""
  f = data_file(path, XIMU3_FILE)
  t, acc, gyr, lines = _read(f, 'Timestamp', XIMU3_HEADER)
  return Recording(path=f, name=Path(f).parent.name, time_s=t, acc=acc, gyr=gyr, lines=lines)


def read_ngimu_settings(path: str | os.PathLike) -> dict[str, str]:
  """Settings.txt as {OSC address: value text}."""
  path = tables.require_file(path, f'the NGIMU settings file, with a line "{NGIMU_RATE_KEY}, '
                                   f'<Hz>" giving the sensors message rate')
  out = {}
  with open(path, encoding='utf-8-sig', errors='replace') as f:
    for line in f:
      if line.startswith('/') and ',' in line:
        key, value = line.split(',', 1)
        out[key.strip()] = value.strip()
  return out


def ngimu_rate(settings_path: str | os.PathLike) -> float:
  """The sensors message rate (Hz) of an NGIMU ``Settings.txt``."""
  settings = read_ngimu_settings(settings_path)
  text = settings.get(NGIMU_RATE_KEY)
  if text is None:
    raise ValueError(f'{settings_path}: no line "{NGIMU_RATE_KEY}, <Hz>" (the sensors message '
                     f'rate) among its {len(settings)} settings')
  try:
    rate = float(text.rstrip('fF'))
  except ValueError:
    raise ValueError(f'{settings_path}: {NGIMU_RATE_KEY} is {text!r}, expected a rate in Hz '
                     f'such as 50f') from None
  if not rate > 0:
    raise ValueError(f'{settings_path}: {NGIMU_RATE_KEY} is {text!r}: the sensors message was '
                     f'off, so sensors.csv cannot have been logged at a rate')
  return rate


def read_ngimu(path: str | os.PathLike) -> Recording:
  """One NGIMU device: its folder or its ``sensors.csv``; the rate from the Settings.txt beside."""
  f = data_file(path, NGIMU_FILE)
  settings = str(Path(f).parent / NGIMU_SETTINGS)
  rate = ngimu_rate(settings)
  t, acc, gyr, lines = _read(f, 'Time', NGIMU_HEADER)
  return Recording(path=f, name=Path(f).parent.name, time_s=t, acc=acc, gyr=gyr, rate_hz=rate,
                   rate_source=f'{settings} ({NGIMU_RATE_KEY})', lines=lines)

