"""C3D analog channels (IMU or force channels recorded as analogs) through ezc3d."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from data_prep import preprocess


@dataclasses.dataclass
class C3dAnalogs:
  """All analog channels of one file: ``data`` [T, C] (scaled by ezc3d), labels, units, rate."""

  path: str
  sample_rate_hz: float
  labels: list[str]
  units: list[str]
  data: np.ndarray

  def channels(self, names: Sequence[str]) -> np.ndarray:
    """[T, len(names)] float64; a KeyError naming the file and the missing labels."""
    idx = {lab: i for i, lab in enumerate(self.labels)}
    missing = [n for n in names if n not in idx]
    if missing:
      raise KeyError(f'{self.path}: missing analog channel(s) {missing}; found {self.labels}')
    x = self.data[:, [idx[n] for n in names]]
    return preprocess.check_finite(x, f'analog channels {list(names)}', self.path, list(names),
                                   row_name='analog sample')

  def unit_of(self, name: str) -> str:
    return self.units[self.labels.index(name)] if self.units else ''


def read_c3d_analogs(path: str | os.PathLike) -> C3dAnalogs:
  """Reads the ANALOG section of a C3D file (ezc3d applies SCALE / OFFSET / GEN_SCALE)."""
  import ezc3d  # noqa: PLC0415 (heavy import, only when C3D is used)

  path = os.fspath(path)
  if not Path(path).is_file():
    raise FileNotFoundError(f'{path}: C3D file not found')
  c = ezc3d.c3d(path)
  ana = c['parameters']['ANALOG']
  labels = [str(s).strip() for s in ana['LABELS']['value']]
  if not labels:
    raise ValueError(f'{path}: the C3D file has no analog channels (ANALOG:LABELS is empty)')
  units = [str(s).strip() for s in ana['UNITS']['value']] if 'UNITS' in ana else []
  rate = float(np.ravel(ana['RATE']['value'])[0])
  data = np.asarray(c['data']['analogs'], dtype=np.float64)[0].T  # [T, C]
  return C3dAnalogs(path=path, sample_rate_hz=rate, labels=labels, units=units, data=data)


def write_c3d_analogs(path: str | os.PathLike, channels: Mapping[str, np.ndarray],
                      sample_rate_hz: float, units: Mapping[str, str] | None = None,
                      point_rate_hz: float | None = None) -> None:
  """Writes analog channels (and no markers) to a C3D file: for fixtures and conversions."""
  import ezc3d  # noqa: PLC0415

  names = list(channels)
  data = np.stack([np.asarray(channels[n], dtype=np.float64) for n in names])  # [C, T]
  point_rate_hz = float(point_rate_hz or sample_rate_hz)
  ratio = sample_rate_hz / point_rate_hz
  n_frames = data.shape[1] / ratio
  if ratio < 1 or abs(ratio - round(ratio)) > 1e-9 or abs(n_frames - round(n_frames)) > 1e-9:
    raise ValueError(f'{path}: analog rate {sample_rate_hz} must be an integer multiple of the '
                     f'point rate {point_rate_hz} and the sample count a multiple of the ratio')
  c = ezc3d.c3d()
  c['parameters']['POINT']['RATE']['value'] = [point_rate_hz]
  c['parameters']['POINT']['LABELS']['value'] = ()
  c['parameters']['ANALOG']['RATE']['value'] = [float(sample_rate_hz)]
  c['parameters']['ANALOG']['LABELS']['value'] = tuple(names)
  c['parameters']['ANALOG']['UNITS']['value'] = tuple((units or {}).get(n, '') for n in names)
  c['data']['analogs'] = data[None]
  c['data']['points'] = np.zeros((4, 0, int(round(n_frames))))
  c.write(os.fspath(path))
