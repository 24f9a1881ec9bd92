"""A non-editable install works on its own: package data (the model-card template, the released
weights) travels with the code, and nothing reads the source tree."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RENDER = '''
import ssl_imu_jax, ssl_imu_jax.models.model_card as mc
from configs import pretrain
cfg = pretrain.get_config('tiny')
meta = {'config': cfg.to_dict(), 'encoder': cfg.model.encoder.to_dict(),
        'normalization': {'acc_mean': 9.8, 'acc_std': 3.0, 'gyr_mean': 0.0, 'gyr_std': 1.0},
        'dataset': {'name': 'synthetic_movi', 'split': 'train', 'num_windows': 10, 'subjects': [0],
                    'sites': ['Hip'], 'sample_rate_hz': 100.0, 'window_length': 128}}
print(ssl_imu_jax.__file__)
print(mc.render(meta, {'loss': 1.0}, {'top1': 0.5}).splitlines()[0])
from ssl_imu_jax.deploy import release
from ssl_imu_jax.training import checkpointing
name = 'weights/synthetic_movi_100hz_128'
print(checkpointing.locate(name))
print(release.verify(checkpointing.locate(name)))
_, _, stored, now = release.reference_embeddings(name)
print(float(abs(stored - now).max()))
'''


def test_non_editable_install_renders_the_card_and_loads_the_released_weights(tmp_path):
  target = tmp_path / 'site'
  # A clean copy of the sources (no stale build/ from earlier builds can mask a missing file).
  src = tmp_path / 'src'
  shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
      '.venv', 'runs', 'build', '.git', '__pycache__', '*.egg-info', '.pytest_cache', 'tests'))
  # No build isolation and no dependencies: nothing is downloaded; the venv's setuptools builds.
  subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps',
                  '--no-build-isolation', '--target', str(target), str(src)], check=True,
                 capture_output=True, text=True, timeout=300, cwd=tmp_path)
  assert (target / 'ssl_imu_jax' / 'templates' / 'pretrain_model_card.md').is_file()
  env = dict(os.environ, PYTHONPATH=str(target))
  out = subprocess.run([sys.executable, '-c', RENDER], check=True, capture_output=True,
                       text=True, timeout=300, cwd=tmp_path, env=env).stdout.splitlines()
  assert out[0].startswith(str(target))  # the installed copy, not the source tree
  assert out[1] == '# Model card: ssl_imu_jax pre-trained IMU encoder'
  assert out[2] == str(target / 'ssl_imu_jax' / 'weights' / 'synthetic_movi_100hz_128')
  assert int(out[3]) >= 5  # files checked against SHA256SUMS
  assert float(out[4]) < 1e-5  # the installed encoder embeds the reference input as recorded
