"""The record contract shared by every data set, and the TFDS builder base they all use.

Every example is one window:

  acc            float32 [n_imu, T, 3]   specific force in the sensor frame, m/s^2
  gyr            float32 [n_imu, T, 3]   angular velocity in the sensor frame, rad/s
                                         (absent when the data set has no gyroscope)
  subject_id     int32                   unique within the data set
  trial          int32                   trial index within the subject
  start_s        float32                 the window's start in its trial, seconds from the
                                         trial's first sample (NaN where the source has no
                                         continuous time, e.g. pre-segmented steps)
  sample_rate_hz float32
  <target>       float32                 one scalar feature per label (labelled sets only)

Data-set level facts live in the builder's metadata (``metadata.json``): the IMU site names in
channel order, the sample rate, the window length, the target names and units, the subject names.
Records are written as ArrayRecord (no TensorFlow) and read with ``tfds.data_source``.
TFDS writes into an ``incomplete.*`` directory and renames it on success, so an interrupted build
never leaves a data set that reads as complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

# The 17 MoVi sensor sites in the reference channel order (datasets.md 1.2).
MOVI_SITES = (
    'Hip', 'Head', 'Spine1', 'RightUpLeg', 'RightLeg', 'RightFoot', 'LeftUpLeg', 'LeftLeg',
    'LeftFoot', 'RightShoulder', 'RightArm', 'RightForeArm', 'RightHand', 'LeftShoulder',
    'LeftArm', 'LeftForeArm', 'LeftHand',
)


@dataclasses.dataclass(eq=False)
class ImuBuilderConfig(tfds.core.BuilderConfig):
  """Builder knobs shared by all data sets.

  Attributes:
    size: 'tiny' | 'default' | 'large' (synthetic sets: how many subjects / seconds).
    sample_rate_hz: output rate of the windows.
    window_length: samples per window (T).
    window_stride: samples between window starts (0 = non-overlapping, i.e. window_length).
    seed: generator seed (synthetic sets).
    options: extra builder-specific options as a sorted tuple of (key, value) pairs.
  """

  size: str = 'default'
  sample_rate_hz: float = 100.0
  window_length: int = 128
  window_stride: int = 0
  seed: int = 0
  options: tuple[tuple[str, Any], ...] = ()

  def option(self, key: str, default: Any = None) -> Any:
    return dict(self.options).get(key, default)


def make_config(size: str = 'default', sample_rate_hz: float = 100.0, window_length: int = 128,
                window_stride: int = 0, seed: int = 0,
                options: Mapping[str, Any] | None = None) -> ImuBuilderConfig:
  """A config whose name encodes every knob, so different knobs never share a directory."""
  opts = tuple(sorted((options or {}).items()))
  name = f'{size}_{int(round(sample_rate_hz))}hz_t{window_length}'
  if window_stride:
    name += f'_s{window_stride}'
  if seed:
    name += f'_seed{seed}'
  for k, v in opts:
    name += f'_{k}-{_slug(v)}'
  return ImuBuilderConfig(name=name, size=size, sample_rate_hz=float(sample_rate_hz),
                          window_length=int(window_length), window_stride=int(window_stride),
                          seed=int(seed), options=opts)


def _slug(v: Any) -> str:
  if isinstance(v, (list, tuple)):
    return '+'.join(_slug(x) for x in v)
  return ''.join(c if c.isalnum() or c in '.-' else '' for c in str(v))


def window_features(n_imu: int, window_length: int, targets: Sequence[str] = (),
                    with_gyr: bool = True) -> tfds.features.FeaturesDict:
  """The FeaturesDict of the record contract (module docstring)."""
  shape = (n_imu, window_length, 3)
  feats: dict[str, Any] = {
      'acc': tfds.features.Tensor(shape=shape, dtype=np.float32),
      'subject_id': np.int32,
      'trial': np.int32,
      'start_s': np.float32,
      'sample_rate_hz': np.float32,
  }
  if with_gyr:
    feats['gyr'] = tfds.features.Tensor(shape=shape, dtype=np.float32)
  for t in targets:
    if t in feats:
      raise ValueError(f'target name {t!r} collides with a record field')
    feats[t] = np.float32
  return tfds.features.FeaturesDict(feats)


class _LocalDatasetInfo(tfds.core.DatasetInfo):
  """DatasetInfo of data built here: never looked up in TFDS's GCS bucket (whose lookup leaves
  an empty temporary folder behind for every unbuilt data set)."""

  def initialize_from_bucket(self) -> None:
    return None


class ImuWindowBuilder(tfds.core.GeneratorBasedBuilder):
  """Base of every builder: subclasses set the class attributes and ``_split_generators``.

  Subclasses define:
    SITES: IMU site names in channel order (or override ``sites()``).
    TARGETS: mapping target name -> unit string ('' for unlabelled sets).
    WITH_GYR: whether records carry ``gyr``.
    DESCRIPTION: one paragraph.
  and yield examples through ``self.example(...)`` which validates them.
  """

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
      '1.1.0': 'Anti-aliased (polyphase) resampling by default wherever the rate goes down.',
      '1.0.0': 'Initial release.',
  }
  BUILDER_CONFIG_CLS = ImuBuilderConfig
  # No predefined configs: every build passes a make_config(...) object whose name encodes all
  # knobs (a predefined config of the same name would make TFDS refuse the custom one).
  BUILDER_CONFIGS: list[ImuBuilderConfig] = []
  SITES: Sequence[str] = ()
  TARGETS: Mapping[str, str] = {}
  WITH_GYR: bool = True
  DESCRIPTION: str = ''

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    if 'code_path' not in cls.__dict__:
      # TFDS's default lookup of the builder's source needs importlib_resources; point it at the
      # subclass's own file instead.
      cls.code_path = epath.Path(inspect.getfile(cls))

  def _opt(self, key: str, default: Any = None) -> Any:
    """A builder option (``--option key=value`` / config key data.options)."""
    return self.builder_config.option(key, default)

  def sites(self) -> tuple[str, ...]:
    return tuple(self.SITES)

  def fan_out(self, items, fn, where: str):
    """``preprocess.fan_out`` with the builder's ``beam`` and ``strict`` options; trials skipped
    for bad data are listed in the metadata under ``skipped`` (and counted by ``build``);
    ``strict=True`` stops the build at the first instead."""
    from data_prep import preprocess  # noqa: PLC0415

    skipped = self.info.metadata.setdefault('skipped', [])
    return preprocess.fan_out(items, fn, preprocess.as_bool(self._opt('beam', False)), where,
                              skipped, preprocess.as_bool(self._opt('strict', False)))

  def extra_metadata(self) -> dict[str, Any]:
    """Builder-specific metadata merged into metadata.json (e.g. subject names, axis mapping)."""
    return {}

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    meta = {
        'imu_sites': list(self.sites()),
        'sample_rate_hz': float(cfg.sample_rate_hz),
        'window_length': int(cfg.window_length),
        'targets': dict(self.TARGETS),
        'with_gyr': bool(self.WITH_GYR),
        'units': {'acc': 'm/s^2', 'gyr': 'rad/s'},
    }
    meta.update(self.extra_metadata())
    return _LocalDatasetInfo(
        builder=self,
        description=self.DESCRIPTION or (self.__doc__ or '').strip(),
        features=window_features(len(self.sites()), cfg.window_length, tuple(self.TARGETS),
                                 self.WITH_GYR),
        metadata=tfds.core.MetadataDict(meta),
    )

  def example(self, acc: np.ndarray, gyr: np.ndarray | None, subject_id: int, trial: int,
              targets: Mapping[str, float] | None = None, where: str = '',
              start: float | None = None) -> dict[str, Any]:
    """Validates one window against the contract; ``where`` names the source in errors.

    ``start``: the window's first sample index in its trial at the output rate (None: unknown).
    """
    cfg = self.builder_config
    shape = (len(self.sites()), cfg.window_length, 3)
    ex: dict[str, Any] = {
        'acc': check_array(acc, shape, 'acc', where),
        'subject_id': int(subject_id),
        'trial': int(trial),
        'start_s': float('nan') if start is None else float(start) / float(cfg.sample_rate_hz),
        'sample_rate_hz': float(cfg.sample_rate_hz),
    }
    if self.WITH_GYR:
      if gyr is None:
        raise ValueError(f'{where}: this data set needs gyr, got none')
      ex['gyr'] = check_array(gyr, shape, 'gyr', where)
    targets = dict(targets or {})
    missing = set(self.TARGETS) - set(targets)
    if missing:
      raise ValueError(f'{where}: missing target(s) {sorted(missing)}')
    for k in self.TARGETS:
      v = float(targets[k])
      if not np.isfinite(v):
        raise ValueError(f'{where}: target {k!r} is {v}')
      ex[k] = v
    return ex


def check_array(x: np.ndarray, shape: tuple[int, ...], field: str, where: str) -> np.ndarray:
  """float32 copy of x after checking shape and finiteness; errors name the field and source."""
  x = np.asarray(x, dtype=np.float32)
  if x.shape != shape:
    raise ValueError(f'{where}: field {field!r} has shape {x.shape}, expected {shape}')
  bad = ~np.isfinite(x)
  if bad.any():
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ValueError(f'{where}: field {field!r} has {int(bad.sum())} NaN/Inf values '
                     f'(first at index {idx})')
  return x


def build(builder_cls: type[ImuWindowBuilder], data_dir: str, config: ImuBuilderConfig,
          manual_dir: str | None = None) -> str:
  """Builds (or reuses) a data set; returns its directory. Idempotent and atomic (TFDS)."""
  with _quiet_absl():  # TFDS warns about every custom config
    builder = builder_cls(config=config, data_dir=os.fspath(data_dir),
                          file_format='array_record')
  instructions = getattr(builder_cls, 'MANUAL_DOWNLOAD_INSTRUCTIONS', None)
  built = os.path.exists(os.path.join(builder.data_dir, 'dataset_info.json'))
  if instructions and not manual_dir and not built:
    raise FileNotFoundError(f'{builder.name}: config key data.manual_dir is empty; this data set '
                            f'is built from files you provide. {instructions}')
  dl_config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
  if built:
    return os.fspath(builder.data_dir)
  tfds.disable_progress_bar()  # one 'building ... / built ...' pair says what happens
  source = f'from {manual_dir}' if manual_dir else 'generated here'
  print(f'building {builder.name} ({config.name}, {source}) ...', file=sys.stderr, flush=True)
  t0 = time.time()
  try:  # TFDS says "download" for data it generates
    with _quiet_absl(), contextlib.redirect_stdout(io.StringIO()):
      builder.download_and_prepare(download_config=dl_config)
  finally:
    _remove_empty_dirs(os.path.join(os.fspath(data_dir), 'downloads'))
  counts = ', '.join(f'{n} {k}' for k, n in
                     ((k, v.num_examples) for k, v in builder.info.splits.items()))
  skipped = list(builder.info.metadata.get('skipped') or [])
  note = (f'; {len(skipped)} trial(s) skipped for bad data (metadata.json "skipped")'
          if skipped else '')
  print(f'built {builder.name} in {time.time() - t0:.0f} s: {counts} windows{note} -> '
        f'{builder.data_dir}', file=sys.stderr, flush=True)
  return os.fspath(builder.data_dir)


@contextlib.contextmanager
def _quiet_absl():
  """absl (TFDS) logging at ERROR only, for the duration."""
  absl_log = logging.getLogger('absl')
  level = absl_log.level
  absl_log.setLevel(logging.ERROR)
  try:
    yield
  finally:
    absl_log.setLevel(level)


def _remove_empty_dirs(root: str) -> None:
  """TFDS leaves an empty downloads/extracted tree behind for data it never downloads."""
  if not os.path.isdir(root):
    return
  for path, _, _ in sorted(os.walk(root), key=lambda w: -len(w[0])):
    try:
      os.rmdir(path)  # only succeeds on an empty directory
    except OSError:
      pass

