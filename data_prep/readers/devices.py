"""Native device exports for ``lab_files``: which device is which site, at what rate, on one grid.

Formats (the schema's ``format:``): ``ximu3`` and ``ngimu`` (x-io export folders, ``xio``),
``apdm`` (Opal HDF5, ``apdm``), ``xsens_dot`` (DOT app CSV, ``xsens_dot``). Each reader takes
units and, where the device writes it, the rate from the device's own files, so the schema names
no columns. A trial (one match of a subject's ``files`` glob) is either one device (an x-io
device folder or its CSV, a DOT CSV) or holds several: an x-io session folder with one device
folder per sensor, a folder of DOT CSVs, an APDM file with several sensors. Sites find their
device by name, ignoring case and anything but letters and digits: an APDM sensor by its label
(``left_foot`` = 'Left Foot'), an x-io device folder or DOT file by the start of its name (the
loggers begin it with the device name / tag: 'Shank 673B204B (USB)', 'Shank_D4CA6EF17860_...').
A trial with one site and one device needs no name match. The sensors of one trial must share a
clock (APDM synchronises them; x-io and DOT sensors only after their time synchronisation); their
common time span is kept.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from data_prep import preprocess
from data_prep.readers import apdm, timestamps, xio, xsens_dot
from data_prep.readers.timestamps import Recording

FORMATS = ('ximu3', 'ngimu', 'apdm', 'xsens_dot')
FOLDER_FORMATS = ('ximu3', 'ngimu', 'xsens_dot')  # a trial may be a folder of devices
_READERS: dict[str, Callable[[str], Recording]] = {
    'ximu3': xio.read_ximu3, 'ngimu': xio.read_ngimu, 'xsens_dot': xsens_dot.read_xsens_dot}
_DATA_FILE = {'ximu3': xio.XIMU3_FILE, 'ngimu': xio.NGIMU_FILE}


def _key(name: str) -> str:
  return re.sub(r'[^a-z0-9]', '', str(name).lower())


def devices_in(fmt: str, path: str | os.PathLike) -> dict[str, str]:
  """{device name: its file} for one trial of a file/folder format (not apdm)."""
  p = Path(os.fspath(path))
  if fmt == 'xsens_dot':
    if p.is_file():
      return {p.stem: str(p)}
    found = {f.stem: str(f) for f in sorted(p.glob('*.csv')) if f.is_file()}
    what = 'no *.csv file (Xsens DOT exports)'
  else:
    name = _DATA_FILE[fmt]
    if p.is_file():
      return {p.parent.name: str(p)}
    if (p / name).is_file():
      return {p.name: str(p / name)}
    found = {d.name: str(d / name) for d in sorted(p.iterdir()) if (d / name).is_file()}
    what = f'no {name} in it or in its subfolders (one folder per device)'
  if not found:
    raise FileNotFoundError(f'{p}: {what}')
  return found


def match(sites: Sequence[str], names: Sequence[str], where: str, prefix: bool) -> dict[str, str]:
  """{site: device name}: equal names first, else (``prefix``) the device name starting with it."""
  if len(sites) == 1 and len(names) == 1:
    return {sites[0]: names[0]}
  out = {}
  for site in sites:
    hits = [n for n in names if _key(n) == _key(site)]
    if not hits and prefix:
      hits = [n for n in names if _key(n).startswith(_key(site))]
    if len(hits) != 1:
      how = 'starts with' if prefix else 'equals'
      raise KeyError(f'{where}: site {site!r} matches {len(hits)} device(s) {hits or ""}; found '
                     f'{list(names)} (a site takes the device whose name {how} the site name, '
                     f'ignoring case and punctuation)')
    out[site] = hits[0]
  return out


def read_sites(fmt: str, path: str | os.PathLike, sites: Sequence[str],
               max_gap: int = 10) -> dict[str, Recording]:
  """The recording of every site in one trial, matched by device name (``max_gap``: the
  packet-counter limit of formats with a counter, Xsens DOT)."""
  path = os.fspath(path)
  if fmt == 'apdm':
    recs = apdm.read_apdm(path)
    return {s: recs[n] for s, n in match(sites, list(recs), path, prefix=False).items()}
  if fmt not in _READERS:
    raise ValueError(f'{path}: format {fmt!r} is not a device format; expected one of {FORMATS}')
  files = devices_in(fmt, path)
  kw = {'max_gap': max_gap} if fmt == 'xsens_dot' else {}
  return {s: _READERS[fmt](files[n], **kw)
          for s, n in match(sites, list(files), path, True).items()}


def _where(rec: Recording) -> str:
  return rec.path if rec.name in rec.path else f'{rec.path} sensor {rec.name!r}'


def read_trial(fmt: str, path: str | os.PathLike, sites: Sequence[str],
               declared_hz: float | None = None, max_gap: int = 10):
  """acc, gyr [site, T, 3] (SI, sensor frames) on one uniform grid, its rate in Hz, where the
  rate comes from (for metadata), and ok [T] (False near packet-counter gaps over ``max_gap``,
  which windows must not touch; None for formats without a counter).

  The rate is the one the device files state (checked against the timestamps within 2 %), else
  the timestamps' median step. A declared ``sample_rate_hz`` must agree within 1 % (a ValueError
  naming where the device states its rate) and is then used for the grid.
  """
  recs = read_sites(fmt, path, sites, max_gap)
  rates = {}
  for site, rec in recs.items():
    stamped = preprocess.rate_from_time(rec.time_s, _where(rec))
    if rec.rate_hz is not None and abs(stamped - rec.rate_hz) > 0.02 * rec.rate_hz:
      raise preprocess.TrialError(f'{_where(rec)}: timestamps imply {stamped:.3f} Hz, '
                                  f'{rec.rate_source} says {rec.rate_hz:g} Hz')
    rates[site] = rec.rate_hz or stamped
  rate = next(iter(rates.values()))
  if max(rates.values()) > 1.01 * min(rates.values()):
    raise preprocess.TrialError(f'{path}: sensors at different rates '
                                f'{ {s: round(r, 3) for s, r in rates.items()} } Hz; record '
                                f'every sensor of a trial at one rate')
  rec = next(iter(recs.values()))
  said = rec.rate_source or f'the timestamps of {_where(rec)} (median step)'
  if declared_hz is not None:
    if abs(rate - float(declared_hz)) > 0.01 * float(declared_hz):
      source = rec.rate_source or f'{_where(rec)} (timestamps)'
      raise ValueError(f'{source}: {rate:.4g} Hz, but the schema says sample_rate_hz: '
                       f'{float(declared_hz):g}')
    rate = float(declared_hz)
    said = f'the schema (agrees with {said})'
  masked = any(r.ok is not None for r in recs.values())
  vals = timestamps.on_grid(
      [r.time_s for r in recs.values()],
      [np.concatenate([r.acc, r.gyr] + ([(r.ok if r.ok is not None else np.ones(len(r.acc)))
                                          [:, None].astype(np.float64)] if masked else []), 1)
       for r in recs.values()], rate, [_where(r) for r in recs.values()],
      lines=[r.lines for r in recs.values()])
  ok = np.all([v[:, 6] > 0.999 for v in vals], axis=0) if masked else None
  return (np.stack([v[:, :3] for v in vals]), np.stack([v[:, 3:6] for v in vals]), rate, said,
          ok)
