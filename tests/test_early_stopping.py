"""Fine-tuning to a defined stopping point: the epoch budget, the run-time schedule length,
early stopping on validation subjects (the best state is the one scored and saved), resume."""

import json
import os
import signal
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from conftest import tiny_finetune_config

from ssl_imu_jax.training import checkpointing, finetune, interrupt, train_state, trainer


def _train_cfg(**kw):
  return ml_collections.ConfigDict({'train': {'steps': 7, 'batch_size': 8, **kw}})


def test_the_budget_in_epochs_follows_the_cells_size():
  b = finetune.budget(_train_cfg(epochs=3.0, validate_every_epochs=1.0, patience_epochs=4.0),
                      100, True)
  assert (b.steps, b.steps_per_epoch, b.validate_every, b.patience) == (38, 13, 12, 4)
  assert b.epochs == pytest.approx(38 * 8 / 100)
  b = finetune.budget(_train_cfg(epochs=3.0, validate_every_epochs=2.0, patience_epochs=5.0),
                      40, True)
  assert (b.steps, b.validate_every, b.patience) == (15, 10, 3)   # ceil(5 / 2) validations
  b = finetune.budget(_train_cfg(epochs=0.0), 100, False)        # fixed steps, no validation
  assert (b.steps, b.validate_every, b.patience) == (7, 0, 0)


@pytest.mark.parametrize('total', [5, 38, 1000])
def test_the_run_time_schedule_equals_optax(total):
  opt = ml_collections.ConfigDict({'learning_rate': 3e-3, 'warmup_fraction': 0.2,
                                   'final_lr_fraction': 0.1})
  static = train_state.make_schedule(opt, total)
  for step in sorted({0, 1, total // 5, total // 5 + 1, total // 2, total - 1, total}):
    np.testing.assert_allclose(float(train_state.warmup_cosine(opt, step, total)),
                               float(static(step)), rtol=1e-5, atol=1e-9)


def test_the_run_time_optimiser_equals_adamw():
  opt = ml_collections.ConfigDict({'learning_rate': 1e-2, 'warmup_fraction': 0.0,
                                   'final_lr_fraction': 0.0, 'b1': 0.9, 'b2': 0.999,
                                   'weight_decay': 1e-2, 'grad_clip_norm': 0.0,
                                   'decay_kernels_only': True})
  rng = np.random.default_rng(0)
  params = {'dense': {'kernel': jnp.asarray(rng.normal(size=(3, 2))),
                      'bias': jnp.asarray(rng.normal(size=2))}}
  tx_s, _ = train_state.make_optimizer(opt, 10)
  tx_d, sched = train_state.make_optimizer(opt, None)
  s_s, s_d, p_s, p_d = tx_s.init(params), tx_d.init(params), params, params
  for step in range(3):
    grads = jax.tree.map(lambda p, step=step: jnp.sin(p * (step + 1)), p_s)
    u, s_s = tx_s.update(grads, s_s, p_s)
    p_s = optax.apply_updates(p_s, u)
    u, s_d = tx_d.update(grads, s_d, p_d)
    p_d = optax.apply_updates(p_d, jax.tree.map(lambda x, step=step: -sched(step, 10) * x, u))
  for a, b in zip(jax.tree.leaves(p_s), jax.tree.leaves(p_d), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


def _toy_fit(tmp_path, losses, patience, steps=12, every=2, kill_at=None, signal_at=None):
  """trainer.fit on a counter state whose validation losses are scripted by step; ``kill_at``:
  a KeyboardInterrupt in the validation of that step, ``signal_at``: a SIGTERM there."""
  cfg = ml_collections.ConfigDict({'seed': 0, 'train': {
      'steps': steps, 'batch_size': 1, 'log_every': 1, 'checkpoint_every': 3,
      'eval_every': 0, 'max_to_keep': 2, 'prefetch': 0, 'progress': False,
      'batches_from': 'host', 'resume': 'auto'}})
  windows = types.SimpleNamespace(path='toy', acc=np.zeros((4, 1, 2, 3), np.float32),
                                  gyr=None, targets=np.zeros((4, 1), np.float32),
                                  subject_id=np.zeros(4, np.int64), start_s=None,
                                  trial=np.zeros(4, np.int64))
  state = {'w': jnp.zeros(()), 'n': jnp.zeros((), jnp.int32)}
  seen = []

  @jax.jit
  def step_fn(state, batch, rng):
    del batch, rng
    return {'w': state['w'] + 1.0, 'n': state['n'] + 1}, {'loss': state['w']}

  def loss_fn(state):
    n = int(state['n'])
    seen.append(n)
    if kill_at is not None and n == kill_at:
      raise KeyboardInterrupt('simulated kill')
    if signal_at is not None and n == signal_at:
      os.kill(os.getpid(), signal.SIGTERM)
    return losses[n]

  import ssl_imu_jax.data.input_pipeline as ip
  real = ip.train_iterator
  ip.train_iterator = lambda ws, idx, bs, seed, start, steps, sh, prefetch=0: (
      (s, {'x': np.zeros(1)}) for s in range(start, steps))
  try:
    out = trainer.fit(cfg, str(tmp_path), _Sized(windows), np.arange(4), state=state,
                      step_fn=step_fn, meta={}, tag='toy', sharding=None,
                      validation=trainer.Validation(loss_fn, every, patience, 2))
  finally:
    ip.train_iterator = real
  return out, seen


class _Sized:
  def __init__(self, ns):
    self.__dict__.update(ns.__dict__)

  def __len__(self):
    return 4


def test_early_stopping_keeps_and_saves_the_best_state_and_resumes(tmp_path):
  losses = {2: 5.0, 4: 3.0, 6: 3.5, 8: 2.0, 10: 2.5, 12: 2.6}
  out, seen = _toy_fit(tmp_path / 'a', losses, patience=0)        # the whole budget
  assert seen == [2, 4, 6, 8, 10, 12] and int(out.state['n']) == 8
  v = out.validation
  assert (v['best_step'], v['steps_run'], v['stopped_early'], v['still_improving']) == (
      8, 12, False, False)
  saved = checkpointing.restore_raw(out.checkpoint_dir)           # the latest checkpoint
  assert int(saved['n']) == 8 and float(saved['w']) == 8.0
  with open(tmp_path / 'a' / trainer.VALIDATION_FILE) as f:
    assert json.load(f)['finished'] is True

  out, seen = _toy_fit(tmp_path / 'b', losses, patience=1)        # stop after 1 bad check
  assert seen == [2, 4, 6] and int(out.state['n']) == 4
  assert out.validation['stopped_early'] and out.validation['steps_run'] == 6
  again, seen = _toy_fit(tmp_path / 'b', losses, patience=1)      # a rerun trains nothing
  assert seen == [] and int(again.state['n']) == 4

  # killed at the validation of step 10 (after the checkpoint at 9), then resumed
  with pytest.raises(KeyboardInterrupt):
    _toy_fit(tmp_path / 'c', losses, patience=0, kill_at=10)
  out, seen = _toy_fit(tmp_path / 'c', losses, patience=0)
  assert seen == [10, 12] and int(out.state['n']) == 8             # best from before the kill
  assert [h['step'] for h in out.validation['history']] == [2, 4, 6, 8, 10, 12]


def test_a_signal_stops_at_the_step_with_its_history_and_the_rerun_continues_it(tmp_path):
  losses = {2: 5.0, 4: 3.0, 6: 3.5, 8: 2.0, 10: 2.5, 12: 2.6}
  unbroken, _ = _toy_fit(tmp_path / 'a', losses, patience=0)
  with interrupt.stop_on_signals(), pytest.raises(interrupt.Interrupted) as info:
    _toy_fit(tmp_path / 'b', losses, patience=0, signal_at=10)     # SIGTERM in step 10's check
  assert (info.value.step, info.value.exit_code) == (10, 143)
  ckpt_dir = str(tmp_path / 'b' / 'checkpoints')
  _, meta = checkpointing.read_meta(ckpt_dir)
  assert meta['step'] == 10 and meta['interrupted']                # saved at the step reached
  with open(tmp_path / 'b' / trainer.VALIDATION_FILE) as f:
    assert [h['step'] for h in json.load(f)['history']] == [2, 4, 6, 8, 10]
  out, seen = _toy_fit(tmp_path / 'b', losses, patience=0)
  assert seen == [12] and int(out.state['n']) == 8                 # step 10 not validated again
  assert out.validation == unbroken.validation
  ckpt = checkpointing.Checkpointer(ckpt_dir)
  assert ckpt.all_steps() == checkpointing.Checkpointer(str(tmp_path / 'a' / 'checkpoints')
                                                        ).all_steps() == [9, 12]


def test_a_budget_that_ends_while_improving_is_flagged(tmp_path):
  out, _ = _toy_fit(tmp_path, {2: 5, 4: 4, 6: 3, 8: 2, 10: 1.5, 12: 1.0}, patience=3)
  assert out.validation['still_improving'] and not out.validation['stopped_early']


def test_a_fine_tuning_cell_scores_its_best_validated_state(tmp_path, toy_dirs):
  cfg = tiny_finetune_config()
  cfg.data_dir = toy_dirs['data_dir']
  cfg.protocol = 'full'
  cfg.split.validation_fraction = 0.2
  cfg.train.epochs = 3.0
  cfg.train.patience_epochs = 1.0
  cell = finetune.prepare(cfg, str(tmp_path), toy_dirs['data_dir'])
  train_s = set(cell.ws.subject_id[cell.train_idx].tolist())
  val_s = set(cell.ws.subject_id[cell.val_idx].tolist())
  test_s = set(cell.ws.subject_id[cell.test_idx].tolist())
  assert len(val_s) == 2 and len(train_s) == 6 and len(test_s) == 2  # 10 toy subjects
  assert not (train_s & val_s or train_s & test_s or val_s & test_s)
  assert cell.plan.steps == int(np.ceil(3 * len(cell.train_idx) / 8))
  result = finetune.fit_and_finish(cell)
  tr = result['training']
  assert tr['validation_subjects'] == sorted(val_s) and tr['n_validation'] == len(cell.val_idx)
  best = min(tr['val_loss'], key=lambda e: e[1])
  assert tr['best_epoch'] == pytest.approx(best[0]) and tr['best_val_loss'] == best[1]
  # the saved (scored) state is the best one: its validation loss is the recorded best
  ckpt = checkpointing.Checkpointer(os.path.join(str(tmp_path), 'checkpoints'))
  state, meta = ckpt.restore(cell.state)
  ckpt.close()
  assert meta['scored'] == 'best' and int(state.step) == tr['best_step']
  assert finetune.validation_loss(cell, state) == pytest.approx(tr['best_val_loss'], rel=1e-5)
