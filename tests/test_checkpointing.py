import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_imu_jax.training import checkpointing, trainer
from ssl_imu_jax.training.metric_writers import MetricWriter


def _state(seed=0):
  k = jax.random.key(seed)
  return {'params': {'acc_encoder': {'w': jax.random.normal(k, (3, 4))},
                     'head': {'b': jnp.zeros(2)}}, 'step': jnp.zeros((), jnp.int32)}


def test_save_restore_round_trip_and_meta(tmp_path):
  ck = checkpointing.Checkpointer(str(tmp_path / 'checkpoints'))
  st = _state()
  ck.save(7, st, {'kind': 'test', 'stats': {'acc_mean': np.float32(1.5)}}, wait=True)
  restored, meta = ck.restore(_state(seed=1))
  chex.assert_trees_all_equal(restored, st)
  assert meta == {'kind': 'test', 'stats': {'acc_mean': 1.5}}
  assert checkpointing.read_meta(str(tmp_path / 'checkpoints')) == (7, meta)
  assert checkpointing.find_checkpoint_dir(str(tmp_path)) == str(tmp_path / 'checkpoints')


def test_partial_restore_and_shape_mismatch(tmp_path):
  ck = checkpointing.Checkpointer(str(tmp_path))
  st = _state()
  ck.save(1, st, {}, wait=True)
  part = checkpointing.restore_subtrees(str(tmp_path), 1, {'params': {'acc_encoder': {
      'w': jnp.zeros((3, 4))}}})
  chex.assert_trees_all_equal(part['params']['acc_encoder'], st['params']['acc_encoder'])
  with pytest.raises(ValueError, match='does not match'):
    checkpointing.restore_subtrees(str(tmp_path), 1, {'params': {'acc_encoder': {
        'w': jnp.zeros((5, 4))}}})


def test_missing_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='init_from'):
    checkpointing.find_checkpoint_dir(str(tmp_path / 'nowhere'))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  ck = checkpointing.Checkpointer(str(tmp_path / 'ck'), max_to_keep=5)

  def step_fn(state, batch, rng):
    loss = jnp.where(state['step'] >= 4, jnp.nan, 1.0)
    return {**state, 'step': state['step'] + 1}, {'loss': loss}

  def batches(start):
    for s in range(start, 10):
      yield s, None

  writer = MetricWriter(str(tmp_path), 10, progress=False)
  with pytest.raises(FloatingPointError, match='step 5'):
    trainer.train_loop(state=_state(), step_fn=step_fn, rng=jax.random.key(0), total_steps=10,
                       batches=batches, ckpt=ck, meta={}, writer=writer, log_every=1,
                       checkpoint_every=2)
  ck.wait()
  assert ck.latest_step() == 4
  restored, _ = ck.restore(_state())
  assert int(restored['step']) == 4
