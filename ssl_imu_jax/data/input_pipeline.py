"""TFDS records -> numpy windows -> deterministic, resumable, sharded device batches.

The order of training windows is a pure function of (seed, step): step s takes the global sample
positions s*B ... s*B+B-1 of an endless stream made of one fresh permutation per epoch. So the
pipeline's position is the step number, which the checkpoint already holds, and a resumed run sees
exactly the batches an uninterrupted run would have seen. Batches are prepared ahead by grain
(a ``MapDataset`` over step numbers, read in threads, in order).

A split is held in memory (``WindowSet`` of numpy arrays: small labelled sets, fastest) or, with
``stream=True`` (config key ``data.stream``), read record by record from its ArrayRecord files:
``acc`` / ``gyr`` are then ``RecordArray``s that read the windows an index asks for, so each host
reads only the windows of its own slice of each batch, and only the per-window scalars (subject,
trial, labels) are in memory. One contract for both: the same batches, the same statistics.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from ssl_imu_jax.errors import ConfigError


@dataclasses.dataclass
class WindowSet:
  """All windows of one split, in memory."""

  acc: np.ndarray                  # [n, N, T, 3] float32, m/s^2
  gyr: np.ndarray | None           # [n, N, T, 3] float32, rad/s (None: accelerometer only)
  subject_id: np.ndarray           # [n] int64
  trial: np.ndarray                # [n] int64
  targets: np.ndarray              # [n, K] float32 (K = 0 for unlabelled sets)
  target_names: tuple[str, ...]
  target_units: tuple[str, ...]
  sites: tuple[str, ...]
  sample_rate_hz: float
  metadata: dict[str, Any]
  path: str = ''
  start_s: np.ndarray | None = None  # [n] float32 window start in its trial (s); NaN = unknown
  # A curve target (``with_curve_target``): ``targets`` is then [n, T, A] (NaN where the source
  # lacks an axis), ``target_names`` the curve's one name, and this its spec (axes, present,
  # unit, frame: data_prep.records.curve_spec).
  curve: dict[str, Any] | None = None

  def __len__(self) -> int:
    return len(self.subject_id)

  @property
  def window_length(self) -> int:
    return int(self.acc.shape[2])


class _RecordReader:
  """Reads examples by index from a split's data source; the last read is kept per thread, so
  ``acc[idx]`` then ``gyr[idx]`` of the same batch decode the records once."""

  def __init__(self, src):
    self.src = src
    self._local = threading.local()

  def examples(self, idx: np.ndarray) -> list[dict[str, Any]]:
    key = idx.tobytes()
    cached = getattr(self._local, 'last', None)
    if cached is None or cached[0] != key:
      cached = (key, self.src.__getitems__([int(i) for i in idx]))
      self._local.last = cached
    return cached[1]


class RecordArray:
  """One signal of a streamed split, [n, N, T, 3] float32, read when indexed (a 1-D index)."""

  def __init__(self, reader: _RecordReader, field: str, site_idx: Sequence[int],
               shape: tuple[int, ...]):
    self.reader, self.field, self.site_idx, self.shape = reader, field, list(site_idx), shape
    self.dtype = np.dtype(np.float32)

  def __len__(self) -> int:
    return self.shape[0]

  def __getitem__(self, idx) -> np.ndarray:
    idx = np.arange(self.shape[0])[idx] if isinstance(idx, slice) else np.asarray(idx)
    if idx.ndim != 1:
      raise TypeError(f'RecordArray ({self.field}) takes a 1-D index, got shape {idx.shape}')
    if not len(idx):
      return np.zeros((0,) + self.shape[1:], np.float32)
    exs = self.reader.examples(idx.astype(np.int64))
    return np.stack([np.asarray(e[self.field], np.float32)[self.site_idx] for e in exs])


def builder_config(data_cfg: ml_collections.ConfigDict):
  """The records.ImuBuilderConfig that ``config.data`` describes."""
  from data_prep import records  # local import: data_prep pulls in TFDS

  options = dict(data_cfg.options) if data_cfg.options else {}
  if data_cfg.dataset == 'lab_files':  # the schema's hash names the build: an edit rebuilds
    from data_prep import convert  # noqa: PLC0415

    options = convert.lab_schema_options(data_cfg.manual_dir or None, options)
  return records.make_config(size=data_cfg.size, sample_rate_hz=data_cfg.sample_rate_hz,
                             window_length=data_cfg.window_length,
                             window_stride=data_cfg.window_stride, seed=data_cfg.seed,
                             options=options)


def source_summary(ws: WindowSet, data_cfg: ml_collections.ConfigDict) -> dict[str, Any]:
  """Where the windows of ``ws`` come from (data_prep/source.py): data set, ``id`` (whose
  subjects: the resolved folder, or a generated set's size / seed / options), ``hash`` (the
  exact files) and folder. Records built before fingerprints existed get the ``id`` from the
  config."""
  from data_prep import source  # noqa: PLC0415

  rec = dict(ws.metadata.get('source') or {})
  sid = rec.get('id') or source.subject_source_id(
      data_cfg.dataset, data_cfg.manual_dir or None, data_cfg.size, int(data_cfg.seed),
      dict(data_cfg.options or {}))
  return {'dataset': str(data_cfg.dataset), 'id': sid, 'hash': rec.get('hash', ''),
          'manual_dir': rec.get('manual_dir', ''), 'records': str(ws.path)}


def resolve_data_dir(config: ml_collections.ConfigDict, workdir: str) -> str:
  return config.data_dir or os.path.join(workdir, 'tfds')


def check_dataset(name: str, key: str = 'data.dataset') -> None:
  """A ConfigError naming the config ``key`` and the registered data sets when ``name`` is not
  one of them (checked before any data is built)."""
  import difflib  # noqa: PLC0415

  import data_prep  # noqa: PLC0415

  if name in data_prep.BUILDERS:
    return
  close = difflib.get_close_matches(str(name), list(data_prep.BUILDERS), n=1)
  hint = f'; did you mean {close[0]!r}?' if close else ''
  raise ConfigError(f'config key {key}: unknown data set {name!r}{hint} (valid names: '
                    f'{", ".join(sorted(data_prep.BUILDERS))})')


def ensure_built(data_cfg: ml_collections.ConfigDict, data_dir: str) -> str:
  """Builds the data set if it is not complete yet (atomic, TFDS); returns its directory.

  With several processes, process 0 builds and the others wait for it, then find it complete.
  """
  import data_prep
  from data_prep import records
  from ssl_imu_jax import parallel  # noqa: PLC0415

  try:
    cls = data_prep.get_builder_class(data_cfg.dataset)
  except KeyError:
    check_dataset(data_cfg.dataset)  # an unknown name: the key and the valid names
    raise

  def build():
    return records.build(cls, data_dir, builder_config(data_cfg),
                         manual_dir=data_cfg.manual_dir or None)

  if jax.process_count() == 1:
    return build()
  if parallel.is_writer():
    build()
  parallel.barrier(f'built {data_cfg.dataset}')
  return build()


def _source(path: str, split: str):
  """(builder, the split's data source); a clear error for a split the data set lacks."""
  import tensorflow_datasets as tfds

  builder = tfds.builder_from_directory(path)
  if split not in builder.info.splits:
    raise ConfigError(f'{path}: no split {split!r}; available: {sorted(builder.info.splits)} '
                      f'(config key data.split / data.eval_split)')
  return builder, builder.as_data_source()[split]


def subject_ids(path: str, split: str, chunk: int = 1024, field: str = 'subject_id'
                ) -> np.ndarray:
  """The subject id (or another integer ``field``, e.g. 'trial') of every window of a split, in
  record order, without reading the signals."""
  _, src = _source(path, split)
  ids = np.empty(len(src), np.int64)
  for lo in range(0, len(src), chunk):
    part = src.__getitems__(list(range(lo, min(len(src), lo + chunk))))
    ids[lo:lo + len(part)] = [int(e[field]) for e in part]
  return ids


def load_split(path: str, split: str, sites: Sequence[str] = (), use_gyr: bool = True,
               chunk: int = 1024, targets: Sequence[str] = (), stream: bool = False) -> WindowSet:
  """Reads a whole split of a built data set into memory, optionally a subset of IMU sites and
  of labels (``targets``, config key data.targets; () = all). ``stream``: the signals stay in
  the records (``RecordArray``), only the per-window scalars are read."""
  builder, src = _source(path, split)
  meta = dict(builder.info.metadata or {})
  all_sites = tuple(meta.get('imu_sites', ()))
  if sites:
    unknown = [s for s in sites if s not in all_sites]
    if unknown:
      raise ConfigError(f'config key data.imu_sites: {unknown} not in the data set sites '
                        f'{list(all_sites)}')
    site_idx = [all_sites.index(s) for s in sites]
  else:
    site_idx = list(range(len(all_sites)))
  has_gyr = bool(meta.get('with_gyr', True))
  use_gyr = use_gyr and has_gyr
  target_map = dict(meta.get('targets', {}))
  unknown = [t for t in targets if t not in target_map]
  if unknown:
    raise ConfigError(f'config key data.targets: {unknown} not among the labels of {path}: '
                      f'{list(target_map)}')
  names = tuple(targets) or tuple(target_map)
  n = len(src)
  if n == 0:
    raise ValueError(f'{path}: split {split!r} is empty')
  feats = builder.info.features
  t = feats['acc'].shape[1]
  shape = (n, len(site_idx), t, 3)
  if stream:
    reader = _RecordReader(src)
    acc = RecordArray(reader, 'acc', site_idx, shape)
    gyr = RecordArray(reader, 'gyr', site_idx, shape) if use_gyr else None
  else:
    acc = np.empty(shape, np.float32)
    gyr = np.empty_like(acc) if use_gyr else None
  subj = np.empty(n, np.int64)
  trial = np.empty(n, np.int64)
  start_s = np.full(n, np.nan, np.float32)  # records built before the field existed lack it
  has_start = 'start_s' in builder.info.features
  targets = np.empty((n, len(names)), np.float32)
  for lo in range(0, n, chunk):
    hi = min(n, lo + chunk)
    exs = src.__getitems__(list(range(lo, hi)))
    if not stream:
      acc[lo:hi] = np.stack([e['acc'] for e in exs])[:, site_idx]
      if use_gyr:
        gyr[lo:hi] = np.stack([e['gyr'] for e in exs])[:, site_idx]
    subj[lo:hi] = [int(e['subject_id']) for e in exs]
    trial[lo:hi] = [int(e['trial']) for e in exs]
    if has_start:
      start_s[lo:hi] = [float(e['start_s']) for e in exs]
    for k, name in enumerate(names):
      targets[lo:hi, k] = [float(e[name]) for e in exs]
  return WindowSet(acc=acc, gyr=gyr, subject_id=subj, trial=trial, targets=targets,
                   target_names=names, target_units=tuple(target_map[k] for k in names),
                   sites=tuple(all_sites[i] for i in site_idx),
                   sample_rate_hz=float(meta.get('sample_rate_hz', 0.0)), metadata=meta,
                   path=str(path), start_s=start_s)


def curve_specs(path: str) -> dict[str, dict[str, Any]]:
  """The curve labels of a built data set: name -> spec (axes, present, unit, frame, ...;
  ``data_prep.records.curve_spec``); {} for a set with scalar labels only."""
  import tensorflow_datasets as tfds

  return dict((tfds.builder_from_directory(path).info.metadata or {}).get('curves') or {})


def load_curves(path: str, split: str, name: str = 'grf_curve', chunk: int = 1024
                ) -> tuple[np.ndarray, dict[str, Any]]:
  """One curve label of every window of a split, in record order (the order of ``load_split``,
  so row i belongs to window i of its ``WindowSet``): float32 [n, T, A] and its spec. Absent
  axes (spec ``present`` False) are NaN. ``load_split`` itself reads scalar labels only."""
  specs = curve_specs(path)
  if name not in specs:
    raise ConfigError(f'{path}: no curve label {name!r}; it has {sorted(specs) or "none"} '
                      '(synthetic sets: builder option curves=True)')
  _, src = _source(path, split)
  n = len(src)
  out = None
  for lo in range(0, n, chunk):
    exs = src.__getitems__(list(range(lo, min(n, lo + chunk))))
    part = np.stack([np.asarray(e[name], np.float32) for e in exs])
    if out is None:
      out = np.empty((n,) + part.shape[1:], np.float32)
    out[lo:lo + len(part)] = part
  if out is None:
    raise ValueError(f'{path}: split {split!r} is empty')
  return out, specs[name]


def with_curve_target(ws: WindowSet, split: str, name: str = 'grf_curve') -> WindowSet:
  """``ws`` (split ``split`` of its records, as ``load_split`` read it) with the curve label
  ``name`` as its target, row for row: ``targets`` [n, T, A], ``target_names`` (name,),
  ``curve`` its spec."""
  curves, spec = load_curves(ws.path, split, name)
  if len(curves) != len(ws):
    raise ValueError(f'{ws.path}: {len(curves)} curves for {len(ws)} windows')
  return dataclasses.replace(ws, targets=curves, target_names=(name,),
                             target_units=(str(spec.get('unit', '')),), curve=dict(spec))


def concatenate(parts: Sequence[WindowSet]) -> WindowSet:
  """The windows of several splits of one data set as one set (in the order given)."""
  first = parts[0]
  for p in parts[1:]:
    if (p.sites, p.target_names, p.gyr is None) != (first.sites, first.target_names,
                                                   first.gyr is None):
      raise ValueError(f'{p.path}: splits differ in sites, labels or gyroscope')
  cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
  return dataclasses.replace(first, acc=cat('acc'), gyr=None if first.gyr is None else cat('gyr'),
                             subject_id=cat('subject_id'), trial=cat('trial'),
                             targets=cat('targets'), start_s=cat('start_s'))


# Subject ids of a pooled second corpus (config key data.mix) start here, so no id is shared.
MIX_SUBJECT_OFFSET = 1_000_000
MIX_KEYS = ('dataset', 'size', 'options', 'manual_dir', 'imu_sites', 'split', 'eval_split')


def mix_config(data_cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict | None:
  """The full data config of ``data_cfg.mix`` (None when it names no corpus): its own data set,
  builder knobs, sites and splits; rate, window, stride and seed are ``data_cfg``'s."""
  mix = data_cfg.get('mix')
  if mix is None or not mix.get('dataset'):
    return None
  c = data_cfg.copy_and_resolve_references()
  c.unlock()
  del c['mix']
  for k in MIX_KEYS:
    c[k] = mix[k]
  return c


def load_corpus(data_cfg: ml_collections.ConfigDict, data_dir: str, stream: bool = False
                ) -> tuple[WindowSet, WindowSet | None]:
  """A pre-training corpus: (train split, held-out split or None) of ``data_cfg``, pooled with
  those of ``data_cfg.mix`` when it names a second corpus (both built if needed); without gyr
  when the corpus has none or ``data_cfg.use_gyr`` is False.

  The second corpus's ``imu_sites`` take the first's site names in order (same count), its
  subject ids are shifted by MIX_SUBJECT_OFFSET, and its windows follow the first's.
  """
  path = ensure_built(data_cfg, data_dir)
  use_gyr = bool(data_cfg.get('use_gyr', True))  # False: the acc channels only (masked)
  train = load_split(path, data_cfg.split, data_cfg.imu_sites, use_gyr, stream=stream)
  check_matches(train, data_cfg)
  held = (load_split(path, data_cfg.eval_split, data_cfg.imu_sites, use_gyr, stream=stream)
          if data_cfg.eval_split else None)
  mix_cfg = mix_config(data_cfg)
  if mix_cfg is None:
    return train, held
  if stream:
    raise ConfigError('config key data.mix pools a second corpus in memory; it cannot be used '
                      'with data.stream=True')
  if not mix_cfg.imu_sites or len(mix_cfg.imu_sites) != len(train.sites):
    raise ConfigError(f'config key data.mix.imu_sites must list {len(train.sites)} sites of '
                      f'{mix_cfg.dataset!r}, one for each of {list(train.sites)} (data.imu_sites) '
                      f'in order, got {list(mix_cfg.imu_sites)}')
  if max(train.subject_id.max(), -1 if held is None else held.subject_id.max()) \
      >= MIX_SUBJECT_OFFSET:
    raise ValueError(f'{path}: subject ids reach {MIX_SUBJECT_OFFSET}; data.mix cannot renumber '
                     f'the second corpus after them')
  mix_path = ensure_built(mix_cfg, data_dir)

  def pooled(first: WindowSet, split: str) -> WindowSet:
    extra = load_split(mix_path, split, mix_cfg.imu_sites)
    check_matches(extra, mix_cfg)
    if extra.gyr is None or first.gyr is None:
      raise ConfigError(f'{mix_path}: config key data.mix pools corpora with gyroscopes only')
    extra = dataclasses.replace(extra, sites=first.sites,
                                subject_id=extra.subject_id + MIX_SUBJECT_OFFSET)
    both = concatenate([dataclasses.replace(first, targets=first.targets[:, :0], target_names=(),
                                            target_units=()),
                        dataclasses.replace(extra, targets=extra.targets[:, :0], target_names=(),
                                            target_units=())])
    return dataclasses.replace(both, path=f'{first.path} + {mix_path}',
                               metadata={**first.metadata, 'mix': {
                                   'dataset': mix_cfg.dataset, 'path': mix_path,
                                   'sites': list(mix_cfg.imu_sites), 'as_sites': list(first.sites),
                                   'frame': axis_frame(extra.metadata),
                                   'num_windows': len(extra),
                                   'num_subjects': len(set(extra.subject_id.tolist())),
                                   'subject_offset': MIX_SUBJECT_OFFSET}})

  train = pooled(train, mix_cfg.split)
  if held is not None and mix_cfg.eval_split:
    held = pooled(held, mix_cfg.eval_split)
  return train, held


def check_matches(ws: WindowSet, data_cfg: ml_collections.ConfigDict) -> None:
  """Fails when the records contradict what the config says (rate, window length)."""
  if abs(ws.sample_rate_hz - data_cfg.sample_rate_hz) > 1e-6:
    raise ConfigError(f'{ws.path}: records are at {ws.sample_rate_hz} Hz but config key '
                      f'data.sample_rate_hz is {data_cfg.sample_rate_hz}')
  if ws.window_length != data_cfg.window_length:
    raise ConfigError(f'{ws.path}: windows have {ws.window_length} samples but config key '
                      f'data.window_length is {data_cfg.window_length}')


def axis_frame(metadata: Mapping[str, Any]) -> str:
  """The axis frame a data set's windows are expressed in, as its metadata records it."""
  axes = metadata.get('axes')
  if isinstance(axes, Mapping) and 'convention' in axes:
    conv = axes['convention']
    if isinstance(conv, Mapping):
      return 'body frame (' + ', '.join(f'{k} {v}' for k, v in sorted(conv.items())) + ')'
    return str(conv)
  if 'generator' in metadata:
    return 'synthetic segment frame (docs/synthetic_data.md)'
  return 'unknown'


def input_facts(ws: WindowSet) -> dict[str, Any]:
  """What a model trained on ``ws`` expects as input and returns (stored in its checkpoint)."""
  return {'sites': list(ws.sites), 'sample_rate_hz': float(ws.sample_rate_hz),
          'window_length': int(ws.window_length), 'use_gyr': ws.gyr is not None,
          'frame': axis_frame(ws.metadata), 'input_units': {'acc': 'm/s^2', 'gyr': 'rad/s'},
          'units': list(ws.target_units)}


def select_sites(ws: WindowSet, sites: Sequence[str]) -> WindowSet:
  """``ws`` with only ``sites``, in that order (names must exist; the caller checks)."""
  idx = [ws.sites.index(s) for s in sites]
  return dataclasses.replace(ws, acc=ws.acc[:, idx],
                             gyr=None if ws.gyr is None else ws.gyr[:, idx], sites=tuple(sites))


INPUT_NORMALIZATIONS = ('mean_std', 'scale')


def fit_input_stats(ws: WindowSet, idx: np.ndarray, chunk: int = 4096,
                    normalization: str = 'mean_std') -> dict[str, float]:
  """One mean / std per modality over the given (training) windows, as the reference does.

  In memory, over all of them at once; streamed (``RecordArray``), in chunks of windows merged
  with float64 accumulators (count, mean, sum of squared deviations), so memory stays bounded.

  ``normalization='scale'``: the same pooled std, with the mean recorded as 0, so normalising
  divides only (sklearn's ``StandardScaler(with_mean=False)``, whose scale is still the std
  about the mean: the masked-reconstruction reference, one scaler over all acc channels and one
  over all gyr channels).
  """
  if normalization not in INPUT_NORMALIZATIONS:
    raise ConfigError(f'config key ssl.normalization must be one of {INPUT_NORMALIZATIONS}, got '
                      f'{normalization!r}')
  stats = {}
  for name, x in (('acc', ws.acc), ('gyr', ws.gyr)):
    if x is None:
      continue
    parts = [idx] if isinstance(x, np.ndarray) else [
        idx[lo:lo + chunk] for lo in range(0, len(idx), chunk)]
    count, mean, m2 = 0, 0.0, 0.0
    for part in parts:
      sel = x[part].astype(np.float64)
      k, mu = sel.size, float(sel.mean())
      if count == 0 and len(parts) == 1:  # one chunk: exactly numpy's mean and std
        mean, std = mu, float(sel.std())
        break
      d = mu - mean
      m2 += float(((sel - mu) ** 2).sum()) + d * d * count * k / (count + k)
      mean += d * k / (count + k)
      count += k
    else:
      std = float(np.sqrt(m2 / max(count, 1)))
    stats[f'{name}_mean'] = float(mean) if normalization == 'mean_std' else 0.0
    stats[f'{name}_std'] = float(max(std, 1e-6))
  return stats


def fit_target_stats(ws: WindowSet, idx: np.ndarray) -> dict[str, list[float]]:
  """Target standardisation from the windows ``idx`` (the training subjects'): per scalar
  label its mean and std; for a curve target (``ws.curve``) per axis a scale only, as the
  masked reference does (StandardScaler(with_mean=False): mean recorded as 0, std of all the
  axis' samples about their mean; an absent axis gets 1) and ``present``."""
  y = ws.targets[idx].astype(np.float64)
  if ws.curve is not None:
    flat = y.reshape(-1, y.shape[-1])
    present = [bool(p) and bool(np.isfinite(flat[:, a]).any())
               for a, p in enumerate(ws.curve.get('present', [True] * flat.shape[1]))]
    std = [float(max(np.nanstd(flat[:, a]), 1e-6)) if p else 1.0
           for a, p in enumerate(present)]
    return {'mean': [0.0] * len(std), 'std': std, 'present': present}
  return {'mean': y.mean(0).tolist(), 'std': np.maximum(y.std(0), 1e-6).tolist()}


def batch_indices(step: int, batch_size: int, num_examples: int, seed: int) -> np.ndarray:
  """Example indices of training batch ``step``: a pure function of (step, seed)."""
  pos = step * batch_size + np.arange(batch_size, dtype=np.int64)
  epochs, offsets = np.divmod(pos, num_examples)
  out = np.empty(batch_size, np.int64)
  for e in np.unique(epochs):
    perm = np.random.default_rng([seed, int(e)]).permutation(num_examples)
    sel = epochs == e
    out[sel] = perm[offsets[sel]]
  return out


def gather(ws: WindowSet, idx: np.ndarray, with_targets: bool = True) -> dict[str, np.ndarray]:
  """A host batch (numpy) of the given windows; zeros stand in for missing gyr."""
  batch = {'acc': ws.acc[idx]}
  batch['gyr'] = ws.gyr[idx] if ws.gyr is not None else np.zeros_like(batch['acc'][..., :0])
  if with_targets:
    batch['targets'] = ws.targets[idx]
  return batch


def process_slice(batch_size: int) -> slice:
  """The part of a global batch this host feeds (multi-host: each process loads its own)."""
  n_proc, pid = jax.process_count(), jax.process_index()
  if batch_size % n_proc:
    raise ValueError(f'global batch {batch_size} not divisible by {n_proc} processes')
  per = batch_size // n_proc
  return slice(pid * per, (pid + 1) * per)


def to_global(batch: Mapping[str, np.ndarray], sharding) -> dict[str, jax.Array]:
  """Host-local numpy arrays -> global jax.Arrays sharded on the batch axis."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def train_iterator(ws: WindowSet, train_idx: np.ndarray, batch_size: int, seed: int,
                   start_step: int, num_steps: int, sharding,
                   prefetch: int = 2) -> Iterator[tuple[int, dict[str, jax.Array]]]:
  """Yields (step, device batch) for steps start_step .. num_steps-1, ``prefetch`` batches
  prepared ahead by grain threads (0: in the calling thread)."""
  train_idx = np.asarray(train_idx)
  local = process_slice(batch_size)

  def make(step):
    idx = train_idx[batch_indices(step, batch_size, len(train_idx), seed)[local]]
    return step, to_global(gather(ws, idx, with_targets=ws.targets.shape[1] > 0), sharding)

  if prefetch <= 0 or start_step >= num_steps:
    yield from map(make, range(start_step, num_steps))
    return
  import grain  # noqa: PLC0415

  steps = grain.MapDataset.range(start_step, num_steps).map(make)
  yield from steps.to_iter_dataset(grain.ReadOptions(num_threads=min(prefetch, 4),
                                                     prefetch_buffer_size=prefetch))


def data_bytes(ws: WindowSet) -> int:
  """Bytes of a window set's signals and labels (what ``device_arrays`` puts on each device)."""
  return sum(int(np.prod(x.shape)) * 4 for x in (ws.acc, ws.gyr, ws.targets) if x is not None)


def device_arrays(ws: WindowSet, sharding) -> dict[str, jax.Array]:
  """All windows as arrays replicated on the mesh of ``sharding`` (keys as ``gather``'s)."""
  rep = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
  host = gather(ws, slice(None), with_targets=ws.targets.shape[1] > 0)
  return jax.device_put({k: np.ascontiguousarray(v, np.float32) for k, v in host.items()}, rep)


def index_iterator(train_idx: np.ndarray, batch_size: int, seed: int, start_step: int,
                   num_steps: int, sharding) -> Iterator[tuple[int, jax.Array]]:
  """Yields (step, the batch's window indices [B] on the device): what ``train_iterator``
  would gather on the host, for data kept on the device (``device_arrays``)."""
  train_idx = np.asarray(train_idx)
  for step in range(start_step, num_steps):
    idx = train_idx[batch_indices(step, batch_size, len(train_idx), seed)]
    yield step, jax.device_put(idx.astype(np.int32), sharding)


def padded_batches(idx: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, int]]:
  """``idx`` in order as fixed-size index batches, the last padded by repeating an index:
  (indices [batch_size], number of real ones). One batch shape -> one compilation."""
  idx = np.asarray(idx)
  for lo in range(0, len(idx), batch_size):
    part = idx[lo:lo + batch_size]
    yield np.concatenate([part, np.repeat(part[-1:], batch_size - len(part))]), len(part)


def eval_batches(ws: WindowSet, idx: np.ndarray, batch_size: int, sharding,
                 with_index: bool = False) -> Iterator[tuple[dict[str, jax.Array], int]]:
  """Fixed-size batches over ``idx`` in order; the last is padded, with ``weights`` 0 on pads.
  ``with_index``: also ``index`` [B] int32, each window's index in ``ws`` (per-window random
  draws that do not depend on the batch size).

  Yields (device batch, number of real windows in it). One batch shape -> one compilation.
  """
  local = process_slice(batch_size)
  for padded, n_real in padded_batches(idx, batch_size):
    batch = gather(ws, padded, with_targets=ws.targets.shape[1] > 0)
    batch['weights'] = (np.arange(batch_size) < n_real).astype(np.float32)
    if with_index:
      batch['index'] = padded.astype(np.int32)
    yield to_global({k: v[local] for k, v in batch.items()}, sharding), n_real


