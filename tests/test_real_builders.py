"""Across the real-data builders: the convert CLI, determinism, atomic builds, registry names and
the optional Apache Beam path."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

import data_prep
from data_prep import convert

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import ipol  # noqa: E402

REAL = ('movi_imu', 'camargo2021', 'knee_moment', 'running_valr', 'ipol_gait', 'lab_files')


def test_registry_resolves_every_real_builder():
  for name in REAL:
    cls = data_prep.get_builder_class(name)
    assert cls.name == name  # TFDS name from the class name matches the registry key


def test_cli_builds_and_reports(tmp_path, capsys):
  raw = tmp_path / 'raw'
  ipol.write_tree(raw, subjects=(1, 2))
  argv = ['--dataset=ipol_gait', f'--manual_dir={raw}', f'--data_dir={tmp_path / "out"}',
          '--sample_rate_hz=50', '--window_length=64', '--option', 'mode=strides',
          '--option', 'foot=left']
  assert convert.main(argv) == 0
  out = capsys.readouterr().out
  path = next(ln for ln in out.splitlines() if ln.startswith('output: '))[len('output: '):]
  # the folder names the build and, after '_src-', a hash of its source files (data_prep/source.py)
  assert re.search(r'ipol_gait/default_50hz_t64_foot-left_mode-strides_src-[0-9a-f]{8}/1\.1\.0$',
                   path), path
  b = tfds.builder_from_directory(path)
  e = b.as_data_source()['train'][0]
  assert e['acc'].shape == (3, 64, 3) and e['sample_rate_hz'] == 50.0
  assert f"train: {b.info.splits['train'].num_examples} examples" in out
  assert convert.main(['--dataset=ipol_gait', f'--manual_dir={tmp_path / "none"}',
                       f'--data_dir={tmp_path / "out"}']) == 2
  assert 'is not a directory' in capsys.readouterr().err
  assert convert.main(['--list']) == 0 and 'lab_files' in capsys.readouterr().out
  try:
    import apache_beam  # noqa: F401
  except ImportError:
    assert convert.main(['--dataset=ipol_gait', f'--manual_dir={raw}',
                         f'--data_dir={tmp_path / "out"}',
                         '--beam_pipeline_options=runner=DirectRunner']) == 2
    assert "needs apache-beam: pip install -e '.[beam]'" in capsys.readouterr().err
  assert convert.parse_options(['a=1', 'b=0.2', 'c=true', 'd=1-3', 'e=x+y']) == {
      'a': 1, 'b': 0.2, 'c': True, 'd': '1-3', 'e': 'x+y'}
  with pytest.raises(ValueError, match="--option 'novalue': expected key=value"):
    convert.parse_options(['novalue'])


def test_deterministic_and_atomic(tmp_path):
  raw = tmp_path / 'raw'
  ipol.write_tree(raw, subjects=(1, 2))
  paths = [convert.convert('ipol_gait', str(tmp_path / d), str(raw), window_length=64,
                           options={'mode': 'strides'}) for d in ('a', 'b')]
  srcs = [tfds.builder_from_directory(p).as_data_source()['train'] for p in paths]
  assert len(srcs[0]) == len(srcs[1]) > 0
  for i in range(len(srcs[0])):
    x, y = srcs[0][i], srcs[1][i]
    assert x['stride_time'] == y['stride_time'] and np.array_equal(x['acc'], y['acc'])
  # A build that fails half-way (subject 3's files declare another rate: not a bad trial to
  # skip but a contradiction of the data set's layout) leaves nothing that reads as complete;
  # after fixing the files the same command succeeds.
  ipol.write_trial(raw, 3, 1, rate_header=50.0)
  out = tmp_path / 'c'
  with pytest.raises(ValueError, match=r'3-1_.*50'):
    convert.convert('ipol_gait', str(out), str(raw), window_length=64, options={'mode': 'strides'})
  finals = list(out.glob('ipol_gait/*/1.1.0'))
  assert not any((f / 'dataset_info.json').exists() for f in finals)
  ipol.write_trial(raw, 3, 1)
  p = convert.convert('ipol_gait', str(out), str(raw), window_length=64,
                      options={'mode': 'strides'})
  assert {tfds.builder_from_directory(p).as_data_source()['train'][i]['subject_id']
          for i in range(3)} <= {1, 2, 3}


def test_beam_path(tmp_path):
  pytest.importorskip('apache_beam', reason="apache-beam not installed (optional extra "
                      "'.[beam]'); the Beam path is exercised only where it is")
  raw = tmp_path / 'raw'
  ipol.write_tree(raw, subjects=(1, 2))
  p = convert.convert('ipol_gait', str(tmp_path / 'beam'), str(raw), window_length=64,
                      options={'mode': 'strides'},
                      beam_pipeline_options='runner=DirectRunner,direct_num_workers=1')
  q = convert.convert('ipol_gait', str(tmp_path / 'gen'), str(raw), window_length=64,
                      options={'mode': 'strides'})
  n = [tfds.builder_from_directory(x).info.splits['train'].num_examples for x in (p, q)]
  assert n[0] == n[1] > 0
