"""Released weights and ``load_encoder`` of a masked-reconstruction Transformer (issue 27): the
export round-trips (the released encoder's output is the pre-training model's tokens averaged
over time, from the checkpoint's own parameters), checksums verify, a tampered file is refused,
and the shapes a caller gets wrong are named."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_pretrain_config

import ssl_imu_jax
from configs import pretrain as pretrain_config
from configs import release as release_config
from ssl_imu_jax.deploy import release
from ssl_imu_jax.models.transformer import MaskedImuModel
from ssl_imu_jax.training import checkpointing, pretrain

SIZES = {'width': 16, 'depth': 1, 'heads': 2, 'ff': 32}


@pytest.fixture(scope='module')
def masked_run(tmp_path_factory, toy_dirs):
  """A 2-step masked pre-training of a 1-layer Transformer on toy_unlabelled (3 sites)."""
  cfg = tiny_pretrain_config()
  masked = pretrain_config.get_config('tiny,masked')
  cfg.ssl, cfg.optimizer, cfg.model = masked.ssl, masked.optimizer, masked.model
  cfg.model.transformer.update(**SIZES)
  cfg.train.steps, cfg.train.eval_every, cfg.train.checkpoint_every = 2, 2, 2
  workdir = str(tmp_path_factory.mktemp('masked_release'))
  pretrain.run(cfg, workdir, toy_dirs['data_dir'])
  return workdir


def _export(run, out_dir, **kw):
  c = release_config.get_config()
  c.update({'checkpoint': run, 'out_dir': str(out_dir), 'reproduce': 'python x',
            'licence': 'test data', **kw})
  return release.export(c)


def test_a_masked_release_round_trips_and_refuses_a_tampered_file(masked_run, tmp_path):
  out = _export(masked_run, tmp_path)
  assert os.path.basename(out) == 'toy_unlabelled_100hz_32_masked'  # the name says masked
  ckpt_dir, step = checkpointing.find_checkpoint_dir(masked_run), 2
  saved = checkpointing.state_metadata(os.path.join(out, 'checkpoints'), step)
  assert set(saved['params']) == {'transformer'} and not saved.get('batch_stats')
  assert 'reconstruction' not in saved['params']['transformer']  # the backbone only
  assert release.checkpoint_digest(out) == release.checkpoint_digest(masked_run)

  # The released encoder = the pre-training model on the checkpoint's own parameters (its
  # reconstruction head included, unused): tokens [B, T, W] averaged over time -> [B, W].
  apply_fn, params, info = ssl_imu_jax.load_encoder(out)
  assert (info['per_site'], info['objective'], info['sites']) == (False, 'masked', ['a', 'b', 'c'])
  assert info['output_dim'] == 16 and info['has_gyr']
  acc, gyr, stored, now = release.reference_embeddings(out)
  assert acc.shape == (release.REFERENCE_BATCH, 3, 32, 3) and stored.shape == (2, 16)
  np.testing.assert_allclose(now, stored, rtol=1e-5, atol=1e-6)
  raw = checkpointing.restore_raw(ckpt_dir, step)
  _, meta = checkpointing.read_meta(ckpt_dir, step)
  norm = meta['normalization']
  tokens, _ = MaskedImuModel(**SIZES).apply(
      {'params': raw['params']}, jnp.asarray(acc) / norm['acc_std'],
      jnp.asarray(gyr) / norm['gyr_std'], None, train=False)
  np.testing.assert_allclose(stored, np.asarray(tokens).mean(1), rtol=1e-5, atol=1e-6)

  card = open(os.path.join(out, release.CARD), encoding='utf-8').read()
  assert "ssl.objective='masked'" in card
  assert '| step | masked MSE | zero_loss | mean_loss |' in card
  assert 'not released' in card and release.checkpoint_digest(out) in card

  assert release.verify(out) == len(open(os.path.join(out, release.CHECKSUMS)).readlines())
  state_files = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(out, 'checkpoints'))
                 for f in fs if 'state' in r]
  with open(sorted(state_files)[-1], 'ab') as f:
    f.write(b'\0')
  with pytest.raises(ValueError, match='does not match its sha256'):
    release.verify(out)


def test_load_encoder_names_the_shapes_a_transformer_takes(masked_run):
  apply_fn, params, info = ssl_imu_jax.load_encoder(masked_run)
  x = np.zeros((2, 3, 32, 3), np.float32)
  assert np.asarray(jax.jit(apply_fn)(params, x, x)).shape == (2, 16)
  with pytest.raises(ValueError, match=r"takes the 3 sites \['a', 'b', 'c'\] in that order"):
    apply_fn(params, x[:, :2], x[:, :2])
  with pytest.raises(ValueError, match=r"gyr channels too \(modalities 'joint'\)"):
    apply_fn(params, x)
  with pytest.raises(ValueError, match='32-sample windows'):
    apply_fn(params, x[:, :, :16], x[:, :, :16])
