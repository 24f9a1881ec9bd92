"""Real treadmill running, one runner: sacral accelerometer -> vertical GRF curve (issue 27).

A small *real* curve task, a smoke test: one runner only, so no subject-wise cross-validation
is possible and nothing measured on it says how a model generalises to new people.

Source: Alcantara et al. 2022 (PeerJ, 'Predicting continuous ground reaction forces from
accelerometers during uphill and downhill running'), repository
alcantarar/Recurrent_GRF_Prediction, Apache-2.0 (``LICENSE-Recurrent_GRF_Prediction.txt`` travels
with the files; they are read in place, never copied into this repository)::

  <manual_dir>/GRF_one_sub.csv            31 rows x 2480: vertical GRF, BW, 500 Hz
  <manual_dir>/Accelerometer_one_sub.csv  31 rows x 4960: sacral vertical then AP acceleration, g
  <manual_dir>/Sub_Info_one_sub.csv       one row per trial: Sub, Sex, Height (cm), Mass (kg),
                                          RFS/MFS/FFS (%), Speed (m/s), Slope (deg), ...

In the shared workplace: ``../shared/data/real_running_grf``. Each row is one trial (4.96 s at
2.5-4.17 m/s, slopes -10..+10 deg). Records: ``subject_id`` = the file's ``Sub``; ``trial`` =
the row (0-30); both signals resampled from 500 Hz (option ``source_rate_hz``) to the config
rate (polyphase, anti-aliased; 100 Hz by default, 496 samples per trial) and cut into windows
of the config length (default 128 = 1.28 s, three per trial; stride 0 = non-overlapping).

- ``acc`` [1, T, 3] (site ``Hip``, the MoVi name of the sacral site), body frame of
  docs/data_formats.md: +x forward = the file's AP axis, +y up = its vertical axis, both g ->
  m/s^2 as recorded (gravity included; no axis verified against a still stretch: the file has
  none). The file has no medio-lateral axis: +z is written as 0 and metadata
  ``acc_axes_present`` says [true, true, false]. No gyroscope.
- ``grf_curve`` [T, 3], axes (ML, AP, V): only V is measured, the treadmill's force normal to
  its surface, both feet together (running has no double support), BW, force on the body;
  ML and AP are NaN (metadata ``curves.grf_curve.present`` = [false, false, true]), so a loss
  or metric must skip them (``ssl_imu_jax.metrics.curve_metrics`` does). The resampling
  filter leaves flight phases a few hundredths of a BW around 0 (the file itself dips to
  -0.08).
- No scalar labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from data_prep import preprocess, records

FILES = ('GRF_one_sub.csv', 'Accelerometer_one_sub.csv', 'Sub_Info_one_sub.csv')
LAYOUT = """  <manual_dir>/GRF_one_sub.csv            trials x n: vertical GRF (BW) at 500 Hz
  <manual_dir>/Accelerometer_one_sub.csv  trials x 2n: sacral vertical then AP acceleration (g)
  <manual_dir>/Sub_Info_one_sub.csv       one row per trial: Sub, Sex, Height, Mass, RFS, MFS,
                                          FFS, Speed, Slope
  (Alcantara et al. 2022, alcantarar/Recurrent_GRF_Prediction; shared workplace:
  ../shared/data/real_running_grf)"""
FRAME = ('treadmill: V = the force normal to the belt surface (slopes -10..+10 deg, so not '
         'exactly vertical), + away from the belt (the force on the body), both feet together; '
         'ML and AP not measured')
G = 9.81


class RealRunningGrf(records.ImuWindowBuilder):
  """One runner's sacral accelerometer and vertical GRF curve (a real-data smoke test)."""

  SITES = ('Hip',)
  TARGETS: dict[str, str] = {}
  WITH_GYR = False
  MANUAL_DOWNLOAD_INSTRUCTIONS = f'Point manual_dir at the real running files:\n{LAYOUT}'
  SOURCE_PATTERNS = FILES
  DESCRIPTION = __doc__

  def curves(self) -> dict[str, dict[str, Any]]:
    return {'grf_curve': records.curve_spec('BW', FRAME, present=(False, False, True),
                                            foot='both (one treadmill plate)')}

  def _src_hz(self) -> float:
    return float(self._opt('source_rate_hz', 500.0))

  def extra_metadata(self) -> dict[str, Any]:
    return {'dataset': 'real_running_grf', 'source_rate_hz': self._src_hz(),
            'acc_axes_present': [True, True, False],
            'axes': {'Hip': {'forward': 'file AP (+)', 'up': 'file vertical (+)',
                             'right': 'absent (written as 0)', 'verified': False}},
            'licence': 'Apache-2.0 (LICENSE-Recurrent_GRF_Prediction.txt beside the files)',
            'smoke_test': 'one runner: no subject-wise cross-validation is possible',
            'options': dict(self.builder_config.options)}

  def _split_generators(self, dl_manager):
    root = preprocess.manual_dir(dl_manager, LAYOUT)
    missing = [f for f in FILES if not (root / f).is_file()]
    if missing:
      raise FileNotFoundError(f'{root}: missing {missing}. Expected layout:\n{LAYOUT}')
    return {'train': self._generate_examples(root)}

  def _generate_examples(self, root):
    import pandas as pd  # noqa: PLC0415

    cfg = self.builder_config
    grf = np.loadtxt(root / FILES[0], delimiter=',', ndmin=2)
    acc = np.loadtxt(root / FILES[1], delimiter=',', ndmin=2)
    info = pd.read_csv(root / FILES[2])
    n_trials, n = grf.shape
    if acc.shape != (n_trials, 2 * n) or len(info) != n_trials:
      raise ValueError(f'{root}: {FILES[0]} is {grf.shape}, {FILES[1]} {acc.shape} (expected '
                       f'{(n_trials, 2 * n)}: vertical then AP), {FILES[2]} has {len(info)} rows')
    subjects = self.info.metadata.setdefault('subjects', {})
    trials = self.info.metadata.setdefault('trials', {})
    src_hz, t_len = self._src_hz(), int(cfg.window_length)
    for row in range(n_trials):
      where = f'{root / FILES[0]} row {row}'
      r = info.iloc[row]
      sid = int(r['Sub'])
      subjects[str(sid)] = {'mass_kg': float(r['Mass']), 'height_m': float(r['Height']) / 100,
                            'sex': str(r['Sex'])}
      trials[str(row)] = {'speed_m_s': float(r['Speed']), 'slope_deg': float(r['Slope']),
                          'strike_pct': {k: float(r[k]) for k in ('RFS', 'MFS', 'FFS')}}
      body = np.stack([acc[row, n:], acc[row, :n], np.zeros(n)], -1) * G   # fwd, up, right
      vgrf = grf[row]
      preprocess.check_finite(body, 'acc', where)
      preprocess.check_finite(vgrf[:, None], 'vertical GRF', where)
      if cfg.sample_rate_hz != src_hz:
        body = preprocess.resample(body, src_hz, cfg.sample_rate_hz)
        vgrf = preprocess.resample(vgrf, src_hz, cfg.sample_rate_hz)
      body[:, 2] = 0.0                                   # stays exactly 0 (absent)
      curve = np.full((len(vgrf), 3), np.nan)
      curve[:, 2] = vgrf
      for st in preprocess.window_starts(len(vgrf), t_len, cfg.window_stride):
        sl = slice(int(st), int(st) + t_len)
        yield f'{sid}/{row:02d}/{int(st)}', self.example(
            body[None, sl], None, sid, row, where=f'{where} window at {int(st)}',
            start=int(st), curves={'grf_curve': curve[sl]})
