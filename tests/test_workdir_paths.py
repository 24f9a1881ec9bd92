"""Config paths compare relative to the work directory: a copied or moved work directory resumes,
and fingerprints an older version wrote with absolute paths still match."""

import pytest

from ssl_imu_jax.training import trainer


def test_paths_inside_the_work_directory_compare_relative_to_it():
  new = {'init_from': '/w2/pre/checkpoints', 'probe_from': '/w2/sweep/a/lp', 'steps': 3}
  with trainer.run_root('/w2'):
    # an older version's absolute paths: in place, or from the directory it was copied from
    assert trainer.config_changes(new, new) == []
    moved = {'init_from': '/w1/pre/checkpoints', 'probe_from': '/w1/sweep/a/lp', 'steps': 3}
    assert trainer.config_changes(moved, new) == []
    # ... but not when they point into two different directories, or elsewhere
    mixed = {**moved, 'probe_from': '/w0/sweep/a/lp'}
    assert len(trainer.config_changes(mixed, new)) == 2
    assert trainer.config_changes({**new, 'init_from': '/w1/other'}, new) == [
        "init_from: '/w1/other' -> '<workdir>/pre/checkpoints'"]
    # stored relative (this version): compared as they are
    assert trainer.config_changes({'init_from': '<workdir>/pre/checkpoints'},
                                  {'init_from': '/elsewhere/pre/checkpoints'})
    assert trainer.same_path('/w1/pre/checkpoints', '/w2/pre/checkpoints')
  assert trainer.config_changes(new, moved) == [  # no work directory set: absolute paths
      "init_from: '/w2/pre/checkpoints' -> '/w1/pre/checkpoints'",
      "probe_from: '/w2/sweep/a/lp' -> '/w1/sweep/a/lp'"]


def test_check_resume_accepts_a_checkpoint_of_a_copied_work_directory(tmp_path):
  import ml_collections
  import numpy as np

  from ssl_imu_jax.training import checkpointing

  cfg = ml_collections.ConfigDict({'init_from': str(tmp_path / 'w2' / 'pre'),
                                   'train': {'resume': 'auto'}})
  ckpt = checkpointing.Checkpointer(str(tmp_path / 'w2' / 'cell' / 'checkpoints'))
  old = {'init_from': str(tmp_path / 'w1' / 'pre'), 'train.resume': 'auto'}  # absolute, w1
  ckpt.save(2, {'w': np.zeros(2)}, {'fingerprint': {'config': old, 'data': {}}}, wait=True)
  with trainer.run_root(str(tmp_path / 'w2')):
    trainer.check_resume(ckpt, cfg, {})
    cfg.init_from = str(tmp_path / 'w2' / 'other')
    with pytest.raises(ValueError, match='init_from'):
      trainer.check_resume(ckpt, cfg, {})
  ckpt.close()
