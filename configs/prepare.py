r"""Builds TFDS records (ArrayRecord) for one or more data sets with shared knobs.

  python main.py --config=configs/prepare.py:tiny --workdir=runs/data --config.plot=True
  python main.py --config=configs/prepare.py --workdir=runs/data \
      --config.datasets="('movi_imu',)" --config.data.manual_dir=/data/MoVi

Records land in <workdir>/tfds/<dataset>/<config name>/<version> (or --config.data_dir).
"""

import ml_collections

from configs import common

SYNTHETIC = ('synthetic_movi', 'synthetic_running_valr', 'synthetic_walking_grf',
             'synthetic_walking_kfm')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = common.parse_arg(arg)
  c = ml_collections.ConfigDict()
  c.stage = 'prepare'
  c.data_dir = ''
  c.datasets = SYNTHETIC
  c.data = common.data_config('synthetic_movi', size)
  c.plot = False  # also draw a few seconds of synthetic signals to <workdir>/report/signals.png
  return c
