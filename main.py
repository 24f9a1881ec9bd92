r"""Runs one stage of ssl_imu_jax; the config says which.

  python main.py --config=configs/demo.py:tiny --workdir=runs/demo_tiny
  python main.py --config=configs/pretrain.py --workdir=runs/pre --config.train.steps=10000

Stages: prepare | pretrain | finetune | sweep | evaluate | embed | demo.
"""

from __future__ import annotations

import os

from absl import app, flags, logging
from ml_collections import config_flags

from ssl_imu_jax import stages

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (path[:arg]).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for data, checkpoints and reports.')
_XLA_CACHE = flags.DEFINE_string(
    'xla_cache_dir', '', "Persistent XLA compilation cache ('' = <workdir>/xla_cache, "
    "'none' = off). Cells of a sweep share compiled steps through it.")
flags.mark_flags_as_required(['config', 'workdir'])


def enable_compilation_cache(path: str) -> None:
  import jax

  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  from ssl_imu_jax import parallel

  parallel.maybe_initialize_distributed()
  logging.set_verbosity(logging.ERROR)  # TFDS warns about every custom builder config
  import tensorflow_datasets as tfds

  tfds.disable_progress_bar()
  workdir = os.path.abspath(_WORKDIR.value)
  if _XLA_CACHE.value != 'none':
    enable_compilation_cache(_XLA_CACHE.value or os.path.join(workdir, 'xla_cache'))
  stages.run(_CONFIG.value, workdir)


if __name__ == '__main__':
  app.run(main)
