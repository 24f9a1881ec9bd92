"""One training step on 8 fake CPU devices equals the same step on 1 device.

The checks run in a subprocess (tests/multidevice_check.py) because the 8-device flag must be in
XLA_FLAGS before jax starts and slows every other test. Same global batch, same initial state:
loss, parameters, BatchNorm statistics and optimiser state agree within 1e-5, for the SSL step
(the reference NCE loss with 'global' negatives, shared encoder; also computed blockwise,
``ssl.chunk_size``), a full fine-tuning step, and a group of fine-tuning cells sharded cell-wise;
'local' negatives on 8 devices equal the loss with ``local_blocks=8`` on 1 device and differ
from 'global'.
"""

import json
import subprocess
import sys
from pathlib import Path

import jax
import pytest
from conftest import eight_device_env

TESTS = Path(__file__).resolve().parent
TOL = 1e-5


@pytest.fixture(scope='module')
def measured():
  # The suite's XLA flags (compile time dominates these tiny steps); both meshes are compiled
  # with the same flags, and sharding is decided before the backend runs.
  env = eight_device_env()
  cache = jax.config.jax_compilation_cache_dir  # conftest's per-session cache, if any
  if cache:
    env['JAX_COMPILATION_CACHE_DIR'] = cache
    env['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  proc = subprocess.run([sys.executable, str(TESTS / 'multidevice_check.py')], env=env,
                        capture_output=True, text=True, timeout=900, cwd=TESTS.parent)
  if proc.returncode:
    pytest.fail(f'multidevice_check.py failed ({proc.returncode}):\n{proc.stderr[-4000:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_eight_devices_are_really_used(measured):
  assert measured['device_count'] == 8
  assert measured['ssl_loss'] == 'reference_nce'  # the default recipe is what is checked
  assert measured['batch_shards_8dev'] == [2]  # global batch 16 -> 2 windows per device
  for key in ('pretrain_global', 'pretrain_chunked', 'finetune_full'):
    assert measured[key]['state_devices_1'] == 1
    assert measured[key]['state_devices_8'] == 8
    assert measured[key]['steps'] == [1, 1]


def test_initial_state_does_not_depend_on_device_count(measured):
  assert measured['init_max_diff'] <= 1e-6


@pytest.mark.parametrize('key', ['pretrain_global', 'pretrain_chunked', 'finetune_full'])
def test_one_step_on_8_devices_equals_1_device(measured, key):
  m = measured[key]
  assert abs(m['loss_8dev'] - m['loss_1dev']) <= TOL, m
  assert abs(m['grad_norm_8dev'] - m['grad_norm_1dev']) <= TOL * max(1.0, m['grad_norm_1dev']), m
  assert m['params_max_diff'] <= TOL, m
  assert m['batch_stats_max_diff'] <= TOL, m
  assert m['opt_state_max_diff'] <= TOL, m
  # The step really moved the state, by far more than the tolerance (lr 1e-3, no warm-up).
  assert m['params_change'] > 100 * TOL, m
  assert m['batch_stats_change'] > 100 * TOL, m


def test_local_negatives_are_per_device_blocks(measured):
  m, g = measured['pretrain_local'], measured['pretrain_global']
  # The 1-device reference reproduces the compiled step's global loss ...
  assert abs(m['loss_ref_1dev_global'] - g['loss_1dev']) <= TOL
  # ... and 'local' on 8 devices is InfoNCE over 8 contiguous blocks of the global batch.
  assert abs(m['loss_8dev'] - m['loss_ref_1dev_local_blocks']) <= TOL
  # Fewer negatives (3 per row: blocks of 2 windows x 2 sites, instead of 31): a lower loss.
  assert g['loss_8dev'] - m['loss_8dev'] > 0.5


def test_a_cell_group_sharded_over_8_devices_equals_1_device(measured):
  m = measured['multicell']
  assert (m['state_devices_1'], m['state_devices_8']) == (1, 8)  # cells really spread out
  assert m['params_max_diff'] <= TOL and m['batch_stats_max_diff'] <= TOL, m
  # The second step's loss is computed from parameters 2e-6 apart through BatchNorm over 4
  # windows per cell, which magnifies the rounding: 1.4e-5 measured, bounded at 1e-4.
  assert m['loss_max_rel_diff'] <= 10 * TOL, m
  assert m['params_change'] > 100 * TOL, m
  assert m['cells_differ'] > 100 * TOL, m  # each cell saw its own batches and rng
