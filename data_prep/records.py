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
  <curve>        float32 [T, A]          one per curve label (builders that declare curves:
                                         ``curves()``), e.g. ``grf_curve`` [T, 3], axes
                                         (ML, AP, V); an axis the source lacks is NaN throughout

Data-set level facts live in the builder's metadata (``metadata.json``): the IMU site names in
channel order, the sample rate, the window length, the target names and units, the subject names,
and, only where the builder declares curve labels, ``curves`` (name -> axes, which axes are
present, unit, frame, foot). Readers that only know scalar labels (``targets``) never see them.
Records are written as ArrayRecord (no TensorFlow) and read with ``tfds.data_source``.
TFDS writes into an ``incomplete.*`` directory and renames it on success, so an interrupted build
never leaves a data set that reads as complete; ``build`` removes what a failed build had begun
(the config folder and, left empty, the data set's folder), so it leaves nothing behind.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import glob
import inspect
import io
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from data_prep import source as source_lib

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
    source_json: the source fingerprint (data_prep/source.py) as JSON; set by ``build``.
  """

  size: str = 'default'
  sample_rate_hz: float = 100.0
  window_length: int = 128
  window_stride: int = 0
  seed: int = 0
  options: tuple[tuple[str, Any], ...] = ()
  source_json: str = ''

  def option(self, key: str, default: Any = None) -> Any:
    return dict(self.options).get(key, default)


def make_config(size: str = 'default', sample_rate_hz: float = 100.0, window_length: int = 128,
                window_stride: int = 0, seed: int = 0,
                options: Mapping[str, Any] | None = None,
                source: Mapping[str, Any] | None = None) -> ImuBuilderConfig:
  """A config whose name encodes every knob, so different knobs never share a directory.

  Paths among the options (the lab_files schema) stay out of the name; a ``source`` fingerprint
  with a hash (builders that read files) ends it as ``_src-<hash>``: different files, different
  folder.
  """
  opts = tuple(sorted((options or {}).items()))
  name = f'{size}_{int(round(sample_rate_hz))}hz_t{window_length}'
  if window_stride:
    name += f'_s{window_stride}'
  if seed:
    name += f'_seed{seed}'
  for k, v in opts:
    if k not in source_lib.PATH_OPTIONS:
      name += f'_{k}-{_slug(v)}'
  if source and source.get('hash'):
    name += f'_src-{source["hash"]}'
  return ImuBuilderConfig(name=name, size=size, sample_rate_hz=float(sample_rate_hz),
                          window_length=int(window_length), window_stride=int(window_stride),
                          seed=int(seed), options=opts,
                          source_json=json.dumps(dict(source), sort_keys=True) if source else '')


def with_source(builder_cls, config: ImuBuilderConfig,
                manual_dir: str | None) -> ImuBuilderConfig:
  """``config`` carrying the fingerprint of what ``builder_cls`` reads from ``manual_dir``."""
  src = source_lib.fingerprint(builder_cls, manual_dir, config.size, config.seed,
                               dict(config.options))
  return make_config(config.size, config.sample_rate_hz, config.window_length,
                     config.window_stride, config.seed, dict(config.options), src)


def _slug(v: Any) -> str:
  if isinstance(v, (list, tuple)):
    return '+'.join(_slug(x) for x in v)
  return ''.join(c if c.isalnum() or c in '.-' else '' for c in str(v))


def window_features(n_imu: int, window_length: int, targets: Sequence[str] = (),
                    with_gyr: bool = True,
                    curves: Mapping[str, Mapping[str, Any]] | None = None
                    ) -> tfds.features.FeaturesDict:
  """The FeaturesDict of the record contract (module docstring); ``curves``: name -> spec
  (``curve_spec``), each a float32 [window_length, len(axes)] feature."""
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
  for name, spec in dict(curves or {}).items():
    if name in feats:
      raise ValueError(f'curve name {name!r} collides with a record field or target')
    feats[name] = tfds.features.Tensor(shape=(window_length, len(spec['axes'])),
                                       dtype=np.float32)
  return tfds.features.FeaturesDict(feats)


# The axes of a GRF curve, in the reference's order (masked-recipe.md section 6).
GRF_AXES = ('ML', 'AP', 'V')


def curve_spec(unit: str, frame: str, axes: Sequence[str] = GRF_AXES,
               present: Sequence[bool] | None = None, **facts: Any) -> dict[str, Any]:
  """One curve label's metadata: its ``axes`` (column order), which are ``present`` (an absent
  axis is NaN in every record), ``unit``, ``frame`` (what the axes mean, signs included), plus
  builder facts (e.g. ``foot``)."""
  axes = [str(a) for a in axes]
  present = [True] * len(axes) if present is None else [bool(p) for p in present]
  if len(present) != len(axes) or not any(present):
    raise ValueError(f'curve spec: present {present} must flag each of the axes {axes}, '
                     'at least one of them')
  return {'axes': axes, 'present': present, 'unit': str(unit), 'frame': str(frame), **facts}


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
  may override ``curves()`` (curve labels, none by default), and yield examples through
  ``self.example(...)`` which validates them.
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
  # The files a build reads, as globs under manual_dir (its source fingerprint; builders that
  # read no files ignore it).
  SOURCE_PATTERNS: Sequence[str] = ('**/*',)

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

  @classmethod
  def source_files(cls, root, options: Mapping[str, Any]) -> list:
    """The files under ``root`` a build with ``options`` reads (fingerprinted, not opened)."""
    return source_lib.list_files(root, cls.SOURCE_PATTERNS)

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

  def curves(self) -> dict[str, dict[str, Any]]:
    """Curve labels of this build: name -> ``curve_spec(...)``. None by default; a builder
    that declares some writes them beside its scalar labels (features and metadata ``curves``).
    """
    return {}

  def _download_and_prepare(self, dl_manager, download_config=None):
    """TFDS's generation; on Beam (option ``beam``) then ``subject_ids`` from the written
    records: ``example`` notes every subject with a record as it goes, but on Beam the examples
    are made in worker processes whose notes never reach the builder that writes the metadata.
    Read back once (before TFDS writes metadata.json, with either CLI), the ids are those
    written: subjects whose every trial was skipped are absent, as in process."""
    super()._download_and_prepare(dl_manager, download_config)
    from data_prep import preprocess  # noqa: PLC0415

    if preprocess.as_bool(self._opt('beam', False)):
      self.info.metadata['subject_ids'] = written_subject_ids(self)

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
    curves = self.curves()
    if curves:  # absent otherwise: the metadata of builds without curves stays as it was
      meta['curves'] = curves
    meta.update(self.extra_metadata())
    if cfg.source_json:
      meta['source'] = json.loads(cfg.source_json)
    return _LocalDatasetInfo(
        builder=self,
        description=self.DESCRIPTION or (self.__doc__ or '').strip(),
        features=window_features(len(self.sites()), cfg.window_length, tuple(self.TARGETS),
                                 self.WITH_GYR, curves),
        metadata=tfds.core.MetadataDict(meta),
    )

  def example(self, acc: np.ndarray, gyr: np.ndarray | None, subject_id: int, trial: int,
              targets: Mapping[str, float] | None = None, where: str = '',
              start: float | None = None,
              curves: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Validates one window against the contract; ``where`` names the source in errors.

    ``start``: the window's first sample index in its trial at the output rate (None: unknown).
    ``curves``: name -> [T, A] array for each curve label the builder declares; present axes
    must be finite, absent ones are written as NaN whatever was passed.
    """
    cfg = self.builder_config
    shape = (len(self.sites()), cfg.window_length, 3)
    ids = self.info.metadata.setdefault('subject_ids', [])  # every subject with a record
    at = bisect.bisect_left(ids, int(subject_id))
    if at == len(ids) or ids[at] != int(subject_id):
      ids.insert(at, int(subject_id))
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
    specs = self.curves()
    curves = dict(curves or {})
    if set(curves) != set(specs):
      raise ValueError(f'{where}: curve labels {sorted(curves)} given, the data set declares '
                       f'{sorted(specs)}')
    for k, spec in specs.items():
      ex[k] = check_curve(curves[k], cfg.window_length, spec, k, where)
    return ex


def check_curve(x: np.ndarray, window_length: int, spec: Mapping[str, Any], field: str,
                where: str) -> np.ndarray:
  """float32 [T, A] copy of a curve: shape checked, present axes finite, absent axes NaN."""
  present = np.asarray(spec['present'], bool)
  x = np.array(x, dtype=np.float32)
  if x.shape != (window_length, len(present)):
    raise ValueError(f'{where}: curve {field!r} has shape {x.shape}, expected '
                     f'{(window_length, len(present))} (axes {list(spec["axes"])})')
  check_array(x[:, present], (window_length, int(present.sum())), field, where)
  x[:, ~present] = np.nan
  return x


def written_subject_ids(builder, chunk: int = 1024) -> list[int]:
  """The subject ids of every record a builder has written (all splits), sorted."""
  ids: set[int] = set()
  for split in builder.info.splits:
    src = builder.as_data_source(split)
    for lo in range(0, len(src), chunk):
      ids.update(int(e['subject_id'])
                 for e in src.__getitems__(list(range(lo, min(len(src), lo + chunk)))))
  return sorted(ids)


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
          manual_dir: str | None = None, beam_options: Any = None,
          manual_dir_name: str = 'config key data.manual_dir') -> str:
  """Builds (or reuses) a data set; returns its directory. Idempotent and atomic (TFDS).

  A builder that reads files is fingerprinted first (data_prep/source.py): the folder's name
  ends with the source's hash, so a finished build is reused only for the same files. A file
  changed in place gives a new hash, hence a fresh build; the files that changed since the
  last build from the same folder are named. Without ``manual_dir`` the one finished build of
  these knobs is reused (several from different sources: an error listing them, which names the
  setting as ``manual_dir_name``: the config key, or ``--manual_dir`` for data_prep.convert).
  ``beam_options`` (apache_beam PipelineOptions; the config's option ``beam=true``) runs the
  builder's Beam path on that runner, with the same reuse, clean-up and metadata.
  """
  instructions = getattr(builder_cls, 'MANUAL_DOWNLOAD_INSTRUCTIONS', None)
  if instructions and not manual_dir:
    return _only_build(builder_cls, os.fspath(data_dir), config, instructions, manual_dir_name)
  if not config.source_json:
    config = with_source(builder_cls, config, manual_dir)
  with _quiet_absl():  # TFDS warns about every custom config
    builder = builder_cls(config=config, data_dir=os.fspath(data_dir),
                          file_format='array_record')
  dl_config = (tfds.download.DownloadConfig(manual_dir=manual_dir, beam_options=beam_options)
               if manual_dir or beam_options is not None else None)
  if os.path.exists(os.path.join(builder.data_dir, 'dataset_info.json')):
    _check_recorded_source(os.fspath(builder.data_dir), config)
    return os.fspath(builder.data_dir)
  src = json.loads(config.source_json)
  if src.get('hash'):
    _say_what_changed(os.fspath(data_dir), builder, src)
  tfds.disable_progress_bar()  # one 'building ... / built ...' pair says what happens
  origin = f'from {manual_dir}' if manual_dir else 'generated here'
  print(f'building {builder.name} ({config.name}, {origin}) ...', file=sys.stderr, flush=True)
  t0 = time.time()
  config_dir = os.path.dirname(os.fspath(builder.data_dir))
  before = set(os.listdir(config_dir)) if os.path.isdir(config_dir) else set()
  try:  # TFDS says "download" for data it generates
    with _quiet_absl(), contextlib.redirect_stdout(io.StringIO()):
      builder.download_and_prepare(download_config=dl_config)
  except BaseException:
    _remove_failed_build(config_dir, before)
    raise
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


def _builds(data_dir: str, name: str, config_glob: str, version: str) -> list[str]:
  """Finished build folders of data set ``name`` whose config name matches ``config_glob``."""
  pattern = os.path.join(glob.escape(data_dir), name, config_glob, version, 'dataset_info.json')
  return sorted(os.path.dirname(p) for p in glob.glob(pattern))


def _recorded_source(path: str) -> dict[str, Any]:
  try:
    with open(os.path.join(path, 'metadata.json')) as f:
      return dict(json.load(f).get('source') or {})
  except (OSError, ValueError):
    return {}


def _only_build(builder_cls, data_dir: str, config: ImuBuilderConfig, instructions: str,
                manual_dir_name: str = 'config key data.manual_dir') -> str:
  """The one finished build of ``config``'s knobs from any source (no manual_dir given)."""
  unset = (f'{manual_dir_name} is empty' if manual_dir_name.startswith('config key') else
           f'{manual_dir_name} is not given')
  found = _builds(data_dir, builder_cls.name, glob.escape(config.name) + '_src-*',
                  str(builder_cls.VERSION))
  if len(found) == 1:
    src = _recorded_source(found[0])
    print(f'{builder_cls.name}: no manual_dir given; using the records built from '
          f'{src.get("manual_dir", "?")} ({found[0]})', file=sys.stderr, flush=True)
    return found[0]
  if found:
    listed = '; '.join(f'{p} (from {_recorded_source(p).get("manual_dir", "?")})' for p in found)
    raise ValueError(f'{builder_cls.name}: {unset} and {data_dir} holds builds from '
                     f'{len(found)} sources ({listed}); name the one you mean with '
                     f'{manual_dir_name.removeprefix("config key ")}')
  raise FileNotFoundError(f'{builder_cls.name}: {unset}; this data set is built from files you '
                          f'provide. {instructions}')


def _check_recorded_source(path: str, config: ImuBuilderConfig) -> None:
  """A finished folder whose recorded fingerprint is not the current one is never reused."""
  want = json.loads(config.source_json or '{}').get('hash')
  have = _recorded_source(path).get('hash')
  if want and have and want != have:
    raise ValueError(f'{path}: records of source {have}, but the files now fingerprint as '
                     f'{want}; remove the folder to rebuild it')


def _say_what_changed(data_dir: str, builder, src: Mapping[str, Any]) -> None:
  """Names the files that changed since the newest build from the same folder, if any."""
  same = [p for p in _builds(data_dir, builder.name, '*', str(builder.version))
          if (r := _recorded_source(p)).get('manual_dir') == src.get('manual_dir')
          and r.get('options') == src.get('options') and r.get('hash') != src['hash']]
  if not same:
    return
  last = max(same, key=lambda p: os.stat(p).st_mtime_ns)
  what = source_lib.changes(_recorded_source(last), src)
  if what:
    more = f' and {len(what) - 5} more' if len(what) > 5 else ''
    print(f'{builder.name}: the files in {src["manual_dir"]} changed since {last} '
          f'({"; ".join(what[:5])}{more}); building anew, that folder is left as it was',
          file=sys.stderr, flush=True)


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


def _remove_failed_build(config_dir: str, before: set[str]) -> None:
  """What a failed build made in its config folder (TFDS's incomplete.* folder, an empty
  version folder), then that folder and the data set's folder where they are left empty: a
  failed build leaves nothing behind. Entries there before the build are kept."""
  if not os.path.isdir(config_dir):
    return
  for name in set(os.listdir(config_dir)) - before:
    path = os.path.join(config_dir, name)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path, ignore_errors=True)
    else:
      with contextlib.suppress(OSError):
        os.remove(path)
  for path in (config_dir, os.path.dirname(config_dir)):
    with contextlib.suppress(OSError):
      os.rmdir(path)  # only when empty


def _remove_empty_dirs(root: str) -> None:
  """TFDS leaves an empty downloads/extracted tree behind for data it never downloads."""
  if not os.path.isdir(root):
    return
  for path, _, _ in sorted(os.walk(root), key=lambda w: -len(w[0])):
    try:
      os.rmdir(path)  # only succeeds on an empty directory
    except OSError:
      pass

