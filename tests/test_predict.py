"""The path after the sweep: final models, the predict / evaluate stages and load_regressor."""

import json
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import tiny_finetune_config

from configs import predict as predict_config
from configs import sweep as sweep_config
from ssl_imu_jax import stages
from ssl_imu_jax.data import input_pipeline
from ssl_imu_jax.deploy import predict
from ssl_imu_jax.errors import ConfigError
from ssl_imu_jax.evaluation import sweep
from ssl_imu_jax.training import finetune

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import lab as fx  # noqa: E402

DATASET = 'toy_labelled'


@pytest.fixture(scope='module')
def swept(tmp_path_factory, toy_dirs, pretrained):
  """A real sweep on the toy labelled set (2 of 5 folds, both protocols) with its final model."""
  c = sweep_config.get_config('tiny')
  c.datasets = (DATASET,)
  c.fractions = (1.0,)
  c.folds = (0, 1)
  c.inits = ('pretrained',)
  c.init_from = pretrained['ckpt_dir']
  c.final_model = True
  c.finetune = tiny_finetune_config()
  c.finetune.data_dir = toy_dirs['data_dir']
  workdir = str(tmp_path_factory.mktemp('sweep'))
  sweep.run(c, workdir)
  return workdir, c


def _predict(checkpoint, workdir, data_dir, arg=None, **overrides):
  c = predict_config.get_config(arg)
  c.checkpoint = str(checkpoint)
  c.data_dir = data_dir
  for k, v in overrides.items():
    c[k] = v
  return stages.run(c, str(workdir))


def test_predict_reproduces_the_sweeps_own_test_predictions(swept, toy_dirs, tmp_path):
  workdir, c = swept
  cell = sweep.cell_dir(workdir, DATASET, 1, 1.0, 'pretrained', 'full_from_probe')
  with open(os.path.join(cell, finetune.RESULT_FILE)) as f:
    result = json.load(f)
  paths = _predict(cell, tmp_path, toy_dirs['data_dir'], plot=False,
                   allow_training_subjects=True)
  df = pd.read_csv(paths['predictions']).sort_values('window')
  test = df[df.subject_id.isin(result['test_subjects'])]
  # The training subjects were scored as asked, and every output says so.
  assert sorted(set(df[df.trained_on].subject_id)) == result['train_subjects']
  assert not df[df.subject_id.isin(result['test_subjects'])].trained_on.any()
  assert json.loads(Path(paths['metrics']).read_text())['y']['training_set_score']
  assert json.loads(Path(paths['description']).read_text())['training_set_score']
  assert 'TRAINING-SET SCORE' in Path(paths['summary']).read_text()
  assert test.subject_id.tolist() == result['predictions']['subject_id']
  np.testing.assert_allclose(test.pred_y, np.asarray(result['predictions']['y_pred'])[:, 0],
                             atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(test.true_y, np.asarray(result['predictions']['y_true'])[:, 0],
                             rtol=1e-6)
  # The whole data set was predicted (training subjects too), each window once.
  assert sorted(df.window) == list(range(160))
  # Without labels asked for, every labelled output is still written.
  assert {'metrics', 'summary', 'description'} <= set(paths)


def test_load_regressor_equals_the_stage_and_vmaps_over_subjects(swept, toy_dirs, tmp_path):
  workdir, _ = swept
  cell = sweep.cell_dir(workdir, DATASET, 0, 1.0, 'pretrained', 'linear_probe')
  paths = _predict(cell, tmp_path, toy_dirs['data_dir'], plot=False,
                   allow_training_subjects=True)
  stage = pd.read_csv(paths['predictions']).sort_values('window').pred_y.to_numpy()
  predict_fn, params, info = predict.load_regressor(cell)
  assert info['sites'] == ['a', 'b'] and info['targets'] == ['y'] and info['units'] == ['BW']
  assert info['use_gyr'] and info['window_length'] == 32
  ws = input_pipeline.load_split(toy_dirs['labelled'], 'train')
  direct = np.asarray(jax.jit(predict_fn)(params, ws.acc, ws.gyr))[:, 0]
  np.testing.assert_allclose(direct, stage, atol=1e-5, rtol=1e-5)
  # [subjects, windows, ...] through vmap equals the flat batch.
  acc = jnp.asarray(ws.acc[:32]).reshape(2, 16, *ws.acc.shape[1:])
  gyr = jnp.asarray(ws.gyr[:32]).reshape(2, 16, *ws.gyr.shape[1:])
  per_subject = jax.jit(jax.vmap(predict_fn, in_axes=(None, 0, 0)))(params, acc, gyr)
  np.testing.assert_allclose(np.asarray(per_subject).reshape(-1), direct[:32], atol=1e-5)
  with pytest.raises(ValueError, match='takes 2 sites'):
    predict_fn(params, ws.acc[:4, :1], ws.gyr[:4, :1])
  with pytest.raises(ValueError, match='fine-tuned with the gyroscope'):
    predict_fn(params, ws.acc[:4])


def test_final_model_trains_on_every_subject_and_carries_the_cv_figures(swept):
  workdir, c = swept
  path = sweep.final_model_dir(workdir, DATASET)
  with open(os.path.join(path, finetune.RESULT_FILE)) as f:
    result = json.load(f)
  assert result['final'] and result['test_subjects'] == [] and result['n_test'] == 0
  assert result['train_subjects'] == list(range(10))
  card = Path(path, finetune.MODEL_CARD).read_text()
  assert '**all subjects**' in card and 'Cross-validated by the sweep' in card
  assert '- `y` (BW)' in card and 'Sites, in this order: a, b' in card
  # The card's within-subject r is the sweep's own figure for the same recipe.
  recs = sweep.done_records(c, workdir)
  cv = sweep.cv_summary(recs, DATASET, 'pretrained', 'full_from_probe', 1.0)
  assert f"within-subject r {cv['y']['within_subject_r']:.3f}" in card
  _, meta = finetune.checkpointing.read_meta(finetune.checkpointing.find_checkpoint_dir(path))
  assert meta['final'] and meta['init_from']


def test_a_killed_predict_leaves_no_predictions_that_read_as_complete(swept, toy_dirs, tmp_path,
                                                                      monkeypatch):
  workdir, _ = swept
  cell = sweep.cell_dir(workdir, DATASET, 0, 1.0, 'pretrained', 'linear_probe')

  def crash(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(predict, 'plot_trial', crash)
  with pytest.raises(KeyboardInterrupt):
    _predict(cell, tmp_path, toy_dirs['data_dir'], allow_training_subjects=True)
  assert not os.path.exists(tmp_path / 'predict')
  assert not [p for p in os.listdir(tmp_path) if p.startswith('predict')]


def test_evaluate_needs_labels_and_the_models_rate(swept, toy_dirs, pretrained, tmp_path):
  workdir, _ = swept
  cell = sweep.cell_dir(workdir, DATASET, 0, 1.0, 'pretrained', 'linear_probe')
  with pytest.raises(ConfigError, match=r'data.sample_rate_hz=200.0, but the model .* takes 100'):
    _predict(cell, tmp_path, toy_dirs['data_dir'],
             data=_data(sample_rate_hz=200.0))
  with pytest.raises(ConfigError, match=r"evaluate needs the labels \['y'\], the data carry none"):
    _predict(cell, tmp_path, toy_dirs['data_dir'], 'evaluate',
             data=_data(dataset='toy_unlabelled', split='train'))
  with pytest.raises(ConfigError, match='predict needs a fine-tuned model'):
    _predict(pretrained['ckpt_dir'], tmp_path, toy_dirs['data_dir'])


def _data(**kw):
  d = predict_config.get_config().data
  for k, v in kw.items():
    d[k] = v
  return d


def _ws(sites=('a', 'b'), gyr=True, meta=None):
  acc = np.zeros((2, len(sites), 32, 3), np.float32)
  return input_pipeline.WindowSet(
      acc=acc, gyr=acc.copy() if gyr else None, subject_id=np.zeros(2, np.int64),
      trial=np.zeros(2, np.int64), targets=np.zeros((2, 0), np.float32), target_names=(),
      target_units=(), sites=tuple(sites), sample_rate_hz=100.0, metadata=meta or {},
      path='/data/new')


INFO = {'sites': ['a', 'b'], 'sample_rate_hz': 100.0, 'window_length': 32, 'use_gyr': True,
        'frame': 'unknown', 'checkpoint_dir': '/runs/model'}


def test_mismatches_name_both_sides():
  with pytest.raises(ConfigError, match=r"sites \['b'\] of the model are missing; the model "
                                        r"takes \['a', 'b'\], the data have \['a', 'c'\]"):
    predict.check_inputs(_ws(('a', 'c')), INFO, True)
  with pytest.raises(ConfigError, match='accelerometer-only data, but the model in /runs/model'):
    predict.check_inputs(_ws(gyr=False), INFO, True)
  body = {'axes': {'convention': {'x': 'forward', 'y': 'up', 'z': 'right'}, 'sites': {}}}
  with pytest.raises(ConfigError, match=r'windows in the body frame \(x forward, y up, z right\), '
                                        r'the model was trained in the unknown'):
    predict.check_inputs(_ws(meta=body), INFO, True)
  assert predict.check_inputs(_ws(meta=body), INFO, False).sites == ('a', 'b')
  other = dict(INFO, window_length=64)
  with pytest.raises(ConfigError, match='32-sample windows, the model takes 100 Hz / 64'):
    predict.check_inputs(_ws(), other, True)
  # Sites come out in the model's order, whatever the data's order.
  ws = _ws(('b', 'x', 'a'))
  ws.acc[:, 2] = 1.0
  out = predict.check_inputs(ws, INFO, True)
  assert out.sites == ('a', 'b') and out.acc[:, 0].min() == 1.0 and out.acc[:, 1].max() == 0.0


def test_one_recording_with_its_schema(swept, toy_dirs, tmp_path):
  """A CSV export of the model's sites: converted at the model's rate, windows predicted."""
  workdir, _ = swept
  cell = sweep.cell_dir(workdir, DATASET, 0, 1.0, 'pretrained', 'full_from_probe')
  raw = tmp_path / 'raw'
  fx.write_csv_trial(raw / 'walk.csv', 1, 70.0, [1.1])
  cols = fx.site_columns()
  schema = fx.csv_schema(sites={'a': cols['trunk'], 'b': cols['shank']})
  fx.write_schema(raw / 'schema.yaml', schema)
  kw = {'recording': str(raw / 'walk.csv'), 'schema': str(raw / 'schema.yaml')}
  data_dir = str(tmp_path / 'tfds')
  with pytest.raises(ConfigError, match='windows in the body frame'):
    _predict(cell, tmp_path / 'w', data_dir, **kw)
  paths = _predict(cell, tmp_path / 'w', data_dir, check_frame=False, **kw)
  df = pd.read_csv(paths['predictions'])
  # 12 s at 100 Hz, still for the first 2 s: the moving part gives non-overlapping 32-sample
  # windows (0.32 s), starting after the still stretch, in time order.
  assert len(df) >= 25 and (df.start_s >= 1.6).all() and df.start_s.is_monotonic_increasing
  assert 'true_y' not in df and 'metrics' not in paths and os.path.exists(paths['trial_plot'])
  # Another recording through the same work directory is converted anew, never the stale one.
  fx.write_csv_trial(raw / 'walk2.csv', 7, 70.0, [1.1], seconds=8.0)
  kw2 = dict(kw, recording=str(raw / 'walk2.csv'))
  df2 = pd.read_csv(_predict(cell, tmp_path / 'w', data_dir, check_frame=False,
                             **kw2)['predictions'])
  assert len(df2) < len(df) and (df2.subject == 'walk2.csv').all()
  # Sites the model does not know are an error naming both lists.
  fx.write_schema(raw / 'schema.yaml', fx.csv_schema())
  with pytest.raises(ConfigError, match=r"sites \['a', 'b'\] of the model are missing"):
    _predict(cell, tmp_path / 'w2', str(tmp_path / 'tfds2'), check_frame=False, **kw)


def test_final_model_predicts_new_synthetic_subjects(tmp_path):
  """A final vGRF model (random init, 200 steps, all 21 subjects of the default synthetic set)
  scores subjects generated with another seed: floor r > 0.4 (measured 0.60 / 0.71 within-subject
  and 0.65 / 0.72 pooled for fine-tuning seeds 0 / 1)."""
  from configs import finetune as finetune_config

  c = finetune_config.get_config('tiny')
  c.data.dataset = 'synthetic_walking_grf'
  c.data.size = 'default'
  # One builder process (the prediction's seed-1 set inherits the model's options): two spawned
  # workers each re-import jax and the test modules, more CPU than the 21 subjects they share.
  c.data.options = {'workers': 1}
  c.split.fold = finetune.FINAL_FOLD
  c.protocol = 'full'
  c.train.steps = 200
  c.train.progress = False
  c.data_dir = str(tmp_path / 'tfds')
  res = stages.run(c, str(tmp_path / 'ft'))
  assert res['final'] and len(res['train_subjects']) == 21
  paths = _predict(tmp_path / 'ft' / 'finetune', tmp_path / 'ev', c.data_dir, 'evaluate',
                   data=_data(seed=1), plot=False)
  with open(paths['metrics']) as f:
    m = json.load(f)['peak_vgrf']
  assert m['n_subjects'] == 21
  assert m['within_subject_r'] > 0.4 and m['pooled']['pearson_r'] > 0.4


def test_the_readme_load_regressor_example_runs(swept, tmp_path, capsys):
  """The README's block, read from README.md, on the sweep's final model."""
  workdir, _ = swept
  text = (Path(__file__).resolve().parents[1] / 'README.md').read_text()
  section = text.split('## Apply a fine-tuned model to new recordings', 1)[1]
  code = section.split('```python\n', 1)[1].split('```', 1)[0]
  line = "MODEL, DATA_DIR = 'runs/final_grf/finetune', 'runs/eval_grf/tfds'"
  assert line in code
  code = code.replace(line, f'MODEL, DATA_DIR = {sweep.final_model_dir(workdir, DATASET)!r}, '
                            f'{str(tmp_path / "tfds")!r}')
  ns = {}
  exec(compile(code, 'README.md', 'exec'), ns)
  out = capsys.readouterr().out.splitlines()
  assert out[0] == "['a', 'b'] 100.0 32 ['y'] ['BW']"
  # Each subject's r, recomputed one subject at a time (no vmap, no stacking) with numpy.
  ws, predict_fn, params = ns['ws'], jax.jit(ns['predict_fn']), ns['params']
  subjects = sorted(set(ws.subject_id.tolist()))[:4]
  n = min(int((ws.subject_id == s).sum()) for s in subjects)
  assert len(out) == 1 + len(subjects) == 5
  for s, got in zip(subjects, out[1:], strict=True):
    m = ws.subject_id == s
    pred = np.asarray(predict_fn(params, ws.acc[m][:n], ws.gyr[m][:n]))[:, 0]
    r = np.corrcoef(pred, ws.targets[m][:n, 0])[0, 1]
    head, tail = got.split(' r = ')
    assert head == f'subject {s}:' and tail.endswith(f' over {n} steps'), got
    assert float(tail.split()[0]) == pytest.approx(r, abs=0.0051), (got, r)
