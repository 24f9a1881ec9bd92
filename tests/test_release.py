"""Released weights: the shipped ones are intact and embed as recorded; an export round-trips."""

import os
import re
import shutil

import jax
import ml_collections
import numpy as np
import pytest

import ssl_imu_jax
from configs import release as release_config
from ssl_imu_jax.deploy import release
from ssl_imu_jax.errors import ConfigError
from ssl_imu_jax.training import checkpointing

SHIPPED = checkpointing.released_names()


def test_the_repository_ships_one_encoder_per_paper_task_rate_and_window():
  want = {'synthetic_movi_200hz_64', 'synthetic_movi_200hz_128', 'synthetic_movi_100hz_128'}
  assert want <= set(SHIPPED)


@pytest.mark.parametrize('name', SHIPPED)
def test_shipped_weights_match_their_checksums_and_reference_embeddings(name):
  folder = os.path.join(checkpointing.weights_root(), name)
  assert release.verify(folder) >= 5
  acc, _, stored, now = release.reference_embeddings(folder)
  _, _, info = ssl_imu_jax.load_encoder(f'weights/{name}')  # by name, from any directory
  # per site (the ResNet: [2, 3, 256]) or per window (a Transformer: [2, E])
  assert stored.shape == ((release.REFERENCE_BATCH, 3, info['output_dim']) if info['per_site']
                          else (release.REFERENCE_BATCH, info['output_dim']))
  np.testing.assert_allclose(now, stored, rtol=1e-5, atol=1e-5)
  rate, window = re.search(r'_([0-9.]+)hz_([0-9]+)', name).groups()
  assert info['sample_rate_hz'] == float(rate) and info['window_length'] == int(window)
  assert acc.shape[2] == info['window_length']
  card = open(os.path.join(folder, release.CARD), encoding='utf-8').read()
  assert release.checkpoint_digest(folder) in card


def _export(pretrained, out_dir, **kw):
  c = release_config.get_config()
  c.update({'checkpoint': pretrained['workdir'], 'out_dir': str(out_dir), 'reproduce': 'python x',
            'licence': 'test data', **kw})
  return release.export(c)


def test_export_round_trips_the_encoder_and_catches_tampering(pretrained, tmp_path):
  out = _export(pretrained, tmp_path, name='tiny')
  assert out == str(tmp_path / 'tiny') and not any('.tmp.' in p for p in os.listdir(tmp_path))
  # Same encoder arrays (params and BatchNorm statistics) as the source checkpoint, nothing else.
  assert release.checkpoint_digest(out) == release.checkpoint_digest(pretrained['workdir'])
  _, p_src, _ = ssl_imu_jax.load_encoder(pretrained['workdir'])
  _, p_rel, info = ssl_imu_jax.load_encoder(out)
  for a, b in zip(jax.tree.leaves(p_src), jax.tree.leaves(p_rel), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert info['kind'] == 'pretrain'
  saved = checkpointing.state_metadata(os.path.join(out, 'checkpoints'), info['step'])
  assert set(saved) == {'params', 'batch_stats'}
  assert set(saved['params']) <= {'encoder', 'acc_encoder', 'gyr_encoder'}

  assert release.verify(out) == len(open(os.path.join(out, release.CHECKSUMS)).readlines())
  card = os.path.join(out, release.CARD)
  with open(card, 'a', encoding='utf-8') as f:
    f.write('edited\n')
  with pytest.raises(ValueError, match='MODEL_CARD.md does not match'):
    release.verify(out)
  shutil.copy(os.path.join(out, release.REFERENCE), os.path.join(out, 'extra.npz'))
  with pytest.raises(ValueError, match='extra.npz is not listed'):
    release.verify(out)


def test_a_release_name_resolves_wherever_a_checkpoint_is_accepted(pretrained, tmp_path,
                                                                   monkeypatch):
  _export(pretrained, tmp_path, name='tiny')
  monkeypatch.setattr(checkpointing, 'weights_root', lambda: str(tmp_path))
  monkeypatch.chdir(tmp_path.parent)
  assert checkpointing.locate('weights/tiny') == str(tmp_path / 'tiny')
  assert checkpointing.find_checkpoint_dir('tiny') == str(tmp_path / 'tiny' / 'checkpoints')
  from ssl_imu_jax.training import finetune

  ckpt_dir, _, meta = finetune.pretrained_info('weights/tiny')
  assert ckpt_dir == str(tmp_path / 'tiny' / 'checkpoints') and meta['kind'] == 'pretrain'
  with pytest.raises(FileNotFoundError, match='released weights name: tiny'):
    checkpointing.find_checkpoint_dir('weights/absent')


def test_export_refuses_what_it_cannot_describe(pretrained, tmp_path):
  with pytest.raises(ConfigError, match='config key reproduce'):
    _export(pretrained, tmp_path, reproduce='')
  with pytest.raises(ConfigError, match='config key name'):
    _export(pretrained, tmp_path, name='a/b')
  c = ml_collections.ConfigDict(dict(checkpoint=pretrained['workdir'], reproduce='x'))
  with pytest.raises(ConfigError, match='licence'):  # toy data: no known licence
    release.export(c)


def test_a_card_warns_when_a_downstream_task_was_in_the_pooled_pretraining_corpus(monkeypatch):
  meta = {'dataset': {'name': 'synthetic_movi', 'mix': {'dataset': 'ipol_gait'}}}
  monkeypatch.setattr(release, 'tasks_from', lambda r, c: ['ipol_gait', 'synthetic_walking_kfm'])
  note = release._seen_subjects_note(meta, 'report', 'ckpt')
  assert 'Not a held-out evaluation for `ipol_gait`' in note and 'kfm' not in note
  monkeypatch.setattr(release, 'tasks_from', lambda r, c: ['synthetic_walking_kfm'])
  assert release._seen_subjects_note(meta, 'report', 'ckpt') == ''


def test_the_card_quotes_downstream_rows_from_committed_results(monkeypatch, tmp_path):
  """The downstream section is a results block over results/<name>/headline.csv (publish keeps
  it true), and a report without a committed results folder is refused."""
  import csv

  from ssl_imu_jax.evaluation import publish

  report = tmp_path / 'run' / 'report'
  report.mkdir(parents=True)
  (report / 'headline.csv').write_text('task\n')
  monkeypatch.setattr(release, 'tasks_from', lambda r, c: ['synthetic_walking_kfm'])
  with pytest.raises(ConfigError, match='config key results'):
    release._downstream(str(report), 'ckpt')
  card = tmp_path / 'MODEL_CARD.md'
  card.write_text(release._downstream(str(report), 'ckpt', 'demo'))
  assert publish.process([str(card)], write=True).errors == []
  text = card.read_text()
  with open(os.path.join(publish.results_root(), 'demo', 'headline.csv'), encoding='utf-8') as f:
    rows = [r for r in csv.DictReader(f) if r['task'] == 'synthetic_walking_kfm']
  assert rows and text.count('| synthetic_walking_kfm |') == len(rows)
  for r in rows:
    assert f"{float(r['within_r_pretrained']):.3f} | {float(r['within_r_random']):.3f}" in text
    assert f"{float(r['delta_r']):+.3f} [{float(r['delta_r_low']):+.3f}" in text
  assert release._downstream('', 'ckpt') == 'Not measured for this release.\n'
