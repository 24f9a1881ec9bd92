"""The device mesh: one 'data' axis over all devices of all hosts (batch sharded on it)."""

from __future__ import annotations

import jax
from jax.sharding import NamedSharding, PartitionSpec

from ssl_imu_jax.errors import ConfigError


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
    raise ConfigError(f'config key {key}={batch_size} must be divisible by the {n} devices')


def maybe_initialize_distributed() -> None:
  """Joins a multi-host run when a launcher set one up; single-host runs are left alone.

  Must run before any other JAX call. Recognised: SLURM with more than one task and Cloud TPU pods
  (JAX detects both), or explicit ``JAX_COORDINATOR_ADDRESS`` + ``JAX_NUM_PROCESSES`` +
  ``JAX_PROCESS_ID`` for any other launcher.
  """
  import os

  env = os.environ
  # CPU processes exchange collectives over gloo (accelerators use their own; no effect there).
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if env.get('JAX_COORDINATOR_ADDRESS'):
    missing = [k for k in ('JAX_NUM_PROCESSES', 'JAX_PROCESS_ID') if k not in env]
    if missing:
      raise ValueError(f'JAX_COORDINATOR_ADDRESS is set but {missing} are not')
    jax.distributed.initialize(env['JAX_COORDINATOR_ADDRESS'], int(env['JAX_NUM_PROCESSES']),
                               int(env['JAX_PROCESS_ID']))
  elif int(env.get('SLURM_NTASKS', '1')) > 1 or env.get('TPU_WORKER_HOSTNAMES', '').count(','):
    jax.distributed.initialize()


def is_writer() -> bool:
  """Only process 0 writes the files every process would write alike (config, cards, reports)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Every process waits here until all arrive (a no-op in a single-process run)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # noqa: PLC0415

    multihost_utils.sync_global_devices(name)
