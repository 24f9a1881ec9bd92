"""The pre-trained encoder as a plain JAX function, and the ``embed`` stage built on it.

  apply_fn, params, info = ssl_imu_jax.load_encoder('runs/pretrain_tiny/pretrain/checkpoints')
  emb = jax.jit(apply_fn)(params, acc, gyr)  # [B, N, T, 3] m/s^2, rad/s -> [B, N, 2D]

``params`` is an ordinary Flax variables dict ({'params', 'batch_stats'} of the encoder(s) only),
so it can be fed to ``jax.grad`` or an optax optimiser of the caller's own code.

A Transformer checkpoint (masked reconstruction, or NCE with ``model.backbone='transformer'``)
loads too: its output is one vector per window, the backbone's tokens averaged over time,
[B, N, T, 3] -> [B, E] (E = width for the masked model's joint tokens; 2·width, acc then gyr, for
the NCE model's tokens per modality): ``info['per_site']`` is False and ``info['sites']`` are
the N sites it takes, in order (its tokens hold every site's channels).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssl_imu_jax import files
from ssl_imu_jax.errors import ConfigError
from ssl_imu_jax.models import ImuEncoder
from ssl_imu_jax.models.ssl_imu import (
  ENCODERS,
  dtype_from_name,
  embed_dim,
  is_transformer,
  transformer_sizes,
)
from ssl_imu_jax.models.transformer import TransformerEncoder
from ssl_imu_jax.training import checkpointing

KINDS = ('pretrain', 'finetune')
def _saved_encoders(ckpt_dir: str, step: int) -> tuple[list[str], bool]:
  """Which encoders the saved state holds and whether it has BatchNorm statistics (no arrays)."""
  tree = checkpointing.state_metadata(ckpt_dir, step)
  params = dict(tree.get('params') or {})
  names = [k for k in ENCODERS if k in params]
  if 'acc_encoder' not in names and 'encoder' not in names:
    raise ValueError(f'{ckpt_dir}/{step}: the saved params hold {sorted(params)}, no encoder; '
                     f'load_encoder needs an ssl_imu_jax pre-training (or fine-tuning) checkpoint')
  return names, bool(tree.get('batch_stats'))


def _data_facts(meta: dict[str, Any], where: str) -> dict[str, Any]:
  """Data set name, rate, window length and sites the encoder was trained on."""
  if meta['kind'] == 'pretrain':
    d = meta['dataset']
    return {'dataset': d['name'], 'split': d.get('split', ''),
            'sample_rate_hz': float(d['sample_rate_hz']), 'window_length': int(d['window_length']),
            'sites': list(d['sites'])}
  data = meta.get('config', {}).get('data')
  if not data:
    raise ConfigError(f'{where}: fine-tuning checkpoint without config.data in its meta record')
  return {'dataset': data['dataset'], 'split': data.get('split', ''),
          'sample_rate_hz': float(data['sample_rate_hz']),
          'window_length': int(data['window_length']),
          'sites': list(data.get('imu_sites') or []) or None}  # None: all sites of the data set


def load_encoder(checkpoint_dir: str, step: int | None = None
                 ) -> tuple[Callable[..., jax.Array], dict[str, Any], dict[str, Any]]:
  """Loads the trained encoders of a checkpoint as ``(apply_fn, params, info)``.

  Args:
    checkpoint_dir: a run directory, its ``checkpoints`` directory, or one step directory
      ``checkpoints/<step>``. Pre-training checkpoints are the intended input; a fine-tuning
      checkpoint works too (its encoders as fine-tuned, with its fold's normalisation; an
      accelerometer-only fine-tune has no gyr encoder). A Transformer checkpoint (either
      objective) gives one embedding per window (below).
    step: which step (default: the step directory given, else the latest).

  Returns:
    apply_fn: ``apply_fn(params, acc, gyr=None)``, pure and jit-able. ``acc`` / ``gyr`` are
      [batch, n_imu, T, 3] in physical units (m/s^2 specific force, rad/s, sensor frame, as in
      data_prep/records.py); the stored normalisation is applied inside. Returns per-IMU
      embeddings [batch, n_imu, 2*D] (acc embedding then gyr embedding), or [batch, n_imu, D] from
      the acc encoder alone when ``gyr`` is None. BatchNorm runs in inference mode, so each window
      and each IMU is embedded independently of the rest of the batch. ``n_imu`` may differ from
      the number of sites pre-trained on (the weights are shared across sites), but an embedding
      is only as meaningful as the placement was represented in pre-training (``info['sites']``).
      T must equal ``info['window_length']`` at ``info['sample_rate_hz']``; a wrong shape is a
      ValueError (at trace time under jit) naming the expected and the given shapes.
      A Transformer (``info['encoder']['backbone'] == 'transformer'``): ``acc`` / ``gyr`` are
      [batch, n_imu, T, 3] of exactly ``info['sites']`` in that order (n_imu fixed), and the
      output is [batch, E], the tokens [batch, T, width] averaged over time: E = width
      ('joint' tokens: acc and gyr channels of every site in one token; gyr is required when
      the checkpoint's tokens hold gyr, i.e. ``info['has_gyr']``), or 2·width ('separate', the
      NCE backbone: the acc tokens' mean then the gyr tokens' mean; width from acc alone when
      ``gyr`` is None). No BatchNorm; dropout is off.
    params: {'params': {...}, 'batch_stats': {...}} of the encoder(s) only (``encoder`` when
      shared by acc and gyr, else ``acc_encoder`` [and ``gyr_encoder``]; a Transformer:
      {'params': {'transformer': ...}} without its reconstruction head);
      the projection heads and optimiser state are not loaded.
    info: 'kind', 'checkpoint_dir', 'step', 'config' (the training config as a dict), 'dataset',
      'split', 'sample_rate_hz', 'window_length', 'sites' (None for a fine-tuning checkpoint
      that used all sites of its data set), 'normalization' (acc_mean, acc_std, gyr_mean,
      gyr_std), 'encoder' (the encoder config as a dict), 'embed_dim' (D), 'has_gyr',
      'output_dim', 'compute_dtype', 'per_site' (True: [batch, n_imu, ...] per IMU; False: a
      Transformer's [batch, E] per window), 'objective'.
  """
  ckpt_dir, dir_step = checkpointing.resolve_checkpoint(checkpoint_dir)
  if step is not None and dir_step is not None and int(step) != dir_step:
    raise ValueError(f'load_encoder: step={step} contradicts the step directory {checkpoint_dir}')
  step = dir_step if step is None else int(step)
  saved_steps = sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit())
  if step is not None and step not in saved_steps:
    raise FileNotFoundError(f'{ckpt_dir}: no checkpoint for step {step}; saved steps: '
                            f'{saved_steps}')
  step, meta = checkpointing.read_meta(ckpt_dir, step)
  where = f'{ckpt_dir}/{step}'
  kind = meta.get('kind')
  if kind not in KINDS:
    raise ValueError(f'{where}: a {kind!r} checkpoint; load_encoder needs one of {KINDS} '
                     f'(a pre-training checkpoint is the intended input)')
  for key in ('encoder', 'normalization', 'config'):
    if key not in meta:
      raise ValueError(f'{where}: the meta record has no {key!r} entry')
  if is_transformer(meta['encoder']):
    return _load_transformer(ckpt_dir, step, meta, where)
  names, has_bstats = _saved_encoders(ckpt_dir, step)
  # A shared encoder embeds gyr whenever the run normalised gyr (it saw gyroscope data).
  has_gyr = 'gyr_encoder' in names or ('encoder' in names and
                                       'gyr_mean' in meta['normalization'])
  facts = _data_facts(meta, where)
  compute_dtype = meta['config'].get('train', {}).get('compute_dtype', 'float32')
  enc_cfg = ml_collections.ConfigDict(meta['encoder'])
  module = ImuEncoder(enc_cfg, has_gyr, dtype_from_name(compute_dtype))

  x = jax.ShapeDtypeStruct((1, 1, facts['window_length'], 3), jnp.float32)
  abstract = jax.eval_shape(lambda k, a, g: module.init(k, a, g, False), jax.random.key(0), x, x)
  target = {'params': abstract['params']}
  if has_bstats and 'batch_stats' in abstract:
    target['batch_stats'] = abstract['batch_stats']
  params = _restore_float32(ckpt_dir, step, target)
  norm = _normalization(meta, has_gyr, where)
  d = embed_dim(enc_cfg)
  info = {
      'kind': kind, 'checkpoint_dir': ckpt_dir, 'step': int(step), 'config': meta['config'],
      **facts, 'normalization': norm, 'encoder': enc_cfg.to_dict(), 'embed_dim': d,
      'has_gyr': has_gyr, 'output_dim': 2 * d if has_gyr else d, 'compute_dtype': compute_dtype,
      'per_site': True, 'objective': checkpointing.objective(meta),
  }
  t, rate = facts['window_length'], facts['sample_rate_hz']

  def apply_fn(params, acc, gyr=None):
    """[batch, n_imu, T, 3] acc (m/s^2) [, gyr (rad/s)] -> [batch, n_imu, 2D] (or [.., D])."""
    return _apply(module, norm, t, rate, has_gyr, params, acc, gyr)

  return apply_fn, params, info


def _restore_float32(ckpt_dir: str, step: int, abstract: dict[str, Any]) -> dict[str, Any]:
  """The checkpoint's subtrees shaped as ``abstract``, onto this process's first device (whatever
  mesh the checkpoint was saved from), in float32."""
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
                        abstract)
  restored = checkpointing.restore_subtrees(ckpt_dir, step, target)
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), dict(restored))


def _normalization(meta: dict[str, Any], has_gyr: bool, where: str) -> dict[str, float]:
  """The checkpoint's input normalisation, checked to hold every modality the encoder takes."""
  norm = {k: float(v) for k, v in meta['normalization'].items()}
  needed = ['acc_mean', 'acc_std'] + (['gyr_mean', 'gyr_std'] if has_gyr else [])
  missing = [k for k in needed if k not in norm]
  if missing:
    raise ValueError(f'{where}: normalization record lacks {missing}')
  return norm


def _load_transformer(ckpt_dir: str, step: int, meta: dict[str, Any], where: str):
  """``load_encoder`` of a Transformer checkpoint: ``TransformerEncoder`` on {'params':
  {'transformer'}} (the reconstruction head and projections are not loaded)."""
  tokens = [str(t) for t in meta.get('tokens') or []]
  if not tokens:
    raise ValueError(f'{where}: a Transformer checkpoint without its token channels '
                     f"(meta['tokens'])")
  sites = list(dict.fromkeys(t.split('/')[1] for t in tokens if t.startswith('acc/')))
  has_gyr = any(t.startswith('gyr/') for t in tokens)
  facts = _data_facts(meta, where)
  facts['sites'] = sites  # the tokens fix the sites and their order
  compute_dtype = meta['config'].get('train', {}).get('compute_dtype', 'float32')
  sizes = transformer_sizes(meta['encoder'])
  module = TransformerEncoder(**sizes, dtype=dtype_from_name(compute_dtype))
  t = facts['window_length']
  x = jax.ShapeDtypeStruct((1, len(sites), t, 3), jnp.float32)
  abstract = jax.eval_shape(lambda k, a, g: module.init(k, a, g, False), jax.random.key(0), x,
                            x if has_gyr else None)
  params = _restore_float32(ckpt_dir, step, {'params': abstract['params']})
  norm = _normalization(meta, has_gyr, where)
  width = int(sizes['width'])
  separate = sizes['modalities'] == 'separate'
  info = {
      'kind': meta['kind'], 'checkpoint_dir': ckpt_dir, 'step': int(step),
      'config': meta['config'], **facts, 'normalization': norm,
      'encoder': dict(meta['encoder']), 'embed_dim': width, 'has_gyr': has_gyr,
      'output_dim': 2 * width if separate and has_gyr else width,
      'compute_dtype': compute_dtype, 'per_site': False, 'tokens': tokens,
      'objective': checkpointing.objective(meta),
  }
  rate = facts['sample_rate_hz']

  def apply_fn(params, acc, gyr=None):
    """[batch, n_imu, T, 3] acc (m/s^2) [, gyr (rad/s)] of ``info['sites']`` -> [batch, E]."""
    acc = jnp.asarray(acc, jnp.float32)
    check_window_shape('acc', acc.shape, t, rate)
    if acc.shape[1] != len(sites):
      raise ValueError(f'acc: this Transformer takes the {len(sites)} sites {sites} in that '
                       f'order; expected [batch, {len(sites)}, {t}, 3], got shape '
                       f'{tuple(acc.shape)}')
    acc = (acc - norm['acc_mean']) / norm['acc_std']
    if gyr is None:
      if has_gyr and not separate:
        raise ValueError('gyr: this Transformer\'s tokens hold every site\'s gyr channels too '
                         "(modalities 'joint'); call apply_fn(params, acc, gyr)")
    else:
      if not has_gyr:
        raise ValueError('gyr: this Transformer was pre-trained without gyroscopes; call '
                         'apply_fn(params, acc) with gyr=None')
      gyr = jnp.asarray(gyr, jnp.float32)
      if gyr.shape != acc.shape:
        raise ValueError(f'gyr: shape {tuple(gyr.shape)} differs from acc shape '
                         f'{tuple(acc.shape)}; both must be [batch, {len(sites)}, {t}, 3]')
      gyr = (gyr - norm['gyr_mean']) / norm['gyr_std']
    return module.apply(params, acc, gyr, False)

  return apply_fn, params, info


def check_window_shape(name: str, shape: tuple[int, ...], window_length: int,
                       sample_rate_hz: float) -> None:
  """A [batch, n_imu, T, 3] window of the encoder's length, or a ValueError saying what is wrong."""
  want = f'[batch, n_imu, {window_length}, 3]'
  if len(shape) != 4:
    raise ValueError(f'{name}: expected a rank-4 array {want}, got shape {tuple(shape)}')
  if shape[-1] != 3:
    raise ValueError(f'{name}: last axis must hold the 3 sensor axes; expected {want}, got shape '
                     f'{tuple(shape)}')
  if shape[2] != window_length:
    raise ValueError(f'{name}: the encoder was trained on {window_length}-sample windows at '
                     f'{sample_rate_hz:g} Hz; expected {want}, got shape {tuple(shape)} '
                     f'(resample / re-window the data)')


def _apply(module, norm, window_length, sample_rate_hz, has_gyr, params, acc, gyr=None):
  acc = jnp.asarray(acc, jnp.float32)
  check_window_shape('acc', acc.shape, window_length, sample_rate_hz)
  acc = (acc - norm['acc_mean']) / norm['acc_std']
  if gyr is not None:
    if not has_gyr:
      raise ValueError('gyr: this checkpoint has no gyr encoder (accelerometer-only fine-tune); '
                       'call apply_fn(params, acc) with gyr=None')
    gyr = jnp.asarray(gyr, jnp.float32)
    check_window_shape('gyr', gyr.shape, window_length, sample_rate_hz)
    if gyr.shape != acc.shape:
      raise ValueError(f'gyr: shape {tuple(gyr.shape)} differs from acc shape {tuple(acc.shape)}; '
                       f'both must be [batch, n_imu, {window_length}, 3] of the same windows')
    gyr = (gyr - norm['gyr_mean']) / norm['gyr_std']
  h_acc, h_gyr = module.apply(params, acc, gyr, False)
  return h_acc if gyr is None else jnp.concatenate([h_acc, h_gyr], axis=-1)


def apply_in_batches(apply_fn, params, acc: np.ndarray, gyr: np.ndarray | None,
                     batch_size: int) -> np.ndarray:
  """``apply_fn(params, acc, gyr)`` over all windows in fixed-size batches (the last one padded:
  one compilation); embeddings of ``load_encoder``, predictions of ``load_regressor``."""
  if batch_size <= 0:
    raise ConfigError(f'config key batch_size must be positive, got {batch_size}')
  from ssl_imu_jax.data.input_pipeline import padded_batches  # noqa: PLC0415

  fn = jax.jit(apply_fn)
  out = []
  for idx, n_real in padded_batches(np.arange(len(acc)), batch_size):
    e = fn(params, acc[idx], None if gyr is None else gyr[idx])
    out.append(np.asarray(jax.device_get(e))[:n_real])
  return np.concatenate(out)


def _data_config(config, info: dict[str, Any]) -> ml_collections.ConfigDict:
  """``config.data`` with rate and window length from the checkpoint where left at 0."""
  data = ml_collections.ConfigDict(config.data.to_dict())
  for key, have in (('sample_rate_hz', info['sample_rate_hz']),
                    ('window_length', info['window_length'])):
    value = data[key]
    if not value:
      data[key] = type(value)(have)
    elif abs(float(value) - float(have)) > 1e-6:
      raise ConfigError(f'config key data.{key}={value} but the encoder in '
                        f'{info["checkpoint_dir"]}/{info["step"]} was trained with {have}; '
                        f'leave it '
                        f'at 0 to use the checkpoint\'s value')
  return data


def _layout(info: dict[str, Any], d: int, with_gyr: bool) -> str:
  """What the last axis of the embed stage's embeddings holds."""
  if info['per_site']:
    return (f'[..., :{d}] acc encoder, [..., {d}:] gyr encoder' if with_gyr
            else f'[..., :{d}] acc encoder only')
  if info['encoder'].get('modalities', 'joint') == 'separate':
    return (f"[n, :{d}] the acc tokens' mean over time, [n, {d}:] the gyr tokens'" if with_gyr
            else f"[n, :{d}] the acc tokens' mean over time")
  return f"[n, {d}] the Transformer's tokens (every site's channels) averaged over time"


def embed_stage(config: ml_collections.ConfigDict, workdir: str) -> dict[str, str]:
  r"""Embeds one split of a data set with a checkpoint's encoder; writes numpy files.

    python main.py --config=configs/embed.py:tiny --workdir=runs/embed_tiny \
        --config.checkpoint=runs/pretrain_tiny/pretrain/checkpoints \
        --config.data.dataset=synthetic_walking_grf

  Files in ``<workdir>/embed/``, prefix ``<dataset>_<split>_``: ``embeddings.npy`` float32
  [n, n_imu, 2D] (acc then gyr embedding per IMU; [n, n_imu, D] for accelerometer-only data),
  ``subject_id.npy`` int64 [n], ``trial.npy`` int64 [n], ``targets.npy`` float32 [n, K] (labelled
  sets only) and ``embeddings.json`` (shapes, sites, target names and units, checkpoint, step).
  Returns {name: path}.
  """
  from ssl_imu_jax.data import input_pipeline  # noqa: PLC0415

  apply_fn, params, info = load_encoder(config.checkpoint)
  data = _data_config(config, info)
  if not info['per_site'] and not data.imu_sites:  # a Transformer takes its own sites, in order
    data.imu_sites = tuple(info['sites'])
  path = input_pipeline.ensure_built(data, input_pipeline.resolve_data_dir(config, workdir))
  ws = input_pipeline.load_split(path, data.split, data.imu_sites, data.use_gyr)
  input_pipeline.check_matches(ws, data)
  gyr = ws.gyr if info['has_gyr'] else None
  emb = apply_in_batches(apply_fn, params, ws.acc, gyr, int(config.batch_size))

  out_dir = os.path.join(workdir, 'embed')
  os.makedirs(out_dir, exist_ok=True)
  prefix = os.path.join(out_dir, f'{data.dataset}_{data.split}_'.replace(os.sep, '_'))
  arrays = {'embeddings': emb, 'subject_id': ws.subject_id, 'trial': ws.trial}
  if ws.target_names:
    arrays['targets'] = ws.targets
  paths = {}
  for name, arr in arrays.items():
    paths[name] = f'{prefix}{name}.npy'
    files.save_npy_atomic(paths[name], arr)
  d = info['embed_dim']
  description = {
      'files': {k: os.path.basename(v) for k, v in paths.items()},
      'shapes': {k: list(v.shape) for k, v in arrays.items()},
      'embedding_layout': _layout(info, d, gyr is not None),
      'dataset': data.dataset, 'split': data.split, 'dataset_path': os.path.abspath(path),
      'sites': list(ws.sites), 'sample_rate_hz': ws.sample_rate_hz,
      'window_length': ws.window_length,
      'targets': dict(zip(ws.target_names, ws.target_units, strict=True)),
      'subjects': sorted(set(ws.subject_id.tolist())),
      'checkpoint_dir': info['checkpoint_dir'], 'step': info['step'], 'kind': info['kind'],
      'encoder_sites': info['sites'], 'normalization': info['normalization'],
  }
  paths['info'] = f'{prefix}embeddings.json'
  files.write_json_atomic(paths['info'], description)
  for k, v in paths.items():
    print(f'{k}: {v}')
  return paths
