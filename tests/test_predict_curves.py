"""``predict`` / ``evaluate`` of a curve model (issue 27, step 3b): curves [windows, T, axes] in
curves.npz and a long predictions.csv, the reference's curve metrics where the data carry the
measured curves, and trial.png with the predicted curves over the measured ones."""

import json
import os

import jax
import numpy as np
import pandas as pd
import pytest
from conftest import shared_tfds
from test_finetune_curves import T, curve_config

from configs import predict as predict_config
from ssl_imu_jax import metrics
from ssl_imu_jax.data import input_pipeline
from ssl_imu_jax.deploy import predict
from ssl_imu_jax.training import finetune


@pytest.fixture(scope='module')
def curve_model(tmp_path_factory):
  """A short curve fine-tuning of the ResNet (its per-time-step decoder) on fold 0."""
  root = tmp_path_factory.mktemp('curve_model')
  cfg = curve_config('resnet')
  with shared_tfds(f'synthetic_walking_grf_tiny_t{T}_curves') as d:
    input_pipeline.ensure_built(cfg.data, d)
  cfg.data_dir = d
  cfg.train.steps = 4
  res = finetune.train_and_evaluate(cfg, str(root / 'ft'))
  return {'dir': str(root / 'ft'), 'data_dir': cfg.data_dir, 'result': res}


def test_load_regressor_of_a_curve_model_returns_its_test_curves(curve_model):
  predict_fn, params, info = predict.load_regressor(curve_model['dir'])
  assert info['curve']['axes'] == ['ML', 'AP', 'V'] and info['targets'] == ['grf_curve']
  npz = np.load(os.path.join(curve_model['dir'], finetune.CURVES_FILE))
  ws = input_pipeline.load_split(input_pipeline.ensure_built(
      curve_config().data, curve_model['data_dir']), 'train')
  idx = npz['window']
  y = np.asarray(jax.jit(predict_fn)(params, ws.acc[idx], ws.gyr[idx]))
  assert y.shape == (len(idx), T, 3)
  np.testing.assert_allclose(y, npz['y_pred'], rtol=1e-4, atol=1e-5)


def test_predict_writes_curves_metrics_and_the_trial_plot(curve_model, tmp_path):
  cfg = predict_config.get_config('evaluate')
  cfg.checkpoint = curve_model['dir']
  cfg.data_dir = curve_model['data_dir']
  cfg.allow_training_subjects = True  # the model's own data set: every subject scored
  paths = predict.run(cfg, str(tmp_path), require_labels=True)
  assert os.path.isfile(paths['trial_plot']) and os.path.getsize(paths['trial_plot']) > 1000
  npz = np.load(paths['curves'])
  n = len(npz['subject_id'])
  assert npz['y_pred'].shape == npz['y_true'].shape == (n, T, 3)
  df = pd.read_csv(paths['predictions'])
  assert len(df) == n * T
  assert {'time_s', 'pred_ML', 'pred_AP', 'pred_V', 'true_V'} <= set(df.columns)
  np.testing.assert_allclose(df.pred_V.to_numpy(), npz['y_pred'][:, :, 2].ravel(), rtol=1e-6)
  scores = json.load(open(paths['metrics']))['grf_curve']
  assert scores['training_set_score'] and scores['n_subjects'] == 21
  want = metrics.curve_metrics(npz['y_true'], npz['y_pred'], npz['subject_id'])
  assert scores['summary']['V']['rmse']['mean'] == pytest.approx(
      want['summary']['V']['rmse']['mean'], rel=1e-5)
  assert 'TRAINING-SET SCORE' in open(paths['summary']).read()
