"""Deployment: a trained model as a plain JAX function (``encoder_api``, ``predict``) and released
weights (``release``)."""
