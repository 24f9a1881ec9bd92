"""Gait events and step labels from force-plate signals, shared by real and synthetic data sets.

One module so that every data set defines stance, peak vGRF, VALR and knee moments the same way
(docs: ../shared/docs/datasets.md sections 3.2 and 6):

* ``detect_stances``: contacts where vGRF exceeds a threshold (20 N, Tan lab), debounced.
* ``peak_vgrf_bw``: max vGRF in stance / body weight.
* ``valr_bw_per_s``: vertical average loading rate between 20 % and 80 % of the impact peak
  (first distinct local maximum; 13 % of stance when there is none).
* ``peak_in_first_half``: e.g. peak knee flexion moment in the first half of stance.
* ``knee_moment_lever_arm``: external knee moment r x F in %BW*BH.

All forces are in newtons (vertical positive up, the force the ground applies to the body) and the
sample rate in Hz; BW = m * g with g = 9.81 (the lab code rounds g to 10; we do not).
"""

from __future__ import annotations

import numpy as np

G = 9.81


def _as_1d(x: np.ndarray, name: str) -> np.ndarray:
  x = np.asarray(x, dtype=np.float64)
  if x.ndim != 1:
    raise ValueError(f'{name} must be 1-D (samples,), got shape {x.shape}')
  if x.size == 0:
    raise ValueError(f'{name} is empty')
  return x


def _check_positive(value: float, name: str) -> float:
  value = float(value)
  if not np.isfinite(value) or value <= 0:
    raise ValueError(f'{name} must be a positive finite number, got {value}')
  return value


def _check_span(n: int, start: int, end: int) -> tuple[int, int]:
  start, end = int(start), int(end)
  if not 0 <= start < end <= n:
    raise ValueError(f'stance span [{start}, {end}) is not inside the signal of {n} samples '
                     'or is empty')
  return start, end


def _runs(mask: np.ndarray) -> np.ndarray:
  """[n, 2] start / end-exclusive indices of the True runs of a boolean vector."""
  padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
  d = np.diff(padded)
  return np.stack([np.flatnonzero(d == 1), np.flatnonzero(d == -1)], axis=1)


def detect_stances(vgrf: np.ndarray, sample_rate_hz: float, threshold_n: float = 20.0,
                   min_duration_s: float = 0.1, debounce_s: float = 0.02) -> np.ndarray:
  """Foot contacts of a vertical GRF trace.

  Contact = vGRF > ``threshold_n``. As a stand-in for the Tan-lab confirmation rule (a crossing
  counts when most of the next ~20 ms agree, datasets.md 6.4), gaps below threshold shorter than
  ``debounce_s`` inside a contact are bridged. Contacts that touch the first or last sample are
  incomplete and dropped, and so are contacts shorter than ``min_duration_s``.

  Args:
    vgrf: (T,) vertical ground reaction force in N (or any unit matching ``threshold_n``).
    sample_rate_hz: sample rate of ``vgrf``.
    threshold_n: contact threshold.
    min_duration_s: shortest contact kept.
    debounce_s: longest below-threshold gap that is bridged.

  Returns:
    int64 array [n, 2] of (start, end) samples; start = first sample above threshold, end =
    first sample after the contact (exclusive).
  """
  f = _as_1d(vgrf, 'vgrf')
  fs = _check_positive(sample_rate_hz, 'sample_rate_hz')
  if not np.all(np.isfinite(f)):
    raise ValueError(f'vgrf has {int((~np.isfinite(f)).sum())} NaN/Inf samples')
  runs = _runs(f > threshold_n)
  if len(runs) == 0:
    return np.zeros((0, 2), dtype=np.int64)
  gap_max = int(round(debounce_s * fs))
  if gap_max > 0 and len(runs) > 1:
    gaps = runs[1:, 0] - runs[:-1, 1]
    keep_break = gaps > gap_max  # a real swing / flight between runs i and i+1
    starts = runs[np.concatenate([[True], keep_break]), 0]
    ends = runs[np.concatenate([keep_break, [True]]), 1]
    runs = np.stack([starts, ends], axis=1)
  complete = (runs[:, 0] > 0) & (runs[:, 1] < f.size)
  long_enough = (runs[:, 1] - runs[:, 0]) >= int(round(min_duration_s * fs))
  return runs[complete & long_enough].astype(np.int64)


def peak_vgrf_bw(vgrf: np.ndarray, start: int, end: int, body_mass_kg: float,
                 g: float = G) -> float:
  """Peak vertical GRF of the stance [start, end) in body weights (max / (m g))."""
  f = _as_1d(vgrf, 'vgrf')
  start, end = _check_span(f.size, start, end)
  bw = _check_positive(body_mass_kg, 'body_mass_kg') * _check_positive(g, 'g')
  return float(np.max(f[start:end]) / bw)


def impact_peak_index(vgrf: np.ndarray, start: int, end: int, body_mass_kg: float,
                      g: float = G, min_prominence_bw: float = 0.1,
                      max_stance_frac: float = 0.35,
                      fallback_frac: float = 0.13) -> tuple[int, bool]:
  """Sample of the impact peak of one stance, and whether a distinct peak was found.

  The impact peak is the first local maximum of the stance with a prominence of at least
  ``min_prominence_bw`` body weights that lies in the first ``max_stance_frac`` of stance (the
  later active peak is not an impact peak). Without one (typical of forefoot strikes) the lab
  convention takes the sample at ``fallback_frac`` (13 %) of stance.
  """
  f = _as_1d(vgrf, 'vgrf')
  start, end = _check_span(f.size, start, end)
  bw = _check_positive(body_mass_kg, 'body_mass_kg') * _check_positive(g, 'g')
  seg = f[start:end]
  from scipy import signal as sps  # noqa: PLC0415 (scipy: ~1.5 s to import; loaded where used)
  peaks, _ = sps.find_peaks(seg, prominence=min_prominence_bw * bw)
  n = end - start
  peaks = peaks[peaks < max_stance_frac * n]
  if len(peaks):
    return start + int(peaks[0]), True
  return start + int(round(fallback_frac * n)), False


def valr_bw_per_s(vgrf: np.ndarray, start: int, end: int, sample_rate_hz: float,
                  body_mass_kg: float, g: float = G, **impact_kwargs) -> float:
  """Vertical average loading rate of one stance in BW/s (datasets.md 6.1).

  VALR = [F(t80) - F(t20)] / (t80 - t20) / BW, where t20 / t80 are the samples before the impact
  peak (``impact_peak_index``) whose force is closest to 20 % / 80 % of the impact-peak force.

  Raises:
    ValueError: if t80 == t20 (a ramp too steep for the sample rate).
  """
  f = _as_1d(vgrf, 'vgrf')
  fs = _check_positive(sample_rate_hz, 'sample_rate_hz')
  bw = _check_positive(body_mass_kg, 'body_mass_kg') * _check_positive(g, 'g')
  ip, _ = impact_peak_index(f, start, end, body_mass_kg, g, **impact_kwargs)
  rise = f[start:ip + 1]
  fp = f[ip]
  t20 = start + int(np.argmin(np.abs(rise - 0.2 * fp)))
  t80 = start + int(np.argmin(np.abs(rise - 0.8 * fp)))
  if t80 <= t20:
    raise ValueError(f'VALR undefined for stance [{start}, {end}): t80 ({t80}) is not after t20 '
                     f'({t20}); the loading ramp spans under one sample at {fs} Hz')
  return float((f[t80] - f[t20]) / ((t80 - t20) / fs) / bw)


def peak_in_first_half(signal: np.ndarray, start: int, end: int) -> float:
  """Max of ``signal`` over the first half of stance, samples [start, start + (end-start)//2]."""
  x = _as_1d(signal, 'signal')
  start, end = _check_span(x.size, start, end)
  stop = start + max(1, (end - start) // 2)
  return float(np.max(x[start:stop]))


def knee_moment_lever_arm(grf_xyz: np.ndarray, cop_xyz: np.ndarray, knee_xyz: np.ndarray,
                          body_mass_kg: float, height_m: float, g: float = G) -> np.ndarray:
  """External knee moment of the GRF about the knee centre, %BW*BH (datasets.md 3.2).

  Frame as in the knee-moment data set: x medio-lateral (to the right), y forward, z up, so
  sagittal rotation is about x. M = r x F with r = CoP - knee centre; the x component is
  sign-flipped so that a positive value is an external knee *flexion* moment (GRF passing behind
  the knee). Normalised by m g h and multiplied by 100.

  Args:
    grf_xyz: (T, 3) force the ground applies to the foot, N (z up; a plate reading is its
      negative).
    cop_xyz: (T, 3) centre of pressure, m (ignored where the force is below 1 N).
    knee_xyz: (T, 3) knee joint centre, m.
    body_mass_kg, height_m: subject body mass and height.

  Returns:
    (T, 3) float64 [KFM, KAM-like y component, z component] in %BW*BH.
  """
  arrays = []
  for name, a in (('grf_xyz', grf_xyz), ('cop_xyz', cop_xyz), ('knee_xyz', knee_xyz)):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
      raise ValueError(f'{name} must have shape (T, 3), got {a.shape}')
    arrays.append(a)
  f, cop, knee = arrays
  if not f.shape == cop.shape == knee.shape:
    raise ValueError(f'grf_xyz {f.shape}, cop_xyz {cop.shape} and knee_xyz {knee.shape} must '
                     'have the same shape')
  m = _check_positive(body_mass_kg, 'body_mass_kg')
  h = _check_positive(height_m, 'height_m')
  if h > 3.0:
    raise ValueError(f'height_m = {h}: expected metres (about 1.4-2.1)')
  r = cop - knee
  loaded = np.linalg.norm(f, axis=1) > 1.0  # CoP is undefined (often zeroed) without load
  if loaded.any() and np.nanmax(np.abs(r[loaded])) > 3.0:
    raise ValueError(f'|CoP - knee| reaches {np.nanmax(np.abs(r[loaded])):.1f} under load: '
                     'expected metres; convert mm to m first')
  moment = np.cross(r, f)
  moment[:, 0] *= -1.0
  return moment / (m * _check_positive(g, 'g') * h) * 100.0
