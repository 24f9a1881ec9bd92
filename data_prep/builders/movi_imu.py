"""MoVi IMU corpus (Ghorbani et al. 2021): unlabelled windows for pre-training.

Manual dir layout (one v5 MAT file per subject, from the MoVi Dataverse)::

  <manual_dir>/imu_Subject_<N>.mat      (N = 1..90; sub-folders are searched one level deep)

Each file holds a struct ``IMU`` with one field per capture round (``I1, I2, S1, S2`` are used by
default, as the reference code did; ``S1_Synched``/``S2_Synched`` exist too). A round has ``data``
(T x 16*J: per joint X(3) V(3) Q(4) A(3, g) W(3, rad/s)) and ``jointNames`` (J names). Joints are
found by name, never by position; acc is converted g -> m/s^2, both triads are rotated into the
body frame (``data_prep.axes``, option ``axes=sensor`` keeps the raw frames as the 2022 reference
did), resampled from 120 Hz (option ``source_rate_hz``) to the config rate (polyphase, anti-aliased,
where the rate goes down; option ``resample=linear`` as the reference), cut into windows (config
length and stride; stride 0 = non-overlapping as in the
reference), and windows whose mean accelerometer-channel std is below ``static_threshold_g``
(0.2 g) are dropped. Splits: 'train' / 'validation' by subject (subjects 81-90 validate when
present, as in the reference; else the last 10 %).

Options: sites (subset of the 17 joint names, '+'-separated), rounds, source_rate_hz,
acc_unit (g), gyr_unit (rad/s), static_threshold_g, axes (body | sensor), check_units (true),
nan_policy (error | drop), validation_subjects, validation_fraction, subjects, beam.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np
import scipy.io

from data_prep import axes, preprocess, records

log = logging.getLogger(__name__)

ROUNDS = ('I1', 'I2', 'S1', 'S2')  # reference order: trial ids 0..3 (datasets.md 1.2)
N_COLS_PER_JOINT = 16
A_OFFSET, W_OFFSET = 10, 13
LAYOUT = """  <manual_dir>/imu_Subject_<N>.mat   one v5 MAT file per subject, variable IMU (struct)
      with round fields (I1, I2, S1, S2, ...), each with data (T x 16*J: per joint X V Q A W)
      and jointNames (1 x J cell), e.g. imu_Subject_1.mat"""
_FILE = re.compile(r'^imu_Subject_(\d+)\.mat$', re.IGNORECASE)


class MoviImu(records.ImuWindowBuilder):
  """MoVi: 17 body-worn IMUs, unlabelled windows for acc-vs-gyr pre-training."""

  SITES = records.MOVI_SITES
  TARGETS: dict[str, str] = {}
  WITH_GYR = True
  MANUAL_DOWNLOAD_INSTRUCTIONS = f'Put the MoVi IMU files in manual_dir:\n{LAYOUT}'
  SOURCE_PATTERNS = ('*.mat', '*/*.mat')
  DESCRIPTION = __doc__

  def sites(self) -> tuple[str, ...]:
    chosen = preprocess.as_list(self._opt('sites', None))
    if not chosen:
      return tuple(records.MOVI_SITES)
    unknown = [s for s in chosen if s not in records.MOVI_SITES]
    if unknown:
      raise ValueError(f'movi_imu: option sites has unknown joint(s) {unknown}; expected names '
                       f'from {list(records.MOVI_SITES)}')
    return tuple(chosen)

  def extra_metadata(self) -> dict[str, Any]:
    mode = str(self._opt('axes', 'body'))
    return {'dataset': 'movi_imu',
            'axes': axes.mapping_json(axes.mapping_for('movi_imu', self.sites(), mode), mode),
            'source_rate_hz': float(self._opt('source_rate_hz', 120.0)),
            'rounds': self._rounds(), 'options': dict(self.builder_config.options)}

  def _rounds(self) -> list[str]:
    return preprocess.as_list(self._opt('rounds', None)) or list(ROUNDS)

  def _split_generators(self, dl_manager):
    root = preprocess.manual_dir(dl_manager, LAYOUT)
    files = find_subject_files(root)
    wanted = preprocess.parse_id_list(self._opt('subjects', None))
    if wanted:
      absent = [s for s in wanted if s not in files]
      if absent:
        raise FileNotFoundError(f'{root}: no imu_Subject_<N>.mat for subject(s) {absent}')
      files = {s: p for s, p in files.items() if s in wanted}
    val = self._opt('validation_subjects', None)
    if val is None and any(s >= 81 for s in files):
      val = '81-90'
    split = preprocess.split_subjects(list(files), val,
                                      float(self._opt('validation_fraction', 0.1)))
    self.info.metadata['splits_subjects'] = split
    return {name: self._generate_examples([(s, files[s]) for s in ids], name)
            for name, ids in split.items() if ids}

  def _generate_examples(self, items, split='train'):
    """A generator of (key, example), or a Beam PTransform with option beam=1."""
    return self.fan_out(items, self._subject_examples, f'movi_imu {split!r}')

  def _subject_examples(self, item):
    subject, path = item
    cfg = self.builder_config
    sites = self.sites()
    src_hz = float(self._opt('source_rate_hz', 120.0))
    mode = str(self._opt('axes', 'body'))
    maps = axes.mapping_for('movi_imu', sites, mode, path)
    rounds = load_rounds(path, self._rounds())
    thr = float(self._opt('static_threshold_g', 0.2))
    nan_policy = str(self._opt('nan_policy', 'error'))
    if nan_policy not in ('error', 'drop'):
      raise ValueError(f"movi_imu: option nan_policy={nan_policy!r}; expected 'error' or 'drop'")
    t_len = cfg.window_length
    for trial, (name, rnd) in enumerate(rounds.items()):
      if rnd is None:
        continue
      where = f'{path} round {name}'
      acc, gyr = joint_signals(rnd, sites, where, str(self._opt('acc_unit', 'g')),
                               str(self._opt('gyr_unit', 'rad/s')))
      finite = np.isfinite(acc).all(axis=(0, 2)) & np.isfinite(gyr).all(axis=(0, 2))
      if not finite.all() and nan_policy == 'error':
        bad = int(np.argmin(finite))
        raise ValueError(f'{where}: {int((~finite).sum())} samples with NaN/Inf (first at '
                         f'sample {bad}); use option nan_policy=drop to drop those windows')
      acc = np.stack([maps[s].apply(acc[i]) for i, s in enumerate(sites)])
      gyr = np.stack([maps[s].apply(gyr[i]) for i, s in enumerate(sites)])
      if preprocess.as_bool(self._opt('check_units', True)) and finite.all():
        for i, s in enumerate(sites):
          preprocess.check_imu_units(acc[i], gyr[i], src_hz, f'{where} joint {s}',
                                     str(self._opt('acc_unit', 'g')),
                                     str(self._opt('gyr_unit', 'rad/s')))
      if cfg.sample_rate_hz != src_hz:
        method = str(self._opt('resample', 'auto'))  # 'linear': as the reference
        acc = preprocess.resample(np.nan_to_num(acc), src_hz, cfg.sample_rate_hz, method, axis=1)
        gyr = preprocess.resample(np.nan_to_num(gyr), src_hz, cfg.sample_rate_hz, method, axis=1)
        finite = preprocess.resample(finite.astype(float), src_hz, cfg.sample_rate_hz,
                                     'linear') > 0.999
      starts = preprocess.window_starts(acc.shape[1], t_len, cfg.window_stride)
      if starts.size == 0:
        log.info('%s: %d samples, shorter than one window', where, acc.shape[1])
        continue
      good = preprocess.take_windows(finite, starts, t_len).all(axis=1)
      if thr > 0:
        a_w = np.moveaxis(preprocess.take_windows(np.moveaxis(acc, 1, 0), starts, t_len), 2, 1)
        good &= preprocess.dynamic_mask(np.nan_to_num(a_w), thr)
      for st in starts[good]:
        yield f'{subject}/{name}/{int(st)}', self.example(
            acc[:, st:st + t_len], gyr[:, st:st + t_len], subject, trial,
            where=f'{where} window at {st}', start=st)


# ----------------------------------------------------------------------------------------------
# Helpers, usable without TFDS

def find_subject_files(root) -> dict[int, str]:
  """{subject id: path} of every imu_Subject_<N>.mat in root or one folder below."""
  out: dict[int, str] = {}
  for p in sorted(list(root.glob('*.mat')) + list(root.glob('*/*.mat')), key=str):
    m = _FILE.match(p.name)
    if m:
      s = int(m.group(1))
      if s in out:
        raise ValueError(f'subject {s} appears twice: {out[s]} and {p}')
      out[s] = str(p)
  if not out:
    raise FileNotFoundError(f'{root}: no imu_Subject_<N>.mat files. Expected layout:\n{LAYOUT}')
  return dict(sorted(out.items()))


def load_rounds(path: str, rounds: list[str]) -> dict[str, Any]:
  """{round name: struct or None if absent}; errors name the file and what it holds."""
  try:
    mat = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)
  except Exception as e:  # scipy raises several types on corrupt or v7.3 input
    raise ValueError(f'{path}: not a readable v5 MAT file ({type(e).__name__}: {e})') from e
  if 'IMU' not in mat:
    raise KeyError(f'{path}: no variable IMU; found {sorted(k for k in mat if k[0] != "_")}')
  imu = mat['IMU']
  fields = list(getattr(imu, '_fieldnames', []))
  out = {r: getattr(imu, r) if r in fields else None for r in rounds}
  if all(v is None for v in out.values()):
    raise KeyError(f'{path}: IMU has none of the rounds {rounds}; found {fields}')
  missing = [r for r, v in out.items() if v is None]
  if missing:
    log.info('%s: rounds %s absent', path, missing)
  return out


def joint_signals(rnd: Any, sites: tuple[str, ...], where: str, acc_unit: str = 'g',
                  gyr_unit: str = 'rad/s') -> tuple[np.ndarray, np.ndarray]:
  """acc [J, T, 3] m/s^2 and gyr [J, T, 3] rad/s of the named joints (sensor frames)."""
  for f in ('data', 'jointNames'):
    if f not in getattr(rnd, '_fieldnames', []):
      raise KeyError(f'{where}: missing field {f!r}; found {getattr(rnd, "_fieldnames", [])}')
  data = np.atleast_2d(np.asarray(rnd.data, dtype=np.float64))
  names = [str(n).strip() for n in np.atleast_1d(rnd.jointNames)]
  if data.shape[1] != N_COLS_PER_JOINT * len(names):
    raise ValueError(f'{where}: data has {data.shape[1]} columns, expected {N_COLS_PER_JOINT} '
                     f'per joint x {len(names)} joints')
  idx = {n: i for i, n in enumerate(names)}
  missing = [s for s in sites if s not in idx]
  if missing:
    raise KeyError(f'{where}: jointNames lack {missing}; found {names}')
  cols = np.array([idx[s] for s in sites]) * N_COLS_PER_JOINT
  a = data[:, cols[:, None] + A_OFFSET + np.arange(3)]  # [T, J, 3]
  w = data[:, cols[:, None] + W_OFFSET + np.arange(3)]
  acc = preprocess.to_si(np.moveaxis(a, 1, 0), acc_unit, 'acc', where)
  gyr = preprocess.to_si(np.moveaxis(w, 1, 0), gyr_unit, 'gyr', where)
  return acc, gyr
