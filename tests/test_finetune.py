import chex
import jax
import numpy as np
import pandas as pd
import pytest
from conftest import killed_at_step, tiny_finetune_config

from ssl_imu_jax.data import input_pipeline
from ssl_imu_jax.evaluation import report
from ssl_imu_jax.training import checkpointing, finetune, steps


def _restore(workdir):
  return checkpointing.restore_raw(checkpointing.find_checkpoint_dir(workdir))


def _max_diff(a, b) -> float:
  return max(jax.tree.leaves(jax.tree.map(lambda x, y: float(np.abs(x - y).max()), a, b)))


@pytest.mark.parametrize('bn_adapt', [True, False])
def test_linear_probe_trains_one_dense_layer_and_leaves_the_encoder(tmp_path, toy_dirs,
                                                                     pretrained, bn_adapt):
  cfg = tiny_finetune_config()
  cfg.init_from = pretrained['workdir']
  cfg.protocol = 'linear_probe'
  cfg.linear_probe_bn_adapt = bn_adapt
  res = finetune.train_and_evaluate(cfg, str(tmp_path), toy_dirs['data_dir'])
  pre = jax.device_get(pretrained['out']['state'])
  tuned = _restore(str(tmp_path))
  assert set(tuned['params']) == {'encoder', 'head'}
  assert set(tuned['params']['head']) == {'dense0'}  # exactly one Dense layer
  chex.assert_trees_all_equal(tuned['params']['encoder'], pre.params['encoder'])
  # The reference lets the frozen encoder's BatchNorm statistics adapt; the switch turns it off.
  moved = _max_diff(tuned['batch_stats']['encoder'], pre.batch_stats['encoder'])
  assert (moved > 1e-4) if bn_adapt else (moved == 0.0)
  assert res['init'] == 'pretrained' and res['protocol'] == 'linear_probe'
  assert res['linear_probe_bn_adapt'] == bn_adapt
  # An inference-mode encoder's embeddings are cached; adapting statistics cannot be.
  assert res['embedding_cache'] == ('not used: the frozen encoder\'s BatchNorm adapts to each '
                                    'batch (linear_probe_bn_adapt=True, the reference default)'
                                    if bn_adapt else 'used')
  assert not set(res['train_subjects']) & set(res['test_subjects'])
  assert set(res['predictions']['subject_id']) == set(res['test_subjects'])
  assert np.isfinite(res['metrics']['y']['rmse'])


def test_a_probe_on_cached_embeddings_equals_the_probe_on_windows(tmp_path, toy_dirs, pretrained):
  cfg = tiny_finetune_config()
  cfg.init_from = pretrained['workdir']
  cfg.protocol = 'linear_probe'
  cfg.linear_probe_bn_adapt = False
  cfg.model.head_dims = (8,)    # a hidden layer with dropout: the same random numbers either way
  cfg.model.dropout_rate = 0.3
  runs = {}
  for cached in (True, False):
    cfg.cache_embeddings = cached
    runs[cached] = finetune.train_and_evaluate(cfg, str(tmp_path / str(cached)),
                                               toy_dirs['data_dir'])
  assert runs[True]['embedding_cache'] == 'used'
  assert runs[False]['embedding_cache'] == 'not used: cache_embeddings=False'
  a, b = _restore(str(tmp_path / 'True')), _restore(str(tmp_path / 'False'))
  assert _max_diff(a['params'], b['params']) <= 1e-5
  np.testing.assert_allclose(runs[True]['predictions']['y_pred'],
                             runs[False]['predictions']['y_pred'], atol=1e-5)
  assert runs[True]['metrics']['y']['pearson_r'] == pytest.approx(
      runs[False]['metrics']['y']['pearson_r'], abs=1e-5)


def test_full_from_probe_starts_from_the_probe(tmp_path, toy_dirs, pretrained, monkeypatch):
  probe_cfg = tiny_finetune_config()
  probe_cfg.init_from = pretrained['workdir']
  probe_cfg.protocol = 'linear_probe'
  finetune.train_and_evaluate(probe_cfg, str(tmp_path / 'probe'), toy_dirs['data_dir'])
  probe = _restore(str(tmp_path / 'probe'))
  seen = {}
  real = finetune.load_subtrees

  def spy(*args, **kwargs):
    state = real(*args, **kwargs)
    seen['state'] = jax.device_get(state)
    return state

  monkeypatch.setattr(finetune, 'load_subtrees', spy)
  cfg = probe_cfg.copy_and_resolve_references()
  cfg.protocol = 'full_from_probe'
  cfg.probe_from = str(tmp_path / 'probe')
  res = finetune.train_and_evaluate(cfg, str(tmp_path / 'full'), toy_dirs['data_dir'])
  chex.assert_trees_all_equal(seen['state'].params, probe['params'])  # head and encoder
  chex.assert_trees_all_equal(seen['state'].batch_stats, probe['batch_stats'])
  tuned = _restore(str(tmp_path / 'full'))
  assert _max_diff(tuned['params']['encoder'], probe['params']['encoder']) > 0  # all trains
  assert res['probe_from'].startswith(str(tmp_path / 'probe'))
  # A probe of another init (random) cannot start this run: the error names both.
  rnd = probe_cfg.copy_and_resolve_references()
  rnd.init_from = ''
  finetune.train_and_evaluate(rnd, str(tmp_path / 'probe_random'), toy_dirs['data_dir'])
  cfg.probe_from = str(tmp_path / 'probe_random')
  with pytest.raises(ValueError, match='probe_from.*random init'):
    finetune.train_and_evaluate(cfg, str(tmp_path / 'full2'), toy_dirs['data_dir'])


def test_full_from_probe_trains_its_own_probe_first(tmp_path, toy_dirs):
  cfg = tiny_finetune_config()
  assert cfg.protocol == 'full_from_probe'  # the reference protocol is the default
  res = finetune.train_and_evaluate(cfg, str(tmp_path), toy_dirs['data_dir'])
  probe = _restore(str(tmp_path / 'probe'))
  assert int(probe['step']) == cfg.train.steps == int(_restore(str(tmp_path))['step'])
  assert res['init'] == 'random' and res['protocol'] == 'full_from_probe'


def test_random_init_accelerometer_only_with_augmentation(tmp_path, toy_dirs, monkeypatch):
  cfg = tiny_finetune_config()
  cfg.protocol = 'full'
  cfg.data.use_gyr = False
  cfg.data.imu_sites = ('b',)
  cfg.split.fraction = 0.5
  cfg.augment.noise = True
  calls = []
  real = steps.apply_augmentation

  def spy(rng, acc, gyr, aug_cfg):
    out = real(rng, acc, gyr, aug_cfg)
    calls.append((gyr is None, out[0] is not acc))
    return out

  monkeypatch.setattr(steps, 'apply_augmentation', spy)
  res = finetune.train_and_evaluate(cfg, str(tmp_path), toy_dirs['data_dir'])
  assert calls and all(gyr_none and changed for gyr_none, changed in calls)  # not skipped
  assert set(_restore(str(tmp_path))['params']) == {'encoder', 'head'}
  assert res['init'] == 'random'
  assert res['n_train'] == round(0.5 * (160 - res['n_test']))
  # The report says the model saw the accelerometer only.
  rec = report.make_record(res, task='toy', init='random', protocol='full', fraction=0.5, fold=0)
  report.write_results([rec], str(tmp_path / 'report'))
  summary = (tmp_path / 'report' / 'summary.md').read_text()
  assert '## toy: y (BW), accelerometer only' in summary
  assert set(pd.read_csv(tmp_path / 'report' / 'results.csv').inputs) == {'acc only'}


def test_checkpoint_window_mismatch_is_named(tmp_path, toy_dirs, pretrained):
  cfg = tiny_finetune_config(window_length=48)
  cfg.init_from = pretrained['workdir']
  with pytest.raises(ValueError, match='data.window_length'):
    finetune.train_and_evaluate(cfg, str(tmp_path), toy_dirs['data_dir'])


def test_both_arms_get_the_same_normalisation(toy_dirs, pretrained):
  from ssl_imu_jax.data import input_pipeline

  ws = input_pipeline.load_split(toy_dirs['labelled'], 'train')
  idx = np.arange(40)
  _, _, meta = finetune.pretrained_info(pretrained['ckpt_dir'])
  cfg = tiny_finetune_config()
  assert cfg.input_norm == 'train_subjects'  # the default: refit per fold, both arms
  pre_arm = finetune.input_stats(cfg, ws, idx, meta)
  random_arm = finetune.input_stats(cfg, ws, idx, None)
  assert pre_arm == random_arm
  np.testing.assert_allclose(pre_arm['acc_mean'], ws.acc[idx].mean(), rtol=1e-5)
  assert finetune.norm_policy(cfg, True) == finetune.norm_policy(cfg, False) == 'train_subjects'
  cfg.input_norm = 'auto'  # the alternative: the checkpoint's statistics for the pre-trained arm
  auto = finetune.input_stats(cfg, ws, idx, meta)
  assert auto == {k: meta['normalization'][k] for k in auto}
  assert finetune.norm_policy(cfg, True) == 'checkpoint'
  cfg.input_norm = 'checkpoint'
  with pytest.raises(ValueError, match='init_from'):
    finetune.input_stats(cfg, ws, idx, None)


def test_select_checkpoint_picks_the_matching_rate_and_window(tmp_path, toy_dirs, pretrained):
  from conftest import tiny_pretrain_config

  from ssl_imu_jax.training import pretrain

  cfg48 = tiny_pretrain_config(window_length=48)
  cfg48.train.steps = 1
  cfg48.train.checkpoint_every = 1
  # Only the checkpoint's rate and window matter here: the smallest encoder and no held-out
  # evaluation, so that its one step compiles little.
  cfg48.model.encoder.update({'widths': (8,), 'blocks_per_stage': (1,), 'kernel_size': 3,
                              'stem_kernel': 3})
  cfg48.data.eval_split = ''
  pretrain.run(cfg48, str(tmp_path / 'pre48'), toy_dirs['data_dir'])
  cands = [pretrained['workdir'], str(tmp_path / 'pre48')]
  data = tiny_finetune_config(window_length=48).data
  assert finetune.select_checkpoint(cands, data) == str(tmp_path / 'pre48')
  data.window_length = 32
  assert finetune.select_checkpoint(cands, data) == pretrained['workdir']
  data.window_length = 64
  with pytest.raises(ValueError, match=r'toy_labelled at 100 Hz / 64 samples.*32 samples.*48'):
    finetune.select_checkpoint(cands, data)


def test_linear_probe_learning_rate_applies_to_the_probe_only():
  cfg = tiny_finetune_config()
  cfg.optimizer.learning_rate = 1e-3
  cfg.linear_probe_learning_rate = 1e-2
  cfg.protocol = 'linear_probe'
  assert finetune.optimizer_config(cfg).learning_rate == 1e-2
  cfg.protocol = 'full_from_probe'  # its full stage keeps the base rate
  assert finetune.optimizer_config(cfg).learning_rate == 1e-3
  cfg.protocol, cfg.linear_probe_learning_rate = 'linear_probe', 0.0
  assert finetune.optimizer_config(cfg).learning_rate == 1e-3


def test_pretrained_and_random_cells_share_one_compiled_program():
  """A checkpoint's encoder config may predate a key (the releases have no conv_impl): the cells
  it starts are the same model as the random-init cells, so they share programs (and can train
  in one vmapped group); a different encoder does not."""
  import ml_collections

  from ssl_imu_jax import parallel

  cfg = tiny_finetune_config()
  mesh = parallel.make_mesh()
  shape = (1, 2, 32, 3)
  current = cfg.model.encoder
  assert 'conv_impl' in current
  old = ml_collections.ConfigDict({k: list(v) if isinstance(v, tuple) else v
                                   for k, v in current.to_dict().items() if k != 'conv_impl'})
  ckpt_cfg = cfg.copy_and_resolve_references()
  ckpt_cfg.model.encoder = old  # as sweep.cell_config sets a pre-trained cell's
  a = finetune.programs(cfg, current, 1, True, shape, mesh)
  assert finetune.programs(ckpt_cfg, old, 1, True, shape, mesh) is a
  other = old.copy_and_resolve_references()
  other.kernel_size = int(current.get('kernel_size', 9)) + 2
  assert finetune.programs(ckpt_cfg, other, 1, True, shape, mesh) is not a


def test_cells_of_one_data_set_read_its_windows_once_and_cannot_change_them(toy_dirs):
  cfg = tiny_finetune_config()
  ws = finetune.load_windows(cfg, toy_dirs['data_dir'])
  assert finetune.load_windows(cfg, toy_dirs['data_dir']) is ws  # kept for the next cell
  with pytest.raises(ValueError, match='read-only'):
    ws.acc[0, 0, 0, 0] = 0.0  # shared by later cells: nobody may change it in place
  other = cfg.copy_and_resolve_references()
  other.data.use_gyr = False  # another reading of the data set is read anew
  acc_only = finetune.load_windows(other, toy_dirs['data_dir'])
  assert acc_only is not ws and acc_only.gyr is None
  np.testing.assert_array_equal(acc_only.acc, ws.acc)


@pytest.mark.parametrize('use_gyr', [True, False])
def test_fine_tuning_beats_predicting_the_training_mean(tmp_path, toy_dirs, use_gyr):
  """From random init, with and without the gyroscope: held-out RMSE below the RMSE of
  predicting the training subjects' mean label (the toy label follows the signal amplitude)."""
  cfg = tiny_finetune_config()
  cfg.protocol = 'full'
  cfg.data.use_gyr = use_gyr
  cfg.train.steps = 60
  cfg.train.batch_size = 16
  res = finetune.train_and_evaluate(cfg, str(tmp_path), toy_dirs['data_dir'])
  ws = input_pipeline.load_split(toy_dirs['labelled'], 'train')
  train = np.isin(ws.subject_id, res['train_subjects'])
  y_true = res['predictions']['y_true'][:, 0]
  baseline = np.sqrt(np.mean((y_true - ws.targets[train, 0].mean()) ** 2))
  rmse = res['metrics']['y']['rmse']
  assert rmse < 0.7 * baseline, (rmse, baseline)


def test_kill_and_resume_with_augmentation_and_dropout_match_an_uninterrupted_run(
    tmp_path, toy_dirs, monkeypatch):
  """The 'same random streams' promise where randomness is used: augmentation and dropout on."""
  cfg = tiny_finetune_config()
  cfg.protocol = 'full'
  cfg.model.head_dims = (16,)
  cfg.model.dropout_rate = 0.3
  cfg.augment.rotation = cfg.augment.noise = cfg.augment.scale = True
  cfg.train.checkpoint_every = 3
  whole = finetune.train_and_evaluate(cfg, str(tmp_path / 'whole'), toy_dirs['data_dir'])
  killed_at_step(monkeypatch, 4)
  with pytest.raises(KeyboardInterrupt):
    finetune.train_and_evaluate(cfg, str(tmp_path / 'killed'), toy_dirs['data_dir'])
  monkeypatch.undo()
  assert checkpointing.Checkpointer(str(tmp_path / 'killed' / 'checkpoints')).latest_step() == 3
  resumed = finetune.train_and_evaluate(cfg, str(tmp_path / 'killed'), toy_dirs['data_dir'])
  chex.assert_trees_all_close(_restore(str(tmp_path / 'killed'))['params'],
                              _restore(str(tmp_path / 'whole'))['params'], atol=1e-6)
  np.testing.assert_allclose(resumed['predictions']['y_pred'], whole['predictions']['y_pred'],
                             atol=1e-5)
  # The streams matter: the same run without augmentation and dropout ends elsewhere.
  cfg.model.dropout_rate = 0.0
  cfg.augment.rotation = cfg.augment.noise = cfg.augment.scale = False
  plain = finetune.train_and_evaluate(cfg, str(tmp_path / 'plain'), toy_dirs['data_dir'])
  assert np.abs(plain['predictions']['y_pred'] - whole['predictions']['y_pred']).max() > 1e-4
