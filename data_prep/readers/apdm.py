"""APDM Opal recordings (Mobility Lab / Moveo Explorer HDF5, file format version 5).

Layout read here, one group per sensor (``<id>`` is the sensor's case id, e.g. ``SI-000123``)::

  /Sensors/<id>/Accelerometer   float [n, 3]  m/s^2 (specific force, gravity included)
  /Sensors/<id>/Gyroscope       float [n, 3]  rad/s
  /Sensors/<id>/Time            uint64 [n]    microseconds (since 1970, shared by the sensors
                                              of one recording, which APDM synchronises)
  /Sensors/<id>/Configuration   attributes 'Label 0' (the sensor's label, e.g. b'Lumbar') and
                                'Sample Rate' (Hz)

The group and attribute names match what published readers of Opal files use (e.g. h5py code
reading ``Configuration.attrs['Label 0']`` / ``['Sample Rate']`` and ``Time`` / 1e6); APDM's own
file-format document was not available here. A dataset attribute ``Units``, when present, is
honoured; without one the units above are taken. Older files (version 3/4: ``/<case id>/
Calibrated/Accelerometers``) have no ``/Sensors`` group and are refused with that reason.
"""

from __future__ import annotations

import os

import numpy as np

from data_prep import preprocess
from data_prep.readers import tables
from data_prep.readers.timestamps import Recording

UNITS = {'Accelerometer': ('acc', 'm/s^2'), 'Gyroscope': ('gyr', 'rad/s')}


def _text(v) -> str:
  if v is None:
    return ''
  v = np.ravel(v)[0] if np.ndim(v) else v
  return (v.decode('utf-8', 'replace') if isinstance(v, bytes) else str(v)).strip('\x00 ')


def read_apdm(path: str | os.PathLike) -> dict[str, Recording]:
  """Every sensor of an Opal HDF5 file, by its label ('Label 0'; the case id when unlabelled)."""
  path = tables.require_file(path, 'an APDM Opal HDF5 recording (/Sensors/<id>/...)')
  out: dict[str, Recording] = {}
  with tables.open_h5(path) as f:
    if 'Sensors' not in f:
      version = f.attrs.get('FileFormatVersion', f.attrs.get('File_Format_Version'))
      raise ValueError(f'{path}: no /Sensors group (file format version {_text(version) or "?"}'
                       f'); expected an APDM v5 file with /Sensors/<id>/Accelerometer, '
                       f'Gyroscope, Time and Configuration, found {sorted(f.keys())}')
    for sid in sorted(f['Sensors'].keys()):
      g = f['Sensors'][sid]
      where = f'{path}: /Sensors/{sid}'
      missing = [k for k in ('Accelerometer', 'Gyroscope', 'Time', 'Configuration')
                 if k not in g]
      if missing:
        raise KeyError(f'{where}: missing {missing}; found {sorted(g.keys())}')
      attrs = g['Configuration'].attrs
      label = _text(attrs.get('Label 0')) or sid
      rate = attrs.get('Sample Rate')
      rate = float(np.ravel(rate)[0]) if rate is not None else None
      data = {}
      for key, (quantity, unit) in UNITS.items():
        x = np.asarray(g[key], dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != 3:
          raise ValueError(f'{where}/{key}: shape {x.shape}, expected [n, 3]')
        x = preprocess.check_finite(x, key, f'{where}/{key}', [f'{key} {a}' for a in 'XYZ'],
                                    row_name='sample')
        unit = _text(g[key].attrs.get('Units')) or unit
        data[quantity] = preprocess.to_si(x, unit, quantity, f'{where}/{key} Units')
      t = np.asarray(g['Time'], dtype=np.float64).ravel() * 1e-6
      if t.shape[0] != data['acc'].shape[0] or data['gyr'].shape[0] != t.shape[0]:
        raise ValueError(f'{where}: Time has {t.shape[0]} samples, Accelerometer '
                         f'{data["acc"].shape[0]}, Gyroscope {data["gyr"].shape[0]}')
      if label in out:
        raise ValueError(f'{where}: label {label!r} is used by two sensors; relabel one')
      out[label] = Recording(path=path, name=label, time_s=t, acc=data['acc'], gyr=data['gyr'],
                             rate_hz=rate, rate_source=f"{where}/Configuration 'Sample Rate'")
  if not out:
    raise ValueError(f'{path}: /Sensors holds no sensor')
  return out
