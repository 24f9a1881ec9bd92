"""The Apache Beam conversion path (``convert --beam_pipeline_options``) on the local DirectRunner
writes the same records as the in-process build. Needs the optional extra (``make test-beam``)."""

import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_prep import convert, preprocess
from ssl_imu_jax.data import input_pipeline

try:
  import apache_beam as beam
except ImportError:
  beam = None

# A skip marker rather than importorskip: the tests are collected and skipped, so running this
# file alone in the main venv exits 0 (a module-level skip leaves pytest with no test: exit 5).
pytestmark = pytest.mark.skipif(beam is None, reason="apache-beam not installed (optional extra "
                                "'.[beam]', kept out of the main venv); run `make test-beam`")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import camargo, ipol, knee_moment, lab, movi  # noqa: E402

IN_MEMORY = 'runner=DirectRunner,direct_num_workers=1'
# The documented local command (docs/data_formats.md): the builder is pickled to worker processes.
MULTI = 'runner=DirectRunner,direct_num_workers=2,direct_running_mode=multi_processing'


def _movi(raw: Path) -> dict:
  movi.write_tree(raw)
  return {'sample_rate_hz': 120, 'window_length': 60}


def _ipol(raw: Path) -> dict:
  ipol.write_tree(raw, subjects=(1, 2))
  return {'window_length': 64, 'options': {'mode': 'strides'}}


def _lab(raw: Path) -> dict:
  lab.write_csv_trial(raw / 'S01_walk.csv', 1, 70.0, [1.1, 1.2, 1.3])
  lab.write_csv_trial(raw / 'S02_walk.csv', 2, 80.0, [1.25])
  lab.write_schema(raw / 'schema.yaml', lab.csv_schema())
  return {'window_length': 100}


def _knee(raw: Path) -> dict:
  knee_moment.write_file(raw / 'walking_knee_moment.h5')
  return {}


def _camargo(raw: Path) -> dict:
  camargo.write_tree(raw)
  return {'sample_rate_hz': 200, 'window_length': 128}


# data set -> writes a raw fixture tree and returns convert's knobs (None: a generated set)
CASES = {'synthetic_walking_grf': None, 'movi_imu': _movi, 'ipol_gait': _ipol, 'lab_files': _lab,
         'knee_moment': _knee, 'camargo2021': _camargo}


def _windows(path: str, split: str) -> list[tuple]:
  """Every window of a split as (subject, trial, start_s, acc, gyr, labels), in a stable order."""
  ws = input_pipeline.load_split(path, split)
  gyr = ws.gyr if ws.gyr is not None else [None] * len(ws)
  rows = [(int(ws.subject_id[i]), int(ws.trial[i]), float(ws.start_s[i]), ws.acc[i], gyr[i],
           ws.targets[i]) for i in range(len(ws))]
  # A NaN start (pre-segmented steps) sorts first; the signal breaks the remaining ties.
  return sorted(rows, key=lambda r: (r[0], r[1], -np.inf if np.isnan(r[2]) else r[2],
                                     r[3].tobytes()))


@pytest.mark.parametrize('name', list(CASES))
def test_beam_build_equals_in_process_build(name, tmp_path, monkeypatch):
  manual, knobs = None, {'size': 'tiny'}
  if CASES[name]:
    manual = tmp_path / 'raw'
    knobs = CASES[name](manual)
  made = []  # what each preprocess.fan_out call returned: a generator or a Beam PTransform
  fan_out = preprocess.fan_out

  def spy(*args, **kwargs):
    made.append(fan_out(*args, **kwargs))
    return made[-1]

  monkeypatch.setattr(preprocess, 'fan_out', spy)
  manual = manual and str(manual)
  ref = convert.convert(name, str(tmp_path / 'gen'), manual, **knobs)
  n_gen = len(made)
  got = convert.convert(name, str(tmp_path / 'beam'), manual,
                        beam_pipeline_options=MULTI if name == 'movi_imu' else IN_MEMORY, **knobs)
  assert '_beam-True' in Path(got).parent.name  # its own build, beside the in-process one
  if CASES[name]:  # the real-data builders fan out per trial / subject: Beam really ran
    assert made[n_gen:] and all(isinstance(t, beam.PTransform) for t in made[n_gen:])
  # (The synthetic builders have no fan_out: their records are generated in-process on both
  # paths, so this case checks convert's Beam branch, not a Beam transform.)
  splits = [sorted(tfds.builder_from_directory(p).info.splits) for p in (ref, got)]
  assert splits[0] == splits[1]
  # The subjects with records, as the in-process build notes them while writing.
  ids = [tfds.builder_from_directory(p).info.metadata.get('subject_ids') for p in (ref, got)]
  assert ids[0] and ids[1] == ids[0], ids
  for split in splits[0]:
    a, b = _windows(ref, split), _windows(got, split)
    assert len(a) == len(b) > 0, split
    for x, y in zip(a, b, strict=True):
      where = (name, split, x[:3])
      assert x[:2] == y[:2] and np.array_equal(x[2], y[2], equal_nan=True), where
      assert np.array_equal(x[3], y[3]) and np.array_equal(x[5], y[5]), where
      assert (x[4] is None) == (y[4] is None), where
      assert x[4] is None or np.array_equal(x[4], y[4]), where
