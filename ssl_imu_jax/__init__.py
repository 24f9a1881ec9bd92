"""ssl_imu_jax: self-supervised IMU pre-training (acc vs gyr NCE) and fine-tuning in JAX.

``ssl_imu_jax.load_encoder(checkpoint_dir)`` gives a pre-trained encoder as a plain JAX function
(ssl_imu_jax/deploy/encoder_api.py); ``ssl_imu_jax.load_regressor(checkpoint_dir)`` a fine-tuned
model that maps IMU windows to labels in their units (ssl_imu_jax/deploy/predict.py). Both are
imported on first use, so ``import ssl_imu_jax`` stays cheap (no JAX import).
"""

__all__ = ['load_encoder', 'load_regressor']


def __getattr__(name):
  if name == 'load_encoder':
    from ssl_imu_jax.deploy.encoder_api import load_encoder  # noqa: PLC0415

    return load_encoder
  if name == 'load_regressor':
    from ssl_imu_jax.deploy.predict import load_regressor  # noqa: PLC0415

    return load_regressor
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
