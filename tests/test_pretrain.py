import json
import os

import chex
import jax
import numpy as np
import pytest
from conftest import tiny_pretrain_config

from ssl_imu_jax import checkpointing, input_pipeline, pretrain


def test_pretrain_writes_checkpoints_config_and_card(pretrained):
  ck = pretrained['ckpt_dir']
  assert sorted(int(d) for d in os.listdir(ck) if d.isdigit())[-1] == 6
  with open(os.path.join(ck, 'config.json')) as f:
    assert json.load(f)['ssl']['temperature'] == pretrained['config'].ssl.temperature
  card = open(os.path.join(ck, 'MODEL_CARD.md')).read()
  assert 'toy_unlabelled' in card and 'fresh, randomly initialised head' in card
  out = pretrained['out']
  assert np.isfinite(out['train']['loss']) and 0 <= out['eval']['top1'] <= 1
  # The saved state equals the final in-memory state.
  state = out['state']
  restored, meta = checkpointing.Checkpointer(ck).restore(state)
  chex.assert_trees_all_equal(jax.device_get(restored.params), jax.device_get(state.params))
  assert meta['kind'] == 'pretrain' and meta['step'] == 6
  assert set(meta['normalization']) == {'acc_mean', 'acc_std', 'gyr_mean', 'gyr_std'}


def test_interrupted_run_resumes_to_the_same_parameters(tmp_path, toy_dirs, pretrained,
                                                        monkeypatch):
  cfg = tiny_pretrain_config()
  real = input_pipeline.train_iterator

  def dies_after_step_4(*args, **kwargs):
    for step, batch in real(*args, **kwargs):
      if step == 4:
        raise KeyboardInterrupt('simulated kill')
      yield step, batch

  monkeypatch.setattr(input_pipeline, 'train_iterator', dies_after_step_4)
  with pytest.raises(KeyboardInterrupt):
    pretrain.run(cfg, str(tmp_path), toy_dirs['data_dir'])
  monkeypatch.setattr(input_pipeline, 'train_iterator', real)
  assert checkpointing.Checkpointer(str(tmp_path / 'checkpoints')).latest_step() == 3
  out = pretrain.run(cfg, str(tmp_path), toy_dirs['data_dir'])
  chex.assert_trees_all_close(jax.device_get(out['state'].params),
                              jax.device_get(pretrained['out']['state'].params), atol=1e-6)


def test_bad_ssl_option_is_named(tmp_path, toy_dirs):
  cfg = tiny_pretrain_config()
  cfg.ssl.negatives = 'everything'
  with pytest.raises(ValueError, match='ssl.negatives'):
    pretrain.run(cfg, str(tmp_path), toy_dirs['data_dir'])
