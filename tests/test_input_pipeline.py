import jax
import numpy as np
import pytest
from toy_data import as_written

from ssl_imu_jax import parallel
from ssl_imu_jax.data import input_pipeline


def _assert_as_written(acc, gyr, written, sites=slice(None)):
  """Each window of ``acc`` is one the builder wrote (looked up by its exact float32 values), and
  ``gyr`` holds that window's gyroscope signal, not its accelerometer one. Returns the rows of
  ``written`` that the windows are."""
  acc, gyr = np.asarray(acc), np.asarray(gyr)
  rows_of = {a.tobytes(): i for i, a in enumerate(written['acc'][:, sites])}
  assert len(rows_of) == len(written['acc'])  # the written windows are all distinct
  rows = np.array([rows_of.get(a.tobytes(), -1) for a in acc])
  assert (rows >= 0).all(), f'{np.sum(rows < 0)} acc windows are not among the written records'
  assert not np.allclose(gyr, acc)
  np.testing.assert_array_equal(gyr, written['gyr'][rows][:, sites])
  return rows


def test_batch_order_is_a_pure_function_of_step():
  n, b = 37, 8
  first = [input_pipeline.batch_indices(s, b, n, seed=5) for s in range(20)]
  again = [input_pipeline.batch_indices(s, b, n, seed=5) for s in range(20)]
  np.testing.assert_array_equal(np.stack(first), np.stack(again))
  stream = np.concatenate(first)
  # Each epoch of n consecutive positions is a permutation of all examples.
  for e in range(len(stream) // n):
    assert sorted(stream[e * n:(e + 1) * n]) == list(range(n))
  assert not np.array_equal(first[0], input_pipeline.batch_indices(0, b, n, seed=6))


def test_load_split_reads_records_and_selects_sites(toy_dirs):
  ws = input_pipeline.load_split(toy_dirs['labelled'], 'train')
  assert ws.acc.shape == (160, 2, 32, 3) and ws.gyr.shape == ws.acc.shape
  assert ws.targets.shape == (160, 1) and ws.target_names == ('y',)
  assert sorted(set(ws.subject_id.tolist())) == list(range(10))
  # Contents: every written window once, acc as acc, gyr as gyr, its own subject and label.
  written = as_written('toy_labelled', 'train')
  rows = _assert_as_written(ws.acc, ws.gyr, written)
  assert sorted(rows.tolist()) == list(range(len(written['acc'])))
  np.testing.assert_array_equal(ws.subject_id, written['subject_id'][rows])
  np.testing.assert_array_equal(ws.targets, written['targets'][rows])
  np.testing.assert_allclose(ws.targets[:, 0], 1 + (ws.acc[:, 0, :, 0] - 9.81).max(1) /
                             np.sin(np.linspace(0, 6, 32)).max(), rtol=1e-4)
  sub = input_pipeline.load_split(toy_dirs['labelled'], 'train', sites=('b',), use_gyr=False)
  assert sub.acc.shape == (160, 1, 32, 3) and sub.gyr is None and sub.sites == ('b',)
  swapped = input_pipeline.load_split(toy_dirs['labelled'], 'train', sites=('b', 'a'))
  np.testing.assert_array_equal(_assert_as_written(swapped.acc, swapped.gyr, written, [1, 0]),
                                rows)
  unl = input_pipeline.load_split(toy_dirs['unlabelled'], 'validation', sites=('c', 'a'))
  w_unl = as_written('toy_unlabelled', 'validation')
  rows = _assert_as_written(unl.acc, unl.gyr, w_unl, [2, 0])
  assert sorted(rows.tolist()) == list(range(len(w_unl['acc'])))
  np.testing.assert_array_equal(unl.trial, w_unl['trial'][rows])
  with pytest.raises(ValueError, match='data.imu_sites'):
    input_pipeline.load_split(toy_dirs['labelled'], 'train', sites=('knee',))
  with pytest.raises(ValueError, match="no split 'test'"):
    input_pipeline.load_split(toy_dirs['labelled'], 'test')


def test_normalisation_uses_only_the_given_windows(toy_dirs):
  ws = input_pipeline.load_split(toy_dirs['labelled'], 'train')
  idx = np.flatnonzero(ws.subject_id < 5)
  s = input_pipeline.fit_input_stats(ws, idx)
  np.testing.assert_allclose(s['acc_mean'], ws.acc[idx].mean(), rtol=1e-5)
  assert s['acc_mean'] != pytest.approx(ws.acc.mean(), rel=1e-7)
  t = input_pipeline.fit_target_stats(ws, idx)
  np.testing.assert_allclose(t['mean'][0], ws.targets[idx, 0].mean(), rtol=1e-5)


def test_config_mismatch_is_named(toy_dirs):
  from conftest import tiny_finetune_config

  ws = input_pipeline.load_split(toy_dirs['labelled'], 'train')
  cfg = tiny_finetune_config()
  cfg.data.sample_rate_hz = 200.0
  with pytest.raises(ValueError, match='data.sample_rate_hz'):
    input_pipeline.check_matches(ws, cfg.data)


def test_training_batches_hold_the_windows_they_claim(toy_dirs):
  """Contents, not only shapes: batch s = the windows train_idx[batch_indices(s)], labels too,
  for a training subset that does not start at 0."""
  ws = input_pipeline.load_split(toy_dirs['labelled'], 'train')
  written = as_written('toy_labelled', 'train')
  sh = parallel.data_sharding(parallel.make_mesh())
  train_idx = np.arange(37, 160, 3)
  seen = set()
  for step, batch in input_pipeline.train_iterator(ws, train_idx, 8, 5, 0, 7, sh, prefetch=2):
    want = train_idx[input_pipeline.batch_indices(step, 8, len(train_idx), 5)]
    host = jax.device_get(batch)
    np.testing.assert_array_equal(host['acc'], ws.acc[want])
    np.testing.assert_array_equal(host['gyr'], ws.gyr[want])
    np.testing.assert_array_equal(host['targets'], ws.targets[want])
    rows = _assert_as_written(host['acc'], host['gyr'], written)
    np.testing.assert_array_equal(host['targets'], written['targets'][rows])
    seen.update(want.tolist())
  assert seen <= set(train_idx.tolist()) and len(seen) == len(train_idx)  # 7 x 8 > 41: all seen


def test_iterators_shard_and_pad(toy_dirs):
  ws = input_pipeline.load_split(toy_dirs['labelled'], 'train')
  mesh = parallel.make_mesh()
  sh = parallel.data_sharding(mesh)
  steps = list(input_pipeline.train_iterator(ws, np.arange(20), 8, 0, 3, 6, sh, prefetch=2))
  assert [s for s, _ in steps] == [3, 4, 5]
  assert steps[0][1]['acc'].shape == (8, 2, 32, 3)
  idx = np.arange(19)
  batches = list(input_pipeline.eval_batches(ws, idx, 8, sh))
  assert [n for _, n in batches] == [8, 8, 3]
  last = jax.device_get(batches[-1][0])
  np.testing.assert_array_equal(last['weights'], [1, 1, 1, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(last['targets'][:3], ws.targets[16:19])
  # Contents: the windows idx in order, the pads repeating the last one, gyr as written.
  written = as_written('toy_labelled', 'train')
  order = np.concatenate([idx, np.repeat(idx[-1:], 5)])
  got = [jax.device_get(b) for b, _ in batches]
  for k in ('acc', 'gyr', 'targets'):
    np.testing.assert_array_equal(np.concatenate([g[k] for g in got]), getattr(ws, k)[order])
  _assert_as_written(np.concatenate([g['acc'] for g in got]),
                     np.concatenate([g['gyr'] for g in got]), written)


def test_device_resident_windows_hold_the_records_as_written(toy_dirs):
  """``device_arrays`` (the windows kept on the device) and what ``index_iterator`` indexes."""
  ws = input_pipeline.load_split(toy_dirs['unlabelled'], 'train', ('b', 'c'))
  sh = parallel.data_sharding(parallel.make_mesh())
  data = jax.device_get(input_pipeline.device_arrays(ws, sh))
  assert set(data) == {'acc', 'gyr'}
  written = as_written('toy_unlabelled', 'train')
  rows = _assert_as_written(data['acc'], data['gyr'], written, [1, 2])
  assert sorted(rows.tolist()) == list(range(len(written['acc'])))
  np.testing.assert_array_equal(data['acc'], ws.acc)
  _, idx = next(input_pipeline.index_iterator(np.arange(10, 50), 8, 1, 0, 1, sh))
  _assert_as_written(data['acc'][np.asarray(idx)], data['gyr'][np.asarray(idx)], written, [1, 2])


def test_a_build_says_what_it_does_and_leaves_no_empty_download_tree(tmp_path, capfd,
                                                                     monkeypatch):
  import tempfile

  from conftest import tiny_finetune_config

  temp = tmp_path / 'system_temp'
  temp.mkdir()
  monkeypatch.setattr(tempfile, 'tempdir', str(temp))
  data = tiny_finetune_config().data
  path = input_pipeline.ensure_built(data, str(tmp_path / 'tfds'))
  assert list(temp.iterdir()) == []  # no empty TFDS folders left in the system's temp dir
  tmp_path = tmp_path / 'tfds'
  out, err = capfd.readouterr()
  assert 'building toy_labelled (tiny_100hz_t32, generated here)' in err
  assert 'built toy_labelled' in err and '160 train windows' in err
  assert 'Downloading' not in out + err and 'Using custom data configuration' not in out + err
  assert not (tmp_path / 'downloads').exists()
  assert input_pipeline.ensure_built(data, str(tmp_path)) == path  # reused, silently
  assert capfd.readouterr().err == ''


def test_a_streamed_split_reads_the_same_windows_batches_and_statistics(toy_dirs):
  path = toy_dirs['unlabelled']
  mem = input_pipeline.load_split(path, 'train', ('b', 'a'))
  st = input_pipeline.load_split(path, 'train', ('b', 'a'), stream=True)
  assert isinstance(st.acc, input_pipeline.RecordArray) and st.acc.shape == mem.acc.shape
  np.testing.assert_array_equal(st.subject_id, mem.subject_id)
  idx = np.array([5, 0, 5, len(mem) - 1])
  np.testing.assert_array_equal(st.acc[idx], mem.acc[idx])
  np.testing.assert_array_equal(st.gyr[idx], mem.gyr[idx])
  np.testing.assert_array_equal(st.acc[2:4], mem.acc[2:4])
  written = as_written('toy_unlabelled', 'train')
  _assert_as_written(st.acc[idx], st.gyr[idx], written, [1, 0])
  _assert_as_written(mem.acc, mem.gyr, written, [1, 0])
  # Chunked float64 accumulation (7 windows a chunk) against numpy over all windows at once.
  train = np.arange(0, len(mem), 2)
  want = input_pipeline.fit_input_stats(mem, train)
  got = input_pipeline.fit_input_stats(st, train, chunk=7)
  assert got.keys() == want.keys()
  for k in want:
    assert got[k] == pytest.approx(want[k], rel=1e-9), k
  assert input_pipeline.fit_input_stats(st, train) == want  # one chunk: numpy's exact figures
  # The same batches, prepared ahead by grain threads, in step order.
  sh = parallel.data_sharding(parallel.make_mesh())
  a = list(input_pipeline.train_iterator(mem, train, 4, 3, 2, 7, sh, prefetch=0))
  b = list(input_pipeline.train_iterator(st, train, 4, 3, 2, 7, sh, prefetch=3))
  assert [s for s, _ in b] == [2, 3, 4, 5, 6]
  for (_, x), (_, y) in zip(a, b, strict=True):
    np.testing.assert_array_equal(np.asarray(x['acc']), np.asarray(y['acc']))
    np.testing.assert_array_equal(np.asarray(x['gyr']), np.asarray(y['gyr']))
    _assert_as_written(y['acc'], y['gyr'], written, [1, 0])
