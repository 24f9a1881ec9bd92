"""The device mesh: one 'data' axis over all devices of all hosts (batch sharded on it)."""

from __future__ import annotations

import jax
from jax.sharding import NamedSharding, PartitionSpec


def make_mesh(num_devices: int = 0) -> jax.sharding.Mesh:
  """A 1-D mesh named 'data' over all (or the first ``num_devices``) devices, auto sharding."""
  devices = jax.devices()
  n = num_devices or len(devices)
  if n > len(devices):
    raise ValueError(f'asked for {n} devices, only {len(devices)} available')
  return jax.make_mesh((n,), ('data',), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices[:n])


def data_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec('data'))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def check_batch(batch_size: int, mesh, key: str = 'train.batch_size') -> None:
  n = mesh.devices.size
  if batch_size % n:
    raise ValueError(f'config key {key}={batch_size} must be divisible by the {n} devices')


def maybe_initialize_distributed() -> None:
  """Joins a multi-host run when a launcher set one up (SLURM, TPU pod, JAX_COORDINATOR_ADDRESS).

  Must run before any other JAX call. Single-host runs are left alone.
  """
  import os

  multi = any(k in os.environ for k in ('JAX_COORDINATOR_ADDRESS', 'SLURM_NTASKS', 'TPU_WORKER_ID',
                                        'CLOUD_TPU_TASK_ID'))
  if multi and int(os.environ.get('SLURM_NTASKS', '2')) > 1:
    jax.distributed.initialize()
