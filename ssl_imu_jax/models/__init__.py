"""Flax linen models: the 1-D ResNet encoder, heads, the two-encoder SSL / regression models, and
the masked-reconstruction Transformer (issue 27)."""

from ssl_imu_jax.models.heads import MLP
from ssl_imu_jax.models.resnet1d import ResNet1D
from ssl_imu_jax.models.ssl_imu import ENCODERS, ContrastiveModel, ImuEncoder, RegressionModel
from ssl_imu_jax.models.transformer import MaskedTransformer

__all__ = ['ENCODERS', 'MLP', 'ContrastiveModel', 'ImuEncoder', 'MaskedTransformer',
           'RegressionModel', 'ResNet1D']
