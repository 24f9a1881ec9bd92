"""Fine-tuning from the masked-reconstruction Transformer (issue 27, step 3b): the pre-trained
encoder is copied (not its reconstruction head), a linear probe keeps it, full_from_probe trains
it, the random-init Transformer arm starts elsewhere, tokens follow the checkpoint's, and the
inputs are scaled only."""

import os

import jax
import numpy as np
import pytest
from conftest import tiny_finetune_config, tiny_pretrain_config

from configs import pretrain as pretrain_config
from ssl_imu_jax.deploy.predict import load_regressor
from ssl_imu_jax.errors import ConfigError
from ssl_imu_jax.training import checkpointing, finetune, pretrain, trainer

SIZES = {'width': 16, 'depth': 1, 'heads': 2, 'ff': 32}


def masked_pretrain_config():
  """A 4-step masked pre-training of a 1-layer Transformer on toy_unlabelled's sites a and b
  (toy_labelled's sites)."""
  cfg = tiny_pretrain_config()
  masked = pretrain_config.get_config('tiny,masked')
  cfg.ssl, cfg.optimizer = masked.ssl, masked.optimizer
  cfg.model.transformer = masked.model.transformer
  cfg.model.transformer.update(**SIZES)
  cfg.data.imu_sites = ('a', 'b')
  cfg.train.steps, cfg.train.eval_every, cfg.train.checkpoint_every = 4, 4, 4
  return cfg


@pytest.fixture(scope='module')
def masked_ckpt(tmp_path_factory, toy_dirs):
  out = pretrain.run(masked_pretrain_config(), str(tmp_path_factory.mktemp('masked')),
                     toy_dirs['data_dir'])
  return out['checkpoint_dir']


def ft_config(init_from='', protocol='linear_probe'):
  c = tiny_finetune_config()
  c.init_from = init_from
  c.protocol = protocol
  c.train.steps = 4
  c.model.transformer.update(**SIZES)
  return c


def _flat(tree):
  return {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]}


def test_a_masked_checkpoint_fine_tunes_lp_then_ft_from_a_copy_of_its_encoder(
    masked_ckpt, toy_dirs, tmp_path):
  _, meta = checkpointing.read_meta(masked_ckpt)
  assert meta['objective'] == 'masked'
  saved = checkpointing.restore_raw(masked_ckpt)['params']['transformer']
  assert 'reconstruction' in saved
  pre = _flat({k: v for k, v in saved.items() if k != 'reconstruction'})

  # Step 0 of a fine-tuning: the encoder is the pre-trained one, the reconstruction head is not
  # carried over, the head is new; the inputs are scaled only (means 0).
  cell = finetune.prepare(ft_config(masked_ckpt), str(tmp_path / 'lp0'), toy_dirs['data_dir'])
  assert set(cell.state.params) == {'transformer', 'head'}
  assert 'reconstruction' not in cell.state.params['transformer']
  start = _flat(cell.state.params['transformer'])
  assert start.keys() == pre.keys()
  for k in pre:
    np.testing.assert_array_equal(start[k], pre[k], err_msg=k)
  assert cell.meta['normalization']['acc_mean'] == 0.0
  assert cell.meta['normalization']['gyr_mean'] == 0.0
  assert cell.meta['input_scaling'] == 'scale'
  assert cell.meta['tokens'] == meta['tokens']
  assert 'dropout stays on' in cell.refusal  # no cached embeddings: the probe's dropout is on

  # LP then FT (full_from_probe trains its probe first): the probe leaves the encoder as it was,
  # the full fine-tuning changes it; both report.
  cfg = ft_config(masked_ckpt, 'full_from_probe')
  res = finetune.train_and_evaluate(cfg, str(tmp_path / 'ft'), toy_dirs['data_dir'])
  assert res['init'] == 'pretrained' and res['protocol'] == 'full_from_probe'
  assert np.isfinite(res['train_loss'])
  assert os.path.isfile(tmp_path / 'ft' / 'probe' / finetune.RESULT_FILE)
  probe = checkpointing.restore_raw(checkpointing.find_checkpoint_dir(str(tmp_path / 'ft' /
                                                                         'probe')))
  after_lp = _flat(probe['params']['transformer'])
  for k in pre:
    np.testing.assert_array_equal(after_lp[k], pre[k], err_msg=k)
  full = checkpointing.restore_raw(checkpointing.find_checkpoint_dir(str(tmp_path / 'ft')))
  after_ft = _flat(full['params']['transformer'])
  assert any(not np.array_equal(after_ft[k], pre[k]) for k in pre if 'mask_token' not in k)


def test_the_random_init_transformer_arm_starts_elsewhere(masked_ckpt, toy_dirs, tmp_path):
  saved = _flat({k: v for k, v in checkpointing.restore_raw(masked_ckpt)['params'][
      'transformer'].items() if k != 'reconstruction'})
  cfg = ft_config()
  cfg.model.backbone = 'transformer'
  cell = finetune.prepare(cfg, str(tmp_path / 'rand'), toy_dirs['data_dir'])
  start = _flat(cell.state.params['transformer'])
  assert start.keys() == saved.keys()  # the same architecture ...
  assert all(start[k].shape == saved[k].shape for k in saved)
  assert any(not np.array_equal(start[k], saved[k]) for k in saved)  # ... other weights
  assert cell.meta['init_from'] == '' and cell.meta['encoder']['backbone'] == 'transformer'
  assert cell.meta['normalization']['acc_mean'] == 0.0
  res = finetune.fit_and_finish(cell)
  assert res['init'] == 'random' and np.isfinite(res['train_loss'])
  # The saved model predicts as it scored (load_regressor builds the Transformer too).
  predict_fn, params, info = load_regressor(str(tmp_path / 'rand'))
  idx = cell.test_idx
  y = np.asarray(jax.jit(predict_fn)(params, cell.ws.acc[idx], cell.ws.gyr[idx]))
  np.testing.assert_allclose(y, res['predictions']['y_pred'], rtol=1e-4, atol=1e-5)


def test_tokens_follow_the_checkpoint_and_a_missing_site_is_named(masked_ckpt, toy_dirs,
                                                                   tmp_path):
  cfg = ft_config(masked_ckpt)
  cfg.data.imu_sites = ('b', 'a')  # read in another order: put back in the checkpoint's
  cell = finetune.prepare(cfg, str(tmp_path / 'order'), toy_dirs['data_dir'])
  assert cell.meta['sites'] == ['a', 'b']
  cfg.data.imu_sites = ('b',)
  with pytest.raises(ConfigError, match=r"pre-trained on the sites \['a', 'b'\]; .* lacks "
                                        r"\['a'\]") as e:
    finetune.prepare(cfg, str(tmp_path / 'missing'), toy_dirs['data_dir'])
  assert '\n' not in str(e.value)


def test_backbone_key_default_is_left_out_of_fingerprints():
  cfg = ft_config()
  fp = trainer.fingerprint(cfg)
  assert 'model.backbone' not in fp and not any(k.startswith('model.transformer.') for k in fp)
  cfg.model.backbone = 'transformer'
  fp = trainer.fingerprint(cfg)
  assert fp['model.backbone'] == 'transformer' and fp['model.transformer.width'] == 16
  cfg.model.backbone = 'lstm'
  with pytest.raises(ConfigError, match='model.backbone must be one of'):
    finetune.check_config(cfg)
