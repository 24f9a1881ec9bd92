r"""Committed results, and documents that quote them only through generated blocks.

A finished run's small outputs are copied into ``results/<name>/`` (``collect``): the report's
CSVs and markdown, the run's config and a ``provenance.json`` (code commit, exact command, machine,
date, checksums). Documents quote those files through blocks that ``render`` writes and ``check``
compares, so a number in a document cannot drift from its committed source::

  <!-- results:table demo/headline.csv where protocol=full_from_probe fraction=1
       cols=task,within_r_pretrained:.3f,delta_r:+.3f[delta_r_low,delta_r_high]
       headers="task|pre-trained r|Δr [95 % CI]" -->
  (the generated table)
  <!-- /results -->

  peak KFM Δr <!-- results:value demo/headline.csv where task=synthetic_walking_kfm
  protocol=full_from_probe fraction=1 show=delta_r:+.3f[delta_r_low,delta_r_high]
  -->+0.195 [+0.093, +0.296]<!-- /results -->

SPEC: ``PATH [where COND ...] cols=EXPR,... [headers="H|H|..."]`` for a table, ``PATH [where COND
...] show=EXPR`` for a value (exactly one row must match). PATH is a CSV under the results root.
COND is ``col=v``, ``col=v1|v2`` (any of) or ``col!=v``; numbers compare as numbers (``fraction=1``
matches ``1.0``); quote a value with spaces (``task="a b"``). EXPR is ``col``, ``col:FMT`` (a Python
format spec: ``.3f``, ``+.3f``, ``.0%``, ``d``, ``.3g``), ``col:FMT[low:FMT,high:FMT]`` (value and
interval, ``+0.195 [+0.093, +0.296]``; the bounds take the value's FMT when they have none) or a
quoted template ``"{a:.3f} / {b:.3f}"``. Missing values (empty, nan) show as ``—``; a rounded
negative zero shows without its minus sign.

  python -m ssl_imu_jax.evaluation.publish collect --workdir=RUN_DIR --name=NAME --command="..."
  python -m ssl_imu_jax.evaluation.publish render [FILES]  # rewrites the blocks (atomically)
  python -m ssl_imu_jax.evaluation.publish check [FILES]   # exit 1 listing each block that differs

The results root is ``results/`` beside the package (``--results=DIR`` or the environment variable
``SSL_IMU_JAX_RESULTS`` override it). results/README.md describes the layout.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import difflib
import glob
import hashlib
import json
import math
import os
import platform
import re
import shutil
import socket
import string
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from ssl_imu_jax import files
from ssl_imu_jax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS_ENV = 'SSL_IMU_JAX_RESULTS'
MAX_BYTES = 2 * 1024 * 1024  # a committed file larger than this is refused (keep git small)
PROVENANCE = 'provenance.json'
RUN_INFO = 'run.json'  # optional, written by a run: code / machine / wall_s / started / finished
# The run's top config, first found wins (paper/demo/sweep, a single fine-tune, a pre-training).
CONFIG_CANDIDATES = ('config.json', 'sweep/sweep_config.json', 'finetune/checkpoints/config.json',
                     'pretrain/checkpoints/config.json')
MISSING = frozenset({'', 'nan', 'none', 'null', 'na', '<na>'})
DASH = '—'
CHECKSUMS = 'SHA256SUMS'  # a released weights folder's list (release.py); render keeps it true


class PublishError(UserError, ValueError):
  """A collect / render / check request that cannot work; the message says what to change."""


class SpecError(ValueError):
  """A block's SPEC that names a missing file or column, matches no row, or does not parse."""


def results_root(path: str | None = None) -> str:
  """The results folder: ``path``, else $SSL_IMU_JAX_RESULTS, else ``<repository>/results``."""
  return os.path.abspath(path or os.environ.get(RESULTS_ENV) or os.path.join(ROOT, 'results'))


def default_documents(root: str = ROOT) -> list[str]:
  """The documents that may quote results: README.md, docs/, weights/ READMEs and model cards."""
  pats = ('README.md', 'docs/**/*.md', 'weights/README.md', 'weights/*/README.md',
          'weights/*/MODEL_CARD.md')
  out = []
  for pat in pats:
    out += sorted(glob.glob(os.path.join(root, pat), recursive=True))
  return list(dict.fromkeys(out))


# ---------------------------------------------------------------------------------------------
# Formatting


_SPEC_RE = re.compile(r'^(?P<align>(?:.?[<>=^])?)(?P<sign>[-+ ]?)z?'
                      r'(?P<rest>#?0?\d*[,_]?(?:\.\d+)?(?P<type>[bcdeEfFgGnosxX%]?))$')
_INT_TYPES = frozenset('bcdnoxX')


def format_value(raw: Any, fmt: str = '') -> str:
  """One CSV cell as text: raw without ``fmt``, else Python's ``format`` (no negative zero).

  Missing values (empty, nan) read as '—', the report's mark for "not computed".
  """
  text = str(raw).strip()
  if text.lower() in MISSING:
    return DASH
  if not fmt:
    return text
  m = _SPEC_RE.match(fmt)
  if not m:
    raise SpecError(f'{fmt!r} is not a format spec (e.g. .3f, +.3f, .0%, d, .3g)')
  kind = m['type']
  if kind == 's':
    return format(text, fmt)
  try:
    x = float(text)
  except ValueError:
    raise SpecError(f'value {text!r} is not a number (format {fmt!r})') from None
  if kind in _INT_TYPES:
    if not x.is_integer():
      raise SpecError(f'value {text!r} is not an integer (format {fmt!r})')
    return format(int(x), fmt)
  return format(x, f'{m["align"]}{m["sign"]}z{m["rest"]}')


# ---------------------------------------------------------------------------------------------
# SPEC parsing


@dataclasses.dataclass(frozen=True)
class Cond:
  column: str
  negate: bool
  values: tuple[str, ...]

  def text(self) -> str:
    return f'{self.column}{"!=" if self.negate else "="}{"|".join(self.values)}'


@dataclasses.dataclass(frozen=True)
class Expr:
  """Literal text and (column, format) fields, in order."""

  parts: tuple[str | tuple[str, str], ...]
  header: str

  def columns(self) -> list[str]:
    return [p[0] for p in self.parts if isinstance(p, tuple)]

  def render(self, row: dict[str, str]) -> str:
    return ''.join(p if isinstance(p, str) else format_value(row[p[0]], p[1])
                   for p in self.parts)


@dataclasses.dataclass(frozen=True)
class Spec:
  kind: str  # 'table' | 'value'
  path: str  # CSV relative to the results root
  where: tuple[Cond, ...]
  exprs: tuple[Expr, ...]
  headers: tuple[str, ...]


def _split_top(text: str, seps: str | None) -> list[str]:
  """Splits at ``seps`` (None: whitespace) outside double quotes and brackets; keeps quotes."""
  parts, buf, depth, quoted = [], [], 0, False
  for ch in text:
    if ch == '"':
      quoted = not quoted
    elif not quoted and ch in '([{':
      depth += 1
    elif not quoted and ch in ')]}':
      depth -= 1
    if not quoted and depth == 0 and (ch.isspace() if seps is None else ch in seps):
      parts.append(''.join(buf))
      buf = []
      continue
    buf.append(ch)
  if quoted or depth:
    raise SpecError('unbalanced double quote or bracket')
  parts.append(''.join(buf))
  return [p.strip() for p in parts if p.strip()]


def _unquote(text: str) -> str:
  return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


_NAME = r'[A-Za-z_][\w.]*'
_SIMPLE_RE = re.compile(rf'^(?P<col>{_NAME})(?::(?P<fmt>[^\[\],]*))?'
                        rf'(?:\[(?P<lo>[^\[\],]+),(?P<hi>[^\[\],]+)\])?$')
_BOUND_RE = re.compile(rf'^\s*(?P<col>{_NAME})(?::(?P<fmt>[^\[\],]*))?\s*$')
_COND_RE = re.compile(rf'^(?P<col>{_NAME})(?P<op>!=|=)(?P<val>.*)$', re.S)


def parse_expr(text: str) -> Expr:
  """``col``, ``col:fmt``, ``col:fmt[low:fmt,high:fmt]`` or a quoted ``"{col:fmt} ..."``."""
  if text.startswith('"'):
    template = _unquote(text)
    parts: list[str | tuple[str, str]] = []
    try:
      for literal, field, fmt, conv in string.Formatter().parse(template):
        if literal:
          parts.append(literal)
        if field is None:
          continue
        if not re.fullmatch(_NAME, field) or conv or '{' in (fmt or ''):
          raise SpecError(f'template field {{{field}}} in {text}: expected {{column}} or '
                          f'{{column:format}}')
        parts.append((field, fmt or ''))
    except ValueError as e:
      raise SpecError(f'template {text}: {e}') from None
    if not any(isinstance(p, tuple) for p in parts):
      raise SpecError(f'template {text} names no column (write {{column:format}})')
    return Expr(tuple(parts), template)
  m = _SIMPLE_RE.match(text)
  if not m:
    raise SpecError(f'column expression {text!r}: expected col, col:FMT, col:FMT[low,high] or '
                    f'a quoted "{{col:FMT}} ..." template')
  fmt = m['fmt'] or ''
  parts = [(m['col'], fmt)]
  if m['lo']:
    bounds = []
    for b in (m['lo'], m['hi']):
      bm = _BOUND_RE.match(b)
      if not bm:
        raise SpecError(f'interval bound {b!r} in {text!r}: expected col or col:FMT')
      bounds.append((bm['col'], bm['fmt'] if bm['fmt'] is not None else fmt))
    parts += [' [', bounds[0], ', ', bounds[1], ']']
  return Expr(tuple(parts), m['col'])


def parse_spec(kind: str, text: str) -> Spec:
  """A block's SPEC (see the module docstring); SpecError says what does not parse."""
  if kind not in ('table', 'value'):
    raise SpecError(f'unknown block kind results:{kind}; expected results:table or results:value')
  tokens = _split_top(text, None)
  if not tokens:
    raise SpecError('empty SPEC; expected a CSV path under the results folder')
  path, rest = _unquote(tokens[0]), tokens[1:]
  norm = os.path.normpath(path)
  if (os.path.isabs(path) or norm.startswith('..') or not path.endswith('.csv')
      or os.sep not in norm):
    raise SpecError(f'{path!r}: expected RUN/FILE.csv under the results folder, e.g. '
                    f'demo/headline.csv')
  want = 'cols' if kind == 'table' else 'show'
  where, exprs, headers, in_where = [], None, None, False
  for tok in rest:
    key, eq, value = tok.partition('=')
    if tok == 'where':
      in_where = True
    elif eq and key == want:
      exprs = [parse_expr(e) for e in _split_top(value, ',')]
    elif eq and key == 'headers' and kind == 'table':
      headers = [h.strip() for h in _unquote(value).split('|')]
    elif eq and key in ('cols', 'show', 'headers'):
      raise SpecError(f'{key}= does not belong in a results:{kind} block (it takes '
                      f'{"cols= and headers=" if kind == "table" else "show="})')
    elif in_where and (m := _COND_RE.match(tok)):
      values = tuple(_unquote(v) for v in _split_top(m['val'], '|')) or ('',)
      where.append(Cond(m['col'], m['op'] == '!=', values))
    else:
      raise SpecError(f'unexpected {tok!r}; expected where COL=VALUE ..., then {want}=...')
  if not exprs:
    raise SpecError(f'no {want}=...; a results:{kind} block needs it')
  if kind == 'value' and len(exprs) != 1:
    raise SpecError(f'show= takes one expression, got {len(exprs)}')
  if headers is not None and len(headers) != len(exprs):
    raise SpecError(f'headers= has {len(headers)} names for {len(exprs)} columns')
  return Spec(kind, norm, tuple(where), tuple(exprs),
              tuple(headers) if headers else tuple(e.header for e in exprs))


# ---------------------------------------------------------------------------------------------
# Evaluating a SPEC against the results folder


def _same(cell: str, value: str) -> bool:
  if cell.strip() == value.strip():
    return True
  try:
    a, b = float(cell), float(value)
  except ValueError:
    return False
  return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


class Results:
  """The CSVs under a results root, read once each (all cells kept as the text written)."""

  def __init__(self, root: str):
    self.root = root
    self._tables: dict[str, tuple[list[str], list[dict[str, str]]]] = {}

  def table(self, path: str) -> tuple[list[str], list[dict[str, str]]]:
    if path not in self._tables:
      full = os.path.join(self.root, path)
      if not os.path.isfile(full):
        raise SpecError(f'{full} does not exist (add the run with `python -m '
                        f'ssl_imu_jax.evaluation.publish collect`, or fix the path)')
      with open(full, newline='', encoding='utf-8') as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        self._tables[path] = (list(reader.fieldnames or []), rows)
    return self._tables[path]

  def rows(self, spec: Spec) -> list[dict[str, str]]:
    """The rows the SPEC selects, checked: its columns exist and at least one row matches."""
    columns, rows = self.table(spec.path)
    used = [c.column for c in spec.where] + [c for e in spec.exprs for c in e.columns()]
    unknown = [c for c in dict.fromkeys(used) if c not in columns]
    if unknown:
      raise SpecError(f'{spec.path} has no column {", ".join(unknown)} (columns: '
                      f'{", ".join(columns)})')
    out = [r for r in rows if all(any(_same(r[c.column], v) for v in c.values) != c.negate
                                  for c in spec.where)]
    if not out:
      seen = '; '.join(f'{c.column} has {_values(rows, c.column)}' for c in spec.where)
      raise SpecError(f'no row of {spec.path} matches where '
                      f'{" ".join(c.text() for c in spec.where)}' + (f' ({seen})' if seen else ''))
    if spec.kind == 'value' and len(out) > 1:
      differ = [c for c in columns if len({r[c] for r in out}) > 1][:6]
      raise SpecError(f'{len(out)} rows of {spec.path} match (a value needs exactly one); they '
                      f'differ in {", ".join(differ)}: add where conditions on them')
    return out

  def render(self, spec: Spec) -> str:
    """The block's text: a value, or a markdown table between blank lines."""
    rows = self.rows(spec)
    if spec.kind == 'value':
      return spec.exprs[0].render(rows[0])

    def line(cells):
      return '| ' + ' | '.join(c.replace('|', r'\|') for c in cells) + ' |'

    lines = [line(spec.headers), '|' + '|'.join('---' for _ in spec.headers) + '|']
    lines += [line([e.render(r) for e in spec.exprs]) for r in rows]
    return '\n\n' + '\n'.join(lines) + '\n\n'


def _values(rows: list[dict[str, str]], column: str, limit: int = 8) -> str:
  vals = list(dict.fromkeys(r[column] for r in rows))
  return ', '.join(vals[:limit]) + (f', ... ({len(vals)} values)' if len(vals) > limit else '')


# ---------------------------------------------------------------------------------------------
# Blocks in documents


_MARK_RE = re.compile(r'<!--\s*(?:results:(?P<kind>\w*)(?P<spec>.*?)|(?P<close>/results\s*))-->',
                      re.S)
_FENCE_RE = re.compile(r'^ {0,3}(`{3,}|~{3,})')
_CODE_SPAN_RE = re.compile(r'(`+)(?!`)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)', re.S)  # in a paragraph


@dataclasses.dataclass(frozen=True)
class Block:
  path: str
  line: int
  kind: str
  spec_text: str
  start: int  # content start (after the opening marker)
  end: int  # content end (before the closing marker)

  def where(self) -> str:
    spec = ' '.join(self.spec_text.split())
    return f'{_show_path(self.path)}:{self.line}: results:{self.kind} {spec}'


def _mask_code(text: str) -> str:
  """``text`` with fenced code and code spans blanked (offsets kept): examples are not blocks."""
  out, fence = [], ''
  for line in text.splitlines(keepends=True):
    m = _FENCE_RE.match(line)
    if fence:
      if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and \
          not line[m.end():].strip():
        fence = ''
      out.append(re.sub(r'[^\n]', ' ', line))
    elif m:
      fence = m.group(1)
      out.append(re.sub(r'[^\n]', ' ', line))
    else:
      out.append(line)
  masked = ''.join(out)
  return _CODE_SPAN_RE.sub(lambda m: re.sub(r'[^\n]', ' ', m.group(0)), masked)


def find_blocks(path: str, text: str) -> tuple[list[Block], list[tuple[int, str]]]:
  """The blocks of one document, and (line, error) of the markers that do not pair up."""
  blocks, errors, open_ = [], [], None
  for m in _MARK_RE.finditer(_mask_code(text)):
    line = text.count('\n', 0, m.start()) + 1
    if m['close'] is None:
      if open_ is not None:
        errors.append((open_[0], f'{_show_path(path)}:{open_[0]}: results block has no '
                       f'<!-- /results --> before the next block at line {line}'))
      open_ = (line, m['kind'], text[m.start('spec'):m.end('spec')], m.end())
    elif open_ is None:
      errors.append((line, f'{_show_path(path)}:{line}: <!-- /results --> without an opening '
                           f'<!-- results:... --> block'))
    else:
      blocks.append(Block(path, open_[0], open_[1], open_[2].strip(), open_[3], m.start()))
      open_ = None
  if open_ is not None:
    errors.append((open_[0], f'{_show_path(path)}:{open_[0]}: results block has no closing '
                             f'<!-- /results -->'))
  return blocks, errors


def _show_path(path: str) -> str:
  rel = os.path.relpath(path)
  return path if rel.startswith('..') else rel


@dataclasses.dataclass
class Outcome:
  """What check / render found: blocks seen, texts that differ, errors."""

  n_files: int = 0
  n_blocks: int = 0
  differ: list[str] = dataclasses.field(default_factory=list)
  errors: list[str] = dataclasses.field(default_factory=list)
  written: list[str] = dataclasses.field(default_factory=list)


def _diff_text(block: Block, want: str, have: str) -> str:
  if block.kind == 'value':
    return f'{block.where()}\n  expected: {want}\n  found:    {have}'
  lines = difflib.unified_diff(want.strip('\n').splitlines(), have.strip('\n').splitlines(),
                               'expected', 'found', n=0, lineterm='')
  body = '\n'.join(f'  {ln[0]} {ln[1:]}' for ln in lines
                   if not ln.startswith(('---', '+++', '@@')))
  body = body or '  (only the blank lines around the table differ)'
  return f'{block.where()}\n  (- expected from results/, + found in the document)\n{body}'


def process(paths: Sequence[str], root: str | None = None, write: bool = False) -> Outcome:
  """Checks (and with ``write`` rewrites) the blocks of ``paths`` from the results root.

  A document with an error in any block is left as it is. The folders its blocks quote must
  still match the checksums of their provenance.json (a CSV edited by hand is an error).
  """
  results = Results(results_root(root))
  out = Outcome()
  verified: dict[str, list[str]] = {}
  for path in paths:
    if not os.path.isfile(path):
      out.errors.append(f'{path}: no such document')
      continue
    with open(path, encoding='utf-8') as f:
      text = f.read()
    out.n_files += 1
    blocks, errors = find_blocks(path, text)
    out.n_blocks += len(blocks)
    new, pos, changed = [], 0, []
    for b in blocks:
      try:
        spec = parse_spec(b.kind, b.spec_text)
        run = spec.path.split(os.sep)[0]
        if run not in verified:
          verified[run] = verify_run(os.path.join(results.root, run))
        if verified[run]:
          raise SpecError('; '.join(verified[run]))
        want = results.render(spec)
      except SpecError as e:
        errors.append((b.line, f'{b.where()}\n  error: {e}'))
        continue
      have = text[b.start:b.end]
      if have != want:
        changed.append(_diff_text(b, want, have))
        new += [text[pos:b.start], want]
        pos = b.end
    new.append(text[pos:])
    out.errors += [e for _, e in sorted(errors, key=lambda e: e[0])]
    out.differ += changed
    if write and changed and not errors:
      files.write_text_atomic(path, ''.join(new))
      _update_checksum(path)
      out.written.append(path)
  return out


def _sha256(path: str) -> str:
  with open(path, 'rb') as f:
    return hashlib.file_digest(f, 'sha256').hexdigest()


def _update_checksum(path: str) -> None:
  """A rewritten file listed in a SHA256SUMS beside it (a released model card) gets its new sum."""
  sums = os.path.join(os.path.dirname(path), CHECKSUMS)
  name = os.path.basename(path)
  if not os.path.isfile(sums):
    return
  with open(sums, encoding='utf-8') as f:
    lines = f.read().splitlines(keepends=True)
  new = [f'{_sha256(path)}  {name}\n' if ln.rstrip('\n').partition('  ')[2] == name else ln
         for ln in lines]
  if new != lines:
    files.write_text_atomic(sums, ''.join(new))


def verify_run(folder: str) -> list[str]:
  """Problems of one results folder: no provenance.json, or a file that differs from its sum."""
  prov = os.path.join(folder, PROVENANCE)
  if not os.path.isdir(folder):
    return []  # the CSV lookup names the missing folder
  if not os.path.isfile(prov):
    return [f'{folder} has no {PROVENANCE}; add runs with '
            f'`python -m ssl_imu_jax.evaluation.publish collect`']
  with open(prov, encoding='utf-8') as f:
    listed = json.load(f).get('files', {})
  bad = []
  for rel, info in sorted(listed.items()):
    full = os.path.join(folder, rel)
    if not os.path.isfile(full):
      bad.append(f'{full} (listed in {PROVENANCE}) is missing')
    elif _sha256(full) != info.get('sha256'):
      bad.append(f'{full} differs from its sha256 in {PROVENANCE} (edited after collect? '
                 f'collect the run again)')
  return bad


# ---------------------------------------------------------------------------------------------
# Provenance and collect


def utc_now() -> str:
  return datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')


def _utc_of(mtime: float) -> str:
  return datetime.datetime.fromtimestamp(mtime, datetime.UTC).isoformat(timespec='seconds')


def code_version(root: str = ROOT) -> dict[str, Any]:
  """The git commit of the code and whether tracked files differ from it (None without git)."""
  def git(*args):
    return subprocess.run(['git', '-C', root, *args], capture_output=True, text=True,
                          check=True).stdout

  try:
    commit = git('rev-parse', 'HEAD').strip()
    dirty = [ln[3:] for ln in git('status', '--porcelain', '--untracked-files=no').splitlines()]
  except (OSError, subprocess.CalledProcessError):
    return {'commit': None, 'dirty': None, 'dirty_paths': []}
  return {'commit': commit, 'dirty': bool(dirty), 'dirty_paths': dirty[:100]}


def cpu_model() -> str:
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        key, _, value = line.partition(':')
        if key.strip() == 'model name':
          return value.strip()
  except OSError:
    pass
  return platform.processor() or 'unknown'


def machine_info() -> dict[str, Any]:
  """Hostname, CPU, cores, accelerators (``jax.devices()``), Python and JAX versions."""
  import jax
  import jaxlib

  devices = jax.devices()
  kinds: dict[str, int] = {}
  for d in devices:
    kinds[f'{d.platform}: {d.device_kind}'] = kinds.get(f'{d.platform}: {d.device_kind}', 0) + 1
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    usable = os.cpu_count()
  return {
      'hostname': socket.gethostname(), 'cpu_model': cpu_model(), 'cpu_count': os.cpu_count(),
      'usable_cores': usable,
      'devices': ', '.join(f'{n} x {k}' for k, n in kinds.items()),
      'python': platform.python_version(), 'jax': jax.__version__,
      'jaxlib': jaxlib.__version__, 'platform': platform.platform(),
  }


def run_stamp() -> dict[str, Any]:
  """What a run can write as ``<workdir>/run.json`` when it starts (add wall_s and finished_utc
  when it ends): collect then records the run's own commit and machine, not its own."""
  return {'code': code_version(), 'machine': machine_info(), 'started_utc': utc_now()}


def _plan(workdir: str, report: str) -> list[tuple[str, str]]:
  """(source relative to the run, destination relative to results/<name>) of what collect copies."""
  report_dir = os.path.join(workdir, report)
  if not os.path.isdir(report_dir):
    raise PublishError(f'{report_dir} does not exist: collect takes a finished run (its report '
                       f'folder; --report names another, e.g. report_partial)')
  names = sorted(n for n in os.listdir(report_dir)
                 if n.endswith(('.csv', '.md')) and os.path.isfile(os.path.join(report_dir, n)))
  if not any(n.endswith('.csv') for n in names):
    raise PublishError(f'{report_dir} holds no CSV file; is the run finished?')
  plan = [(os.path.join(report, n), n) for n in names]
  top = next((c for c in CONFIG_CANDIDATES if os.path.isfile(os.path.join(workdir, c))), None)
  if top is None:
    raise PublishError(f'{workdir} has no config ({", ".join(CONFIG_CANDIDATES)}): is it a run '
                       f'directory?')
  plan.append((top, 'config.json'))
  for cfg in sorted(glob.glob(os.path.join(workdir, 'pretrain_*', 'checkpoints', 'config.json'))):
    rel = os.path.relpath(cfg, workdir)
    plan.append((rel, f'config_{rel.split(os.sep)[0]}.json'))
  for folds in sorted(glob.glob(os.path.join(workdir, 'sweep', '*', 'folds.json'))):
    rel = os.path.relpath(folds, workdir)
    plan.append((rel, f'folds/{rel.split(os.sep)[1]}.json'))
  # a run of several sweeps (stage objectives: <group>/<arm>/sweep/<dataset>/): each group's
  # assignment of each data set once (its arms' sweeps share the group's folds)
  seen = {dst for _, dst in plan}
  for folds in sorted(glob.glob(os.path.join(workdir, '*', '*', 'sweep', '*', 'folds.json'))):
    rel = os.path.relpath(folds, workdir)
    parts = rel.split(os.sep)
    dst = f'folds/{parts[0]}/{parts[3]}.json'
    if dst not in seen:
      seen.add(dst)
      plan.append((rel, dst))
  return plan


def _copy(src: str, dst: str) -> None:
  os.makedirs(os.path.dirname(dst), exist_ok=True)
  shutil.copyfile(src, dst)


def collect(workdir: str, name: str, command: str, *, root: str | None = None,
            overwrite: bool = False, report: str = 'report', wall_s: float | None = None,
            max_bytes: int = MAX_BYTES) -> str:
  """Copies a finished run's small outputs into ``<results>/<name>/``; returns that folder.

  The folder appears whole or not at all: files go to a temporary folder beside it, which then
  takes its name (replacing an existing one only with ``overwrite``).
  """
  if not re.fullmatch(r'[A-Za-z0-9][A-Za-z0-9._-]*', name or ''):
    raise PublishError(f'--name={name!r}: expected letters, digits, ".", "_" or "-" (a folder '
                       f'name such as demo or paper_cpu)')
  if not command or not command.strip():
    raise PublishError('--command is required: the exact command that produced the run')
  workdir = os.path.abspath(workdir)
  if not os.path.isdir(workdir):
    raise PublishError(f'--workdir={workdir} does not exist')
  root = results_root(root)
  dest = os.path.join(root, name)
  if os.path.exists(dest) and not overwrite:
    raise PublishError(f'{dest} exists; --overwrite replaces it')
  plan = _plan(workdir, report)
  big = [(src, os.path.getsize(os.path.join(workdir, src))) for src, _ in plan]
  big = [(s, n) for s, n in big if n > max_bytes]
  if big:
    sizes = ', '.join(f'{os.path.join(workdir, s)} ({n / 2**20:.2f} MiB)' for s, n in big)
    raise PublishError(f'too large to commit (limit {max_bytes / 2**20:.2f} MiB): {sizes}; '
                       f'large files stay out of git (raise --max_bytes only for a file a '
                       f'document needs)')
  info_path = os.path.join(workdir, RUN_INFO)
  run_info = {}
  if os.path.isfile(info_path):
    with open(info_path, encoding='utf-8') as f:
      run_info = json.load(f)
  code = run_info.get('code') or code_version()
  machine = run_info.get('machine') or machine_info()
  report_mtime = max(os.path.getmtime(os.path.join(workdir, s)) for s, d in plan
                     if s.startswith(report + os.sep))
  calls = run_info.get('invocations') or []
  finished = run_info.get('finished_utc')
  # A run still going (an invocation without a finish: one running, or one killed outright) or
  # one whose report is newer than every recorded finish (an invocation that ran before runs
  # recorded their start): the files are its state at the report's time.
  running = any(not c.get('finished_utc') for c in calls)
  unrecorded = bool(finished) and _utc_of(report_mtime) > finished and not running
  in_progress = running or unrecorded
  code_by = 'run' if run_info.get('code') else 'collect'
  if unrecorded:
    code, code_by = {'commit': None, 'dirty': None}, (
        'unknown: the report is newer than every invocation run.json records')
  os.makedirs(root, exist_ok=True)
  tmp = os.path.join(root, f'.{name}.tmp-{os.getpid()}')
  old = os.path.join(root, f'.{name}.old-{os.getpid()}')
  try:
    shutil.rmtree(tmp, ignore_errors=True)
    listed = {}
    for src, dst in plan:
      _copy(os.path.join(workdir, src), os.path.join(tmp, dst))
      listed[dst] = {'from': src, 'bytes': os.path.getsize(os.path.join(tmp, dst)),
                     'sha256': _sha256(os.path.join(tmp, dst))}
    provenance = {
        'name': name, 'command': command.strip(), 'run_dir': workdir, 'report': report,
        'code': {**code, 'recorded_by': code_by},
        'machine': {**machine, 'recorded_by': 'run' if run_info.get('machine') else 'collect'},
        'started_utc': run_info.get('started_utc'),
        'finished_utc': _utc_of(report_mtime) if in_progress else (
            finished or _utc_of(report_mtime)),
        'in_progress': in_progress,
        'wall_s': wall_s if wall_s is not None else run_info.get('wall_s'),
        'invocations': [{k: c.get(k) for k in ('commit', 'dirty', 'started_utc', 'finished_utc',
                                               'completed', 'wall_s', 'command')} for c in calls],
        'collected_utc': utc_now(),
        'files': listed,
    }
    files.write_json_atomic(os.path.join(tmp, PROVENANCE), provenance)
    if os.path.exists(dest):
      os.replace(dest, old)
    try:
      os.replace(tmp, dest)
    except OSError:
      if os.path.exists(old):
        os.replace(old, dest)  # the previous version stays
      raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
  return dest


# ---------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
  common = argparse.ArgumentParser(add_help=False)
  common.add_argument('--results', default=None,
                      help=f'results folder (default ${RESULTS_ENV} or <repository>/results)')
  p = argparse.ArgumentParser(prog='python -m ssl_imu_jax.evaluation.publish',
                              description=__doc__.split('\n\n')[0])
  sub = p.add_subparsers(dest='cmd', required=True)
  c = sub.add_parser('collect', parents=[common],
                     help="copy a finished run's small outputs into results/NAME/")
  c.add_argument('--workdir', required=True, help='the run directory (main.py --workdir)')
  c.add_argument('--name', required=True, help='the folder under results/')
  c.add_argument('--command', required=True, help='the exact command that produced the run')
  c.add_argument('--overwrite', action='store_true', help='replace an existing results/NAME')
  c.add_argument('--report', default='report', help='the report folder inside the run')
  c.add_argument('--wall_s', type=float, default=None, help="the run's wall time in seconds")
  c.add_argument('--max_bytes', type=int, default=MAX_BYTES, help='largest file copied')
  for name, text in (('render', 'rewrite the results blocks of documents'),
                     ('check', 'exit 1 listing every results block that differs')):
    s = sub.add_parser(name, parents=[common], help=text)
    s.add_argument('files', nargs='*', help='documents (default: README.md, docs/**/*.md, '
                   'weights/README.md, weights/*/README.md, weights/*/MODEL_CARD.md)')
  return p


def main(argv: Sequence[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  try:
    if args.cmd == 'collect':
      dest = collect(args.workdir, args.name, args.command, root=args.results,
                     overwrite=args.overwrite, report=args.report, wall_s=args.wall_s,
                     max_bytes=args.max_bytes)
      print(f'collected {args.workdir} -> {dest}')
      return 0
    out = process(args.files or default_documents(), args.results, write=args.cmd == 'render')
  except PublishError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  for text in out.differ if args.cmd == 'check' else ():
    print(text)
  for text in out.errors:
    print(text)
  where = (f'{out.n_blocks} block(s) in {out.n_files} document(s), results '
           f'{results_root(args.results)}')
  if args.cmd == 'render':
    print(f'render: rewrote {len(out.written)} document(s); {where}'
          + (f'; {len(out.errors)} error(s): documents with errors were left as they were'
             if out.errors else ''))
    return 1 if out.errors else 0
  if out.differ or out.errors:
    print(f'check: {len(out.differ)} block(s) differ from results/, {len(out.errors)} error(s); '
          f'{where}. `python -m ssl_imu_jax.evaluation.publish render` rewrites the blocks that '
          f'differ.')
    return 1
  print(f'check: every block agrees; {where}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
