"""The real running file as a small curve task (issue 27 step 3a): one runner's sacral
accelerometer -> vertical GRF curve. Read in place from the shared workplace; skipped elsewhere."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

import data_prep
from data_prep import records
from ssl_imu_jax import metrics
from ssl_imu_jax.data import input_pipeline

SRC = Path(__file__).resolve().parents[1].parent / 'shared' / 'data' / 'real_running_grf'


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  if not (SRC / 'GRF_one_sub.csv').is_file():
    pytest.skip(f'real running GRF not found at {SRC} (only present in the shared workplace)')
  cls = data_prep.get_builder_class('real_running_grf')
  return records.build(cls, str(tmp_path_factory.mktemp('tfds')),
                       records.make_config('default', 100.0, 128), manual_dir=str(SRC))


def test_windows_ids_and_vertical_only_curves(built):
  b = tfds.builder_from_directory(built)
  meta = b.info.metadata
  spec = meta['curves']['grf_curve']
  assert spec['axes'] == ['ML', 'AP', 'V'] and spec['present'] == [False, False, True]
  assert meta['with_gyr'] is False and meta['targets'] == {}
  assert meta['acc_axes_present'] == [True, True, False]
  ws = input_pipeline.load_split(built, 'train')
  cur, spec2 = input_pipeline.load_curves(built, 'train')
  # 31 trials of 4.96 s: 496 samples at 100 Hz, three non-overlapping windows of 128 each.
  assert len(ws) == 93 and cur.shape == (93, 128, 3) and spec2 == spec
  assert ws.gyr is None and ws.acc.shape == (93, 1, 128, 3)
  assert set(ws.subject_id.tolist()) == {2} and sorted(set(ws.trial.tolist())) == list(range(31))
  assert np.isnan(cur[:, :, :2]).all() and np.isfinite(cur[:, :, 2]).all()
  assert (ws.acc[:, 0, :, 2] == 0).all()                      # no medio-lateral axis
  # Running: flight near 0, peaks 1.8-3.5 BW (the file's README: up to about 3.4), mean ~1 BW.
  v = cur[:, :, 2]
  assert 1.8 < v.max(1).min() and v.max() < 3.6 and -0.15 < v.min()
  assert abs(v.mean() - 1.0) < 0.1
  # The sacrum reads about +1 g upward on average (gravity included, as recorded).
  assert 0.9 * 9.81 < ws.acc[:, 0, :, 1].mean() < 1.4 * 9.81
  # Window 0 of trial 0 is the file's first 1.28 s, resampled 500 -> 100 Hz.
  raw = np.loadtxt(SRC / 'GRF_one_sub.csv', delimiter=',', max_rows=1)
  first = (ws.trial == 0) & np.isclose(ws.start_s, 0.0)
  np.testing.assert_allclose(cur[first][0, 20:-20, 2], raw[:640:5][20:-20], atol=0.1)


def test_curve_metrics_score_the_vertical_axis_only(built):
  ws = input_pipeline.load_split(built, 'train')
  cur, _ = input_pipeline.load_curves(built, 'train')
  rng = np.random.default_rng(0)
  pred = np.where(np.isnan(cur), 0.0, cur + rng.normal(0, 0.1, cur.shape))
  out = metrics.curve_metrics(cur, pred, ws.subject_id)
  assert set(out['summary']) == {'V'}
  (row,) = out['per_subject']                                  # one runner
  assert row['subject'] == 2 and abs(row['rmse'] - 0.1) < 0.01 and row['r2'] > 0.95
  assert np.isnan(out['summary']['V']['rmse']['sd'])           # sd over one subject: undefined


def test_trial_folds_on_the_one_runner_and_the_curve_feature_baseline(built, tmp_path):
  """split.unit='trial': the folds run over the runner's trials (no trial on both sides), the
  per-unit metrics are per held-out trial, and the per-step ridge predicts the vertical GRF of
  unseen trials (new speeds and slopes of the same runner) with r > 0.8."""
  from configs import finetune as finetune_config
  from ssl_imu_jax.evaluation import features
  from ssl_imu_jax.training import finetune

  cfg = finetune_config.get_config('tiny')
  cfg.data.update(dataset='real_running_grf', sample_rate_hz=100.0, window_length=128,
                  manual_dir=str(SRC), targets=('grf_curve',))
  cfg.split.unit = 'trial'
  cfg.split.validation_fraction = 0.2
  data_dir = str(Path(built).parents[2])
  ws = finetune.load_windows(cfg, data_dir)
  np.testing.assert_array_equal(ws.subject_id, ws.trial)
  fit, val, test, folds = features.cell_indices(cfg, ws)
  assert sorted(folds) == list(range(31))
  sides = [set(ws.trial[i].tolist()) for i in (fit, val, test)]
  assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
  res = features.train_and_evaluate(cfg, str(tmp_path / 'feat'), data_dir)
  assert res['split_unit'] == 'trial' and res['test_subjects'] == sorted(sides[2])
  per = [r for r in res['curve_metrics']['per_subject'] if r['axis'] == 'V']
  assert sorted(r['subject'] for r in per) == sorted(sides[2])
  print('held-out trials, V r:', [round(r['pearson_r'], 3) for r in per])
  assert res['curve_metrics']['summary']['V']['pearson_r']['mean'] > 0.8
