"""Records that know their source, and held-out scoring that cannot score the training subjects.

Two lab_files folders in the real layout (CSV trials + schema.yaml), the same subject numbers
1-3, different walkers (different signals and peak vGRF): a model fine-tuned on folder A is
evaluated in the same work directory, whose tfds/ already holds A's records.
"""

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
import tensorflow_datasets as tfds
from conftest import tiny_finetune_config

from configs import predict as predict_config
from data_prep import convert, records, source
from data_prep.builders.lab_files import LabFiles
from ssl_imu_jax import stages
from ssl_imu_jax.errors import ConfigError
from ssl_imu_jax.training import finetune

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import lab as fx  # noqa: E402

PEAKS = {'A': [1.1, 1.2], 'B': [1.45, 1.55]}  # the two folders' walkers: disjoint peak vGRF


def _folder(root: Path, name: str) -> Path:
  raw = root / name
  seed0 = 0 if name == 'A' else 50
  subjects = []
  for s in (1, 2, 3):
    fx.write_csv_trial(raw / f'S0{s}_walk.csv', seed0 + s, 70.0, PEAKS[name])
    subjects.append({'id': s, 'files': [f'S0{s}_*.csv'], 'mass_kg': 70.0})
  fx.write_schema(raw / 'schema.yaml', fx.csv_schema(subjects=subjects))
  return raw


def _build(manual: Path, data_dir: Path) -> str:
  opts = convert.lab_schema_options(str(manual), {})
  cfg = convert.builder_config(LabFiles, sample_rate_hz=100, window_length=32, options=opts)
  return records.build(LabFiles, str(data_dir), cfg, manual_dir=str(manual))


def test_two_sources_two_folders_and_a_changed_file_rebuilds(tmp_path, capsys):
  a, b = _folder(tmp_path, 'A'), _folder(tmp_path, 'B')
  out = tmp_path / 'tfds'
  pa, pb = _build(a, out), _build(b, out)
  assert pa != pb
  for p, raw in ((pa, a), (pb, b)):
    name = Path(p).parent.name
    # The source hash names the folder; no slug of the schema's absolute path (issue 28).
    assert name.startswith('default_100hz_t32_src-') and 'schema' not in name
    meta = tfds.builder_from_directory(p).info.metadata
    src = meta['source']
    assert src['manual_dir'] == str(raw.resolve()) and name.endswith(src['hash'])
    assert sorted(f[0] for f in src['files']) == ['S01_walk.csv', 'S02_walk.csv', 'S03_walk.csv']
    assert len(src['schema_sha256']) == 64 and meta['subject_ids'] == [1, 2, 3]
    # What a Beam build reads back (its workers' notes are lost): the same ids.
    assert records.written_subject_ids(tfds.builder_from_directory(p)) == [1, 2, 3]
  # Same subject numbers, different folders: different subjects.
  assert tfds.builder_from_directory(pa).info.metadata['source']['id'] != \
      tfds.builder_from_directory(pb).info.metadata['source']['id']
  assert _build(a, out) == pa  # the same files: reused
  # A file changed in place: a new build, the changed file named; the old folder is left.
  capsys.readouterr()
  fx.write_csv_trial(b / 'S02_walk.csv', 99, 70.0, PEAKS['B'], seconds=10.0)
  pb2 = _build(b, out)
  err = capsys.readouterr().err
  assert pb2 != pb and os.path.isdir(pb)
  assert 'S02_walk.csv changed' in err and 'building anew' in err
  # An edited schema is a change too.
  schema = (b / 'schema.yaml').read_text()
  (b / 'schema.yaml').write_text(schema.replace('mass_kg: 70.0', 'mass_kg: 71.0', 1))
  assert _build(b, out) not in (pb, pb2)
  assert 'the schema changed' in capsys.readouterr().err
  # No manual_dir: one build of these knobs is reused, several from different sources refused.
  cfg = convert.builder_config(LabFiles, sample_rate_hz=100, window_length=32,
                               options={'schema': str(a / 'schema.yaml')})
  with pytest.raises(ValueError, match='holds builds from 4 sources'):
    records.build(LabFiles, str(out), cfg)
  assert records.build(LabFiles, str(tmp_path / 'one'), cfg, str(a)) == \
      records.build(LabFiles, str(tmp_path / 'one'), cfg)


def test_synthetic_folders_keep_their_names_and_ids_follow_the_seed():
  from data_prep.builders import synthetic

  cfg = records.with_source(synthetic.SyntheticWalkingGrf, records.make_config('tiny', 100, 128),
                            None)
  assert cfg.name == 'tiny_100hz_t128' and json.loads(cfg.source_json)['hash'] == ''
  ids = {source.subject_source_id('synthetic_walking_grf', None, 'tiny', seed)
         for seed in (0, 0, 1)}
  assert len(ids) == 2


def _evaluate(ckpt, workdir, data_dir, **overrides):
  c = predict_config.get_config('evaluate')
  c.checkpoint = str(ckpt)
  c.data_dir = str(data_dir)
  c.plot = False
  for k, v in overrides.items():
    if k == 'manual_dir':
      c.data.manual_dir = v
    else:
      c[k] = v
  return stages.run(c, str(workdir))


def test_train_on_one_source_evaluate_on_another_in_one_workdir(tmp_path):
  a, b = _folder(tmp_path, 'A'), _folder(tmp_path, 'B')
  wd = tmp_path / 'run'
  c = tiny_finetune_config()
  c.data.dataset, c.data.manual_dir, c.data.size = 'lab_files', str(a), 'default'
  c.split.fold = finetune.FINAL_FOLD
  res = stages.run(c, str(wd))
  assert res['train_subjects'] == [1, 2, 3]
  ckpt, data_dir = wd / 'finetune', wd / 'tfds'
  card = (ckpt / finetune.MODEL_CARD).read_text()
  assert f'files in `{a.resolve()}`' in card
  # Other walkers through the workdir that holds A's records: B is built and scored.
  paths = _evaluate(ckpt, wd, data_dir, manual_dir=str(b))
  df = pd.read_csv(paths['predictions'])
  assert sorted(df.true_peak_vgrf.round(4).unique()) == PEAKS['B'] and not df.trained_on.any()
  assert len(os.listdir(data_dir / 'lab_files')) == 2
  metrics = json.loads(Path(paths['metrics']).read_text())['peak_vgrf']
  assert not metrics['training_set_score'] and metrics['scope'].startswith('held out')
  # The model's own walkers: refused in one line naming them, then scored when asked, labelled.
  with pytest.raises(ConfigError, match=r'evaluate: subjects \[1, 2, 3\] of lab_files .*'
                                        r'allow_training_subjects=True') as e:
    _evaluate(ckpt, wd, data_dir)
  assert '\n' not in str(e.value)
  paths = _evaluate(ckpt, wd, data_dir, allow_training_subjects=True)
  df = pd.read_csv(paths['predictions'])
  assert sorted(df.true_peak_vgrf.round(4).unique()) == PEAKS['A'] and df.trained_on.all()
  metrics = json.loads(Path(paths['metrics']).read_text())['peak_vgrf']
  assert metrics['training_set_score'] and metrics['training_subjects_scored'] == [1, 2, 3]
  assert all(p['trained_on'] for p in metrics['per_subject'])
  desc = json.loads(Path(paths['description']).read_text())
  assert desc['training_set_score'] and desc['data_source']['id'] == desc['model_source']['id']
  assert Path(paths['summary']).read_text().splitlines()[2].startswith('**TRAINING-SET SCORE')
