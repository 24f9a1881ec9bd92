"""Flax linen models: the 1-D ResNet encoder, heads, and the two-encoder SSL / regression models."""

from ssl_imu_jax.models.heads import MLP
from ssl_imu_jax.models.resnet1d import ResNet1D
from ssl_imu_jax.models.ssl_imu import ENCODERS, ContrastiveModel, ImuEncoder, RegressionModel

__all__ = ['ENCODERS', 'MLP', 'ContrastiveModel', 'ImuEncoder', 'RegressionModel', 'ResNet1D']
