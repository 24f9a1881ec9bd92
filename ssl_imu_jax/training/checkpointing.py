"""Orbax checkpoints: the train state plus a JSON record (config, step, data position, stats).

Layout: ``<run>/checkpoints/<step>/{state,meta}`` and ``<run>/checkpoints/config.json``.
Orbax writes each step into a temporary directory and renames it when complete, so a killed run
never leaves a checkpoint that restores half-written.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from ssl_imu_jax import files
from ssl_imu_jax.errors import ConfigError

CONFIG_FILE = 'config.json'


def objective(meta: dict[str, Any]) -> str:
  """The pre-training objective a checkpoint's meta record names ('nce' for records written
  before ``ssl.objective`` existed, and for fine-tuning checkpoints)."""
  if meta.get('objective'):
    return str(meta['objective'])
  return str(((meta.get('config') or {}).get('ssl') or {}).get('objective', 'nce'))


def require_nce(meta: dict[str, Any], where: str, use: str) -> None:
  """A one-line ConfigError when the checkpoint at ``where`` was not pre-trained with NCE (the
  budget curve, ``use``, plots held-out retrieval per step, which only NCE logs). Either backbone
  passes; ``load_encoder``, releases and fine-tuning take every objective."""
  obj = objective(meta)
  if obj != 'nce':
    raise ConfigError(f"{where}: pre-trained with ssl.objective={obj!r}, which logs no held-out "
                      f"retrieval; {use} needs an ssl.objective='nce' checkpoint (a masked one "
                      f'fine-tunes, loads with load_encoder and releases)')


class Checkpointer:
  """Save / restore of one run's checkpoints with an Orbax ``CheckpointManager``."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._mngr = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._mngr.all_steps())

  def delete(self, step: int) -> None:
    self._mngr.wait_until_finished()
    self._mngr.delete(step)

  def save(self, step: int, state: Any, meta: dict[str, Any], wait: bool = False) -> None:
    self._mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(files.jsonable(meta))),
        force=True)
    if wait:
      self._mngr.wait_until_finished()

  def restore(self, target_state: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
    """Restores into the structure, dtypes and shardings of ``target_state``."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {self.directory}')
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_state)
    try:
      out = self._mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    except (ValueError, KeyError) as e:
      raise ValueError(f'checkpoint {self.directory}/{step} does not match the model built '
                       f'from the config: {e}') from e
    return out['state'], dict(out['meta'])

  def write_config(self, config_json: str) -> None:
    files.write_text_atomic(os.path.join(self.directory, CONFIG_FILE), config_json)

  def wait(self) -> None:
    self._mngr.wait_until_finished()

  def close(self) -> None:
    self._mngr.wait_until_finished()
    self._mngr.close()


def weights_root() -> str:
  """The released weights folder: the repository's ``weights/`` (package ``ssl_imu_jax.weights``
  when installed)."""
  import importlib.resources  # noqa: PLC0415

  return str(importlib.resources.files('ssl_imu_jax.weights'))


def release_name(dataset: str, sample_rate_hz: float, window_length: int, mix: str = '',
                 objective: str = 'nce', backbone: str = 'resnet') -> str:
  """The name of a released encoder: ``<pre-training data set>[+<pooled one>]_<rate>hz_<T>``
  for the NCE ResNet, then ``_masked`` for the masked Transformer or ``_nce_transformer`` for the
  NCE Transformer."""
  corpus = f'{dataset}+{mix}' if mix else dataset
  suffix = ('_masked' if objective == 'masked' else
            '_nce_transformer' if backbone == 'transformer' else '')
  return f'{corpus}_{float(sample_rate_hz):g}hz_{int(window_length)}{suffix}'


def released_names() -> list[str]:
  root = weights_root()
  return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d, 'checkpoints')))


def locate(path: str) -> str:
  """A path as given, or, when no such directory exists and it names a release (``weights/<name>``
  or ``<name>``), that release's folder."""
  path = os.path.expanduser(str(path))
  if os.path.isdir(path) or not path:
    return path
  name = path[len('weights/'):] if path.startswith('weights/') else path
  cand = os.path.join(weights_root(), name.rstrip('/'))
  return cand if os.path.isdir(os.path.join(cand, 'checkpoints')) else path


def params_digest(tree: Any) -> str:
  """sha256 over every array of ``tree`` (its path, dtype, shape and bytes), in path order."""
  h = hashlib.sha256()
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  for path, leaf in sorted(leaves, key=lambda kv: jax.tree_util.keystr(kv[0])):
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(f'{jax.tree_util.keystr(path)}|{a.dtype.str}|{a.shape}|'.encode())
    h.update(a.tobytes())
  return h.hexdigest()


def find_checkpoint_dir(path: str) -> str:
  """Accepts a run dir (with ``checkpoints/``), the checkpoints dir itself, or a release name."""
  path = os.path.abspath(locate(path))
  for cand in (path, os.path.join(path, 'checkpoints'), os.path.join(path, 'pretrain',
                                                                     'checkpoints')):
    if os.path.isdir(cand) and any(d.isdigit() for d in os.listdir(cand)):
      return cand
  raise FileNotFoundError(f'config key init_from: no Orbax checkpoint under {path} (expected '
                          f'<dir>/<step>/ or <dir>/checkpoints/<step>/ from a pretrain run, or '
                          f'a released weights name: {", ".join(released_names()) or "none"})')


_LAYOUTS = ('<run>, <run>/checkpoints or <run>/checkpoints/<step> of a pretrain (or finetune) run')


def resolve_checkpoint(path: str) -> tuple[str, int | None]:
  """(checkpoints dir, step or None = latest) from a run, checkpoints or step directory."""
  path = os.path.abspath(locate(path))
  if not os.path.isdir(path):
    raise FileNotFoundError(f'{path}: no such directory; expected {_LAYOUTS} or a released '
                            f'weights name ({", ".join(released_names()) or "none"})')
  base = os.path.basename(path)
  if base.isdigit() and os.path.exists(os.path.join(path, '_CHECKPOINT_METADATA')):
    if not os.path.isdir(os.path.join(path, 'state')):
      raise FileNotFoundError(f'{path}: checkpoint step without a state/ directory (incomplete '
                              f'or not an ssl_imu_jax checkpoint)')
    return os.path.dirname(path), int(base)
  try:
    return find_checkpoint_dir(path), None
  except FileNotFoundError:
    raise FileNotFoundError(f'{path}: no Orbax checkpoint found; expected {_LAYOUTS}') from None


def read_meta(ckpt_dir: str, step: int | None = None) -> tuple[int, dict[str, Any]]:
  """(step, meta) of the latest (or given) checkpoint without restoring arrays."""
  mngr = ocp.CheckpointManager(ckpt_dir)
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f'no checkpoint in {ckpt_dir}')
  meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
  mngr.close()
  return step, dict(meta)


def state_metadata(ckpt_dir: str, step: int) -> dict[str, Any]:
  """The saved state's tree of array metadata (shapes, dtypes), no arrays read."""
  mngr = ocp.CheckpointManager(ckpt_dir, item_handlers={
      'state': ocp.PyTreeCheckpointHandler(), 'meta': ocp.JsonCheckpointHandler()})
  try:
    return dict(mngr.item_metadata(step)['state'].tree)
  finally:
    mngr.close()


def restore_raw(ckpt_dir: str, step: int | None = None) -> dict[str, Any]:
  """The saved train state as a plain dict of numpy arrays (no target needed), whatever devices
  it was saved from (a pod's checkpoint restores on a laptop)."""
  if step is None:
    step, _ = read_meta(ckpt_dir)
  tree = state_metadata(ckpt_dir, step)
  as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  mngr = ocp.CheckpointManager(ckpt_dir)
  try:
    out = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(restore_args=as_numpy)))
  finally:
    mngr.close()
  return jax.tree.map(np.asarray, dict(out['state']))


def restore_subtrees(ckpt_dir: str, step: int, target: dict[str, Any]) -> dict[str, Any]:
  """Restores only the subtrees of the saved state named in ``target`` (e.g. the encoders).

  ``target`` mirrors the saved TrainState fields, e.g. {'params': {'acc_encoder': ...},
  'batch_stats': {...}}; shapes must match exactly, otherwise a ValueError names the mismatch.
  """
  mngr = ocp.CheckpointManager(ckpt_dir)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  try:
    out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
        partial_restore=True)))
  except (ValueError, KeyError) as e:
    raise ValueError(f'checkpoint {ckpt_dir}/{step}: its encoder does not match the model built '
                     f'from the config: {e}') from e
  finally:
    mngr.close()
  restored = out['state']
  for path, want, got in _paired_leaves(target, restored):
    if tuple(np.shape(got)) != tuple(np.shape(want)):
      raise ValueError(f'checkpoint {ckpt_dir}/{step}: {path} has shape {np.shape(got)}, the '
                       f'model expects {np.shape(want)}')
  return restored


def _paired_leaves(a, b):
  la = jax.tree_util.tree_flatten_with_path(a)[0]
  lb = jax.tree_util.tree_flatten_with_path(b)[0]
  if len(la) != len(lb):
    raise ValueError(f'restored tree has {len(lb)} leaves, expected {len(la)}')
  for (pa, va), (_, vb) in zip(la, lb, strict=True):
    yield jax.tree_util.keystr(pa), va, vb
