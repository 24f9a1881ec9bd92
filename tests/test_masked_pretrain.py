"""Masked-reconstruction pre-training (ssl.objective='masked', issue 27 step 2): the step's loss
against numpy, a new mask every step, a tiny run that learns, accelerometer-only corpora, the
consumers that refuse a masked checkpoint, config fingerprints of NCE runs, and 1 vs 8 devices."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import eight_device_env, tiny_pretrain_config

from configs import finetune as finetune_config
from configs import pretrain as pretrain_config
from ssl_imu_jax import parallel
from ssl_imu_jax.data import input_pipeline
from ssl_imu_jax.errors import ConfigError
from ssl_imu_jax.models.transformer import contiguous_mask
from ssl_imu_jax.training import checkpointing, pretrain, steps, trainer
from ssl_imu_jax.training import train_state as ts

TESTS = Path(__file__).resolve().parent
B, N, T = 8, 3, 32


def masked_config(window_length: int = T):
  """tiny_pretrain_config (toy data, 6 steps) with the ',masked' recipe and a 1-layer model."""
  cfg = tiny_pretrain_config(window_length)
  masked = pretrain_config.get_config('tiny,masked')
  cfg.ssl, cfg.optimizer = masked.ssl, masked.optimizer
  cfg.model.transformer = masked.model.transformer
  cfg.model.transformer.update(width=16, depth=1, heads=2, ff=32)
  return cfg


def _raw_batch(seed=0):
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(B, N, T, 3)).cumsum(2).astype(np.float32) * 0.1
  return {'acc': (9.81 * np.eye(3)[2] + 5 * np.gradient(w, axis=2)).astype(np.float32), 'gyr': w}


def test_the_config_argument_sets_every_masked_knob():
  c = pretrain_config.get_config('masked')
  assert (c.ssl.objective, c.ssl.mask_ratio, c.ssl.normalization) == ('masked', 0.125, 'scale')
  assert dict(c.model.transformer) == {'width': 192, 'depth': 6, 'heads': 8, 'ff': 512,
                                       'dropout': 0.1, 'pos_base_factor': 2.0,
                                       'modalities': 'joint'}
  o = c.optimizer
  assert (o.learning_rate, o.weight_decay, o.decay_kernels_only, o.schedule,
          o.warmup_fraction) == (1e-4, 0.01, False, 'cosine_times_warmup', 0.2)
  # The reference's rate: cosine over all steps x min(1, (step + 1) / warm-up steps).
  sched = ts.make_schedule(o, 100)
  for s in (0, 5, 19, 20, 60, 99):
    want = 1e-4 * 0.5 * (1 + np.cos(np.pi * s / 100)) * min(1.0, (s + 1) / 20)
    assert float(sched(s)) == pytest.approx(want, rel=1e-5, abs=1e-10)
  assert float(ts.warmup_cosine(o, 37, 100)) == pytest.approx(float(sched(37)), rel=1e-6)
  # AdamW decays every parameter (torch's default), biases and the mask token included.
  tx, _ = ts.make_optimizer(o, 100)
  params = {'bias': np.ones(3, np.float32), 'mask_token': np.ones(3, np.float32)}
  upd, _ = tx.update(jax.tree.map(np.zeros_like, params), tx.init(params), params)
  lr0 = float(sched(0))
  for v in jax.tree.leaves(upd):
    np.testing.assert_allclose(v, -lr0 * 0.01, rtol=1e-5)


def test_the_step_loss_is_the_mse_of_exactly_the_masked_steps_with_a_new_mask_each_step():
  cfg = masked_config()
  cfg.train.batch_size = B
  mesh = parallel.make_mesh(1)
  model = pretrain.build_model(cfg)
  tx, schedule = ts.make_optimizer(cfg.optimizer, 10)
  batch = _raw_batch()
  norm = {'acc_mean': 0.0, 'acc_std': 2.5, 'gyr_mean': 0.0, 'gyr_std': 0.7}
  state = steps.init_state(cfg, model, tx, (1, N, T, 3), mesh, norm)
  step = jax.jit(pretrain.make_train_step(cfg, model, tx, schedule, 1))
  rng = jax.random.key(3)
  # The target in numpy: per time step, every site's acc x, y, z then every site's gyr, scaled.
  tokens = np.concatenate([batch['acc'].transpose(0, 2, 1, 3).reshape(B, T, 3 * N) / 2.5,
                           batch['gyr'].transpose(0, 2, 1, 3).reshape(B, T, 3 * N) / 0.7], -1)
  n_masked = round(0.125 * T)
  apply = jax.jit(model.apply, static_argnames='train')
  masks = []
  for k in range(2):
    before = jax.device_get(state)
    state, m = step(state, batch, rng)
    _, mask_rng, drop_rng = pretrain.masked_step_rngs(rng, k)
    mask = np.asarray(contiguous_mask(mask_rng, B, T, cfg.ssl.mask_ratio))
    for row in mask:  # one contiguous block of 12.5 % of the window
      (idx,) = np.nonzero(row)
      assert len(idx) == n_masked and np.all(np.diff(idx) == 1)
    masks.append(mask)
    acc, gyr = batch['acc'] / 2.5, batch['gyr'] / 0.7
    _, recon = apply({'params': before.params}, acc, gyr, mask, train=True,
                     rngs={'dropout': drop_rng})
    err = (np.asarray(recon, np.float64) - tokens) ** 2
    assert float(m['loss']) == pytest.approx(err[mask].mean(), rel=1e-5)
    # Discriminating: the unmasked steps, or dropout off, give other numbers.
    assert abs(err[~mask].mean() - float(m['loss'])) > 1e-3 * float(m['loss'])
    _, no_drop = apply({'params': before.params}, acc, gyr, mask, train=False)
    assert abs(((np.asarray(no_drop) - tokens) ** 2)[mask].mean() - float(m['loss'])) > 1e-6
  assert (masks[0] != masks[1]).any(axis=1).sum() >= B // 2  # a new block at the next step
  other = np.asarray(contiguous_mask(pretrain.masked_step_rngs(jax.random.key(4), 0)[1], B, T,
                                     cfg.ssl.mask_ratio))
  assert (other != masks[0]).any()  # another run key, other blocks


def test_a_tiny_masked_pretraining_learns_and_records_its_objective(tmp_path, toy_dirs):
  cfg = masked_config()
  cfg.optimizer.learning_rate = 1e-2
  cfg.train.steps, cfg.train.eval_every, cfg.train.checkpoint_every = 40, 20, 40
  out = pretrain.run(cfg, str(tmp_path), toy_dirs['data_dir'])
  ck = out['checkpoint_dir']
  _, meta = checkpointing.read_meta(ck)
  assert meta['objective'] == 'masked' and meta['encoder']['backbone'] == 'transformer'
  assert meta['tokens'][:4] == ['acc/a/x', 'acc/a/y', 'acc/a/z', 'acc/b/x']
  assert len(meta['tokens']) == 18 and meta['tokens'][9] == 'gyr/a/x'
  assert meta['normalization']['acc_mean'] == 0.0 and meta['normalization']['acc_std'] > 0
  # The validation loss at the start, from the same initial state (seed) and eval masks.
  held = input_pipeline.load_split(toy_dirs['unlabelled'], 'validation')
  setup = pretrain.build_training(cfg, (1, N, T, 3), meta['normalization'])
  initial = pretrain.make_eval_fn(cfg, setup.model, held, setup)(setup.state)
  final = out['eval']
  assert final['zero_loss'] == pytest.approx(initial['zero_loss'])  # the same masked steps
  assert final['loss'] < 0.85 * initial['loss'], (initial, final)
  assert final['loss'] < final['zero_loss'], final
  card = open(os.path.join(ck, 'MODEL_CARD.md')).read()
  assert "ssl.objective='masked'" in card and '18 channels' in card
  # load_encoder takes it (the tokens' time mean per window: tests/test_release_transformer.py);
  # the budget curve, which plots NCE retrieval, refuses it naming the objective in one line.
  from ssl_imu_jax.deploy import encoder_api
  from ssl_imu_jax.training import finetune

  assert encoder_api.load_encoder(ck)[2]['output_dim'] == 16
  with pytest.raises(ConfigError, match=r"ssl.objective='masked', which logs no held-out "
                                        r"retrieval; the budget curve needs") as e:
    checkpointing.require_nce(meta, ck, 'the budget curve')
  assert '\n' not in str(e.value)
  assert finetune.pretrained_info(ck)[2]['objective'] == 'masked'


def test_an_accelerometer_only_corpus_pretrains_masked_and_is_refused_by_nce(tmp_path,
                                                                           toy_dirs):
  cfg = masked_config()
  cfg.data.dataset = 'toy_acc_only'
  cfg.train.steps, cfg.train.eval_every = 2, 2
  out = pretrain.run(cfg, str(tmp_path / 'masked'), toy_dirs['data_dir'])
  _, meta = checkpointing.read_meta(out['checkpoint_dir'])
  assert meta['tokens'] == [f'acc/{s}/{a}' for s in 'abc' for a in 'xyz']
  assert set(meta['normalization']) == {'acc_mean', 'acc_std'}
  assert np.isfinite(out['train']['loss']) and np.isfinite(out['eval']['loss'])
  assert out['state'].params['transformer']['mask_token'].shape == (9,)
  nce = tiny_pretrain_config()
  nce.data.dataset = 'toy_acc_only'
  with pytest.raises(ConfigError, match=r"'toy_acc_only' is read without gyroscopes .* and "
                                        r"ssl.objective='nce' .*configs/pretrain.py:masked") as e:
    pretrain.run(nce, str(tmp_path / 'nce'), toy_dirs['data_dir'])
  assert '\n' not in str(e.value)
  # data.use_gyr=False on a corpus with gyroscopes: the masked model's tokens are its acc only
  # (to fine-tune on an accelerometer-only task); NCE is refused as for an acc-only corpus.
  cfg.data.dataset, cfg.data.use_gyr = 'toy_unlabelled', False
  _, meta = checkpointing.read_meta(pretrain.run(cfg, str(tmp_path / 'acc'),
                                                 toy_dirs['data_dir'])['checkpoint_dir'])
  assert meta['tokens'] == [f'acc/{s}/{a}' for s in 'abc' for a in 'xyz']
  nce.data.dataset, nce.data.use_gyr = 'toy_unlabelled', False
  with pytest.raises(ConfigError, match=r'data.use_gyr=False'):
    pretrain.run(nce, str(tmp_path / 'nce_acc'), toy_dirs['data_dir'])


def test_nce_fingerprints_are_unchanged_so_old_checkpoints_resume(tmp_path):
  new_keys = ('ssl.objective', 'ssl.normalization', 'ssl.mask_ratio', 'optimizer.schedule')
  for cfg in (tiny_pretrain_config(), pretrain_config.get_config(), finetune_config.get_config()):
    fp = trainer.fingerprint(cfg)
    assert not [k for k in fp if k in new_keys or k.startswith('model.transformer.')]
  # A checkpoint written before the keys existed: its config lacked them.
  cfg = tiny_pretrain_config()
  old = cfg.copy_and_resolve_references()
  for key in ('objective', 'normalization', 'mask_ratio'):
    del old.ssl[key]
  del old.optimizer['schedule'], old.model['transformer']
  ckpt = checkpointing.Checkpointer(str(tmp_path / 'checkpoints'))
  ckpt.save(3, {'w': np.zeros(2)}, {'fingerprint': {'config': trainer.fingerprint(old),
                                                    'data': {}}}, wait=True)
  trainer.check_resume(ckpt, cfg, {})  # the NCE config of today resumes it
  with pytest.raises(ConfigError, match=r"model.transformer.depth: '<absent>' -> 1"):
    trainer.check_resume(ckpt, masked_config(), {})  # a masked config is another run
  ckpt.close()


def test_the_masked_step_on_8_devices_equals_1_device():
  """tests/multidevice_check.py masked in a subprocess with 8 fake CPU devices (~15 s)."""
  env = eight_device_env()
  proc = subprocess.run([sys.executable, str(TESTS / 'multidevice_check.py'), 'masked'], env=env,
                        capture_output=True, text=True, timeout=600, cwd=TESTS.parent)
  assert proc.returncode == 0, proc.stderr[-4000:]
  m = json.loads(proc.stdout.strip().splitlines()[-1])['pretrain_masked']
  assert (m['state_devices_1'], m['state_devices_8'], m['steps']) == (1, 8, [1, 1])
  assert abs(m['loss_8dev'] - m['loss_1dev']) <= 1e-5 * max(1.0, m['loss_1dev']), m
  assert abs(m['grad_norm_8dev'] - m['grad_norm_1dev']) <= 1e-5 * max(1.0, m['grad_norm_1dev'])
  assert m['params_max_diff'] <= 1e-5 and m['opt_state_max_diff'] <= 1e-5, m
  assert m['params_change'] > 100 * 1e-5, m  # the step moved the parameters
  # The key bias (zero true gradient; Adam steps on rounding noise) moves by at most the rate.
  assert m['zero_grad_names'] and m['zero_grad_max_diff'] <= 2.0 * m['learning_rate'] + 1e-7
