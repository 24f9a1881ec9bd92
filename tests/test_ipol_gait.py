"""ipol_gait builder: fixture tree in the published layout, hand-computed stride labels, errors,
and the real subjects in ../shared/data/real_gait_ipol where present."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_prep import axes, convert, records
from data_prep.builders.ipol_gait import SITES, IpolGait, find_trials, load_trial, stride_labels

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import SHARED_DATA, ipol  # noqa: E402

REAL = SHARED_DATA / 'real_gait_ipol'


def _build(tmp_path, manual, **options):
  cfg = convert.builder_config(IpolGait, sample_rate_hz=100, window_length=128, options=options)
  path = records.build(IpolGait, tmp_path / 'out', cfg, manual_dir=str(manual))
  return tfds.builder_from_directory(path)


def _all(builder, split):
  src = builder.as_data_source()[split]
  return [src[i] for i in range(len(src))]


def _expected_strides(meta):
  """Right-foot strides by the definition in docs/data_formats.md, computed independently."""
  t0, t1 = meta['TrialBoundaries']
  u0, u1 = meta['UTurnBoundaries']
  out = []
  ev = meta['RightFootEvents']
  for (_, c0), (o1, c1) in zip(ev[:-1], ev[1:], strict=True):
    if c0 >= t0 and c1 <= t1 and (c1 <= u0 or c0 >= u1):
      out.append(((c1 - c0) / 100, (o1 - c0) / 100, (c1 - o1) / 100))
  return out


def test_strides_labels_match_hand_computation(tmp_path):
  metas = ipol.write_tree(tmp_path / 'raw', subjects=(1, 2), drop_rows=(400, 401, 650))
  b = _build(tmp_path, tmp_path / 'raw', mode='strides')
  assert set(b.info.splits) == {'train'}
  assert b.info.metadata['targets'] == {'stride_time': 's', 'stance_time': 's',
                                        'swing_time': 's', 'walking_speed': 'm/s'}
  assert b.info.metadata['subjects']['2']['height_m'] == pytest.approx(1.70)
  exs = _all(b, 'train')
  for s in (1, 2):
    meta = metas[f'{s}-1']
    mine = sorted((round(float(e['stride_time']), 4), round(float(e['stance_time']), 4),
                   round(float(e['swing_time']), 4)) for e in exs if e['subject_id'] == s)
    want = sorted(tuple(round(v, 4) for v in w) for w in _expected_strides(meta))
    assert mine == want and len(want) >= 4
    t0, t1 = meta['TrialBoundaries']
    u0, u1 = meta['UTurnBoundaries']
    speed = 20.0 / (((t1 - t0) - (u1 - u0)) / 100.0)
    for e in exs:
      if e['subject_id'] == s:
        assert e['walking_speed'] == pytest.approx(speed, rel=1e-6)
  e = exs[0]
  assert e['acc'].shape == e['gyr'].shape == (3, 128, 3) and e['acc'].dtype == np.float32
  assert e['sample_rate_hz'] == 100.0 and e['trial'] == 1


def test_windows_mode_static_filter_splits_and_axes(tmp_path):
  ipol.write_tree(tmp_path / 'raw', subjects=(1, 2, 3))
  b = _build(tmp_path, tmp_path / 'raw', mode='windows', static_threshold_g=0.0)
  b_f = _build(tmp_path, tmp_path / 'raw', mode='windows')
  n_all = {k: v.num_examples for k, v in b.info.splits.items()}
  # 14 s at 100 Hz = 1400 samples -> 10 non-overlapping windows of 128 per trial.
  assert n_all == {'train': 20, 'validation': 10}
  assert b.info.metadata['splits_subjects'] == {'train': [1, 2], 'validation': [3]}
  val = _all(b, 'validation')
  assert {e['subject_id'] for e in val} == {3}
  # Windows 0 (0-127) and the last one (1152-1279, walk ends at 1200) hold standing only,
  # or mostly: the static filter drops at least the fully still first window of each trial.
  kept = _all(b_f, 'train')
  assert 0 < len(kept) < 20
  # Body frame: standing, gravity is on +y for all three sensors.
  first = [e for e in _all(b, 'train') if e['subject_id'] == 1]
  still = min(first, key=lambda e: float(np.std(e['acc'])))
  np.testing.assert_allclose(still['acc'].mean(axis=1), [[0, 9.81, 0]] * 3, atol=0.05)


def test_errors_name_the_file(tmp_path):
  raw = tmp_path / 'raw'
  ipol.write_tree(raw, subjects=(1,))
  with pytest.raises(FileNotFoundError, match='Expected layout'):
    _build(tmp_path, tmp_path / 'nowhere')
  with pytest.raises(ValueError, match=r'subject\(s\) \[7\] have no trials'):
    _build(tmp_path, raw, subjects='1,7')
  (raw / '1-1_lf.txt').rename(raw / 'moved.txt')
  with pytest.raises(FileNotFoundError, match=r'1-1\.json: missing sensor file\(s\).*1-1_lf\.txt'):
    _build(tmp_path, raw)
  (raw / 'moved.txt').rename(raw / '1-1_lf.txt')
  meta = json.loads((raw / '1-1.json').read_text())
  del meta['UTurnBoundaries']
  (raw / '1-1.json').write_text(json.dumps(meta))
  with pytest.raises(KeyError, match=r"1-1\.json: missing key\(s\) \['UTurnBoundaries'\]"):
    _build(tmp_path, raw)


@pytest.mark.parametrize('kw, match', [
    ({'nan_at': 300}, r'1-1_lf\.txt: .*NaN/Inf'),
    ({'rate_header': 50.0}, r'1-1_lb\.txt: header says 50 Hz, expected 100 Hz'),
    ({'acc_scale': 1 / 9.81}, r'1-1 LowerBack: .*the data look like g'),
])
def test_bad_samples_rate_and_units(tmp_path, kw, match):
  ipol.write_tree(tmp_path / 'raw', subjects=(1,), **kw)
  with pytest.raises(ValueError, match=match):
    _build(tmp_path, tmp_path / 'raw')


def test_real_subjects_strides_and_body_axes(tmp_path):
  if not (REAL / '1-1.json').exists():
    pytest.skip(f'real IPOL data absent: {REAL} (shared data folder not present)')
  b = _build(tmp_path, REAL, mode='strides', subjects='1,9')
  exs = _all(b, 'train')
  assert {e['subject_id'] for e in exs} == {1, 9}
  st = np.array([[e['stride_time'], e['stance_time'], e['swing_time']] for e in exs])
  np.testing.assert_allclose(st[:, 0], st[:, 1] + st[:, 2], atol=1e-5)
  assert 0.8 < np.median(st[:, 0]) < 1.4  # healthy adults, s
  assert 0.55 < np.median(st[:, 1] / st[:, 0]) < 0.7  # stance about 60 % of the stride
  # Hand check of one stride straight from the JSON of trial 1-1: the first right-foot stride.
  meta = json.loads((REAL / '1-1.json').read_text())
  first = stride_labels(meta, 'right', 100.0)[0]
  (_, c0), (o1, c1) = meta['RightFootEvents'][0], meta['RightFootEvents'][1]
  assert first['stride_time'] == pytest.approx((c1 - c0) / 100)
  assert first['stance_time'] == pytest.approx((o1 - c0) / 100)
  t0, t1 = meta['TrialBoundaries']
  u0, u1 = meta['UTurnBoundaries']
  assert first['walking_speed'] == pytest.approx(20 / (((t1 - t0) - (u1 - u0)) / 100))
  # Body frame on real data, straight from the files: standing, gravity is within 45 deg of +y
  # for all three sensors, and both feet rotate toe-up (about +z = right) on average in swing.
  trial = next(t for t in find_trials(REAL) if t['stem'] == '1-1')
  acc, gyr, ok, first = load_trial(trial['paths'], '1-1')
  maps = axes.mapping_for('ipol_gait', SITES)
  for i, site in enumerate(SITES):
    assert axes.up_angle_deg(maps[site].apply(acc[i, :100])) < 45, site
  for i, key in ((1, 'LeftFootEvents'), (2, 'RightFootEvents')):
    g_body = maps[SITES[i]].apply(gyr[i])
    swing = np.zeros(len(g_body), bool)
    for a, b in meta[key]:
      swing[a - first:b - first] = True
    assert g_body[swing, 2].mean() > 1.0 > g_body[~swing, 2].mean(), key


def _repeat_packet(path, changed: bool) -> None:
  """Data row 301 written again as row 302 (as in a real export), its values changed or not."""
  lines = path.read_text().splitlines(keepends=True)
  first_data = next(i for i, ln in enumerate(lines) if ln[:1].isdigit())
  row = first_data + 300
  copy = lines[row]
  if changed:
    fields = copy.rstrip('\n').split('\t')
    fields[1] = f'{float(fields[1]) + 0.5:.6f}'  # Acc_X
    copy = '\t'.join(fields) + '\n'
  lines.insert(row + 1, copy)
  path.write_text(''.join(lines))


def test_a_packet_written_twice_is_repaired_and_said(tmp_path, caplog):
  raw = tmp_path / 'raw'
  ipol.write_tree(raw)
  _repeat_packet(raw / '2-1_rf.txt', changed=False)
  b = _build(tmp_path, raw)
  assert {int(e['subject_id']) for split in b.info.splits for e in _all(b, split)} == {1, 2, 3}
  assert not b.info.metadata['skipped']
  assert 'written twice (data rows 301 and 302, identical values)' in caplog.text


def test_one_bad_trial_is_skipped_not_fatal(tmp_path, capfd):
  """A repeated packet counter with other values (which row is right is unknown) leaves that
  trial out with one warning naming the file and the row; the other subjects build, and the
  metadata and the build line say what was skipped; option strict=True stops instead."""
  raw = tmp_path / 'raw'
  ipol.write_tree(raw)
  bad = raw / '2-1_rf.txt'
  _repeat_packet(bad, changed=True)
  b = _build(tmp_path, raw)
  subjects = {int(e['subject_id']) for split in b.info.splits for e in _all(b, split)}
  assert subjects == {1, 3}
  skipped = b.info.metadata['skipped']
  assert len(skipped) == 1 and str(bad) in skipped[0]
  assert 'packet counter is not increasing at data row 302' in skipped[0]
  err = capfd.readouterr().err
  assert '1 trial(s) skipped for bad data' in err
  with pytest.raises(ValueError, match=r'not increasing at data row 302.*option strict=True'):
    _build(tmp_path / 'strict', raw, strict=True)
