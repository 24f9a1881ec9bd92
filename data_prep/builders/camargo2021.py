"""Camargo et al. 2021 (J Biomech): trunk and right-leg IMUs -> peak vertical GRF per step (BW).

Manual dir layout (as downloaded from Mendeley Data / the EPIC lab; datasets.md 2.1)::

  <manual_dir>/SubjectInfo.mat                      optional table Subject, Weight (kg), ...
  <manual_dir>/AB06/<date>/<mode>/<sensor>/<trial>.mat
      mode    levelground | ramp | stair | treadmill      (any capitalisation)
      sensor  imu (200 Hz: Header, {trunk,shank,thigh,foot}_{Accel,Gyro}_{X,Y,Z}; g, rad/s)
              fp  (1000 Hz: Header, <plate>_vx/_vy/_vz ...; N, vy vertical up)
              gcRight (200 Hz: Header, HeelStrike, ToeOff; % of gait cycle)
              conditions (Header + Label strings; treadmill: variable 'speed' instead)
      trial   e.g. levelground_ccw_normal_01_01, Ramp_1_r_01_02, treadmill_01_01 (case ignored)

Each .mat holds one MATLAB table (read with mat-io). Per trial (reference: TheOne-1/SSL_IMU):
right-foot vGRF = sum of the ``<plate>_vy`` of the plates the right foot uses in that trial type
(treadmill Treadmill_R; level ground cw Combined+FP2+FP5, ccw FP1; stair _r FP2+FP3+FP4, _l FP1+FP5;
ramp _r FP2+FP4, _l FP1+FP3+FP5), low-passed (4th-order Butterworth, 15 Hz, zero phase) at
1000 Hz and decimated to 200 Hz (every 5th sample). Heel strikes: ``HeelStrike`` going 0 -> >0.
A strike is labelled when its activity label is treadmill, walk, ramp or stair ascent/descent
and vGRF 10 samples later exceeds 10 N; the peak is the highest local maximum of vGRF from
strike + 10 to 10 samples before the contact ends (below 10 N, via gait_events.detect_stances),
divided by m g with the subject's mass (SubjectInfo.mat, else the reference table).
Windows: ``window_length`` samples (128 at 200 Hz in the reference) every ``window_stride``
(0 here means window_length // 4, the reference step) whose every sample has a gait label
(walk, turn, ramp, stair, treadmill and their transitions); a window is an example when a
labelled peak lies in its central quarter [3/8 L, 5/8 L), labelled with that peak.

Options: sites (trunk+shank; foot and thigh can be added), modes (levelground+ramp+stair, as
the reference's task; add treadmill), exclude (AB20: no GRF), subjects, axes (body | sensor),
check_units, check_axes, acc_unit (g), gyr_unit (rad/s), fp_cutoff_hz (15), beam.
Known missing trials (datasets.md 2.1) are listed in the metadata; other absent trials are
logged. A trial whose imu file exists but whose fp / gcRight / conditions file is missing is an
error unless ``skip_incomplete=true``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np
import pandas as pd
import scipy.signal

from data_prep import axes, gait_events, preprocess, records
from data_prep.readers import tables

log = logging.getLogger(__name__)

TARGETS = {'peak_vgrf': 'BW'}
ALL_SITES = ('trunk', 'shank', 'thigh', 'foot')
MODES = ('levelground', 'ramp', 'stair', 'treadmill')
IMU_HZ, FP_HZ = 200.0, 1000.0
LAYOUT = """  <manual_dir>/AB<NN>/<date>/<mode>/<sensor>/<trial>.mat   (MATLAB tables, mat-io)
      mode: levelground | ramp | stair | treadmill; sensor: imu, fp, gcRight, conditions
      e.g. AB06/10_09_18/levelground/imu/levelground_ccw_normal_01_01.mat
  <manual_dir>/SubjectInfo.mat (optional table with Subject and Weight in kg)"""

# Reference table (height m, mass kg) [V const.py CAMARGO_SUB_HEIGHT_WEIGHT].
SUBJECT_HEIGHT_MASS = {
    'AB06': (1.80, 74.8), 'AB07': (1.65, 55.3), 'AB08': (1.74, 72.6), 'AB09': (1.63, 63.5),
    'AB10': (1.75, 83.9), 'AB11': (1.75, 77.1), 'AB12': (1.74, 86.2), 'AB13': (1.73, 59.0),
    'AB14': (1.52, 58.4), 'AB15': (1.78, 96.2), 'AB16': (1.65, 55.8), 'AB17': (1.68, 61.2),
    'AB18': (1.80, 60.1), 'AB19': (1.70, 68.0), 'AB20': (1.71, 68.0), 'AB21': (1.57, 58.1),
    'AB23': (1.80, 76.8), 'AB24': (1.73, 72.6), 'AB25': (1.63, 52.2), 'AB27': (1.70, 68.0),
    'AB28': (1.69, 62.1), 'AB30': (1.77, 77.0),
}

# [V const.py MISSING_TRIALS], lower case.
KNOWN_MISSING = {
    'AB07': ['levelground_ccw_fast_01_05'],
    'AB08': [f'stair_1_r_01_0{i}' for i in range(1, 6)],
    'AB09': ['levelground_ccw_normal_01_05'],
    'AB11': ['levelground_ccw_fast_01_05', 'ramp_6_r_01_05'],
    'AB13': ['levelground_cw_normal_01_05', 'levelground_cw_slow_01_05', 'stair_1_r_01_05'],
    'AB14': ['levelground_ccw_slow_01_05'],
    'AB15': ['levelground_ccw_normal_01_05', 'levelground_cw_normal_01_04',
             'levelground_cw_normal_01_05', 'levelground_cw_slow_01_03',
             'levelground_cw_slow_01_04', 'levelground_cw_slow_01_05'],
    'AB21': ['levelground_cw_fast_01_04', 'levelground_cw_fast_01_05'],
    'AB24': ['ramp_6_l_01_04', 'ramp_6_l_01_05'],
}

# Collapsed activity ids [V DICT_LABEL]; which ids may carry a peak and which may be windowed.
PEAK_LABELS = {-1, 0, 4, 5, 7, 8}
WINDOW_LABELS = {-1, 0, 3, 4, 5, 6, 7, 8, 9}


def collapse_label(s: str) -> int:
  """Activity string -> reference id (treadmill -1 is assigned per trial, unknown -2)."""
  s = str(s).strip().lower()
  if s in ('idle', 'stand'):
    return 1
  if s.startswith('stand-') or s.endswith('-stand'):
    return 2
  if s.startswith('turn'):
    return 3
  for name, i in (('rampascent', 4), ('rampdescent', 5), ('stairascent', 7),
                  ('stairdescent', 8)):
    if s == name:
      return i
  if 'ramp' in s:
    return 6
  if 'stair' in s:
    return 9
  if s == 'walk':
    return 0
  return -2


def right_foot_plates(mode: str, trial: str) -> list[str]:
  """Plates the right foot steps on in this trial type [V RIGHT_FOOT_PLATES]."""
  t = trial.lower()
  if mode == 'treadmill':
    return ['Treadmill_R']
  if mode == 'levelground':
    if '_ccw_' in t:
      return ['FP1']
    if '_cw_' in t:
      return ['Combined', 'FP2', 'FP5']
  side = re.search(r'_(r|l)_\d', t)
  if mode == 'stair' and side:
    return ['FP2', 'FP3', 'FP4'] if side.group(1) == 'r' else ['FP1', 'FP5']
  if mode == 'ramp' and side:
    return ['FP2', 'FP4'] if side.group(1) == 'r' else ['FP1', 'FP3', 'FP5']
  raise ValueError(f'trial {trial!r} in mode {mode!r}: cannot tell which plates the right foot '
                   f'uses (expected cw/ccw or _r_/_l_ in the name)')


def heel_strikes(hs: np.ndarray) -> np.ndarray:
  """Indices where the HeelStrike phase goes 0 -> > 0 (the 0 sample)."""
  hs = np.asarray(hs, dtype=np.float64)
  return np.flatnonzero((hs[:-1] == 0) & (hs[1:] > 0))


def peak_events(fy: np.ndarray, strikes: np.ndarray, labels: np.ndarray, mass_kg: float,
                fs: float = IMU_HZ) -> list[tuple[int, float]]:
  """(sample, peak vGRF in BW) per usable strike, by the reference rule (module docstring)."""
  stances = gait_events.detect_stances(fy, fs, threshold_n=10.0, min_duration_s=0.1)
  out = []
  for s in strikes:
    a = s + 10
    if a >= len(fy) or labels[s] not in PEAK_LABELS or not fy[a] > 10.0:
      continue
    hit = np.flatnonzero((stances[:, 0] <= a) & (stances[:, 1] > a))
    if not hit.size:
      continue
    b = int(stances[hit[0], 1]) - 10
    if b - a < 3:
      continue
    peaks, _ = scipy.signal.find_peaks(fy[a:b])
    if not peaks.size:
      continue
    best = a + int(peaks[np.argmax(fy[a:b][peaks])])
    value = gait_events.peak_vgrf_bw(fy, a, b, mass_kg)
    if not np.isclose(value * mass_kg * gait_events.G, fy[best]):
      continue  # the maximum sits on the clip boundary, not on a local peak: skipped as reference
    out.append((best, value))
  return out


class Camargo2021(records.ImuWindowBuilder):
  """Camargo 2021: trunk + shank IMUs (option: foot, thigh) -> peak vGRF per step (BW)."""

  SITES = ('trunk', 'shank')
  TARGETS = TARGETS
  WITH_GYR = True
  MANUAL_DOWNLOAD_INSTRUCTIONS = f'Put the Camargo 2021 subject folders in manual_dir:\n{LAYOUT}'
  SOURCE_PATTERNS = ('**/*.mat',)
  DESCRIPTION = __doc__

  def sites(self) -> tuple[str, ...]:
    chosen = preprocess.as_list(self._opt('sites', None)) or list(self.SITES)
    bad = [s for s in chosen if s not in ALL_SITES]
    if bad:
      raise ValueError(f'camargo2021: option sites has unknown site(s) {bad}; expected '
                       f'{list(ALL_SITES)}')
    return tuple(chosen)

  def _modes(self) -> list[str]:
    modes = [m.lower() for m in preprocess.as_list(self._opt('modes', None))] or [
        'levelground', 'ramp', 'stair']
    bad = [m for m in modes if m not in MODES]
    if bad:
      raise ValueError(f'camargo2021: option modes has {bad}; expected some of {list(MODES)}')
    return modes

  def extra_metadata(self) -> dict[str, Any]:
    mode = str(self._opt('axes', 'body'))
    return {'dataset': 'camargo2021', 'modes': self._modes(),
            'axes': axes.mapping_json(axes.mapping_for('camargo2021', self.sites(), mode), mode),
            'source_rate_hz': IMU_HZ, 'options': dict(self.builder_config.options)}

  def _split_generators(self, dl_manager):
    root = preprocess.manual_dir(dl_manager, LAYOUT)
    masses = subject_masses(root)
    exclude = {s.upper() for s in preprocess.as_list(self._opt('exclude', 'AB20'))}
    wanted = {f'AB{int(s):02d}' for s in preprocess.parse_id_list(self._opt('subjects', None))}
    subjects = sorted(p.name for p in root.iterdir()
                      if p.is_dir() and re.fullmatch(r'AB\d+', p.name, re.IGNORECASE))
    if not subjects:
      raise FileNotFoundError(f'{root}: no AB<NN> subject folders. Expected layout:\n{LAYOUT}')
    if wanted:
      absent = sorted(wanted - {s.upper() for s in subjects})
      if absent:
        raise FileNotFoundError(f'{root}: no folder for subject(s) {absent}')
      subjects = [s for s in subjects if s.upper() in wanted]
    subjects = [s for s in subjects if s.upper() not in exclude]
    items, info, missing = [], {}, {}
    for s in subjects:
      trials = find_trials(root / s, self._modes())
      if not trials:
        raise ValueError(f'{root / s}: subject has no trials of modes {self._modes()} (expected '
                         f'<date>/<mode>/imu/<trial>.mat)')
      if s.upper() not in masses:
        raise KeyError(f'{s}: no body mass (not in {root}/SubjectInfo.mat nor the reference '
                       f'table)')
      sid = int(s[2:])
      info[str(sid)] = {'name': s.upper(), 'mass_kg': masses[s.upper()],
                        'height_m': SUBJECT_HEIGHT_MASS.get(s.upper(), (None, None))[0],
                        'trials': {str(i): t['name'] for i, t in enumerate(trials)}}
      missing[s.upper()] = {'known': KNOWN_MISSING.get(s.upper(), [])}
      for i, t in enumerate(trials):
        items.append({**t, 'subject': sid, 'trial': i, 'mass_kg': masses[s.upper()]})
    self.info.metadata['subjects'] = info
    self.info.metadata['missing_trials'] = missing
    return {'train': self._generate_examples(items)}

  def _generate_examples(self, items):
    """A generator of (key, example), or a Beam PTransform with option beam=1."""
    return self.fan_out(items, self._trial_examples, 'camargo2021')

  def _trial_examples(self, item: dict[str, Any]):
    cfg = self.builder_config
    name, mode = item['name'], item['mode']
    paths = item['paths']
    need = ['fp', 'gcright'] + ([] if mode == 'treadmill' else ['conditions'])
    absent = [f'{item["dir"]}/{k}/{name}.mat' for k in need if k not in paths]
    if absent:
      if preprocess.as_bool(self._opt('skip_incomplete', False)):
        log.warning('%s: skipped, missing %s', name, absent)
        return
      raise FileNotFoundError(f'{item["dir"]}: trial {name} has imu but no {absent} (use option '
                              f'skip_incomplete=true to skip such trials)')
    sites = self.sites()
    acc, gyr, t_imu = read_imu(paths['imu'], sites, str(self._opt('acc_unit', 'g')),
                               str(self._opt('gyr_unit', 'rad/s')))
    fy, t_fp = read_right_vgrf(paths['fp'], right_foot_plates(mode, name),
                               float(self._opt('fp_cutoff_hz', 15.0)))
    if abs(t_fp[0] - t_imu[0]) > 0.01:
      raise ValueError(f'{paths["fp"]}: starts at {t_fp[0]:.3f} s but the imu file at '
                       f'{t_imu[0]:.3f} s; expected a common clock')
    gc = tables.load_mat_table(paths['gcright'])
    hs = tables.require_columns(gc, ['HeelStrike'], paths['gcright'])[:, 0]
    labels = read_labels(paths['conditions'], mode, t_imu)
    n = min(len(t_imu), len(fy), len(hs))
    acc, gyr, fy, hs, labels = acc[:, :n], gyr[:, :n], fy[:n], hs[:n], labels[:n]
    where = f'{paths["imu"]}'
    amode = str(self._opt('axes', 'body'))
    maps = axes.mapping_for('camargo2021', sites, amode, where)
    acc = np.stack([maps[s].apply(acc[i]) for i, s in enumerate(sites)])
    gyr = np.stack([maps[s].apply(gyr[i]) for i, s in enumerate(sites)])
    if preprocess.as_bool(self._opt('check_units', True)):
      for i, s in enumerate(sites):
        preprocess.check_imu_units(acc[i], gyr[i], IMU_HZ, f'{where} {s}',
                                   str(self._opt('acc_unit', 'g')),
                                   str(self._opt('gyr_unit', 'rad/s')))
    if amode == 'body' and preprocess.as_bool(self._opt('check_axes', True)):
      s0, s1, sd = preprocess.still_segment(acc[0], IMU_HZ, 1.0)
      if sd < 0.3:  # only where the subject stands still
        for i, s in enumerate(sites):
          if s != 'foot':
            axes.check_up_axis(acc[i, s0:s1], s, where)
    peaks = peak_events(fy, heel_strikes(hs), labels, item['mass_kg'])
    fs = float(cfg.sample_rate_hz)
    ok = np.isin(labels, list(WINDOW_LABELS))
    if fs != IMU_HZ:
      acc = preprocess.resample(acc, IMU_HZ, fs, axis=1)
      gyr = preprocess.resample(gyr, IMU_HZ, fs, axis=1)
      ok = preprocess.resample(ok.astype(float), IMU_HZ, fs, 'linear') > 0.999
      peaks = [(int(preprocess.rescale_index(p, IMU_HZ, fs)), v) for p, v in peaks]
    t_len = cfg.window_length
    stride = cfg.window_stride or max(1, t_len // 4)
    starts = preprocess.window_starts(acc.shape[1], t_len, stride)
    if not starts.size or not peaks:
      return
    good = preprocess.take_windows(ok, starts, t_len).all(axis=1)
    lo, hi = (3 * t_len) // 8, (5 * t_len) // 8
    p_idx = np.array([p for p, _ in peaks])
    p_val = np.array([v for _, v in peaks])
    for st in starts[good]:
      inside = np.flatnonzero((p_idx >= st + lo) & (p_idx < st + hi))
      if not inside.size:
        continue
      k = inside[np.argmax(np.abs(p_val[inside]))]
      yield f'{name}/{item["subject"]}/{int(st)}', self.example(
          acc[:, st:st + t_len], gyr[:, st:st + t_len], item['subject'], item['trial'],
          {'peak_vgrf': p_val[k]}, where=f'{where} window at {st}', start=st)


# ----------------------------------------------------------------------------------------------
# Readers, usable without TFDS

def subject_masses(root) -> dict[str, float]:
  """{ABnn: mass kg}: SubjectInfo.mat (table Subject, Weight) over the reference table."""
  out = {k: v[1] for k, v in SUBJECT_HEIGHT_MASS.items()}
  p = root / 'SubjectInfo.mat'
  if p.is_file():
    df = tables.load_mat_table(p)
    subj, weight = tables.find_column(df, 'Subject'), tables.find_column(df, 'Weight')
    if subj is None or weight is None:
      raise KeyError(f'{p}: expected columns Subject and Weight (kg); found {list(df.columns)}')
    for s, w in zip(df[subj].astype(str), df[weight].astype(float), strict=True):
      if not 30.0 <= w <= 200.0:
        raise ValueError(f'{p}: Weight {w} for {s} is not a body mass in kg')
      out[s.strip().upper()] = float(w)
  return out


def find_trials(subject_dir, modes: list[str]) -> list[dict[str, Any]]:
  """Trials with an imu file, in (mode, name) order, with the paths of their other sensors."""
  out = []
  for mode_dir in sorted(subject_dir.glob('*/*'), key=str):
    mode = mode_dir.name.lower()
    if not mode_dir.is_dir() or mode not in modes:
      continue
    sensors = {p.name.lower(): p for p in mode_dir.iterdir() if p.is_dir()}
    if 'imu' not in sensors:
      continue
    for f in sorted(sensors['imu'].glob('*.mat'), key=lambda p: p.name.lower()):
      paths = {'imu': str(f)}
      for k in ('fp', 'gcright', 'conditions'):
        if k in sensors:
          hit = [q for q in sensors[k].glob('*.mat') if q.stem.lower() == f.stem.lower()]
          if hit:
            paths[k] = str(hit[0])
      out.append({'name': f.stem.lower(), 'mode': mode, 'dir': str(mode_dir), 'paths': paths})
  return out


def read_imu(path: str, sites: tuple[str, ...], acc_unit: str = 'g', gyr_unit: str = 'rad/s'):
  """acc, gyr [site, T, 3] in SI (sensor frames) and the Header time column (checked 200 Hz)."""
  df = tables.load_mat_table(path)
  t = tables.require_columns(df, ['Header'], path)[:, 0]
  preprocess.check_sample_rate(t, IMU_HZ, path)
  acc = np.stack([tables.require_columns(df, [f'{s}_Accel_{a}' for a in 'XYZ'], path)
                  for s in sites])
  gyr = np.stack([tables.require_columns(df, [f'{s}_Gyro_{a}' for a in 'XYZ'], path)
                  for s in sites])
  return (preprocess.to_si(acc, acc_unit, 'acc', path),
          preprocess.to_si(gyr, gyr_unit, 'gyr', path), t)


def read_right_vgrf(path: str, plates: list[str], cutoff_hz: float = 15.0):
  """Right-foot vertical GRF at 200 Hz (N) and its time column, per the reference steps."""
  df = tables.load_mat_table(path)
  t = tables.require_columns(df, ['Header'], path)[:, 0]
  preprocess.check_sample_rate(t, FP_HZ, path)
  fy = tables.require_columns(df, [f'{p}_vy' for p in plates], path).sum(axis=1)
  fy = preprocess.lowpass(fy, FP_HZ, cutoff_hz, order=4)
  return (preprocess.resample(fy, FP_HZ, IMU_HZ, method='decimate'),
          preprocess.resample(t, FP_HZ, IMU_HZ, method='decimate'))


def read_labels(path: str, mode: str, t_imu: np.ndarray) -> np.ndarray:
  """Collapsed activity id per IMU sample (treadmill trials: -1 everywhere)."""
  if mode == 'treadmill':
    return np.full(len(t_imu), -1, dtype=np.int64)
  df = tables.load_mat_table(path, None)
  col = tables.find_column(df, 'Label')
  if col is None or tables.find_column(df, 'Header') is None:
    raise KeyError(f'{path}: expected a table with Header and Label; found {list(df.columns)}')
  t = df[tables.find_column(df, 'Header')].to_numpy(dtype=np.float64)
  names, inv = np.unique(pd.Series(df[col]).astype(str).to_numpy(), return_inverse=True)
  ids = np.array([collapse_label(s) for s in names], dtype=np.int64)[inv]
  idx = np.clip(np.searchsorted(t, t_imu, side='right') - 1, 0, len(t) - 1)
  return ids[idx]
