"""Released pre-trained encoders (one folder each; see README.md). Installed as the package
data of ``ssl_imu_jax.weights`` so ``load_encoder('weights/<name>')`` works from any install."""
