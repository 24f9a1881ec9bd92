"""What a build was made from: the source fingerprint that names and guards every record folder.

A builder that reads files (one with ``MANUAL_DOWNLOAD_INSTRUCTIONS``) is fingerprinted by its
resolved ``manual_dir``, the relative path, size and modification time (ns) of every file it
reads (``source_files``: the builder's ``SOURCE_PATTERNS`` or its own method), the SHA-256 of
the lab_files schema, and the builder options. Cheap: one ``stat`` per file, a content hash of
the schema only. The short ``hash`` of all that ends the record folder's name (``_src-<hash>``),
so two sources, or one source before and after a file changed in place, never share a folder.

Synthetic builders read no files: their identity is their config (size, seed, options), their
folder names carry no source hash and do not change.

``id`` says whose walkers the subjects are, coarser than ``hash``: the resolved folder for a
builder that reads files (subject 3 of /data/ipol is the same person after a file there is
re-exported; subject 3 of /data/other is someone else), the data set, size, seed and options for
a generated set. A model records the ``id`` of its training records; evaluate / predict compare
ids to tell whether a subject id names a training subject (ssl_imu_jax/deploy/predict.py).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Options that change how a build runs, not what it contains.
RUNTIME_OPTIONS = frozenset({'beam', 'strict'})
# Options covered by the fingerprint itself, kept out of the folder name (absolute paths).
PATH_OPTIONS = frozenset({'schema', 'schema_sha'})
# Options that add labels to the same windows of the same subjects: part of a build's identity
# (folder name, ``options``), not of whose subjects they are (``id``).
LABEL_OPTIONS = frozenset({'curves'})


def reads_files(builder_cls) -> bool:
  """Whether the builder is built from files in manual_dir (real data sets, lab_files)."""
  return bool(getattr(builder_cls, 'MANUAL_DOWNLOAD_INSTRUCTIONS', None))


def _digest(obj: Any, n: int) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def _identity_options(options: Mapping[str, Any]) -> dict[str, Any]:
  return {str(k): v for k, v in dict(options).items()
          if k not in RUNTIME_OPTIONS and k not in PATH_OPTIONS}


def subject_source_id(dataset: str, manual_dir: str | None, size: str = '', seed: int = 0,
                      options: Mapping[str, Any] | None = None, files: bool | None = None) -> str:
  """Who the subjects of a build are (module docstring): 12 hex digits."""
  if files is None:
    import data_prep  # noqa: PLC0415

    files = reads_files(data_prep.get_builder_class(dataset))
  if files:
    root = os.path.realpath(os.path.expanduser(manual_dir)) if manual_dir else ''
    return _digest({'manual_dir': root}, 12)
  opts = {k: v for k, v in _identity_options(options or {}).items() if k not in LABEL_OPTIONS}
  return _digest({'dataset': dataset, 'size': size, 'seed': int(seed), 'options': opts}, 12)


def list_files(root: Path, patterns) -> list[Path]:
  """Files under ``root`` matching the glob ``patterns`` (folders matched are walked); hidden
  files and folders are left out."""
  out: set[Path] = set()
  for pat in patterns:
    for p in root.glob(str(pat)):
      if any(part.startswith('.') for part in p.relative_to(root).parts):
        continue
      if p.is_file():
        out.add(p)
      elif p.is_dir():
        out.update(q for q in p.rglob('*') if q.is_file() and not any(
            part.startswith('.') for part in q.relative_to(root).parts))
  return sorted(out)


def fingerprint(builder_cls, manual_dir: str | None, size: str, seed: int,
                options: Mapping[str, Any]) -> dict[str, Any]:
  """The source record of one build (written to metadata.json under ``source``)."""
  dataset = builder_cls.name
  files = reads_files(builder_cls)
  src: dict[str, Any] = {'dataset': dataset, 'reads_files': files,
                         'id': subject_source_id(dataset, manual_dir, size, seed, options, files)}
  if not files:
    src.update(size=size, seed=int(seed), options=_identity_options(options), hash='')
    return src
  root = Path(os.path.realpath(os.path.expanduser(manual_dir)))
  listed = []
  for p in builder_cls.source_files(root, dict(options)):
    st = p.stat()
    rel = os.path.relpath(p, root)
    listed.append([rel, int(st.st_size), int(st.st_mtime_ns)])
  schema = options.get('schema')
  schema_sha = (hashlib.sha256(Path(str(schema)).read_bytes()).hexdigest()
                if schema and Path(str(schema)).is_file() else '')
  src.update(manual_dir=str(root), files=listed, schema_sha256=schema_sha,
             options={k: v for k, v in _identity_options(options).items()})
  src['hash'] = _digest({k: src[k] for k in ('manual_dir', 'files', 'schema_sha256', 'options')},
                        8)
  src['num_files'] = len(listed)
  src['bytes'] = sum(f[1] for f in listed)
  return src


def changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
  """What differs between two fingerprints of one folder, one phrase per file (or the schema)."""
  a = {f[0]: f[1:] for f in old.get('files') or []}
  b = {f[0]: f[1:] for f in new.get('files') or []}
  out = []
  for rel in sorted(set(a) | set(b)):
    if rel not in b:
      out.append(f'{rel} removed')
    elif rel not in a:
      out.append(f'{rel} added')
    elif a[rel][0] != b[rel][0]:
      out.append(f'{rel} changed ({a[rel][0]} -> {b[rel][0]} bytes)')
    elif a[rel][1] != b[rel][1]:
      out.append(f'{rel} modified (same size, new modification time)')
  if old.get('schema_sha256') != new.get('schema_sha256'):
    out.append('the schema changed')
  if old.get('options') != new.get('options'):
    out.append(f'options {old.get("options")} -> {new.get("options")}')
  return out
