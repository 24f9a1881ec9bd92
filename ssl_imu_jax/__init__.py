"""ssl_imu_jax: self-supervised IMU pre-training (acc vs gyr InfoNCE) and fine-tuning in JAX.

``ssl_imu_jax.load_encoder(checkpoint_dir)`` gives a pre-trained encoder as a plain JAX function
(see ssl_imu_jax/encoder_api.py). It is imported on first use, so ``import ssl_imu_jax`` stays
cheap (no JAX import).
"""

__all__ = ['load_encoder']


def __getattr__(name):
  if name == 'load_encoder':
    from ssl_imu_jax.encoder_api import load_encoder  # noqa: PLC0415

    return load_encoder
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
