"""TFDS builders of the four synthetic data sets (the project's embedded default data).

Physics-based stand-ins for the paper's data sets (docs/synthetic_data.md):

  synthetic_movi          17 IMUs, unlabelled, many activities       splits train / validation
  synthetic_running_valr  left shank IMU, VALR (BW/s), 15 subjects   split train
  synthetic_walking_grf   trunk + right shank, peak vGRF (BW), 21    split train
  synthetic_walking_kfm   8 lower-body IMUs, peak KFM (%BW*BH), 17    split train

Knobs (``records.make_config``): size 'tiny' | 'default' | 'large', sample_rate_hz (the
internal simulation runs at an integer multiple and is decimated with an anti-alias filter),
window_length T, window_stride (movi only), seed, and options: ``workers``
(worker processes, default 1 at size tiny, else min(2, CPUs); forked, or spawned once JAX is
imported, see ``_run``), for movi ``drop_static`` (the reference static-window filter, default
False) and, for the labelled sets, ``curves`` (default False): each window also carries
``grf_curve``, the labelled foot's 3-axis GRF over the window (float32 [T, 3], BW, axes
(ML, AP, V), ``generate.CURVE_FRAME``). Without the option the records are exactly those of
before (the option only adds a field; the generator draws the same random numbers).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import sys
from typing import Any

import tensorflow_datasets as tfds

from data_prep import preprocess, records
from data_prep.synthetic import generate as gen

SIZES = ('tiny', 'default', 'large')
MOVI_SUBJECTS = {'tiny': (6, 2), 'default': (54, 6), 'large': (81, 9)}   # (train, validation)
MOVI_SECONDS = {'tiny': 2.6, 'default': 4.0, 'large': 20.0}            # per activity
STEPS_PER_SUBJECT = {'tiny': 8, 'default': 48, 'large': 160}


def _size(cfg) -> str:
  if cfg.size not in SIZES:
    raise ValueError(f'builder config {cfg.name!r}: size must be one of {SIZES}, got {cfg.size!r}')
  return cfg.size


def _check_window(cfg) -> None:
  if not 16 <= int(cfg.window_length) <= 2048:
    raise ValueError(f'builder config {cfg.name!r}: window_length {cfg.window_length} outside '
                     '16..2048 samples')
  gen.internal_factor(float(cfg.sample_rate_hz), gen.LABELLED_INTERNAL_HZ)  # validates the rate


def _run(fn, jobs: list[tuple], workers: int):
  """fn(*job) for each job, in order; in a process pool when workers > 1.

  Forking is cheap but unsafe once JAX has started its threads, so a process that has imported
  JAX spawns its workers instead (they re-import the caller's main module: worth it for the
  default and large sizes only, which is why tiny builds use one worker).
  """
  if workers <= 1 or len(jobs) <= 1:
    for job in jobs:
      yield fn(*job)
    return
  method = 'spawn' if 'jax' in sys.modules else 'fork'
  with cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method)) as ex:
    yield from ex.map(fn, *zip(*jobs, strict=True))


class _SyntheticBase(records.ImuWindowBuilder):
  """Shared plumbing: subjects, metadata and worker count."""

  # The records change whenever the generator does: its version is the data set's version, so
  # a new generator builds into a new directory instead of reusing stale records.
  VERSION = tfds.core.Version(f'{gen.GENERATOR_VERSION}.0')
  NAME_FOR_SEED = ''
  N_SUBJECTS = 0

  def _n_subjects(self) -> int:
    return self.N_SUBJECTS

  def _workers(self) -> int:
    default = 1 if self.builder_config.size == 'tiny' else min(2, os.cpu_count() or 1)
    return int(self.builder_config.option('workers', default))

  def _subjects(self):
    return gen.subjects(self.NAME_FOR_SEED, self.builder_config.seed, self._n_subjects())

  def extra_metadata(self) -> dict[str, Any]:
    cfg = self.builder_config
    _size(cfg)
    _check_window(cfg)
    return {
        'subjects': {str(s.subject_id): s.metadata() for s in self._subjects()},
        'generator': {
            'version': gen.GENERATOR_VERSION, 'size': cfg.size, 'seed': int(cfg.seed),
            'internal_rate_hz': float(cfg.sample_rate_hz) * self._q(),
            'anthropometry': 'de Leva (1996) masses / CoM; Drillis & Contini lengths (Winter 2009)',
            'docs': 'docs/synthetic_data.md',
        },
    }

  def _q(self) -> int:
    rate = (gen.LABELLED_INTERNAL_HZ if gen.LABELLED[self.NAME_FOR_SEED][0] == 'run'
            else gen.WALKING_INTERNAL_HZ)
    return gen.internal_factor(float(self.builder_config.sample_rate_hz), rate)

  def _info(self):
    _check_window(self.builder_config)
    return super()._info()


class _LabelledBase(_SyntheticBase):
  """One 'train' split with all subjects; one window per step, one scalar label."""

  def _n_subjects(self) -> int:
    return gen.LABELLED[self.NAME_FOR_SEED][3]

  def _with_curves(self) -> bool:
    return preprocess.as_bool(self._opt('curves', False))

  def curves(self) -> dict[str, dict[str, Any]]:
    if not self._with_curves():
      return {}
    side = gen.LABELLED[self.NAME_FOR_SEED][1]
    return {'grf_curve': records.curve_spec(
        'BW', gen.CURVE_FRAME, foot={'r': 'right', 'l': 'left'}[side],
        source='synthetic force plate (plan.grf), FIR-decimated like the IMUs')}

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples()}

  def _generate_examples(self):
    cfg = self.builder_config
    (target,) = tuple(self.TARGETS)
    n_steps = STEPS_PER_SUBJECT[_size(cfg)]
    with_curves = self._with_curves()
    jobs = [(self.NAME_FOR_SEED, cfg.seed, sid, self.sites(), float(cfg.sample_rate_hz),
             int(cfg.window_length), n_steps) + ((True,) if with_curves else ())
            for sid in range(self._n_subjects())]
    for sid, steps in enumerate(_run(gen.labelled_subject, jobs, self._workers())):
      if not steps:
        raise RuntimeError(f'{self.name}: subject {sid} produced no complete step')
      for trial, step, acc, gyr, label, start, *curve in steps:
        where = f'{self.name} subject {sid} trial {trial} step {step}'
        yield f'{sid:03d}_{trial:03d}_{step:03d}', self.example(
            acc, gyr, sid, trial, {target: label}, where=where, start=start,
            curves={'grf_curve': curve[0]} if with_curves else None)


class SyntheticMovi(_SyntheticBase):
  """Unlabelled 17-IMU pre-training corpus: 13 activities per subject (MoVi-style)."""

  NAME_FOR_SEED = 'synthetic_movi'
  SITES = records.MOVI_SITES
  TARGETS = {}
  DESCRIPTION = ('Synthetic MoVi-style corpus: 17 IMUs at the MoVi sites, walking, running, '
                 'hopping, jumping jacks, squats, kicks, arm waving, throwing, turning and '
                 'standing, from a rigid-body model with ground-reaction-force-driven gait. '
                 'Splits by subject (about 10 % held out for validation).')

  def _n_subjects(self) -> int:
    tr, va = MOVI_SUBJECTS[_size(self.builder_config)]
    return tr + va

  def _q(self) -> int:
    return gen.internal_factor(float(self.builder_config.sample_rate_hz),
                               2 * float(self.builder_config.sample_rate_hz))

  def curves(self) -> dict[str, Any]:
    if preprocess.as_bool(self._opt('curves', False)):
      raise ValueError('synthetic_movi: option curves is for the labelled sets (its activities '
                       'other than gait and hopping have no force plate)')
    return {}

  def extra_metadata(self) -> dict[str, Any]:
    meta = super().extra_metadata()
    tr, va = MOVI_SUBJECTS[self.builder_config.size]
    meta['splits'] = {'train': list(range(tr)), 'validation': list(range(tr, tr + va))}
    meta['activities'] = list(gen.MOVI_ACTIVITIES)
    return meta

  def _split_generators(self, dl_manager):
    del dl_manager
    tr, va = MOVI_SUBJECTS[_size(self.builder_config)]
    return {'train': self._generate_examples(range(tr)),
            'validation': self._generate_examples(range(tr, tr + va))}

  def _generate_examples(self, sids):
    cfg = self.builder_config
    window = int(cfg.window_length)
    stride = int(cfg.window_stride) or window
    drop_static = bool(cfg.option('drop_static', False))
    jobs = [(self.NAME_FOR_SEED, cfg.seed, sid, self.sites(), float(cfg.sample_rate_hz), window,
             stride, MOVI_SECONDS[cfg.size], drop_static) for sid in sids]
    for sid, wins in zip(sids, _run(gen.movi_subject, jobs, self._workers()), strict=True):
      for i, (trial, acc, gyr) in enumerate(wins):
        where = f'{self.name} subject {sid} activity {gen.MOVI_ACTIVITIES[trial]} window {i}'
        yield f'{sid:03d}_{trial:02d}_{i:04d}', self.example(acc, gyr, sid, trial, where=where)


class SyntheticRunningValr(_LabelledBase):
  """Running, left-shank IMU, vertical average loading rate per step (BW/s), 15 subjects."""

  NAME_FOR_SEED = 'synthetic_running_valr'
  SITES = ('LeftLeg',)
  TARGETS = {'valr': 'BW/s'}
  DESCRIPTION = ('Synthetic treadmill running (2.4 / 2.8 m/s, rear / mid / fore-foot strikes, '
                 'step-rate and heel-pad variations), one window per left-foot step starting '
                 'just before contact; label VALR (20-80 % of the impact peak; 13 % of stance '
                 'without a distinct peak) from the simulated force plate.')


class SyntheticWalkingGrf(_LabelledBase):
  """Walking, trunk + right-shank IMUs, peak vertical GRF per step (BW), 21 subjects."""

  NAME_FOR_SEED = 'synthetic_walking_grf'
  SITES = ('Spine1', 'RightLeg')
  TARGETS = {'peak_vgrf': 'BW'}
  DESCRIPTION = ('Synthetic walking at 0.8-1.8 m/s, one window per right-foot step with the '
                 "step's peak vGRF inside the window's central quarter; label peak vGRF / BW.")


class SyntheticWalkingKfm(_LabelledBase):
  """Walking, 8 lower-body IMUs, peak knee flexion moment per step (%BW*BH), 17 subjects."""

  NAME_FOR_SEED = 'synthetic_walking_kfm'
  SITES = ('Hip', 'Spine1', 'RightUpLeg', 'LeftUpLeg', 'RightLeg', 'LeftLeg', 'RightFoot',
           'LeftFoot')
  TARGETS = {'peak_kfm': '%BW*BH'}
  DESCRIPTION = ('Synthetic treadmill walking (baseline, foot-progression, step-width and '
                 'trunk-sway trials), one window per right step starting 20 samples (0.2 s) '
                 'before heel strike; label the peak external knee flexion moment in the first '
                 'half of stance (lever-arm method, %BW*BH).')


BUILDERS = {
    'synthetic_movi': SyntheticMovi,
    'synthetic_running_valr': SyntheticRunningValr,
    'synthetic_walking_grf': SyntheticWalkingGrf,
    'synthetic_walking_kfm': SyntheticWalkingKfm,
}

