"""NCE pre-training of the Transformer backbone (issue 27, the crossed pairing): the config
variant, the pairings refused in one line, the step's loss against a direct computation, 8 vs 1
devices, and fine-tuning (probe and full, scalar and curve targets) from a copy of the backbone."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import eight_device_env, tiny_finetune_config, tiny_pretrain_config

from configs import pretrain as pretrain_config
from ssl_imu_jax import parallel
from ssl_imu_jax.data import input_pipeline
from ssl_imu_jax.deploy.predict import load_regressor
from ssl_imu_jax.errors import ConfigError
from ssl_imu_jax.models.heads import MLP
from ssl_imu_jax.models.transformer import MaskedTransformer
from ssl_imu_jax.training import checkpointing, finetune, pretrain, steps, trainer
from ssl_imu_jax.training import train_state as ts

TESTS = Path(__file__).resolve().parent
SIZES = {'width': 16, 'depth': 1, 'heads': 2, 'ff': 32}
B, N, T = 8, 2, 32


def nce_t_config():
  """tiny_pretrain_config (toy data, sites a and b: toy_labelled's) with the ',nce_transformer'
  recipe and a 1-layer Transformer; 4 steps."""
  cfg = tiny_pretrain_config()
  v = pretrain_config.get_config('tiny,nce_transformer')
  cfg.ssl, cfg.optimizer, cfg.model = v.ssl, v.optimizer, v.model
  cfg.model.transformer.update(**SIZES)
  cfg.model.projection_dims = (8, 8)
  cfg.data.imu_sites = ('a', 'b')
  cfg.train.steps, cfg.train.eval_every, cfg.train.checkpoint_every = 4, 4, 4
  return cfg


@pytest.fixture(scope='module')
def nce_t_ckpt(tmp_path_factory, toy_dirs):
  out = pretrain.run(nce_t_config(), str(tmp_path_factory.mktemp('nce_t')), toy_dirs['data_dir'])
  return out['checkpoint_dir']


def _flat(tree):
  return {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]}


def test_the_variant_sets_the_pairing_and_refused_pairings_are_one_line():
  c = pretrain_config.get_config('nce_transformer')
  assert (c.ssl.objective, c.model.backbone, c.model.transformer.modalities) == (
      'nce', 'transformer', 'separate')
  assert (c.ssl.loss, c.ssl.negatives, c.ssl.temperature, c.ssl.normalization) == (
      'reference_nce', 'global', 0.1, 'scale')
  masked = pretrain_config.get_config('masked')
  assert c.optimizer.to_dict() == masked.optimizer.to_dict()  # the Transformer's recipe
  assert c.train.to_dict() == masked.train.to_dict()
  assert pretrain.backbone(c) == 'transformer' and pretrain.backbone(masked) == 'transformer'
  # NCE with joint tokens cannot contrast acc with gyr; masked needs them joint.
  c.model.transformer.modalities = 'joint'
  with pytest.raises(ConfigError, match=r"model.transformer.modalities='joint': .*'separate'") as e:
    pretrain.build_model(c)
  assert '\n' not in str(e.value)
  masked.model.transformer.modalities = 'separate'
  with pytest.raises(ConfigError, match=r"modalities='separate': ssl.objective='masked'") as e:
    pretrain.build_model(masked)
  assert '\n' not in str(e.value)
  c.model.backbone = 'lstm'
  with pytest.raises(ConfigError, match='config key model.backbone must be one of'):
    pretrain.build_model(c)
  with pytest.raises(ConfigError, match="',masked' and ',nce_transformer'"):
    pretrain_config.get_config('tiny,masked,nce_transformer')


def test_new_keys_leave_the_fingerprints_of_existing_runs_alone():
  for arg in ('tiny', 'default'):
    fp = trainer.fingerprint(pretrain_config.get_config(arg))
    assert 'model.backbone' not in fp and not any(k.startswith('model.transformer.') for k in fp)
  fp = trainer.fingerprint(pretrain_config.get_config('tiny,masked'))
  assert 'model.backbone' not in fp and 'model.transformer.modalities' not in fp
  assert fp['model.transformer.width'] == 32
  fp = trainer.fingerprint(pretrain_config.get_config('tiny,nce_transformer'))
  assert fp['model.backbone'] == 'transformer'
  assert fp['model.transformer.modalities'] == 'separate'


def test_the_step_loss_is_the_reference_nce_of_the_tokens_pooled_and_projected():
  cfg = nce_t_config()
  cfg.model.transformer.dropout = 0.0  # the direct computation below calls the parts one by one
  cfg.train.batch_size = B
  mesh = parallel.make_mesh(1)
  model = pretrain.build_model(cfg)
  tx, schedule = ts.make_optimizer(cfg.optimizer, 10)
  rng = np.random.default_rng(0)
  w = rng.normal(size=(B, N, T, 3)).cumsum(2).astype(np.float32) * 0.1
  # Windows of distinct amplitudes, no gravity: the projection's BatchNorm then divides by a
  # well-sized spread (pooled tokens nearly equal across windows, as a shared gravity offset
  # makes them, amplify float32 rounding past the tolerance).
  amp = np.linspace(0.3, 3.0, B, dtype=np.float32)[:, None, None, None]
  batch = {'acc': (5 * amp * np.gradient(w, axis=2)).astype(np.float32),
           'gyr': (5 * amp * w).astype(np.float32)}
  norm = {'acc_mean': 0.0, 'acc_std': 2.5, 'gyr_mean': 0.0, 'gyr_std': 0.7}
  state = steps.init_state(cfg, model, tx, (1, N, T, 3), mesh, norm)
  before = jax.device_get(state)
  assert set(before.params) == {'transformer', 'acc_projection', 'gyr_projection'}
  assert before.params['transformer']['embed']['kernel'].shape == (3 * N, 16)  # one modality
  _, m = jax.jit(pretrain.make_train_step(cfg, model, tx, schedule, 1))(state, batch,
                                                                        jax.random.key(3))

  # By hand: per modality, tokens [B, T, 3N] (every site's x, y, z), the Transformer, the mean
  # over time, the projection (BatchNorm on the batch), then the reference NCE in numpy.
  def tokens(x):
    return x.transpose(0, 2, 1, 3).reshape(B, T, 3 * N)

  backbone = MaskedTransformer(**SIZES, dropout=0.0, reconstruct=False)
  proj = MLP((8, 8), batch_norm=True)
  z = {}
  for mod, scale in (('acc', 2.5), ('gyr', 0.7)):
    h, _ = backbone.apply({'params': before.params['transformer']}, tokens(batch[mod] / scale),
                          None, True)
    z[mod], _ = proj.apply({'params': before.params[f'{mod}_projection'],
                            'batch_stats': before.batch_stats[f'{mod}_projection']},
                           np.asarray(h).mean(1), True, mutable=['batch_stats'])
  za, zg = (np.asarray(z[k], np.float64) for k in ('acc', 'gyr'))
  za /= np.linalg.norm(za, axis=1, keepdims=True)
  zg /= np.linalg.norm(zg, axis=1, keepdims=True)
  s = za @ zg.T / 0.1
  neg = np.where(np.eye(B, dtype=bool), -np.inf, s)
  lse = np.log(np.exp(neg - neg.max(1, keepdims=True)).sum(1)) + neg.max(1)
  want = float(np.mean(lse - np.diag(s)))
  assert float(m['loss']) == pytest.approx(want, rel=1e-5)


def test_the_nce_transformer_step_on_8_devices_equals_1_device():
  """tests/multidevice_check.py nce_transformer in a subprocess with 8 fake CPU devices."""
  env = eight_device_env()
  proc = subprocess.run([sys.executable, str(TESTS / 'multidevice_check.py'), 'nce_transformer'],
                        env=env, capture_output=True, text=True, timeout=600, cwd=TESTS.parent)
  assert proc.returncode == 0, proc.stderr[-4000:]
  m = json.loads(proc.stdout.strip().splitlines()[-1])['pretrain_nce_transformer']
  assert (m['state_devices_1'], m['state_devices_8'], m['steps']) == (1, 8, [1, 1])
  assert abs(m['loss_8dev'] - m['loss_1dev']) <= 1e-5 * max(1.0, m['loss_1dev']), m
  assert abs(m['grad_norm_8dev'] - m['grad_norm_1dev']) <= 1e-5 * max(1.0, m['grad_norm_1dev'])
  assert m['params_max_diff'] <= 1e-5 and m['opt_state_max_diff'] <= 1e-5, m
  assert m['batch_stats_max_diff'] <= 1e-5 and m['batch_stats_change'] > 1e-3, m
  assert m['params_change'] > 100 * 1e-5, m
  # The key bias and the last LayerNorm's bias (zero true gradient: the softmax and the
  # projection's BatchNorm cancel them; Adam steps on rounding noise) move by at most the rate.
  assert m['zero_grad_names'] == ["['transformer']['layer0']['attention']['key']['bias']",
                                  "['transformer']['layer0']['norm2']['bias']"], m
  assert m['zero_grad_names'] and m['zero_grad_max_diff'] <= 2.0 * m['learning_rate'] + 1e-7


def test_the_checkpoint_records_objective_backbone_and_tokens(nce_t_ckpt):
  _, meta = checkpointing.read_meta(nce_t_ckpt)
  assert meta['objective'] == 'nce' and meta['encoder']['backbone'] == 'transformer'
  assert meta['encoder']['modalities'] == 'separate' and meta['encoder']['width'] == 16
  assert meta['tokens'] == [f'{m}/{s}/{a}' for m in ('acc', 'gyr') for s in 'ab' for a in 'xyz']
  assert 'mask_ratio' not in meta
  card = open(os.path.join(nce_t_ckpt, 'MODEL_CARD.md')).read()
  assert "model.backbone='transformer'" in card and 'gyroscope tokens' in card


def _ft_config(init_from, protocol):
  c = tiny_finetune_config()
  c.init_from, c.protocol = init_from, protocol
  c.train.steps = 4
  c.model.transformer.update(**SIZES)
  return c


def test_fine_tuning_copies_the_backbone_bit_for_bit_probe_then_full(nce_t_ckpt, toy_dirs,
                                                                     tmp_path):
  saved = _flat(checkpointing.restore_raw(nce_t_ckpt)['params']['transformer'])
  cell = finetune.prepare(_ft_config(nce_t_ckpt, 'linear_probe'), str(tmp_path / 'lp0'),
                          toy_dirs['data_dir'])
  assert set(cell.state.params) == {'transformer', 'head'}
  start = _flat(cell.state.params['transformer'])
  assert start.keys() == saved.keys()
  for k in saved:
    np.testing.assert_array_equal(start[k], saved[k], err_msg=k)
  assert cell.meta['encoder']['modalities'] == 'separate'
  assert cell.meta['input_scaling'] == 'scale'
  # The head reads the acc tokens' and the gyr tokens' time means side by side.
  assert cell.state.params['head']['dense0']['kernel'].shape == (2 * 16, 1)
  # The probe trains and predicts as saved (load_regressor builds the separate-token model).
  res = finetune.fit_and_finish(cell)
  predict_fn, params, _ = load_regressor(str(tmp_path / 'lp0'))
  idx = cell.test_idx
  y = np.asarray(jax.jit(predict_fn)(params, cell.ws.acc[idx], cell.ws.gyr[idx]))
  np.testing.assert_allclose(y, res['predictions']['y_pred'], rtol=1e-4, atol=1e-5)

  res = finetune.train_and_evaluate(_ft_config(nce_t_ckpt, 'full_from_probe'),
                                    str(tmp_path / 'ft'), toy_dirs['data_dir'])
  assert res['init'] == 'pretrained' and np.isfinite(res['train_loss'])
  probe = checkpointing.restore_raw(checkpointing.find_checkpoint_dir(str(tmp_path / 'ft' /
                                                                         'probe')))
  after_lp = _flat(probe['params']['transformer'])
  for k in saved:
    np.testing.assert_array_equal(after_lp[k], saved[k], err_msg=k)
  full = _flat(checkpointing.restore_raw(checkpointing.find_checkpoint_dir(
      str(tmp_path / 'ft')))['params']['transformer'])
  assert any(not np.array_equal(full[k], saved[k]) for k in saved if 'mask_token' not in k)


def test_accelerometer_only_windows_fine_tune_from_the_acc_tokens_alone(nce_t_ckpt, toy_dirs,
                                                                       tmp_path):
  """Tokens per modality: without gyr (data.use_gyr=False) the backbone embeds the acc tokens
  alone, [B, width] into the head (the masked model's joint tokens need both: refused)."""
  cfg = _ft_config(nce_t_ckpt, 'linear_probe')
  cfg.data.use_gyr = False
  cell = finetune.prepare(cfg, str(tmp_path / 'acc'), toy_dirs['data_dir'])
  assert cell.ws.gyr is None and cell.meta['tokens'] == [f'acc/{s}/{a}' for s in 'ab'
                                                          for a in 'xyz']
  assert cell.state.params['head']['dense0']['kernel'].shape == (16, 1)
  saved = _flat(checkpointing.restore_raw(nce_t_ckpt)['params']['transformer'])
  start = _flat(cell.state.params['transformer'])
  for k in saved:
    np.testing.assert_array_equal(start[k], saved[k], err_msg=k)


def test_a_curve_target_fine_tunes_from_the_nce_transformer(nce_t_ckpt, toy_dirs, tmp_path):
  """A per-time-step head on the acc and gyr tokens of each step, [B, T, 2·width] -> [B, T, 3],
  probe and full (the toy set has no curve label: a smooth curve per window stands in, its AP
  axis absent; the windows are handed to ``prepare``)."""
  ws = input_pipeline.load_split(toy_dirs['labelled'], 'train', ('a', 'b'))
  t = np.linspace(0, np.pi, T, dtype=np.float32)
  y = ws.targets[:, :1, None] * np.stack([0.1 * np.sin(t), np.full(T, np.nan), np.sin(t)], -1)
  ws = dataclasses.replace(ws, targets=y.astype(np.float32), target_names=('grf_curve',),
                           target_units=('BW',), curve={'axes': ['ML', 'AP', 'V'],
                                                        'present': [True, False, True],
                                                        'unit': 'BW', 'frame': 'toy'})
  saved = _flat(checkpointing.restore_raw(nce_t_ckpt)['params']['transformer'])
  for protocol in ('linear_probe', 'full'):
    cell = finetune.prepare(_ft_config(nce_t_ckpt, protocol), str(tmp_path / protocol),
                            toy_dirs['data_dir'], ws=ws)
    start = _flat(cell.state.params['transformer'])
    for k in saved:
      np.testing.assert_array_equal(start[k], saved[k], err_msg=k)
    assert cell.state.params['head']['dense0']['kernel'].shape == (2 * 16, 3)
    res = finetune.fit_and_finish(cell)
    assert res['predictions']['y_pred'].shape == (len(cell.test_idx), T, 3)
    assert np.isfinite(res['train_loss']) and res['curve_metrics']['summary']
    after = _flat(checkpointing.restore_raw(checkpointing.find_checkpoint_dir(
        str(tmp_path / protocol)))['params']['transformer'])
    moved = any(not np.array_equal(after[k], saved[k]) for k in saved if 'mask_token' not in k)
    assert moved == (protocol == 'full'), protocol  # the probe keeps the backbone


def test_the_nce_transformer_releases_and_embeds_acc_then_gyr(nce_t_ckpt, tmp_path):
  """load_encoder / release of the NCE Transformer: [B, 2·width], the acc tokens' time mean then
  the gyr tokens' (the pre-training model's ``embed`` on the checkpoint's parameters); acc alone
  gives the first half."""
  import ssl_imu_jax
  from configs import release as release_config
  from ssl_imu_jax.deploy import release

  c = release_config.get_config()
  c.update({'checkpoint': nce_t_ckpt, 'out_dir': str(tmp_path), 'reproduce': 'python x',
            'licence': 'test data'})
  out = release.export(c)
  assert os.path.basename(out) == 'toy_unlabelled_100hz_32_nce_transformer'
  saved = checkpointing.state_metadata(os.path.join(out, 'checkpoints'), 4)
  assert set(saved['params']) == {'transformer'}  # no projections
  apply_fn, params, info = ssl_imu_jax.load_encoder(out)
  assert (info['per_site'], info['objective'], info['output_dim']) == (False, 'nce', 32)
  acc, gyr, stored, now = release.reference_embeddings(out)
  np.testing.assert_allclose(now, stored, rtol=1e-5, atol=1e-6)
  raw = checkpointing.restore_raw(nce_t_ckpt)
  _, meta = checkpointing.read_meta(nce_t_ckpt)
  n = meta['normalization']
  model = pretrain.build_model(nce_t_config())
  h_acc, h_gyr = model.apply({'params': raw['params'], 'batch_stats': raw['batch_stats']},
                             acc / n['acc_std'], gyr / n['gyr_std'], False, method='embed')
  np.testing.assert_allclose(stored, np.concatenate([h_acc[:, 0], h_gyr[:, 0]], -1), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(np.asarray(apply_fn(params, acc)), stored[:, :16], rtol=1e-5,
                             atol=1e-6)
  card = open(os.path.join(out, release.CARD), encoding='utf-8').read()
  assert '| step | top-1 | top-5 |' in card and '1 embeddings' in card
