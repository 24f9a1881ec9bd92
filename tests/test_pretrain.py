import json
import os

import chex
import jax
import numpy as np
import pytest
from conftest import TOY_ENCODER, killed_at_step, shared_tfds, tiny_pretrain_config

from ssl_imu_jax.data import input_pipeline
from ssl_imu_jax.training import checkpointing, pretrain, steps


def _top1_on_the_records(cfg, state, path: str, split: str) -> tuple[float, int]:
  """(retrieval top-1, number of site-windows) of a pre-trained model on a whole split,
  recomputed here as the eval step defines it (the gyr of the same site-window is the acc
  embedding's cosine nearest neighbour among all of the split's site-windows), from windows read
  straight from the records, not through input_pipeline, normalised with the state's statistics."""
  import tensorflow_datasets as tfds

  builder = tfds.builder_from_directory(path)
  src = builder.as_data_source()[split]
  exs = src.__getitems__(list(range(len(src))))
  sites = list(builder.info.metadata['imu_sites'])
  pick = [sites.index(s) for s in cfg.data.imu_sites] if cfg.data.imu_sites else slice(None)
  norm = {k: float(v) for k, v in jax.device_get(state.norm).items()}
  acc, gyr = ((np.stack([e[k] for e in exs])[:, pick] - norm[f'{k}_mean']) / norm[f'{k}_std']
              for k in ('acc', 'gyr'))
  assert not np.allclose(acc, gyr)
  model = pretrain.build_model(cfg)
  za, zg, _ = jax.jit(lambda v, a, g: model.apply(v, a, g, train=False))(
      {'params': state.params, 'batch_stats': state.batch_stats}, acc, gyr)
  za, zg = (np.asarray(z, np.float64).reshape(-1, z.shape[-1]) for z in (za, zg))
  za, zg = (z / np.linalg.norm(z, axis=1, keepdims=True) for z in (za, zg))
  sim = za @ zg.T
  return float(np.mean((sim > np.diag(sim)[:, None]).sum(1) == 0)), len(sim)


def test_pretrain_writes_checkpoints_config_and_card(pretrained, toy_dirs):
  ck = pretrained['ckpt_dir']
  assert sorted(int(d) for d in os.listdir(ck) if d.isdigit())[-1] == 6
  with open(os.path.join(ck, 'config.json')) as f:
    assert json.load(f)['ssl']['temperature'] == pretrained['config'].ssl.temperature
  card = open(os.path.join(ck, 'MODEL_CARD.md')).read()
  assert 'toy_unlabelled' in card and 'fresh, randomly initialised head' in card
  out = pretrained['out']
  assert np.isfinite(out['train']['loss'])
  top1, m = _top1_on_the_records(pretrained['config'], out['state'], toy_dirs['unlabelled'],
                                 'validation')
  assert out['eval']['top1'] == pytest.approx(top1, abs=1.5 / m), (out['eval'], top1)
  # The saved state equals the final in-memory state.
  state = out['state']
  restored, meta = checkpointing.Checkpointer(ck).restore(state)
  chex.assert_trees_all_equal(jax.device_get(restored.params), jax.device_get(state.params))
  assert meta['kind'] == 'pretrain' and meta['step'] == 6
  assert set(meta['normalization']) == {'acc_mean', 'acc_std', 'gyr_mean', 'gyr_std'}


def test_interrupted_run_resumes_to_the_same_parameters(tmp_path, toy_dirs, pretrained,
                                                        monkeypatch):
  cfg = tiny_pretrain_config()
  cfg.train.log_every = 1
  killed_at_step(monkeypatch, 5)
  with pytest.raises(KeyboardInterrupt):
    pretrain.run(cfg, str(tmp_path), toy_dirs['data_dir'])
  monkeypatch.undo()
  assert checkpointing.Checkpointer(str(tmp_path / 'checkpoints')).latest_step() == 3
  with open(tmp_path / 'metrics.jsonl') as f:
    before = [json.loads(ln)['step'] for ln in f if 'train/loss' in ln]
  assert max(before) > 3  # logged after the last checkpoint (3), before the interruption
  out = pretrain.run(cfg, str(tmp_path), toy_dirs['data_dir'])
  chex.assert_trees_all_close(jax.device_get(out['state'].params),
                              jax.device_get(pretrained['out']['state'].params), atol=1e-6)
  with open(tmp_path / 'metrics.jsonl') as f:
    after = [json.loads(ln)['step'] for ln in f if 'train/loss' in ln]
  assert after == list(range(1, cfg.train.steps + 1))  # every step once, none twice


def test_a_rerun_with_another_config_or_data_stops_naming_the_change(tmp_path, toy_dirs,
                                                                     pretrained):
  import shutil

  from ssl_imu_jax.errors import ConfigError

  work = tmp_path / 'run'
  shutil.copytree(pretrained['workdir'], work)
  cfg = tiny_pretrain_config()
  cfg.train.steps += 2
  cfg.optimizer.learning_rate *= 3
  cfg.train.log_every = 1  # logging cadence is not a change
  with pytest.raises(ConfigError, match=r'optimizer.learning_rate: 0.001 -> 0.003.*'
                                        r'--config.train.resume=force'):
    pretrain.run(cfg, str(work), toy_dirs['data_dir'])
  other = tiny_pretrain_config()
  other.data.window_length = 16
  with pytest.raises(ConfigError, match=r'data.window_length: 32 -> 16.*data records'):
    pretrain.run(other, str(work), toy_dirs['data_dir'])
  with open(work / 'checkpoints' / 'config.json') as f:
    assert json.load(f)['optimizer']['learning_rate'] == 1e-3  # not rewritten by the refusals
  cfg.train.resume = 'force'
  out = pretrain.run(cfg, str(work), toy_dirs['data_dir'])
  assert int(out['state'].step) == cfg.train.steps


def test_runs_that_differ_in_seed_or_io_share_programs_and_others_do_not():
  """pretrain.programs: a seed series traces and compiles once; any knob a program reads keys
  its own (else a run would silently train with another run's optimiser or model)."""
  from configs import pretrain as pretrain_config
  from ssl_imu_jax import parallel

  mesh, shape = parallel.make_mesh(1), (1, 3, 32, 3)
  cfg = tiny_pretrain_config()
  p = pretrain.programs(cfg, shape, True, mesh)
  same = tiny_pretrain_config()
  same.seed, same.train.log_every, same.data.dataset = 7, 1, 'another'
  assert pretrain.programs(same, shape, True, mesh) is p
  for change in (lambda c: c.optimizer.update(learning_rate=0.5),
                 lambda c: c.train.update(steps=7), lambda c: c.ssl.update(temperature=0.3),
                 lambda c: c.model.encoder.update(kernel_size=3),
                 lambda c: c.train.update(compute_dtype='bfloat16'),
                 lambda c: c.augment.update(noise=True)):
    other = tiny_pretrain_config()
    change(other)
    assert pretrain.programs(other, shape, True, mesh) is not p
  assert pretrain.programs(cfg, (1, 3, 64, 3), True, mesh) is not p
  assert pretrain.programs(cfg, shape, False, mesh) is not p
  # The masked eval step draws its masks from the seed: a masked run's seed keys its programs.
  masked = pretrain_config.get_config('tiny,masked')
  q = pretrain.programs(masked, shape, True, mesh)
  masked.seed = 7
  assert pretrain.programs(masked, shape, True, mesh) is not q


def test_bad_ssl_option_is_named(tmp_path, toy_dirs):
  cfg = tiny_pretrain_config()
  cfg.ssl.negatives = 'everything'
  with pytest.raises(ValueError, match='ssl.negatives'):
    pretrain.run(cfg, str(tmp_path), toy_dirs['data_dir'])


def _step_config():
  """The tiny config with a two-stage encoder: the one-step tests below check the step's
  mechanics (dtype policy, gradient accumulation, options), which do not depend on the encoder's
  depth, and each compiles its own step."""
  cfg = tiny_pretrain_config()
  cfg.model.encoder.update({'widths': (8, 16), 'blocks_per_stage': (1, 1), 'kernel_size': 3})
  return cfg


def _one_step(cfg, batch):
  from ssl_imu_jax import parallel
  from ssl_imu_jax.training import train_state

  mesh = parallel.make_mesh(1)
  model = pretrain.build_model(cfg)
  tx, schedule = train_state.make_optimizer(cfg.optimizer, cfg.train.steps)
  norm = {'acc_mean': 9.81, 'acc_std': 1.0, 'gyr_mean': 0.0, 'gyr_std': 1.0}
  state = steps.init_state(cfg, model, tx, (1,) + batch['acc'].shape[1:], mesh, norm)
  step = jax.jit(pretrain.make_train_step(cfg, model, tx, schedule, 1))
  return state, step(state, batch, jax.random.key(0))


def _toy_batch(b=8, n=3, t=32):
  rng = np.random.default_rng(0)
  w = rng.normal(size=(b, n, t, 3)).cumsum(2).astype(np.float32) * 0.1
  return {'acc': 9.81 + 5 * np.gradient(w, axis=2), 'gyr': w}


def test_bfloat16_compute_keeps_float32_parameters():
  cfg = _step_config()
  batch = _toy_batch()
  _, (s32, m32) = _one_step(cfg, batch)
  cfg.train.compute_dtype = 'bfloat16'
  _, (s16, m16) = _one_step(cfg, batch)
  assert {x.dtype for x in jax.tree.leaves(s16.params)} == {np.dtype('float32')}
  assert np.isfinite(float(m16['loss']))
  np.testing.assert_allclose(float(m16['loss']), float(m32['loss']), rtol=0.05)


def test_gradient_accumulation_averages_micro_batch_losses():
  cfg = _step_config()
  cfg.train.grad_accum_steps = 2
  batch = _toy_batch()
  state0, (_, m) = _one_step(cfg, batch)
  model = pretrain.build_model(cfg)
  halves = []
  bstats = state0.batch_stats
  for sl in (slice(0, 4), slice(4, 8)):
    acc = (batch['acc'][sl] - 9.81) / 1.0
    (za, zg, t), new = model.apply({'params': state0.params, 'batch_stats': bstats}, acc,
                                   batch['gyr'][sl], train=True, mutable=['batch_stats'])
    bstats = new['batch_stats']
    halves.append(float(pretrain.ssl_loss(cfg, za, zg, t)[0]))
  np.testing.assert_allclose(float(m['loss']), np.mean(halves), rtol=1e-5)


def test_gradient_accumulation_gives_the_mean_of_the_micro_batch_gradients():
  """The gradients themselves, not only the loss (which BatchNorm makes insensitive)."""
  from ssl_imu_jax import parallel
  from ssl_imu_jax.training import train_state

  cfg = _step_config()
  batch = _toy_batch()
  model = pretrain.build_model(cfg)
  tx, _ = train_state.make_optimizer(cfg.optimizer, cfg.train.steps)
  state0 = steps.init_state(cfg, model, tx, (1,) + batch['acc'].shape[1:],
                            parallel.make_mesh(1), {})
  acc, gyr = batch['acc'] - 9.81, batch['gyr']
  single = jax.jit(pretrain.make_gradient_fn(cfg, model, 1))
  parts = [single(state0.params, state0.batch_stats, acc[sl], gyr[sl])[3]
           for sl in (slice(0, 4), slice(4, 8))]
  cfg.train.grad_accum_steps = 2
  accumulated = jax.jit(pretrain.make_gradient_fn(cfg, model, 1))(
      state0.params, state0.batch_stats, acc, gyr)[3]
  mean = jax.tree.map(lambda a, b: (a + b) / 2, *parts)
  chex.assert_trees_all_close(accumulated, mean, rtol=1e-4, atol=5e-6)  # float32 sums
  # ... and not the gradient of the whole batch at once (the test can fail).
  whole = single(state0.params, state0.batch_stats, acc, gyr)[3]
  diffs = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(a - b).max()), whole, mean))
  assert max(diffs) > 1e-4


def test_intervals_follow_the_step_count():
  from configs import common
  from ssl_imu_jax.training import trainer

  t = common.train_config(steps=100, batch_size=8)
  t.steps = 10_000  # a --config.train.steps override
  assert trainer.intervals(t) == (500, 2500, 2500)
  t.steps = 20
  assert trainer.intervals(t) == (1, 5, 5)
  t.log_every, t.checkpoint_every = 7, 3
  assert trainer.intervals(t) == (7, 3, 5)


def test_tensorboard_reads_the_event_files_a_run_writes(pretrained):
  """`tensorboard --logdir DIR` (README) is installed and sees the scalars of metrics.jsonl."""
  import json

  from tensorboard.backend.event_processing import event_accumulator

  logdir = os.path.join(pretrained['workdir'], 'tensorboard')
  acc = event_accumulator.EventAccumulator(logdir)
  acc.Reload()
  with open(os.path.join(pretrained['workdir'], 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  losses = {r['step']: r['train/loss'] for r in rows if 'train/loss' in r}
  events = {e.step: e.value for e in acc.Scalars('train/loss')}
  assert losses and set(events) == set(losses)
  for step, value in losses.items():
    assert abs(events[step] - value) < 1e-5 * max(1.0, abs(value))
  assert any(t.startswith('eval/') for t in acc.Tags()['scalars'])


def test_pretraining_learns_the_acc_gyr_pairing(tmp_path, optimised_xla):
  """On the tiny synthetic MoVi corpus (6 training subjects, 17 sites), with the suite's two-stage
  toy ResNet (71 -> 22 s of CPU against the tiny config's four stages, both 7x chance): the
  training loss falls and held-out retrieval top-1 rises far above chance (7x after 100 steps), also
  when recomputed on the held-out windows read straight from the records. The last check is what
  fails when the input pipeline feeds the acc window in as the gyr window: the model then learns to
  pair a window with itself (the pipeline's own evaluation, fed the same way, reads about 230x
  chance) and finds nothing on the real acc-gyr pairs (chance)."""
  import json

  from configs import pretrain as pretrain_config

  cfg = pretrain_config.get_config('tiny')
  cfg.model.encoder.update(TOY_ENCODER)
  cfg.train.steps = 100
  cfg.train.batch_size = 16
  cfg.train.eval_every = 100
  cfg.train.eval_batch_size = 256  # every held-out window in one batch: chance = 1 / (n x 17)
  cfg.train.log_every = 10
  cfg.train.progress = False
  with shared_tfds('synthetic_movi_tiny_100hz_t128') as data_dir:
    path = input_pipeline.ensure_built(cfg.data, data_dir)
  out = pretrain.run(cfg, str(tmp_path / 'run'), data_dir)
  with open(tmp_path / 'run' / 'metrics.jsonl') as f:
    train = [json.loads(line)['train/loss'] for line in f if '"train/loss"' in line]
  held_out = input_pipeline.subject_ids(path, cfg.data.eval_split)
  chance = 1.0 / (len(held_out) * 17)
  assert np.mean(train[-2:]) < 0.9 * np.mean(train[:2]), train
  assert out['eval']['top1'] > 4 * chance, (out['eval'], chance)
  top1, m = _top1_on_the_records(cfg, out['state'], path, cfg.data.eval_split)
  assert m == len(held_out) * 17
  assert top1 > 4 * chance, (top1, chance)
  assert out['eval']['top1'] == pytest.approx(top1, abs=1.5 / m), (out['eval'], top1)


@pytest.mark.parametrize('option', ['learnable_temperature', 'group_norm', 'grad_clip_norm'])
def test_training_options_run_and_act(option):
  """Smoke tests of options the default recipe leaves off: one step runs, stays finite, and the
  option shows where it should."""
  cfg = _step_config()
  cfg.optimizer.warmup_fraction = 0.0  # a first step with a non-zero rate
  if option == 'learnable_temperature':
    cfg.ssl.learnable_temperature = True
  elif option == 'group_norm':
    cfg.model.encoder.norm = 'group'
  else:
    cfg.optimizer.grad_clip_norm = 1e-3
  state0, (state1, m) = _one_step(cfg, _toy_batch())
  assert np.isfinite(float(m['loss']))
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                                       jax.device_get(state0.params),
                                       jax.device_get(state1.params)))
  assert all(moved)  # every parameter got an update
  if option == 'learnable_temperature':
    assert float(state1.params['log_temperature']) != float(state0.params['log_temperature'])
    assert 'temperature' in m
  elif option == 'group_norm':
    assert 'encoder' not in (state1.batch_stats or {})  # GroupNorm keeps no batch statistics
  else:
    assert float(m['grad_norm']) > 1e-3  # the clip had something to clip


def test_an_accelerometer_only_corpus_is_refused_with_what_to_do(tmp_path, toy_dirs, monkeypatch):
  import dataclasses

  from ssl_imu_jax.errors import ConfigError

  real = input_pipeline.load_split
  monkeypatch.setattr(input_pipeline, 'load_split',
                      lambda *a, **k: dataclasses.replace(real(*a, **k), gyr=None))
  with pytest.raises(ConfigError, match=r"'toy_unlabelled' is read without gyroscopes.*"
                                        r'--config.data.use_gyr=False'):
    pretrain.run(tiny_pretrain_config(), str(tmp_path), toy_dirs['data_dir'])


def test_streamed_pretraining_equals_in_memory_pretraining(tmp_path, toy_dirs, pretrained):
  cfg = tiny_pretrain_config()
  cfg.data.stream = True   # windows read from the records as batches need them
  cfg.train.prefetch = 2   # batches prepared ahead by grain threads
  out = pretrain.run(cfg, str(tmp_path), toy_dirs['data_dir'])
  chex.assert_trees_all_close(jax.device_get(out['state'].params),
                              jax.device_get(pretrained['out']['state'].params), atol=1e-6)
  assert out['eval'] == pytest.approx(pretrained['out']['eval'], abs=1e-6)


def _pooled_config():
  cfg = tiny_pretrain_config()
  cfg.data.imu_sites = ('a', 'b')
  cfg.data.mix.update({'dataset': 'toy_labelled', 'imu_sites': ('b', 'a'), 'split': 'train',
                       'eval_split': ''})
  return cfg


def test_a_pooled_corpus_renames_sites_and_renumbers_subjects(toy_dirs):
  from ssl_imu_jax.data import input_pipeline
  from ssl_imu_jax.errors import ConfigError

  cfg = _pooled_config()
  train, held = input_pipeline.load_corpus(cfg.data, toy_dirs['data_dir'])
  first = input_pipeline.load_split(toy_dirs['unlabelled'], 'train', ('a', 'b'))
  extra = input_pipeline.load_split(toy_dirs['labelled'], 'train', ('b', 'a'))
  n = len(first)
  assert len(train) == n + len(extra) and train.sites == ('a', 'b')
  np.testing.assert_array_equal(train.acc[n:], extra.acc)  # the extra's b sits in slot a
  np.testing.assert_array_equal(train.gyr[:n], first.gyr)
  offset = input_pipeline.MIX_SUBJECT_OFFSET
  np.testing.assert_array_equal(train.subject_id[n:], extra.subject_id + offset)
  assert not set(train.subject_id[:n]) & set(train.subject_id[n:])
  assert train.targets.shape == (len(train), 0)
  held_first = input_pipeline.load_split(toy_dirs['unlabelled'], 'validation', ('a', 'b'))
  assert len(held) == len(held_first)  # mix.eval_split '' adds nothing to the held-out split
  mix = train.metadata['mix']
  assert (mix['dataset'], mix['num_windows'], mix['as_sites']) == ('toy_labelled', len(extra),
                                                                   ['a', 'b'])
  cfg.data.mix.imu_sites = ('a',)
  with pytest.raises(ConfigError, match=r"data.mix.imu_sites must list 2 sites of 'toy_labelled'"):
    input_pipeline.load_corpus(cfg.data, toy_dirs['data_dir'])


def test_pretraining_on_a_pooled_corpus_says_so_and_is_not_mixed_with_a_plain_run(
    tmp_path, toy_dirs, pretrained):
  import shutil

  from ssl_imu_jax.errors import ConfigError
  from ssl_imu_jax.training import trainer

  assert not [k for k in trainer.fingerprint(tiny_pretrain_config()) if k.startswith('data.mix')]
  cfg = _pooled_config()
  out = pretrain.run(cfg, str(tmp_path / 'pooled'), toy_dirs['data_dir'])
  card = (tmp_path / 'pooled' / 'checkpoints' / 'MODEL_CARD.md').read_text()
  assert 'Pooled with `toy_labelled`' in card and 'b as a, a as b' in card
  assert int(out['state'].step) == cfg.train.steps
  work = tmp_path / 'plain'
  shutil.copytree(pretrained['workdir'], work)
  cfg.data.imu_sites = ()
  cfg.data.mix.imu_sites = ('a', 'b', 'b')
  with pytest.raises(ConfigError,
                     match=r"data.mix.dataset: '<absent>' -> 'toy_labelled'.*data records"):
    pretrain.run(cfg, str(work), toy_dirs['data_dir'])


def test_device_resident_windows_give_the_host_pipelines_batches_and_run(tmp_path, toy_dirs,
                                                                        pretrained):
  from ssl_imu_jax import parallel
  from ssl_imu_jax.errors import ConfigError
  from ssl_imu_jax.training import trainer

  ws = input_pipeline.load_split(toy_dirs['unlabelled'], 'train')
  sh = parallel.data_sharding(parallel.make_mesh())
  idx = np.arange(3, len(ws))
  data = input_pipeline.device_arrays(ws, sh)
  host = input_pipeline.train_iterator(ws, idx, 8, 5, 2, 5, sh, prefetch=0)
  dev = input_pipeline.index_iterator(idx, 8, 5, 2, 5, sh)
  for (s, hb), (s2, ib) in zip(host, dev, strict=True):
    assert s == s2
    for k in hb:
      np.testing.assert_array_equal(np.asarray(hb[k]), np.asarray(data[k])[np.asarray(ib)])
  cfg = tiny_pretrain_config()
  cfg.train.batches_from = 'device'
  out = pretrain.run(cfg, str(tmp_path / 'resident'), toy_dirs['data_dir'])
  chex.assert_trees_all_equal(jax.device_get(out['state'].params),
                              jax.device_get(pretrained['out']['state'].params))
  cfg.train.batches_from = 'auto'
  cfg.train.device_data_mb = input_pipeline.data_bytes(ws) / 2**20 * 0.99
  assert not trainer.device_resident(cfg.train, ws)  # does not fit: the host pipeline
  cfg.train.device_data_mb *= 1.02
  assert trainer.device_resident(cfg.train, ws)
  cfg.train.batches_from = 'gpu'
  with pytest.raises(ConfigError, match=r"batches_from must be 'host', 'device' or 'auto'"):
    trainer.device_resident(cfg.train, ws)
