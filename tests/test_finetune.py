import chex
import jax
import numpy as np
import pytest
from conftest import tiny_finetune_config

from ssl_imu_jax import checkpointing, finetune


def _restore_params(workdir):
  return checkpointing.restore_raw(checkpointing.find_checkpoint_dir(workdir))['params']


def test_linear_probe_keeps_the_pretrained_encoder(tmp_path, toy_dirs, pretrained):
  cfg = tiny_finetune_config()
  cfg.init_from = pretrained['workdir']
  cfg.protocol = 'linear_probe'
  res = finetune.train_and_evaluate(cfg, str(tmp_path), toy_dirs['data_dir'])
  pre = jax.device_get(pretrained['out']['state'].params)
  tuned = _restore_params(str(tmp_path))
  for enc in ('acc_encoder', 'gyr_encoder'):
    chex.assert_trees_all_equal(tuned[enc], pre[enc])
  assert set(tuned) == {'acc_encoder', 'gyr_encoder', 'head'}
  assert res['init'] == 'pretrained' and res['protocol'] == 'linear_probe'
  assert not set(res['train_subjects']) & set(res['test_subjects'])
  assert set(res['predictions']['subject_id']) == set(res['test_subjects'])
  assert np.isfinite(res['metrics']['y']['rmse'])


def test_full_finetune_starts_from_the_pretrained_encoder(tmp_path, toy_dirs, pretrained,
                                                          monkeypatch):
  cfg = tiny_finetune_config()
  cfg.init_from = pretrained['ckpt_dir']
  seen = {}
  real = finetune.load_encoders

  def spy(*args, **kwargs):
    state = real(*args, **kwargs)
    seen['params'] = jax.device_get(state.params)
    return state

  monkeypatch.setattr(finetune, 'load_encoders', spy)
  res = finetune.train_and_evaluate(cfg, str(tmp_path), toy_dirs['data_dir'])
  pre = jax.device_get(pretrained['out']['state'].params)
  chex.assert_trees_all_equal(seen['params']['acc_encoder'], pre['acc_encoder'])
  tuned = _restore_params(str(tmp_path))
  moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), tuned['acc_encoder'],
                       pre['acc_encoder'])
  assert max(jax.tree.leaves(moved)) > 0  # full fine-tuning updates the encoder
  assert res['n_train'] + res['n_test'] == 160


def test_random_init_accelerometer_only(tmp_path, toy_dirs):
  cfg = tiny_finetune_config()
  cfg.data.use_gyr = False
  cfg.data.imu_sites = ('b',)
  cfg.split.fraction = 0.5
  res = finetune.train_and_evaluate(cfg, str(tmp_path), toy_dirs['data_dir'])
  assert set(_restore_params(str(tmp_path))) == {'acc_encoder', 'head'}
  assert res['init'] == 'random'
  assert res['n_train'] == round(0.5 * (160 - res['n_test']))


def test_checkpoint_window_mismatch_is_named(tmp_path, toy_dirs, pretrained):
  cfg = tiny_finetune_config(window_length=48)
  cfg.init_from = pretrained['workdir']
  with pytest.raises(ValueError, match='data.window_length'):
    finetune.train_and_evaluate(cfg, str(tmp_path), toy_dirs['data_dir'])


def test_input_normalisation_follows_the_checkpoint_or_the_training_subjects(toy_dirs,
                                                                             pretrained):
  from ssl_imu_jax import input_pipeline

  ws = input_pipeline.load_split(toy_dirs['labelled'], 'train')
  idx = np.arange(40)
  _, _, meta = finetune.pretrained_info(pretrained['ckpt_dir'])
  cfg = tiny_finetune_config()
  auto = finetune.input_stats(cfg, ws, idx, meta)
  assert auto == {k: meta['normalization'][k] for k in auto}
  cfg.input_norm = 'train_subjects'
  refit = finetune.input_stats(cfg, ws, idx, meta)
  np.testing.assert_allclose(refit['acc_mean'], ws.acc[idx].mean(), rtol=1e-5)
  cfg.input_norm = 'checkpoint'
  with pytest.raises(ValueError, match='init_from'):
    finetune.input_stats(cfg, ws, idx, None)
