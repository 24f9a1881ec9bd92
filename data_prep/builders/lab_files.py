"""Bring your own data: per-trial CSV / HDF5 / Xsens text / C3D files described by a schema file.

The schema (YAML or JSON; option ``schema``, by default ``<manual_dir>/schema.yaml``) says which
columns are which IMU site and axis, their units, the sampling rate, the subjects and their files,
and optionally a vertical force channel from which per-stance labels are computed. Example (the
real Xsens shank file of docs/bring_your_own_data.md)::

  sample_rate_hz: 120            # declared; checked against the Xsens header / time column
                                 # (device formats: optional, their files give the rate)
  format: xsens                  # csv | hdf5 | xsens | c3d (default: from the file extension)
                                 # or a device: ximu3 | ngimu | apdm | xsens_dot (see below)
  sites:
    shank:
      acc: [Acc_X, Acc_Y, Acc_Z] # column (or C3D analog channel) names, sensor x, y, z
      gyr: [Gyr_X, Gyr_Y, Gyr_Z]
      acc_unit: m/s^2            # m/s^2 | g | mg
      gyr_unit: rad/s            # rad/s | deg/s
      axes: {forward: +y, up: -x, right: +z}   # optional sensor -> body map (data_prep.axes)
      # or rotation: 3x3 | {quaternion: [w, x, y, z]} | {euler_deg: [a, b, c], order: xyz};
      # calibrate: static measures tilt + heading per trial (docs/bring_your_own_data.md)
      suffix: ''                 # xsens only: one file per site, <trial><suffix>.txt
  subjects:
    - {id: 1, files: [walking_xsens_lowerLeg.txt], mass_kg: 70, height_m: 1.75}
  # optional:
  time_column: time              # csv / hdf5: checks the declared rate (jitter: resampled)
  rate_confirmed: true           # csv / hdf5 without time_column, where the signals cannot
                                 # confirm sample_rate_hz (data_prep/rate_check.py)
  time_unit: s                   # of time_column: s | ms | us
  hdf5_key: data                 # hdf5: dataset (2-D + 'columns' attribute) or group of columns
  force: {vertical: Fz, unit: N, threshold_n: 20}   # same file and rate as the IMU columns
  targets: [peak_vgrf, valr]     # per-stance labels from the force (BW, BW/s); needs mass_kg

Device formats read the device's own export, so a site needs no columns or units (only axes)::

  format: ngimu                  # ximu3 | ngimu: x-io folders; apdm: Opal .h5; xsens_dot: .csv
  sites: {shank: {axes: {forward: +y, up: -x, right: +z}}, trunk: {}}
  subjects:
    - {id: 1, files: ['P01/*']}  # a session folder: one device folder per site, by name

Which device is which site, and the rates, are described in ``data_prep.readers.devices``.
Timestamps (time_column, device clocks) that jitter by more than 1 % of the sample interval, or
drop samples, are interpolated onto a uniform grid at their real times (one log line says so).

Units are converted to SI and checked against the data (a still stretch reads |acc| = 9.81 m/s^2;
gyro magnitudes must fit a body-worn sensor): a contradiction is an error naming the file and
site. Without targets the records are unlabelled windows (config length/stride, static windows
dropped below ``static_threshold_g``, default 0.2 g) split 'train'/'validation' by subject;
with targets there is one example per complete stance (window centred on the stance) in a single
'train' split. Options: schema, static_threshold_g, validation_subjects, check_units,
check_axes, resample (auto | linear | polyphase; auto = polyphase, anti-aliased, where the rate
goes down, linear where it goes up), beam.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from data_prep import axes, gait_events, preprocess, rate_check, records, source
from data_prep.readers import c3d, devices, tables, timestamps, xsens

log = logging.getLogger(__name__)

FORMATS = ('csv', 'hdf5', 'xsens', 'c3d') + devices.FORMATS
TARGET_UNITS = {'peak_vgrf': 'BW', 'valr': 'BW/s'}
_TOP_KEYS = {'sample_rate_hz', 'format', 'sites', 'subjects', 'time_column', 'time_unit',
             'hdf5_key', 'force', 'targets', 'description', 'rate_confirmed'}
_SITE_KEYS = {'acc', 'gyr', 'acc_unit', 'gyr_unit', 'axes', 'rotation', 'calibrate', 'suffix'}
_SUBJECT_KEYS = {'id', 'name', 'files', 'mass_kg', 'height_m'}
_EXT = {'.csv': 'csv', '.tsv': 'csv', '.h5': 'hdf5', '.hdf5': 'hdf5', '.txt': 'xsens',
        '.c3d': 'c3d'}
# Keys that describe the columns, units or time of a table: device formats read those from the
# device's own files instead.
_NOT_FOR_DEVICES = {'time_column', 'time_unit', 'hdf5_key', 'force', 'targets', 'rate_confirmed'}
_SITE_NOT_FOR_DEVICES = {'acc', 'gyr', 'acc_unit', 'gyr_unit', 'suffix'}
LAYOUT = """  <manual_dir>/schema.yaml (or pass --option schema=PATH) and the trial files it lists
      (CSV / HDF5 / Xsens text / C3D, or x-IMU3 / NGIMU folders, APDM .h5, Xsens DOT .csv),
      see docs/bring_your_own_data.md"""


def load_schema(path: str | os.PathLike) -> dict[str, Any]:
  """Parses and validates a schema file; errors name the file and the offending key."""
  path = os.fspath(path)
  if not Path(path).is_file():
    raise FileNotFoundError(f'{path}: schema file not found')
  text = Path(path).read_text()
  try:
    s = json.loads(text) if path.endswith('.json') else yaml.safe_load(text)
  except (json.JSONDecodeError, yaml.YAMLError) as e:
    kind = 'JSON' if path.endswith('.json') else 'YAML'
    raise ValueError(f'{path}: not valid {kind}: {e}') from e
  if not isinstance(s, dict):
    raise ValueError(f'{path}: expected a mapping at the top level')
  unknown = set(s) - _TOP_KEYS
  if unknown:
    raise ValueError(f'{path}: unknown key(s) {sorted(unknown)}; allowed {sorted(_TOP_KEYS)}')
  if s.get('format') is not None and s['format'] not in FORMATS:
    raise ValueError(f'{path}: format {s["format"]!r}; expected one of {FORMATS}')
  device = s.get('format') in devices.FORMATS  # rate optional: the device files give it
  for k in ('sample_rate_hz', 'sites', 'subjects'):
    if k not in s and not (device and k == 'sample_rate_hz'):
      raise KeyError(f'{path}: missing key {k!r}')
  fs = s.get('sample_rate_hz')
  if (fs is not None or not device) and (not isinstance(fs, (int, float)) or fs <= 0):
    raise ValueError(f'{path}: sample_rate_hz must be a positive number, got {fs!r}')
  if device and _NOT_FOR_DEVICES & set(s):
    raise ValueError(f'{path}: {sorted(_NOT_FOR_DEVICES & set(s))} not used with format '
                     f'{s["format"]!r}: the device files give time, columns and units (force '
                     f'and targets need csv, hdf5 or c3d)')
  if 'rate_confirmed' in s:
    if not isinstance(s['rate_confirmed'], bool):
      raise ValueError(f'{path}: rate_confirmed must be true or false, got {s["rate_confirmed"]!r}')
    if s.get('time_column') or s.get('format') in ('xsens', 'c3d'):
      raise ValueError(f'{path}: rate_confirmed is for tables without a time column (csv, hdf5); '
                       f'here the {"time column" if s.get("time_column") else "file header"} '
                       f'gives the rate')
  if 'time_unit' in s:
    if not s.get('time_column'):
      raise ValueError(f'{path}: time_unit {s["time_unit"]!r} given without time_column')
    timestamps.time_factor(s['time_unit'], f'{path}: time_unit')
  if not isinstance(s['sites'], dict) or not s['sites']:
    raise ValueError(f'{path}: sites must map site names to their columns')
  for name, site in s['sites'].items():
    where = f'{path}: sites.{name}'
    if not isinstance(site, dict):
      raise ValueError(f'{where}: expected a mapping')
    bad = set(site) - _SITE_KEYS
    if bad:
      raise ValueError(f'{where}: unknown key(s) {sorted(bad)}; allowed {sorted(_SITE_KEYS)}')
    if device and _SITE_NOT_FOR_DEVICES & set(site):
      raise ValueError(f'{where}: {sorted(_SITE_NOT_FOR_DEVICES & set(site))} not used with '
                       f'format {s["format"]!r}: the device files name columns and units')
    for k in () if device else ('acc', 'gyr'):
      if k not in site:
        raise KeyError(f'{where}: missing key {k!r} (three column names, sensor x, y, z)')
      if not (isinstance(site[k], list) and len(site[k]) == 3):
        raise ValueError(f'{where}.{k}: expected a list of three column names')
    preprocess.unit_factor(site.get('acc_unit', 'm/s^2'), 'acc', f'{where}.acc_unit')
    preprocess.unit_factor(site.get('gyr_unit', 'rad/s'), 'gyr', f'{where}.gyr_unit')
    axes.site_frame(site, where)  # axes / rotation / calibrate
  if not isinstance(s['subjects'], list) or not s['subjects']:
    raise ValueError(f'{path}: subjects must be a non-empty list of {{id, files, ...}}')
  ids = []
  for i, sub in enumerate(s['subjects']):
    where = f'{path}: subjects[{i}]'
    if not isinstance(sub, dict) or 'id' not in sub or 'files' not in sub:
      raise KeyError(f'{where}: needs id and files')
    bad = set(sub) - _SUBJECT_KEYS
    if bad:
      raise ValueError(f'{where}: unknown key(s) {sorted(bad)}; allowed {sorted(_SUBJECT_KEYS)}')
    ids.append(int(sub['id']))
    m = sub.get('mass_kg')
    if m is not None and not 20.0 <= float(m) <= 300.0:
      raise ValueError(f'{where}: mass_kg {m} is not a body mass in kg')
    h = sub.get('height_m')
    if h is not None and not 0.5 <= float(h) <= 2.5:
      raise ValueError(f'{where}: height_m {h} is not a height in m')
  if len(set(ids)) != len(ids):
    raise ValueError(f'{path}: subject ids must be unique, got {ids}')
  targets = s.get('targets') or []
  bad = [t for t in targets if t not in TARGET_UNITS]
  if bad:
    raise ValueError(f'{path}: unknown target(s) {bad}; expected some of {list(TARGET_UNITS)}')
  if targets:
    if 'force' not in s or 'vertical' not in (s['force'] or {}):
      raise KeyError(f'{path}: targets need force.vertical (the vertical force column)')
    preprocess.unit_factor(s['force'].get('unit', 'N'), 'force', f'{path}: force.unit')
    missing = [sub['id'] for sub in s['subjects'] if sub.get('mass_kg') is None]
    if missing:
      raise KeyError(f'{path}: targets in BW need mass_kg for subject(s) {missing}')
  return s


class LabFiles(records.ImuWindowBuilder):
  """Your own recordings, described by a schema file: windows (unlabelled) or labelled stances."""

  WITH_GYR = True
  MANUAL_DOWNLOAD_INSTRUCTIONS = f'Put your files and schema in manual_dir:\n{LAYOUT}'
  DESCRIPTION = __doc__

  @property
  def schema(self) -> dict[str, Any]:
    if not hasattr(self, '_schema_cache'):
      path = self._opt('schema', None)
      if not path:
        raise ValueError('lab_files: needs --option schema=PATH (python -m data_prep.convert '
                         'fills it from <manual_dir>/schema.yaml)')
      self._schema_cache = load_schema(str(path))
      self._schema_path = str(path)
    return self._schema_cache

  def sites(self) -> tuple[str, ...]:
    return tuple(self.schema['sites'])

  @classmethod
  def source_files(cls, root, options) -> list:
    """What the schema's subjects name under ``root`` (a matched folder: all its files);
    without a readable schema, every file under ``root``."""
    try:
      s = load_schema(str(options['schema']))
    except (KeyError, OSError, ValueError):
      return source.list_files(root, ['**/*'])
    pats = [p for sub in s.get('subjects') or [] if isinstance(sub, dict)
            for p in (sub.get('files') if isinstance(sub.get('files'), list)
                      else [sub.get('files')]) if p]
    return source.list_files(root, pats)

  @property
  def TARGETS(self) -> dict[str, str]:  # noqa: N802 (the base class reads this name)
    return {t: TARGET_UNITS[t] for t in self.schema.get('targets') or []}

  def extra_metadata(self) -> dict[str, Any]:
    s = self.schema
    maps = {n: axes.site_frame(site) for n, site in s['sites'].items()}
    return {'dataset': 'lab_files', 'schema_path': self._schema_path, 'schema': s,
            'axes': axes.mapping_json(maps, 'body' if any(m.declared for m in maps.values())
                                      else 'sensor'),
            'source_rate_hz': (float(s['sample_rate_hz']) if s.get('sample_rate_hz')
                               else None),  # device files: set per trial (_record_rate)
            'subjects': {str(int(sub['id'])): {k: sub.get(k) for k in ('name', 'mass_kg',
                                                                       'height_m')}
                         for sub in s['subjects']},
            'options': dict(self.builder_config.options)}

  def _split_generators(self, dl_manager):
    root = preprocess.manual_dir(dl_manager, LAYOUT)
    s = self.schema
    items = []
    for sub in s['subjects']:
      trials = self._trials(root, sub)
      for i, stem in enumerate(trials):
        items.append({'subject': int(sub['id']), 'trial': i, 'stem': stem,
                      'mass_kg': sub.get('mass_kg')})
    if self.TARGETS:
      return {'train': self._generate_examples(items, 'train')}
    split = preprocess.split_subjects([int(x['id']) for x in s['subjects']],
                                      self._opt('validation_subjects', None),
                                      float(self._opt('validation_fraction', 0.1)))
    self.info.metadata['splits_subjects'] = split
    return {name: self._generate_examples([it for it in items if it['subject'] in ids], name)
            for name, ids in split.items() if ids}

  def _trials(self, root: Path, sub: dict[str, Any]) -> list[str]:
    """Trial paths of one subject (Xsens multi-site: the stem before the site suffix)."""
    pats = sub['files'] if isinstance(sub['files'], list) else [sub['files']]
    found: list[str] = []
    folders = self.schema.get('format') in devices.FOLDER_FORMATS  # a trial may be a folder
    for pat in pats:
      hits = sorted(str(p) for p in root.glob(str(pat)) if p.is_file() or folders and p.is_dir())
      if not hits:
        raise FileNotFoundError(f'{root}: no file matches {pat!r} (subject {sub["id"]} in '
                                f'{self._schema_path})')
      found += hits
    suffixes = [site.get('suffix', '') for site in self.schema['sites'].values()]
    if self._format(found[0]) == 'xsens' and any(suffixes):
      stems = set()
      for f in found:
        base = f[:-len('.txt')]
        for suf in suffixes:
          if suf and base.endswith(suf):
            stems.add(base[:-len(suf)])
      found = sorted(stems)
    if not found:
      raise ValueError(f'subject {sub["id"]}: no trials ({self._schema_path})')
    return found

  def _format(self, path: str) -> str:
    fmt = self.schema.get('format')
    if fmt:
      return fmt
    ext = os.path.splitext(path)[1].lower()
    if ext not in _EXT:
      raise ValueError(f'{path}: cannot tell the format from {ext!r}; set format in the schema')
    return _EXT[ext]

  def _generate_examples(self, items, split='train'):
    """A generator of (key, example), or a Beam PTransform with option beam=1."""
    return self.fan_out(items, self._trial_examples, f'lab_files {split!r}')

  # -- reading ---------------------------------------------------------------------------------
  def read_trial(self, stem: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """acc, gyr [site, T, 3] in SI (sensor frames) and the vertical force [T] in N (or None)."""
    return self.read_timed_trial(stem)[:3]

  def read_timed_trial(self, stem: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float]:
    """``read_trial`` plus the trial's rate in Hz: the schema's, or the device files'."""
    return self.read_masked_trial(stem)[:4]

  def read_masked_trial(self, stem: str):
    """``read_timed_trial`` plus ok [T] (False inside packet-counter gaps over max_gap), or None."""
    s = self.schema
    ok = None
    sites = s['sites']
    fmt = self._format(stem if os.path.splitext(stem)[1] else stem + '.txt')
    if fmt in devices.FORMATS:
      acc_si, gyr_si, fs, said, ok = devices.read_trial(
          fmt, stem, list(sites), s.get('sample_rate_hz'), int(self._opt('max_gap', 10)))
      self._record_rate(stem, fs, said)
      return acc_si, gyr_si, None, fs, ok
    fs = float(s['sample_rate_hz'])
    force = s.get('force') or {}
    acc, gyr, vf = [], [], None
    if fmt == 'xsens':
      acc, gyr, ok = self._read_xsens(stem, fs)
    elif fmt == 'c3d':
      a = c3d.read_c3d_analogs(stem)
      if abs(a.sample_rate_hz - fs) > 0.01 * fs:
        raise ValueError(f'{stem}: analog rate {a.sample_rate_hz:g} Hz, schema says {fs:g} Hz')
      for site in sites.values():
        acc.append(a.channels(site['acc']))
        gyr.append(a.channels(site['gyr']))
      if force.get('vertical'):
        vf = a.channels([force['vertical']])[:, 0]
    else:
      df = (tables.read_csv_table(stem) if fmt == 'csv'
            else tables.read_h5_table(stem, s.get('hdf5_key')))
      t = None
      if s.get('time_column'):
        t = tables.require_columns(df, [s['time_column']], stem)[:, 0]
        t = timestamps.to_seconds(t, s.get('time_unit', 's'), stem)
        preprocess.check_sample_rate(t, fs, stem)
      for site in sites.values():
        acc.append(tables.require_columns(df, site['acc'], stem))
        gyr.append(tables.require_columns(df, site['gyr'], stem))
      if force.get('vertical'):
        vf = tables.require_columns(df, [force['vertical']], stem)[:, 0]
      if t is not None:  # jitter or dropped rows: onto the uniform grid at the real times
        cols = np.concatenate(acc + gyr + ([vf[:, None]] if vf is not None else []), axis=1)
        parts = np.split(timestamps.on_grid([t], [cols], fs, [stem],
                                            lines=[df.attrs.get('lines')])[0],
                         np.arange(3, 6 * len(acc) + 1, 3), axis=1)
        acc, gyr = parts[:len(acc)], parts[len(acc):2 * len(acc)]
        vf = parts[-1][:, 0] if vf is not None else None
    acc_si = np.stack([preprocess.to_si(x, site.get('acc_unit', 'm/s^2'), 'acc', stem)
                       for x, site in zip(acc, sites.values(), strict=True)])
    gyr_si = np.stack([preprocess.to_si(x, site.get('gyr_unit', 'rad/s'), 'gyr', stem)
                       for x, site in zip(gyr, sites.values(), strict=True)])
    if vf is not None:
      vf = preprocess.to_si(vf, force.get('unit', 'N'), 'force', stem)
    if fmt in ('csv', 'hdf5') and not s.get('time_column'):  # the rate is the schema's word only
      self._check_rate(acc_si, gyr_si, fs, stem)
    return acc_si, gyr_si, vf, fs, ok

  def _record_rate(self, stem: str, fs: float, said: str) -> None:
    """A device trial's rate in metadata.json: ``source_rates_hz`` per trial (with where it
    came from) and ``source_rate_hz`` the trials' rate while they agree within 1 % (else None:
    see the per-trial rates)."""
    meta = self.info.metadata
    rates = meta.setdefault('source_rates_hz', {})
    rates[stem] = {'hz': round(float(fs), 4), 'from': said}
    hz = [r['hz'] for r in rates.values()]
    meta['source_rate_hz'] = hz[0] if max(hz) <= 1.01 * min(hz) else None

  def _check_rate(self, acc: np.ndarray, gyr: np.ndarray, fs: float, stem: str) -> None:
    """A declared rate without a time column must be confirmed by the signals
    (``rate_check``: the rate at which the gyro turns the accelerometer into a steady gravity)
    or by ``rate_confirmed: true`` in the schema; a contradiction or no answer stops the build."""
    verdict, says, figures = rate_check.check_declared_rate(acc, gyr, fs, list(self.sites()))
    self.info.metadata.setdefault('rate_verified', {})[stem] = verdict == 'verified'
    self.info.metadata.setdefault('rate_check', {})[stem] = {'verdict': verdict, 'sites': figures}
    if verdict == 'verified':
      log.info('%s: sample_rate_hz %g confirmed by the signals (%s)', stem, fs, says)
      return
    confirmed = self.schema.get('rate_confirmed') is True
    if verdict == 'contradicted':
      msg = (f'{stem}: sample_rate_hz: {fs:g} contradicts the data: the gyroscope turns the '
             f'accelerometer into a steady gravity at another rate ({says}). Set sample_rate_hz '
             f'to the rate the file was recorded at, or name its time column in time_column')
      if not confirmed:
        raise ValueError(f'{msg}; if {fs:g} Hz is right after all, add rate_confirmed: true to '
                         f'{self._schema_path}')
      log.warning('%s; built at %g Hz as rate_confirmed: true in the schema says, '
                  'rate_verified: false in metadata.json', msg, fs)
      return
    if not confirmed:
      raise ValueError(f'{stem}: sample_rate_hz: {fs:g} cannot be checked: no time_column, and '
                       f'the signals do not show the rate ({says}). Name the file\'s time column '
                       f'in time_column, or confirm the rate with rate_confirmed: true in '
                       f'{self._schema_path}')
    log.info('%s: sample_rate_hz %g taken as confirmed in the schema (the signals do not show '
             'the rate: %s)', stem, fs, says)

  def _read_xsens(self, stem: str, fs: float):
    """Per-site acc, gyr lists and ok [T] or None: with a packet counter, the rows go on its
    grid through ``preprocess.fill_counter_gaps`` (the IPOL builder's rule: an identical
    repeat dropped, another repeat or a step back skips the trial, gaps up to max_gap
    interpolated, longer ones masked, never spliced; wrap-around at 65536 unwrapped) and the
    sites are cut to their common counter range."""
    acc, gyr, grids = [], [], []
    max_gap = int(self._opt('max_gap', 10))
    for site in self.schema['sites'].values():
      path = stem + site.get('suffix', '') + ('' if stem.endswith('.txt') else '.txt')
      e = xsens.read_xsens_txt(path, sample_rate_hz=fs)
      a, g = e.columns(site['acc']), e.columns(site['gyr'])
      if e.counter is None:
        grids.append(None)
        acc.append(a)
        gyr.append(g)
      else:
        grid, y, ok = preprocess.fill_counter_gaps(e.counter, np.concatenate([a, g], 1),
                                                   max_gap=max_gap, where=path, lines=e.lines)
        grids.append((grid, ok))
        acc.append(y[:, :3])
        gyr.append(y[:, 3:])
      if (grids[0] is None) != (grids[-1] is None):
        raise ValueError(f'{path}: a packet counter in some sites of {stem} and not in others')
      if grids[-1] is None and len({len(x) for x in acc}) > 1:
        raise ValueError(f'{path}: {len(acc[-1])} samples, other sites of {stem} have '
                         f'{len(acc[0])}')
    if grids[0] is None:
      return acc, gyr, None
    first = max(int(g[0]) for g, _ in grids)
    last = min(int(g[-1]) for g, _ in grids)
    if last < first:
      raise preprocess.TrialError(f'{stem}: the sites share no packet-counter range')
    cut = [slice(first - int(g[0]), last - int(g[0]) + 1) for g, _ in grids]
    ok = np.all([o[c] for (_, o), c in zip(grids, cut, strict=True)], axis=0)
    return ([x[c] for x, c in zip(acc, cut, strict=True)],
            [x[c] for x, c in zip(gyr, cut, strict=True)], ok)

  def _trial_examples(self, item: dict[str, Any]):
    cfg = self.builder_config
    s = self.schema
    stem = item['stem']
    acc, gyr, vf, src_hz, ok = self.read_masked_trial(stem)
    names = list(s['sites'])
    for i, n in enumerate(names):  # magnitudes only: the same before and after the rotation
      if preprocess.as_bool(self._opt('check_units', True)):
        preprocess.check_imu_units(acc[i], gyr[i], src_hz, f'{stem} site {n}',
                                   s['sites'][n].get('acc_unit', 'm/s^2'),
                                   s['sites'][n].get('gyr_unit', 'rad/s'))
    frames = {n: axes.site_frame(s['sites'][n], stem) for n in names}
    maps = {n: frames[n].resolve(acc[i], gyr[i], src_hz, n, stem) for i, n in enumerate(names)}
    for n in names:
      if frames[n].calibrate:  # the measured angles: log and metadata.json (generator path)
        log.warning('%s site %s: %s', stem, n, maps[n].summary())
        self.info.metadata['axes']['sites'][n]['trials'][stem] = maps[n].to_json()
    acc = np.stack([maps[n].apply(acc[i]) for i, n in enumerate(names)])
    gyr = np.stack([maps[n].apply(gyr[i]) for i, n in enumerate(names)])
    for i, n in enumerate(names):
      if frames[n].declared and preprocess.as_bool(self._opt('check_axes', True)):
        s0, s1, sd = preprocess.still_segment(acc[i], src_hz, 1.0)
        if sd < 0.05 * 9.81:
          axes.check_up_axis(acc[i, s0:s1], n, stem)
        axes.check_forward_right(gyr[i], src_hz, n, stem)
    fs = float(cfg.sample_rate_hz)
    t_len = cfg.window_length
    method = str(self._opt('resample', 'auto'))
    stances = None
    if self.TARGETS:
      thr = float((s.get('force') or {}).get('threshold_n', 20.0))
      stances = gait_events.detect_stances(vf, src_hz, threshold_n=thr)
      labels = []
      for a, b in stances:
        row = {}
        if 'peak_vgrf' in self.TARGETS:
          row['peak_vgrf'] = gait_events.peak_vgrf_bw(vf, a, b, item['mass_kg'])
        if 'valr' in self.TARGETS:
          try:
            row['valr'] = gait_events.valr_bw_per_s(vf, a, b, src_hz, item['mass_kg'])
          except ValueError as e:
            log.info('%s: stance %d-%d skipped: %s', stem, a, b, e)
            row = None
        labels.append(row)
    if fs != src_hz:
      acc = preprocess.resample(acc, src_hz, fs, method, axis=1)
      gyr = preprocess.resample(gyr, src_hz, fs, method, axis=1)
      if ok is not None:  # as the IPOL builder: a sample near a long gap is not ok
        ok = preprocess.resample(ok.astype(np.float64), src_hz, fs, 'linear') > 0.999
    if ok is not None and len(ok) != acc.shape[1]:
      ok = np.pad(ok, (0, max(0, acc.shape[1] - len(ok))))[:acc.shape[1]]
    subject, trial = item['subject'], item['trial']
    if stances is None:
      starts = preprocess.window_starts(acc.shape[1], t_len, cfg.window_stride)
      if not starts.size:
        log.warning('%s: %d samples at %g Hz, shorter than one window', stem, acc.shape[1], fs)
        return
      good = np.ones(len(starts), bool)
      thr_g = float(self._opt('static_threshold_g', 0.2))
      if thr_g > 0:
        a_w = np.moveaxis(preprocess.take_windows(np.moveaxis(acc, 1, 0), starts, t_len), 2, 1)
        good = preprocess.dynamic_mask(a_w, thr_g)
      if ok is not None:  # never across a counter gap over max_gap
        good &= preprocess.take_windows(ok, starts, t_len).all(axis=1)
      for st in starts[good]:
        yield f'{stem}/{int(st)}', self.example(acc[:, st:st + t_len], gyr[:, st:st + t_len],
                                                subject, trial, where=f'{stem} window at {st}',
                                                start=st)
      return
    for (a, b), row in zip(stances, labels, strict=True):
      if row is None:
        continue
      c = int(preprocess.rescale_index((a + b) / 2, src_hz, fs))
      st = c - t_len // 2
      if st < 0 or st + t_len > acc.shape[1] or ok is not None and not ok[st:st + t_len].all():
        continue
      yield f'{stem}/{int(a)}', self.example(acc[:, st:st + t_len], gyr[:, st:st + t_len],
                                             subject, trial, row, where=f'{stem} stance at {a}',
                                             start=st)
