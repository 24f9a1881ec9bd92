import functools
import json
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import optax
import pytest
from conftest import ROOT

import ssl_imu_jax
from configs import embed as embed_config
from ssl_imu_jax import stages
from ssl_imu_jax.data import input_pipeline
from ssl_imu_jax.deploy import encoder_api
from ssl_imu_jax.models import ContrastiveModel
from ssl_imu_jax.training import checkpointing, pretrain, steps, train_state


def readme_snippet() -> str:
  """The README's encoder example, read from README.md (the test swaps in the toy checkpoint
  and data set)."""
  text = (ROOT / 'README.md').read_text()
  section = text.split('## Reuse the pre-trained encoder in your own JAX code', 1)[1]
  return section.split('```python\n', 1)[1].split('```', 1)[0]


@pytest.fixture(scope='module')
def encoder(pretrained):
  return ssl_imu_jax.load_encoder(pretrained['workdir'])


@pytest.fixture(scope='module')
def jitted(encoder):
  """One jitted apply_fn shared by the tests (compiled once per input shape)."""
  return jax.jit(encoder[0])


@pytest.fixture(scope='module')
def windows(toy_dirs):
  """A few held-out pre-training windows (3 sites) in physical units."""
  ws = input_pipeline.load_split(toy_dirs['unlabelled'], 'validation')
  return ws.acc[:12], ws.gyr[:12]


@functools.cache
def _training_embed(config_json):
  """ContrastiveModel.embed of the pre-training config, jitted once."""
  import ml_collections

  model = pretrain.build_model(ml_collections.ConfigDict(json.loads(config_json)))
  return jax.jit(functools.partial(model.apply, train=False, method=ContrastiveModel.embed))


def _training_embeddings(ckpt_dir, step, config, acc, gyr):
  """What the training code computes: ContrastiveModel.embed on the restored state."""
  raw = checkpointing.restore_raw(ckpt_dir, step)
  norm = raw['norm']
  acc_n = steps.normalize(acc, norm['acc_mean'], norm['acc_std'])
  gyr_n = steps.normalize(gyr, norm['gyr_mean'], norm['gyr_std'])
  embed = _training_embed(config.to_json())
  h_acc, h_gyr = embed({'params': raw['params'], 'batch_stats': raw['batch_stats']}, acc_n, gyr_n)
  return np.concatenate([h_acc, h_gyr], axis=-1), raw


def test_round_trip_matches_the_training_encoder(pretrained, encoder, jitted, windows):
  apply_fn, params, info = encoder
  acc, gyr = windows
  want, raw = _training_embeddings(pretrained['ckpt_dir'], None, pretrained['config'], acc, gyr)
  got = np.asarray(apply_fn(params, acc, gyr))  # eager
  np.testing.assert_allclose(np.asarray(jitted(params, acc, gyr)), got, atol=1e-5, rtol=0)
  d = pretrained['config'].model.encoder.widths[-1]  # the reference: D = the last stage's width
  assert got.shape == (12, 3, 2 * d) == want.shape
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
  assert np.abs(got).max() > 1e-3  # not a trivially zero output
  # Only the encoders are loaded; BatchNorm statistics came with them.
  assert set(params) == {'params', 'batch_stats'}
  assert set(params['params']) == set(params['batch_stats']) == {'encoder'}  # shared acc/gyr
  chex.assert_trees_all_close(params['batch_stats']['encoder'], raw['batch_stats']['encoder'])
  assert info['kind'] == 'pretrain' and info['step'] == int(raw['step']) == 6
  assert info['window_length'] == 32 and info['sample_rate_hz'] == 100.0
  assert info['sites'] == ['a', 'b', 'c'] and info['dataset'] == 'toy_unlabelled'
  for k, v in raw['norm'].items():
    assert info['normalization'][k] == pytest.approx(float(v), rel=1e-6)
  enc = pretrained['config'].model.encoder
  assert info['encoder'] == enc.to_dict() | {'widths': list(enc.widths),
                                             'blocks_per_stage': list(enc.blocks_per_stage)}
  assert info['config']['train']['steps'] == 6 and info['output_dim'] == 2 * d


def test_checkpoints_dir_and_step_dir(pretrained, encoder, jitted, windows):
  acc, gyr = windows
  latest = np.asarray(jitted(encoder[1], acc, gyr))
  _, p, info = ssl_imu_jax.load_encoder(pretrained['ckpt_dir'])
  assert info['step'] == 6
  np.testing.assert_array_equal(np.asarray(jitted(p, acc, gyr)), latest)
  _, p3, info3 = ssl_imu_jax.load_encoder(os.path.join(pretrained['ckpt_dir'], '3'))
  assert info3['step'] == 3
  got3 = np.asarray(jitted(p3, acc, gyr))  # same architecture: the same compiled function
  want3, _ = _training_embeddings(pretrained['ckpt_dir'], 3, pretrained['config'], acc, gyr)
  np.testing.assert_allclose(got3, want3, atol=1e-5, rtol=0)
  assert np.abs(got3 - latest).max() > 1e-4  # step 3 really is another set of weights


def test_jit_acc_only_and_site_independence(encoder, jitted, windows):
  _, params, info = encoder
  acc, gyr = windows
  full = np.asarray(jitted(params, acc, gyr))
  d = info['embed_dim']
  acc_only = np.asarray(jitted(params, acc))
  assert acc_only.shape == (12, 3, d)
  np.testing.assert_allclose(acc_only, full[..., :d], atol=1e-5, rtol=0)
  # Weights are shared across sites and BatchNorm is in inference mode: one site alone, or one
  # window alone, gets the embedding it has inside the full batch.
  one_site = np.asarray(jitted(params, acc[:, 1:2], gyr[:, 1:2]))
  np.testing.assert_allclose(one_site[:, 0], full[:, 1], atol=1e-5, rtol=0)
  one_window = np.asarray(jitted(params, acc[4:5], gyr[4:5]))
  np.testing.assert_allclose(one_window[0], full[4], atol=1e-5, rtol=0)
  # Normalisation is applied inside: shifting acc by its stored mean changes the output.
  shifted = np.asarray(jitted(params, acc - info['normalization']['acc_mean'], gyr))
  assert np.abs(shifted - full).max() > 1e-2


@pytest.mark.parametrize('acc_shape, gyr_shape, match', [
    ((2, 32, 3), (2, 32, 3), r'acc: expected a rank-4 array \[batch, n_imu, 32, 3\], got shape '
                             r'\(2, 32, 3\)'),
    ((2, 3, 32, 6), (2, 3, 32, 6), r'acc: last axis .*expected \[batch, n_imu, 32, 3\], got '
                                   r'shape \(2, 3, 32, 6\)'),
    ((2, 3, 64, 3), (2, 3, 64, 3), r'acc: the encoder was trained on 32-sample windows at 100 Hz;'
                                   r' expected \[batch, n_imu, 32, 3\], got shape \(2, 3, 64, 3\)'),
    ((2, 3, 32, 3), (2, 2, 32, 3), r'gyr: shape \(2, 2, 32, 3\) differs from acc shape '
                                   r'\(2, 3, 32, 3\)'),
])
def test_shape_mismatch_is_a_clear_error(encoder, jitted, acc_shape, gyr_shape, match):
  apply_fn, params, _ = encoder
  acc, gyr = np.zeros(acc_shape, np.float32), np.zeros(gyr_shape, np.float32)
  with pytest.raises(ValueError, match=match):
    apply_fn(params, acc, gyr)
  with pytest.raises(ValueError, match=match):
    jitted(params, acc, gyr)


def test_bad_checkpoint_paths(tmp_path, pretrained):
  with pytest.raises(FileNotFoundError, match='no such directory'):
    ssl_imu_jax.load_encoder(str(tmp_path / 'absent'))
  with pytest.raises(FileNotFoundError, match='no Orbax checkpoint found'):
    ssl_imu_jax.load_encoder(str(tmp_path))
  with pytest.raises(ValueError, match='contradicts the step directory'):
    ssl_imu_jax.load_encoder(os.path.join(pretrained['ckpt_dir'], '3'), step=6)
  with pytest.raises(FileNotFoundError, match=r'no checkpoint for step 99; saved steps: \[3, 6\]'):
    ssl_imu_jax.load_encoder(pretrained['workdir'], step=99)


def _save_like_finetune(directory, kind, params, bstats, norm, data_cfg, encoder_cfg):
  """A checkpoint laid out as finetune.py saves one (TrainState + meta), without training."""
  tx = optax.sgd(0.1)
  state = train_state.create(params, bstats, tx, norm)
  ckpt = checkpointing.Checkpointer(directory)
  meta = {'kind': kind, 'config': {'data': data_cfg, 'train': {'compute_dtype': 'float32'}},
          'normalization': norm, 'encoder': encoder_cfg}
  ckpt.save(2, state, meta, wait=True)
  ckpt.close()


def test_accelerometer_only_finetune_checkpoint(tmp_path, pretrained, encoder, jitted, windows):
  """Mirrors finetune.py's layout (encoder + head) to avoid a 30-50 s fine-tuning run here."""
  _, _, pre_info = encoder
  raw = checkpointing.restore_raw(pretrained['ckpt_dir'])
  norm = {k: float(v) for k, v in raw['norm'].items() if k.startswith('acc')}
  data_cfg = {'dataset': 'toy_labelled', 'split': 'train', 'sample_rate_hz': 100.0,
              'window_length': 32, 'imu_sites': ['b']}
  params = {'encoder': raw['params']['encoder'], 'head': {'w': np.ones((2, 1))}}
  bstats = {'encoder': raw['batch_stats']['encoder']}
  _save_like_finetune(str(tmp_path / 'ft'), 'finetune', params, bstats, norm, data_cfg,
                      pre_info['encoder'])
  fn, p, info = ssl_imu_jax.load_encoder(str(tmp_path / 'ft'))
  assert info['kind'] == 'finetune' and not info['has_gyr'] and info['sites'] == ['b']
  assert set(p['params']) == {'encoder'}
  acc, gyr = windows
  got = np.asarray(jax.jit(fn)(p, acc))
  want = np.asarray(jitted(encoder[1], acc))  # same weights and stats as the pretrain run
  np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
  with pytest.raises(ValueError, match='no gyr encoder'):
    fn(p, acc, gyr)

  _save_like_finetune(str(tmp_path / 'other'), 'evaluate', params, bstats, norm, data_cfg,
                      pre_info['encoder'])
  with pytest.raises(ValueError, match="a 'evaluate' checkpoint; load_encoder needs one of"):
    ssl_imu_jax.load_encoder(str(tmp_path / 'other'))


def _embed_config(checkpoint, data_dir, **data):
  c = embed_config.get_config('tiny')
  c.checkpoint = checkpoint
  c.data_dir = data_dir
  c.data.dataset = 'toy_labelled'
  c.batch_size = 48  # 160 windows: the last batch is padded
  for k, v in data.items():
    c.data[k] = v
  return c


def test_embed_stage_writes_matching_files(tmp_path, pretrained, encoder, jitted, toy_dirs):
  cfg = _embed_config(pretrained['workdir'], toy_dirs['data_dir'])
  paths = stages.run(cfg, str(tmp_path))
  ws = input_pipeline.load_split(toy_dirs['labelled'], 'train')
  assert ws.acc.shape[2] == 32  # the window length came from the checkpoint
  emb = np.load(paths['embeddings'])
  assert paths['embeddings'] == str(tmp_path / 'embed' / 'toy_labelled_train_embeddings.npy')
  d = 2 * pretrained['config'].model.encoder.widths[-1]  # acc and gyr embeddings, concatenated
  assert emb.shape == (160, 2, d) and emb.dtype == np.float32
  np.testing.assert_array_equal(np.load(paths['subject_id']), ws.subject_id)
  np.testing.assert_array_equal(np.load(paths['trial']), ws.trial)
  np.testing.assert_array_equal(np.load(paths['targets']), ws.targets)
  np.testing.assert_allclose(emb, np.asarray(jitted(encoder[1], ws.acc, ws.gyr)), atol=1e-5,
                             rtol=0)
  with open(paths['info']) as f:
    desc = json.load(f)
  assert desc['shapes']['embeddings'] == [160, 2, d] and desc['targets'] == {'y': 'BW'}
  assert desc['subjects'] == list(range(10)) and desc['step'] == 6
  assert desc['sites'] == ['a', 'b'] and desc['encoder_sites'] == ['a', 'b', 'c']


def test_embed_stage_config_errors(tmp_path, pretrained, toy_dirs):
  cfg = _embed_config(None, toy_dirs['data_dir'])
  with pytest.raises(ValueError, match='config key checkpoint is required'):
    stages.run(cfg, str(tmp_path))
  cfg = _embed_config(pretrained['workdir'], toy_dirs['data_dir'], window_length=64)
  with pytest.raises(ValueError, match=r'config key data.window_length=64 .* trained with 32'):
    stages.run(cfg, str(tmp_path))
  assert not os.path.exists(tmp_path / 'embed')


def test_readme_example_runs(pretrained, toy_dirs, capsys):
  code = readme_snippet().replace("'runs/pretrain_tiny/pretrain/checkpoints'",
                                repr(pretrained['ckpt_dir']))
  code = code.replace("'synthetic_walking_grf', 'runs/pretrain_tiny/tfds'",
                      f"'toy_labelled', {toy_dirs['data_dir']!r}")
  assert code.count(pretrained['ckpt_dir']) == 1 and code.count('toy_labelled') == 1
  ns = {}
  exec(compile(code, 'README example', 'exec'), ns)
  assert ns['X'].shape == (160, 2 * 2 * pretrained['config'].model.encoder.widths[-1])
  test_subjects = set(ns['ws'].subject_id[ns['test']].tolist())
  assert test_subjects == {0, 5}
  assert not test_subjects & set(ns['ws'].subject_id[~ns['test']].tolist())
  # The toy label is a linear function of the signal amplitude: the embeddings must carry it.
  assert ns['rmse'] < 0.25 * ns['baseline']
  assert 'held-out RMSE' in capsys.readouterr().out


def test_import_is_cheap_and_load_encoder_is_exported():
  code = ('import sys, ssl_imu_jax; '
          'print(sorted(m for m in sys.modules if m.split(".")[0] == "jax"))')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                       check=False)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == '[]'
  with pytest.raises(AttributeError, match='no attribute'):
    ssl_imu_jax.no_such_thing  # noqa: B018
  assert encoder_api.load_encoder is ssl_imu_jax.load_encoder
