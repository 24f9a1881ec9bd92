"""Running vertical average loading rate (Tan, Strout & Shull 2021): loader interface.

The data are not public [U]; this builder reads the step-wise HDF5 layout the reference SSL code
used, with the knee-moment conventions (``data_prep.builders.knee_moment``)::

  <manual_dir>/<name>.h5       one file (option ``file`` when several)
      subject_<N>              float [n_steps, T, F], zero-padded after each step, N = 0..14
                               (any integer; the reference used subject_0 ... subject_14)
      attribute ``columns``    JSON list of the F field names, at least
                               L_SHANK_Accel_X..Z (m/s^2), L_SHANK_Gyro_X..Z (deg/s), VALR (BW/s)
                               (AccelX_L_SHANK style names work too; other sites via ``sites``)

Label ``valr`` (BW/s): by default the value at argmax |VALR| along the step (the column holds the
step's VALR at one sample or everywhere; datasets.md 5.4). With ``valr_from=vgrf`` it is computed
instead from a vertical GRF column (``vgrf_column``, N, default ``vGRF``) and the ``body weight``
column (kg) with ``gait_events.detect_stances`` and ``valr_bw_per_s`` (20-80 % of the impact
peak, 13 % of stance without one), and the stance duration (0.18-0.38 s, datasets.md 6.1) checks
the declared sampling rate. Steps are stored at 200 Hz (option ``source_rate_hz``); units are
options ``acc_unit`` / ``gyr_unit`` because they are not documented [U]. The input window is the
first ``window_length`` samples of each step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from data_prep import gait_events, preprocess
from data_prep.builders.knee_moment import KneeMoment, column

LAYOUT = """  <manual_dir>/<name>.h5: datasets subject_<N> [n_steps, T, F] (zero-padded, 200 Hz),
      file attribute 'columns' = JSON list of F names incl. L_SHANK_Accel_X..Z (m/s^2),
      L_SHANK_Gyro_X..Z (deg/s) and VALR (BW/s); for valr_from=vgrf also vGRF (N), body weight"""


class RunningValr(KneeMoment):
  """Running loading rate: one shank IMU (by default) -> VALR per step."""

  SITES = ('L_SHANK',)
  TARGETS = {'valr': 'BW/s'}
  LAYOUT = LAYOUT
  MANUAL_DOWNLOAD_INSTRUCTIONS = f'Put the step-wise running HDF5 file in manual_dir:\n{LAYOUT}'
  DESCRIPTION = __doc__
  DATASET = 'running_valr'
  DEFAULT_SOURCE_RATE_HZ = 200.0
  PAD = 0
  MAX_STEP = 0  # checked per file instead
  STANCE_RANGE_S = (0.18, 0.38)

  def sites(self) -> tuple[str, ...]:
    return tuple(preprocess.as_list(self._opt('sites', None))) or self.SITES

  def _stances(self, x, cols, lengths, where, steps):
    if str(self._opt('valr_from', 'column')) == 'vgrf':
      return self._vgrf_stances(x, cols, where, steps)
    return np.zeros(len(lengths), np.int64), lengths

  def _vgrf_stances(self, x, cols, where, steps):
    f = x[:, :, column(cols, (str(self._opt('vgrf_column', 'vGRF')),), where)]
    starts, ends = [], []
    for n in range(f.shape[0]):
      st = gait_events.detect_stances(f[n], self.SOURCE_RATE_HZ)
      if len(st) != 1:
        raise ValueError(f'{where}: step {steps[n]} has {len(st)} stances in the vGRF column '
                         f'(expected one complete contact above 20 N)')
      starts.append(st[0, 0])
      ends.append(st[0, 1])
    return np.array(starts), np.array(ends)

  def _check_stance_duration(self, stance_s: float, where: str) -> None:
    if str(self._opt('valr_from', 'column')) != 'vgrf':
      return  # no stance information without a force column
    lo, hi = self.STANCE_RANGE_S
    if not lo <= stance_s <= hi:
      raise ValueError(f'{where}: median stance of {stance_s:.3f} s at {self.SOURCE_RATE_HZ:g} Hz '
                       f'is not running ({lo}-{hi} s); is the sampling rate right?')

  def _labels(self, x, cols, starts, ends, where, steps) -> dict[str, np.ndarray]:
    t_len = self.builder_config.window_length
    if t_len > x.shape[1]:
      raise ValueError(f'{where}: window_length {t_len} is longer than the stored steps '
                       f'({x.shape[1]} samples)')
    if str(self._opt('valr_from', 'column')) == 'vgrf':
      f = x[:, :, column(cols, (str(self._opt('vgrf_column', 'vGRF')),), where)]
      mass = x[:, 0, column(cols, ('body weight', 'body_weight'), where)]
      valr = []
      for n in range(x.shape[0]):
        try:
          valr.append(gait_events.valr_bw_per_s(f[n], starts[n], ends[n], self.SOURCE_RATE_HZ,
                                                mass[n]))
        except ValueError as e:
          raise ValueError(f'{where}: step {steps[n]}: {e}') from e
      return {'valr': np.array(valr)}
    v = x[:, :, column(cols, ('VALR',), where)]
    return {'valr': v[np.arange(len(v)), np.argmax(np.abs(v), axis=1)]}

  def extra_metadata(self) -> dict[str, Any]:
    meta = super().extra_metadata()
    meta['valr_from'] = str(self._opt('valr_from', 'column'))
    return meta
