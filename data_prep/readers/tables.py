"""MATLAB tables (Camargo-style .mat files, read with mat-io), CSV tables and step-wise HDF5."""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from data_prep import preprocess

log = logging.getLogger(__name__)


def require_file(path: str | os.PathLike, what: str) -> str:
  """path as str; a FileNotFoundError naming the path and what was expected there."""
  path = os.fspath(path)
  if not Path(path).is_file():
    raise FileNotFoundError(f'{path}: not found (expected {what})')
  return path


def load_mat_table(path: str | os.PathLike, variable: str | None = None) -> pd.DataFrame:
  """The MATLAB ``table`` stored in a .mat file, as a DataFrame (via ``matio.load_from_mat``).

  ``variable`` names the MATLAB variable; by default the only table in the file, else ``data``.
  """
  import matio  # noqa: PLC0415

  path = require_file(path, 'a .mat file holding a MATLAB table')
  try:
    contents = matio.load_from_mat(path)
  except Exception as e:  # mat-io raises several types on corrupt input
    raise ValueError(f'{path}: not a readable .mat file ({type(e).__name__}: {e})') from e
  contents = {k: v for k, v in contents.items() if not k.startswith('__')}
  tables = {k: v for k, v in contents.items() if isinstance(v, pd.DataFrame)}
  if variable is not None:
    if variable not in contents:
      raise KeyError(f'{path}: no variable {variable!r}; found {sorted(contents)}')
    v = contents[variable]
    if not isinstance(v, pd.DataFrame):
      raise ValueError(f'{path}: variable {variable!r} is a {type(v).__name__}, expected a '
                       f'MATLAB table')
    return v
  if len(tables) == 1:
    return next(iter(tables.values()))
  if 'data' in tables:
    return tables['data']
  raise ValueError(f'{path}: expected one MATLAB table, found tables {sorted(tables)} among '
                   f'variables {sorted(contents)}')


def require_columns(df: pd.DataFrame, columns: Sequence[str], where: str) -> np.ndarray:
  """[T, len(columns)] float64 from a DataFrame; KeyError naming missing columns, NaN checked
  (the error names the file's line from ``df.attrs['lines']`` where the reader recorded it,
  else the row counted from 1)."""
  missing = [c for c in columns if c not in df.columns]
  if missing:
    raise KeyError(f'{where}: missing column(s) {missing}; found {list(df.columns)[:40]}')
  x = df[list(columns)].to_numpy(dtype=np.float64)
  return preprocess.check_finite(x, f'columns {list(columns)}', where, list(columns),
                                 df.attrs.get('lines'), df.attrs.get('row_name', 'row'))


def line_numbers(lines: Sequence[str], first: int, n_rows: int) -> np.ndarray | None:
  """The file line number (from 1) of each of ``n_rows`` table rows read from the non-blank
  lines from index ``first`` of ``lines`` on (blank lines are skipped by the parsers); None
  where the counts differ (a row spanning lines: then rows are counted instead)."""
  nums = [i + 1 for i in range(first, len(lines)) if lines[i].strip()]
  return np.asarray(nums, np.int64) if len(nums) == n_rows else None


def find_column(df: pd.DataFrame, name: str) -> str | None:
  """The column whose name equals ``name`` ignoring case, or None."""
  low = {str(c).lower(): c for c in df.columns}
  return low.get(name.lower())


def read_csv_table(path: str | os.PathLike) -> pd.DataFrame:
  """A CSV / TSV file with a header row (delimiter sniffed)."""
  path = require_file(path, 'a CSV/TSV table with a header row')
  try:
    df = pd.read_csv(path, sep=None, engine='python')
  except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error) as e:
    raise ValueError(f'{path}: not a regular table ({e}; line numbers count the header row as '
                     f'line 1)') from e
  df.columns = [str(c).strip() for c in df.columns]
  if len(df) == 0:
    raise ValueError(f'{path}: the table has no rows')
  with open(path, encoding='utf-8', errors='replace') as f:
    text = [(i + 1, ln) for i, ln in enumerate(f.read().splitlines()) if ln.strip()]
  if len(text) == len(df) + 1:  # one header line, one line per row: line numbers are known
    head = text[0][1]
    sep = '\t' if '\t' in head else (';' if ';' in head else ',')
    df, lines = drop_half_written_last_row(df, np.asarray([n for n, _ in text[1:]]),
                                           text[-1][1], head, sep, path)
    df.attrs['lines'] = lines
  else:
    df.attrs['row_name'] = 'data row'  # (counting from 1 after the header)
  return df


def open_h5(path: str):
  """h5py.File(path, 'r'), or a ValueError naming the file when it is not readable HDF5
  (truncated, another format)."""
  import h5py  # noqa: PLC0415

  try:
    return h5py.File(path, 'r')
  except OSError as e:
    raise ValueError(f'{path}: not a readable HDF5 file ({e})') from e


def read_h5_table(path: str | os.PathLike, key: str | None = None) -> pd.DataFrame:
  """A 2-D HDF5 dataset [T, C] with a ``columns`` attribute (JSON list or array of names).

  Also accepts a group holding one 1-D dataset per column.
  """
  import h5py  # noqa: PLC0415

  path = require_file(path, 'an HDF5 file')
  with open_h5(path) as f:
    if key is None:
      keys = list(f.keys())
      if len(keys) != 1:
        raise ValueError(f'{path}: give the dataset key; the file holds {keys}')
      key = keys[0]
    if key not in f:
      raise KeyError(f'{path}: no dataset {key!r}; found {list(f.keys())}')
    obj = f[key]
    if isinstance(obj, h5py.Group):
      df = pd.DataFrame({k: np.asarray(obj[k]) for k in obj.keys()})
      df.attrs['row_name'] = 'row'
      return df
    cols = h5_columns(obj.attrs.get('columns', f.attrs.get('columns')), f'{path}:{key}')
    x = np.asarray(obj)
  if x.ndim != 2 or x.shape[1] != len(cols):
    raise ValueError(f'{path}:{key}: shape {x.shape} does not match {len(cols)} column names')
  df = pd.DataFrame(x, columns=cols)
  df.attrs['row_name'] = 'row'
  return df


def h5_columns(attr, where: str) -> list[str]:
  """Column names from an HDF5 ``columns`` attribute (JSON string or array of strings)."""
  if attr is None:
    raise KeyError(f'{where}: no "columns" attribute (expected a JSON list of field names)')
  if isinstance(attr, bytes):
    attr = attr.decode()
  if isinstance(attr, str):
    try:
      cols = json.loads(attr)
    except json.JSONDecodeError as e:
      raise ValueError(f'{where}: "columns" attribute is not JSON: {e}') from e
  else:
    cols = [c.decode() if isinstance(c, bytes) else str(c) for c in np.ravel(attr)]
  if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
    raise ValueError(f'{where}: "columns" attribute must be a list of strings')
  return cols


def read_h5_steps(path: str | os.PathLike, key: str) -> tuple[np.ndarray, list[str]]:
  """A step-wise dataset [n_steps, T, F] and its column names (file attribute ``columns``)."""

  path = require_file(path, 'a step-wise HDF5 file')
  with open_h5(path) as f:
    if key not in f:
      raise KeyError(f'{path}: no dataset {key!r}; found {sorted(f.keys())}')
    cols = h5_columns(f[key].attrs.get('columns', f.attrs.get('columns')), f'{path}')
    x = np.asarray(f[key], dtype=np.float64)
  if x.ndim != 3 or x.shape[2] != len(cols):
    raise ValueError(f'{path}:{key}: expected [n_steps, T, {len(cols)}] (one slice per column '
                     f'name), got shape {x.shape}')
  return x, cols


def drop_half_written_last_row(table: pd.DataFrame, line_nos: np.ndarray, last_line: str,
                               header_line: str, sep: str, path: str):
  """(table, line_nos) without a last row that was cut short (fewer fields than the header, or
  empty where every earlier row has a value): a recording stopped mid-write loses that row only,
  with a warning naming the file and line, instead of the whole trial failing its NaN check."""
  def fields(s):
    return len(s.rstrip().rstrip(sep).split(sep))
  if len(table) < 2:
    return table, line_nos
  last = table.iloc[-1]
  empty = [c for c in table.columns
           if pd.isna(last[c]) and table[c].iloc[:-1].notna().all()]
  short = fields(last_line) < fields(header_line)
  if not (short or empty):
    return table, line_nos
  log.warning('%s: line %d is half-written (%d of %d fields%s), probably a recording stopped '
              'mid-write: that row is dropped, the %d before it are kept', path, line_nos[-1],
              fields(last_line), fields(header_line),
              f'; no value for {empty}' if empty else '', len(table) - 1)
  return table.iloc[:-1], line_nos[:-1]
