"""Walking knee moments (Tan et al. 2022, IEEE TII): 8 IMUs, peak KFM and KAM per right step.

Manual dir layout (the published step-wise HDF5; datasets.md 3.2)::

  <manual_dir>/<name>.h5    one file (option ``file`` picks one when several exist; the reference
                            code called it walking_knee_moment.h5), holding
      subject_01 ... subject_17   float32 [n_steps, 152, 256], zero-padded after each step
      attribute ``columns``       JSON list of the 256 field names, in file order

Each step runs from right heel strike - 20 samples to right toe-off + 20 samples at 100 Hz. IMU
fields are ``AccelX_<SITE>`` (m/s^2) and ``GyroX_<SITE>`` (deg/s, converted to rad/s); the
reference's renamed form ``<SITE>_Accel_X`` is accepted too. Labels (%BW*BH, already normalised
in the file): ``peak_kfm`` = max of ``EXT_KM_X`` (``KFM``) and ``peak_kam`` = max of ``EXT_KM_Y``
(``KAM``) over the first half of stance, stance = samples [20, step_len - 20) where step_len is
the number of samples up to the last non-zero IMU sample (option ``stance_from=force_phase`` uses
the ``force_phase`` run instead). The window is the first ``window_length`` (<= 152) samples; the
zero padding after the step is kept as zeros (the training code masks all-zero time steps).

Options: file, stance_from (padding | force_phase), axes (body | sensor), check_units, check_axes,
subjects, source_rate_hz (100), acc_unit (m/s^2), gyr_unit (deg/s), beam.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np

from data_prep import axes, gait_events, preprocess, records, source
from data_prep.readers import tables

log = logging.getLogger(__name__)

SITES = ('L_FOOT', 'R_FOOT', 'R_SHANK', 'R_THIGH', 'WAIST', 'CHEST', 'L_SHANK', 'L_THIGH')
TARGETS = {'peak_kfm': '%BW*BH', 'peak_kam': '%BW*BH'}
PAD = 20  # samples before heel strike and after toe-off in each step
LAYOUT = """  <manual_dir>/walking_knee_moment.h5 (any *.h5 name): datasets subject_01..subject_17,
      float32 [n_steps, 152, 256], file attribute 'columns' = JSON list of the 256 field names
      (body weight, body height, force_phase, EXT_KM_X, EXT_KM_Y, EXT_KM_Z, AccelX_L_FOOT, ...)"""
_KEY = re.compile(r'^subject_(\d+)$')


def imu_columns(columns: list[str], site: str, kind: str, where: str) -> list[int]:
  """Indices of the X, Y, Z columns of ``kind`` ('Accel' | 'Gyro') at ``site``, either naming."""
  idx = {c: i for i, c in enumerate(columns)}
  for names in ([f'{kind}{a}_{site}' for a in 'XYZ'], [f'{site}_{kind}_{a}' for a in 'XYZ']):
    if all(n in idx for n in names):
      return [idx[n] for n in names]
  raise KeyError(f'{where}: missing columns {kind}X_{site}..{kind}Z_{site} (or {site}_{kind}_X..Z)')


def column(columns: list[str], names: tuple[str, ...], where: str) -> int:
  for n in names:
    if n in columns:
      return columns.index(n)
  raise KeyError(f'{where}: missing column {names[0]!r} (or {list(names[1:])})')


def subject_info(path: str, keys: list[str]) -> dict[str, dict[str, float]]:
  """{subject id: {mass_kg, height_m}} from the 'body weight' / 'body height' columns."""
  out = {}
  with tables.open_h5(path) as f:
    for k in keys:
      cols = tables.h5_columns(f[k].attrs.get('columns', f.attrs.get('columns')), path)
      info = {}
      for name, options in (('mass_kg', ('body weight', 'body_weight')),
                            ('height_m', ('body height', 'body_height'))):
        hit = [c for c in options if c in cols]
        if hit and f[k].shape[0]:
          info[name] = float(np.median(f[k][:, 0, cols.index(hit[0])]))
      out[str(int(_KEY.match(k).group(1)))] = info
  return out


def step_lengths(x: np.ndarray, imu_cols: list[int]) -> np.ndarray:
  """Samples up to and including the last non-zero IMU sample of each step [n_steps, T, F]."""
  nz = np.any(x[:, :, imu_cols] != 0, axis=2)  # [n, T]
  last = x.shape[1] - np.argmax(nz[:, ::-1], axis=1)
  return np.where(nz.any(axis=1), last, 0)


class KneeMoment(records.ImuWindowBuilder):
  """Tan et al. 2022 walking knee moments: 8 IMUs -> peak KFM and KAM per step."""

  SITES = SITES
  TARGETS = TARGETS
  WITH_GYR = True
  LAYOUT = LAYOUT
  MANUAL_DOWNLOAD_INSTRUCTIONS = f'Put the step-wise HDF5 file in manual_dir:\n{LAYOUT}'
  DESCRIPTION = __doc__
  DATASET = 'knee_moment'
  DEFAULT_SOURCE_RATE_HZ = 100.0
  PAD = PAD
  MAX_STEP = 152
  GYR_UNIT = 'deg/s'
  ACC_UNIT = 'm/s^2'

  @property
  def SOURCE_RATE_HZ(self) -> float:  # noqa: N802
    return float(self._opt('source_rate_hz', self.DEFAULT_SOURCE_RATE_HZ))

  def extra_metadata(self) -> dict[str, Any]:
    mode = str(self._opt('axes', 'body'))
    return {'dataset': self.DATASET,
            'axes': axes.mapping_json(axes.mapping_for(self.DATASET, self.sites(), mode), mode),
            'source_rate_hz': self.SOURCE_RATE_HZ, 'options': dict(self.builder_config.options)}

  @classmethod
  def source_files(cls, root, options) -> list:
    """The HDF5 file option ``file`` names, else every .h5 / .hdf5 file in ``root``."""
    name = options.get('file')
    return source.list_files(root, [str(name)] if name else ['*.h5', '*.hdf5'])

  def _find_file(self, root) -> str:
    name = self._opt('file', None)
    if name:
      p = root / str(name)
      if not p.is_file():
        raise FileNotFoundError(f'{p}: not found. Expected layout:\n{self.LAYOUT}')
      return str(p)
    files = sorted(root.glob('*.h5')) + sorted(root.glob('*.hdf5'))
    if not files:
      raise FileNotFoundError(f'{root}: no .h5 file. Expected layout:\n{self.LAYOUT}')
    if len(files) > 1:
      raise ValueError(f'{root}: several HDF5 files {[f.name for f in files]}; pick one with '
                       f'--option file=NAME')
    return str(files[0])

  def _split_generators(self, dl_manager):
    root = preprocess.manual_dir(dl_manager, self.LAYOUT)
    path = self._find_file(root)
    with tables.open_h5(path) as f:
      keys = sorted(k for k in f.keys() if _KEY.match(k))
    if not keys:
      raise KeyError(f'{path}: no subject_<NN> datasets. Expected layout:\n{self.LAYOUT}')
    wanted = preprocess.parse_id_list(self._opt('subjects', None))
    if wanted:
      have = {int(_KEY.match(k).group(1)): k for k in keys}
      absent = [s for s in wanted if s not in have]
      if absent:
        raise KeyError(f'{path}: no dataset for subject(s) {absent}; found {keys}')
      keys = [have[s] for s in wanted]
    if self.MAX_STEP and self.builder_config.window_length > self.MAX_STEP:
      raise ValueError(f'{self.DATASET}: window_length {self.builder_config.window_length} is '
                       f'longer than the stored steps ({self.MAX_STEP} samples)')
    self.info.metadata['subjects'] = subject_info(path, keys)
    return {'train': self._generate_examples([(path, k) for k in keys])}

  def _generate_examples(self, items):
    """A generator of (key, example), or a Beam PTransform with option beam=1."""
    return self.fan_out(items, self._subject_examples, self.DATASET)

  # Subclasses (running_valr) override the label and the columns they need.
  # ``steps``: the stored number of each row of x (rows with NaN/Inf were dropped), for messages.
  def _labels(self, x: np.ndarray, cols: list[str], starts: np.ndarray, ends: np.ndarray,
              where: str, steps: np.ndarray) -> dict[str, np.ndarray]:
    kfm = x[:, :, column(cols, ('EXT_KM_X', 'KFM'), where)]
    kam = x[:, :, column(cols, ('EXT_KM_Y', 'KAM'), where)]
    return {'peak_kfm': np.array([gait_events.peak_in_first_half(kfm[i], s, e)
                                  for i, (s, e) in enumerate(zip(starts, ends, strict=True))]),
            'peak_kam': np.array([gait_events.peak_in_first_half(kam[i], s, e)
                                  for i, (s, e) in enumerate(zip(starts, ends, strict=True))])}

  def _stances(self, x, cols, lengths, where, steps):
    """(start, end) of stance per step."""
    if str(self._opt('stance_from', 'padding')) == 'force_phase':
      fp = x[:, :, column(cols, ('force_phase',), where)] > 0.5
      if not fp.any(axis=1).all():
        bad = int(np.argmin(fp.any(axis=1)))
        raise ValueError(f'{where}: step {steps[bad]} has no force_phase samples')
      start = np.argmax(fp, axis=1)
      end = fp.shape[1] - np.argmax(fp[:, ::-1], axis=1)
      return start, end
    return np.full(len(lengths), self.PAD), lengths - self.PAD

  def _subject_examples(self, item):
    path, key = item
    where = f'{path}:{key}'
    subject = int(_KEY.match(key).group(1))
    x, cols = tables.read_h5_steps(path, key)
    if x.shape[0] == 0:
      raise ValueError(f'{where}: subject has no steps')
    steps = preprocess.finite_steps(x, cols, where)  # numbers as stored, for keys and messages
    x = x[steps]
    cfg = self.builder_config
    sites = self.sites()
    acc_idx = [imu_columns(cols, s, 'Accel', where) for s in sites]
    gyr_idx = [imu_columns(cols, s, 'Gyro', where) for s in sites]
    lengths = step_lengths(x, sum(acc_idx + gyr_idx, []))
    if (lengths <= 2 * self.PAD + 1).any():
      bad = int(np.argmax(lengths <= 2 * self.PAD + 1))
      raise ValueError(f'{where}: step {steps[bad]} has only {lengths[bad]} non-zero samples')
    starts, ends = self._stances(x, cols, lengths, where, steps)
    stance_s = float(np.median(ends - starts)) / self.SOURCE_RATE_HZ
    self._check_stance_duration(stance_s, where)
    acc = np.stack([x[:, :, i] for i in acc_idx], axis=1)  # [n, site, T, 3]
    acc_unit = str(self._opt('acc_unit', self.ACC_UNIT))
    gyr_unit = str(self._opt('gyr_unit', self.GYR_UNIT))
    gyr = preprocess.to_si(np.stack([x[:, :, i] for i in gyr_idx], axis=1), gyr_unit, 'gyr', where)
    acc = preprocess.to_si(acc, acc_unit, 'acc', where)
    mode = str(self._opt('axes', 'body'))
    maps = axes.mapping_for(self.DATASET, sites, mode, where)
    acc = np.stack([maps[s].apply(acc[:, i]) for i, s in enumerate(sites)], axis=1)
    gyr = np.stack([maps[s].apply(gyr[:, i]) for i, s in enumerate(sites)], axis=1)
    valid = np.arange(x.shape[1])[None, :] < lengths[:, None]  # [n, T]
    for i, s in enumerate(sites):
      a, g = acc[:, i][valid], gyr[:, i][valid]  # [samples, 3]
      if preprocess.as_bool(self._opt('check_units', True)):
        preprocess.check_imu_units(a, g, self.SOURCE_RATE_HZ, f'{where} {s}', acc_unit, gyr_unit,
                                   still_s=0.2)
      if mode == 'body' and 'FOOT' not in s and preprocess.as_bool(self._opt('check_axes', True)):
        axes.check_up_axis(a, s, where)  # the mean specific force over whole steps ~ +g up
    labels = self._labels(x, cols, starts, ends, where, steps)
    t_len = cfg.window_length
    fs = float(cfg.sample_rate_hz)
    for n in range(x.shape[0]):
      a, g = acc[n], gyr[n]
      if fs != self.SOURCE_RATE_HZ:
        a, g = self._resample_step(a, lengths[n], fs), self._resample_step(g, lengths[n], fs)
      yield f'{key}/{steps[n]}', self.example(
          a[:, :t_len], g[:, :t_len], subject, 0, {k: v[n] for k, v in labels.items()},
          where=f'{where} step {steps[n]}')

  def _check_stance_duration(self, stance_s: float, where: str) -> None:
    if not 0.35 <= stance_s <= 1.0:
      raise ValueError(f'{where}: median stance of {stance_s:.2f} s at {self.SOURCE_RATE_HZ:g} Hz '
                       f'is not walking (0.35-1.0 s); is the sampling rate right?')

  def _resample_step(self, v: np.ndarray, n_valid: int, fs: float) -> np.ndarray:
    """[site, T, 3] step resampled over its valid part and zero-padded back to T."""
    out = np.zeros_like(v)
    r = preprocess.resample(v[:, :n_valid], self.SOURCE_RATE_HZ, fs, axis=1)[:, :v.shape[1]]
    out[:, :r.shape[1]] = r
    return out
