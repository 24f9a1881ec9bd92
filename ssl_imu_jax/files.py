"""Atomic file writes (a temporary file in the same directory, fsynced, then renamed): a reader
never sees half a file, and an interrupted write leaves the previous version in place."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np


def write_atomic(path: str, write: Callable[[str], None]) -> None:
  """``write(tmp_path)`` fills a temporary file that then replaces ``path``."""
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  root, ext = os.path.splitext(path)
  tmp = f'{root}.tmp.{os.getpid()}{ext}'  # keeps the extension (np.save appends .npy)
  try:
    write(tmp)
    with open(tmp, 'rb') as f:
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_text_atomic(path: str, text: str) -> None:
  def write(tmp):
    with open(tmp, 'w', encoding='utf-8') as f:
      f.write(text)

  write_atomic(path, write)


def write_json_atomic(path: str, obj: Any) -> None:
  write_text_atomic(path, json.dumps(jsonable(obj), indent=2, sort_keys=True))


def save_npy_atomic(path: str, arr: np.ndarray) -> None:
  write_atomic(path, lambda tmp: np.save(tmp, arr))


def jsonable(obj: Any) -> Any:
  """numpy scalars and arrays (nested in dicts / lists) as plain JSON types."""
  if isinstance(obj, dict):
    return {str(k): jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [jsonable(v) for v in obj]
  if isinstance(obj, np.integer):
    return int(obj)
  if isinstance(obj, np.floating):
    return float(obj)
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  return obj


def write_npz_atomic(path: str, **arrays: np.ndarray) -> None:
  """``np.savez`` of ``arrays`` to ``path`` (ending .npz), atomically."""
  write_atomic(path, lambda tmp: np.savez(tmp, **arrays))
