"""No import cycles inside ssl_imu_jax/ and data_prep/, counting imports inside functions.

The graph is read from the source with ast (nothing is imported): an edge A -> B for every
``import B`` / ``from B import x`` anywhere in A, at module level or in a function body.
``from pkg import mod`` is an edge to ``pkg.mod`` when that is a module (``pkg/__init__.py`` runs
before any of its modules anyway); ``from pkg import name`` an edge to ``pkg``.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ('ssl_imu_jax', 'data_prep')


def _name(path: Path, root: Path) -> str:
  parts = list(path.relative_to(root).with_suffix('').parts)
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def import_graph(root: Path = ROOT, packages=PACKAGES) -> dict[str, dict[str, int]]:
  """{module: {imported module: line of its first import}} over the packages' own modules."""
  paths = {_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob('*.py'))}

  def owner(name: str) -> str | None:  # the longest prefix of ``name`` that is one of ours
    while name and name not in paths:
      name = name.rpartition('.')[0]
    return name or None

  graph = {}
  for mod, path in paths.items():
    pkg = mod.split('.') if path.name == '__init__.py' else mod.split('.')[:-1]
    edges = {}
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'), str(path))):
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ''
        if node.level:  # relative: from . import x, from ..a import b
          base = '.'.join(pkg[:len(pkg) - node.level + 1] + ([base] if base else []))
        targets = [f'{base}.{a.name}' if f'{base}.{a.name}' in paths else base
                   for a in node.names]
      else:
        continue
      for t in targets:
        dep = owner(t)
        if dep and dep != mod:
          edges.setdefault(dep, node.lineno)
    graph[mod] = edges
  return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
  """One cycle per strongly connected component of more than one module (Tarjan)."""
  index, low, stack, on_stack, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = set()
      while not comp or v not in comp:
        comp.add(stack.pop())
      on_stack.difference_update(comp)
      if len(comp) > 1:
        out.append(_one_cycle(graph, comp))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def _one_cycle(graph, comp) -> list[str]:
  """A shortest path from the component's first module back to itself, inside the component."""
  start = min(comp)
  paths = {start: [start]}
  frontier = [start]
  while frontier:
    nxt = []
    for v in frontier:
      for w in sorted(graph[v]):
        if w == start:
          return paths[v] + [start]
        if w in comp and w not in paths:
          paths[w] = paths[v] + [w]
          nxt.append(w)
    frontier = nxt
  raise AssertionError(f'no cycle in {comp}')


def _describe(graph, cycle) -> str:
  steps = zip(cycle[:-1], cycle[1:], strict=True)
  return ' -> '.join(f'{a} (line {graph[a][b]})' for a, b in steps) + f' -> {cycle[-1]}'


def test_no_import_cycles():
  graph = import_graph()
  assert 'ssl_imu_jax.training.finetune' in graph and 'data_prep.builders.synthetic' in graph
  found = cycles(graph)
  assert not found, 'import cycles:\n' + '\n'.join(_describe(graph, c) for c in found)


def test_function_level_and_relative_imports_count(tmp_path):
  pkg = tmp_path / 'pkg'
  (pkg / 'sub').mkdir(parents=True)
  (pkg / '__init__.py').write_text('')
  (pkg / 'sub' / '__init__.py').write_text('')
  (pkg / 'a.py').write_text('from pkg import b\n')
  (pkg / 'b.py').write_text('def f():\n  from pkg.sub import c\n  return c\n')
  (pkg / 'sub' / 'c.py').write_text('from .. import a\n')
  (pkg / 'd.py').write_text('import pkg.a\n')  # outside the cycle
  graph = import_graph(tmp_path, ('pkg',))
  assert graph['pkg.b'] == {'pkg.sub.c': 2}
  assert graph['pkg.sub.c'] == {'pkg.a': 1}
  assert cycles(graph) == [['pkg.a', 'pkg.b', 'pkg.sub.c', 'pkg.a']]


# The library's folders by role, lowest first: a module imports from its own role or lower ones.
# Top-level modules are the shared layer (errors, files, parallel, metrics, stats), except the
# entry points, which may import anything. docs/architecture.md draws the same layers.
LAYERS = ('shared', 'data_prep', 'data', 'models', 'training', 'evaluation', 'deploy', 'entry')
ENTRY = {'ssl_imu_jax', 'ssl_imu_jax.stages'}


def _layer(mod: str) -> str:
  if mod.startswith('data_prep'):
    return 'data_prep'
  if mod in ENTRY:
    return 'entry'
  parts = mod.split('.')
  return parts[1] if len(parts) > 1 and parts[1] in LAYERS else 'shared'


def test_each_role_imports_only_from_itself_or_lower_roles():
  graph = import_graph()
  assert {_layer(m) for m in graph} == set(LAYERS), sorted({_layer(m) for m in graph})
  upward = [f'{a} ({_layer(a)}, line {line}) imports {b} ({_layer(b)})'
            for a, deps in sorted(graph.items()) for b, line in sorted(deps.items())
            if LAYERS.index(_layer(b)) > LAYERS.index(_layer(a))]
  assert not upward, 'imports against the layers:\n' + '\n'.join(upward)


def test_reading_records_does_not_import_scipy_signal_interpolate_or_stats():
  """A fine-tuning or pre-training process imports the builders (to read their records) but
  filters nothing: scipy.signal / interpolate / stats (~1.5 s per process) stay unimported
  until a function that uses them runs."""
  import subprocess
  import sys

  code = ('import sys, main, ssl_imu_jax.training.finetune, ssl_imu_jax.training.pretrain, '
          'data_prep.builders.synthetic, data_prep.builders.lab_files\n'
          'print(sorted(m for m in ("scipy.signal", "scipy.interpolate", "scipy.stats") '
          'if m in sys.modules))')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                       check=True).stdout.strip().splitlines()[-1]
  assert out == '[]', out
  import numpy as np

  from data_prep import preprocess  # and the lazy imports still work where used
  assert preprocess.resample(np.arange(8.0), 100.0, 50.0).shape == (4,)
