"""Committed results (publish.collect) and the document blocks generated from them."""

import glob
import hashlib
import json
import os
import subprocess

import numpy as np
import pytest

from ssl_imu_jax.evaluation import publish, report

ROOT = publish.ROOT

# ---------------------------------------------------------------------------------------------
# (a) the repository's own documents agree with results/


def test_repository_documents_agree_with_results(capsys):
  docs = publish.default_documents()
  want = [os.path.join(ROOT, 'README.md')] + glob.glob(os.path.join(ROOT, 'docs', '*.md')) + \
      glob.glob(os.path.join(ROOT, 'weights', '*', 'README.md'))
  assert want and set(want) <= set(docs)
  assert publish.main(['check']) == 0, capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# (d) formatting, against strings computed by hand


@pytest.mark.parametrize('raw, fmt, text', [
    ('0.19512', '+.3f', '+0.195'),
    ('0.0934', '+.3f', '+0.093'),
    ('-0.0126', '+.2f', '-0.01'),
    ('-0.0004', '+.3f', '+0.000'),   # a rounded negative zero loses its minus sign
    ('-0.0004', '.3f', '0.000'),
    ('0.125', '.2f', '0.12'),        # exactly half: Python rounds to even
    ('0.135', '.2f', '0.14'),        # 0.135 is stored as 0.13500000000000000888
    ('2.5', '.0f', '2'),
    ('0.25', '.0%', '25%'),
    ('1.0', 'd', '1'),
    ('1.0', '', '1.0'),              # no format: the text as written
    ('synthetic_walking_kfm', '', 'synthetic_walking_kfm'),
    ('', '.3f', '—'),
    ('nan', '+.3f', '—'),
    ('12.3456', '.3g', '12.3'),
])
def test_format_value(raw, fmt, text):
  assert publish.format_value(raw, fmt) == text


@pytest.mark.parametrize('raw, fmt', [('abc', '.3f'), ('1.5', 'd'), ('0.1', 'q.3')])
def test_format_value_refuses(raw, fmt):
  with pytest.raises(publish.SpecError):
    publish.format_value(raw, fmt)


def test_expressions_value_interval_and_template():
  row = {'d': '0.19512', 'lo': '0.0934', 'hi': '0.29649', 'x': '3.96', 'y': '', 'n': '4.0'}
  assert publish.parse_expr('d:+.3f[lo,hi]').render(row) == '+0.195 [+0.093, +0.296]'
  assert publish.parse_expr('d:+.3f[lo:.2f,hi:.1f]').render(row) == '+0.195 [0.09, 0.3]'
  assert publish.parse_expr('"{x:.1f}× ({n:d} subjects)"').render(row) == '4.0× (4 subjects)'
  assert publish.parse_expr('d:.2f[y,hi]').render(row) == '0.20 [—, 0.30]'
  spec = publish.parse_spec('table', 'run/h.csv where task="a b" fraction=0.1|1 init!=random '
                            'cols=task,"{d:.3f} / {x:.3f}",d:+.3f[lo,hi] headers="task|r|Δr"')
  assert [c.text() for c in spec.where] == ['task=a b', 'fraction=0.1|1', 'init!=random']
  assert spec.headers == ('task', 'r', 'Δr') and len(spec.exprs) == 3
  for kind, text in [('table', 'h.csv cols=a'), ('value', 'r/h.csv show=a,b'),
                     ('value', 'r/h.csv cols=a'), ('table', 'r/h.csv cols=a,b headers="x"'),
                     ('table', 'r/h.csv a=1 cols=a'), ('table', 'r/h.csv where a=1'),
                     ('graph', 'r/h.csv cols=a'), ('table', 'r/h.csv cols="{a"')]:
    with pytest.raises(publish.SpecError):
      publish.parse_spec(kind, text)


# ---------------------------------------------------------------------------------------------
# A fake finished run: the files a sweep report writes, from hand-made cell records


def _record(fold, fraction, init):
  rng = np.random.default_rng([fold, int(fraction * 10), len(init)])
  test = [2 * fold, 2 * fold + 1]
  sid = np.repeat(test, 8)
  y_true = rng.normal(1.0, 0.2, size=(len(sid), 1))
  y_pred = y_true + rng.normal(0, 0.05 if init == 'pretrained' else 0.15, size=y_true.shape)
  result = {'predictions': {'subject_id': sid, 'y_true': y_true, 'y_pred': y_pred},
            'targets': ['peak_kfm'], 'units': ['%BW*BH'], 'n_train': 16, 'n_test': len(sid),
            'train_subjects': [s for s in range(6) if s not in test], 'test_subjects': test}
  return report.make_record(result, task='toy_kfm', init=init, protocol='full_from_probe',
                            fraction=fraction, fold=fold, steps=10, seed=0)


def _write_json(path, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(obj, f)


@pytest.fixture(scope='module')
def sweep_run(tmp_path_factory):
  run = tmp_path_factory.mktemp('run')
  recs = [_record(k, f, i) for k in range(3) for f in (0.5, 1.0) for i in ('pretrained', 'random')]
  report.write_results(recs, str(run / 'report'))
  (run / 'report' / 'scatter.png').write_bytes(b'\x89PNG not copied')
  _write_json(str(run / 'sweep' / 'sweep_config.json'), {'num_folds': 3, 'datasets': ['toy_kfm']})
  _write_json(str(run / 'sweep' / 'toy_kfm' / 'folds.json'), {'folds': {'0': 0}})
  _write_json(str(run / 'pretrain_100hz_128' / 'checkpoints' / 'config.json'), {'seed': 1})
  _write_json(str(run / 'sweep' / 'toy_kfm' / 'fold0' / 'result.json'), {'big': 'not copied'})
  return run


def _hidden(root):
  return [n for n in os.listdir(root) if n.startswith('.')] if os.path.isdir(root) else []


# ---------------------------------------------------------------------------------------------
# (c) collect


def test_collect_copies_the_small_outputs_with_provenance(sweep_run, tmp_path, capsys):
  root = str(tmp_path / 'results')
  cmd = 'python main.py --config=configs/demo.py --workdir=runs/demo'
  assert publish.main(['collect', f'--workdir={sweep_run}', '--name=demo', f'--command={cmd}',
                       f'--results={root}', '--wall_s=346']) == 0
  dest = os.path.join(root, 'demo')
  got = sorted(os.path.relpath(p, dest) for p in glob.glob(f'{dest}/**', recursive=True)
               if os.path.isfile(p))
  assert got == ['config.json', 'config_pretrain_100hz_128.json', 'convergence.csv',
                 'efficiency.csv',
                 'folds/toy_kfm.json', 'headline.csv', 'provenance.json', 'results.csv',
                 'summary.md']
  for name, src in [('headline.csv', 'report/headline.csv'), ('results.csv', 'report/results.csv'),
                    ('config.json', 'sweep/sweep_config.json')]:
    with open(os.path.join(dest, name), 'rb') as a, open(sweep_run / src, 'rb') as b:
      assert a.read() == b.read()
  with open(os.path.join(dest, 'provenance.json')) as f:
    prov = json.load(f)
  head = subprocess.run(['git', '-C', ROOT, 'rev-parse', 'HEAD'], capture_output=True,
                        text=True).stdout.strip()
  assert prov['command'] == cmd and prov['name'] == 'demo' and prov['wall_s'] == 346
  assert prov['code']['commit'] == head and isinstance(prov['code']['dirty'], bool)
  assert prov['code']['recorded_by'] == 'collect'
  m = prov['machine']
  assert m['cpu_count'] == os.cpu_count() and m['hostname'] and m['python'] and m['jax']
  assert 'cpu' in m['devices'].lower() or 'gpu' in m['devices'].lower()
  assert prov['finished_utc'].endswith('+00:00') and prov['collected_utc'].endswith('+00:00')
  digest = hashlib.sha256((sweep_run / 'report' / 'headline.csv').read_bytes()).hexdigest()
  assert prov['files']['headline.csv'] == {
      'from': 'report/headline.csv', 'sha256': digest,
      'bytes': (sweep_run / 'report' / 'headline.csv').stat().st_size}
  assert publish.verify_run(dest) == []
  assert _hidden(root) == []

  # An existing folder is replaced only with --overwrite.
  with pytest.raises(publish.PublishError, match='--overwrite'):
    publish.collect(str(sweep_run), 'demo', cmd, root=root)
  assert publish.main(['collect', f'--workdir={sweep_run}', '--name=demo', f'--command={cmd}',
                       f'--results={root}']) == 2
  assert '--overwrite' in capsys.readouterr().err
  publish.collect(str(sweep_run), 'demo', 'other', root=root, overwrite=True)
  with open(os.path.join(dest, 'provenance.json')) as f:
    assert json.load(f)['command'] == 'other'


def test_collect_takes_the_run_s_own_record(tmp_path):
  run = tmp_path / 'run'
  os.makedirs(run / 'report')
  (run / 'report' / 'headline.csv').write_text('a\n1\n')
  _write_json(str(run / 'finetune' / 'checkpoints' / 'config.json'), {'stage': 'finetune'})
  _write_json(str(run / 'run.json'), {'code': {'commit': 'abc', 'dirty': False},
                                      'machine': {'hostname': 'gpu-box'}, 'wall_s': 12.5,
                                      'started_utc': '2025-01-01T00:00:00+00:00'})
  dest = publish.collect(str(run), 'ft', 'cmd', root=str(tmp_path / 'results'))
  with open(os.path.join(dest, 'provenance.json')) as f:
    prov = json.load(f)
  assert prov['code'] == {'commit': 'abc', 'dirty': False, 'recorded_by': 'run'}
  assert prov['machine'] == {'hostname': 'gpu-box', 'recorded_by': 'run'}
  assert prov['wall_s'] == 12.5 and prov['started_utc'].startswith('2025')
  assert sorted(os.listdir(dest)) == ['config.json', 'headline.csv', 'provenance.json']


def test_collect_takes_each_group_s_folds_of_a_run_of_several_sweeps(tmp_path):
  """Stage objectives: <group>/<arm>/sweep/<dataset>/folds.json, a group's arms share its folds."""
  run = tmp_path / 'run'
  os.makedirs(run / 'report')
  (run / 'report' / 'objectives.csv').write_text('a\n1\n')
  _write_json(str(run / 'config.json'), {'stage': 'objectives'})
  for group, arm, fold in (('peaks', 'masked_12_5', 0), ('peaks', 'nce_resnet', 0),
                           ('curves', 'nce_resnet', 1)):
    _write_json(str(run / group / arm / 'sweep' / 'toy_kfm' / 'folds.json'), {'s1': fold})
  _write_json(str(run / 'pretrain_nce_resnet' / 'checkpoints' / 'config.json'), {'seed': 0})
  dest = publish.collect(str(run), 'obj', 'cmd', root=str(tmp_path / 'results'))
  found = sorted(os.path.relpath(p, dest) for p in glob.glob(f'{dest}/**/*.json', recursive=True))
  assert found == ['config.json', 'config_pretrain_nce_resnet.json', 'folds/curves/toy_kfm.json',
                   'folds/peaks/toy_kfm.json', 'provenance.json']
  with open(os.path.join(dest, 'folds', 'curves', 'toy_kfm.json')) as f:
    assert json.load(f) == {'s1': 1}


def test_collect_refuses_large_files_and_leaves_nothing_partial(sweep_run, tmp_path,
                                                                  monkeypatch):
  root = str(tmp_path / 'results')
  big = sweep_run / 'report' / 'per_window.csv'
  big.write_bytes(b'0' * (publish.MAX_BYTES + 1))
  try:
    with pytest.raises(publish.PublishError, match=r'per_window\.csv.*large files stay out'):
      publish.collect(str(sweep_run), 'big', 'cmd', root=root)
  finally:
    big.unlink()
  assert not os.path.exists(os.path.join(root, 'big')) and _hidden(root) == []
  with pytest.raises(publish.PublishError, match='results.csv'):
    publish.collect(str(sweep_run), 'big', 'cmd', root=root, max_bytes=1000)

  # A failure half-way through leaves the previous version whole and no temporary folder.
  dest = publish.collect(str(sweep_run), 'demo', 'first', root=root)
  before = {p: open(p, 'rb').read() for p in glob.glob(f'{dest}/**/*.*', recursive=True)}
  copies, real_copy = [], publish._copy

  def failing_copy(src, dst):
    copies.append(src)
    if len(copies) == 3:
      raise OSError('disk full')
    real_copy(src, dst)

  monkeypatch.setattr(publish, '_copy', failing_copy)
  with pytest.raises(OSError, match='disk full'):
    publish.collect(str(sweep_run), 'demo', 'second', root=root, overwrite=True)
  with pytest.raises(OSError, match='disk full'):
    copies.clear()
    publish.collect(str(sweep_run), 'new', 'second', root=root)
  assert {p: open(p, 'rb').read() for p in glob.glob(f'{dest}/**/*.*', recursive=True)} == before
  assert sorted(os.listdir(root)) == ['demo']

  for kw, match in [({'name': '../x'}, '--name'), ({'command': ' '}, '--command'),
                    ({'report': 'report_partial'}, 'report_partial')]:
    args = {'workdir': str(sweep_run), 'name': 'x', 'command': 'cmd', **kw}
    with pytest.raises(publish.PublishError, match=match):
      publish.collect(args.pop('workdir'), args.pop('name'), args.pop('command'), root=root,
                      **args)


# ---------------------------------------------------------------------------------------------
# (b) a document's blocks: check names a hand-edited number, render restores it

HEADLINE = """task,protocol,fraction,within_r_pretrained,delta_r,delta_r_low,delta_r_high
kfm,full_from_probe,1.0,0.7431,0.19512,0.0934,0.29649
kfm,full_from_probe,0.1,0.61,-0.0004,-0.1,0.1
grf,full_from_probe,1.0,0.84,0.09,,
grf,linear_probe,1.0,0.5,0.01,-0.02,0.04
"""

DOC = """# Results

Peak KFM Δr <!-- results:value run/headline.csv where task=kfm fraction=1
show=delta_r:+.3f[delta_r_low,delta_r_high] -->OLD<!-- /results --> at 100 %.

<!-- results:table run/headline.csv where protocol=full_from_probe
     cols=task,fraction:.0%,within_r_pretrained:.3f,delta_r:+.3f[delta_r_low,delta_r_high]
     headers="task|labels|pre-trained r|Δr [95 % CI]" -->
<!-- /results -->

An example, not a block: `<!-- results:value x/y.csv show=a -->1<!-- /results -->`.

```markdown
<!-- results:table nothing/here.csv cols=a -->
<!-- /results -->
```
"""

TABLE = """| task | labels | pre-trained r | Δr [95 % CI] |
|---|---|---|---|
| kfm | 100% | 0.743 | +0.195 [+0.093, +0.296] |
| kfm | 10% | 0.610 | +0.000 [-0.100, +0.100] |
| grf | 100% | 0.840 | +0.090 [—, —] |"""


@pytest.fixture
def quoted(tmp_path):
  """A results folder collected from a run with a hand-written headline.csv, and a document."""
  run = tmp_path / 'the_run'
  os.makedirs(run / 'report')
  (run / 'report' / 'headline.csv').write_text(HEADLINE)
  _write_json(str(run / 'sweep' / 'sweep_config.json'), {})
  root = str(tmp_path / 'results')
  publish.collect(str(run), 'run', 'cmd', root=root)
  doc = tmp_path / 'doc.md'
  doc.write_text(DOC)
  return root, doc


def test_check_names_a_hand_edited_number_and_render_restores_it(quoted, capsys):
  root, doc = quoted
  args = [f'--results={root}', str(doc)]
  assert publish.main(['check'] + args) == 1
  out = capsys.readouterr().out
  assert f'{doc}:3: results:value run/headline.csv where task=kfm' in out
  assert 'expected: +0.195 [+0.093, +0.296]\n  found:    OLD' in out
  assert f'{doc}:6: results:table' in out and '2 block(s) differ' in out

  assert publish.main(['render'] + args) == 0
  rendered = doc.read_text()
  assert 'Peak KFM Δr <!-- results:value' in rendered
  assert '-->+0.195 [+0.093, +0.296]<!-- /results --> at 100 %.' in rendered
  assert f'headers="task|labels|pre-trained r|Δr [95 % CI]" -->\n\n{TABLE}\n\n<!-- /results -->' \
      in rendered
  assert rendered.count('x/y.csv') == 1 and 'nothing/here.csv cols=a -->\n<!-- /results -->' \
      in rendered  # code is left alone
  capsys.readouterr()
  assert publish.main(['check'] + args) == 0
  assert 'every block agrees; 2 block(s) in 1 document(s)' in capsys.readouterr().out

  doc.write_text(rendered.replace('-->+0.195', '-->+0.200').replace('| 0.840 |', '| 0.850 |'))
  assert publish.main(['check'] + args) == 1
  out = capsys.readouterr().out
  assert f'{doc}:3:' in out and 'found:    +0.200 [+0.093, +0.296]' in out
  assert f'{doc}:6:' in out and '- | grf | 100% | 0.840 |' in out and \
      '+ | grf | 100% | 0.850 |' in out
  assert publish.main(['render'] + args) == 0
  assert doc.read_text() == rendered


def test_check_reports_specs_that_cannot_work(quoted, capsys):
  root, doc = quoted
  bad = doc.parent / 'bad.md'
  lines = [
      'a <!-- results:value run/headline.csv where task=kfm fraction=1 show=delta_rr -->x'
      '<!-- /results -->',
      'b <!-- results:value run/headline.csv where task=kfm show=delta_r -->x<!-- /results -->',
      'c <!-- results:value run/headline.csv where task=emg show=delta_r -->x<!-- /results -->',
      'd <!-- results:table run/missing.csv cols=a --><!-- /results -->',
      'e <!-- results:value run/headline.csv where task=kfm fraction=1 show=delta_r:.3q -->x'
      '<!-- /results -->',
      'f <!-- results:table nope/headline.csv cols=a --><!-- /results -->',
      'g <!-- results:value run/headline.csv show=task -->',
      'h <!-- /results --> <!-- /results -->',
  ]
  text = '\n'.join(lines) + '\n'
  bad.write_text(text)
  assert publish.main(['render', f'--results={root}', str(bad)]) == 1
  assert bad.read_text() == text  # a document with errors is left as it was
  assert publish.main(['check', f'--results={root}', str(bad)]) == 1
  out = capsys.readouterr().out
  for line, msg in [(1, 'has no column delta_rr'), (2, '2 rows of run/headline.csv match'),
                    (3, 'no row of run/headline.csv matches where task=emg (task has kfm, grf)'),
                    (4, 'missing.csv does not exist'), (5, "'.3q' is not a format spec"),
                    (6, 'nope/headline.csv does not exist'), (7, '4 rows of'),
                    (8, '<!-- /results --> without an opening')]:
    assert f'bad.md:{line}:' in out and msg in out, (line, msg, out)
  assert "fraction" in out.split('bad.md:2:')[1].split('\n')[1]  # says which columns differ

  # A CSV edited by hand after collect no longer matches its provenance.
  csv_path = os.path.join(root, 'run', 'headline.csv')
  with open(csv_path, 'a') as f:
    f.write('emg,full,1.0,0.1,0.1,0.0,0.2\n')
  capsys.readouterr()
  assert publish.main(['check', f'--results={root}', str(doc)]) == 1
  assert 'differs from its sha256 in provenance.json' in capsys.readouterr().out


def test_render_keeps_a_released_card_s_checksum(quoted):
  root, _ = quoted
  folder = os.path.dirname(root) + '/weights_x'
  os.makedirs(folder)
  card = os.path.join(folder, 'MODEL_CARD.md')
  with open(card, 'w') as f:
    f.write('r <!-- results:value run/headline.csv where task=grf protocol=linear_probe '
            'show=within_r_pretrained:.2f -->?<!-- /results -->\n')
  with open(os.path.join(folder, 'SHA256SUMS'), 'w') as f:
    f.write(f'{"0" * 64}  MODEL_CARD.md\n{"1" * 64}  other.npz\n')
  assert publish.main(['render', f'--results={root}', card]) == 0
  with open(card, 'rb') as f:
    data = f.read()
  assert b'-->0.50<!--' in data
  with open(os.path.join(folder, 'SHA256SUMS')) as f:
    assert f.read() == f'{hashlib.sha256(data).hexdigest()}  MODEL_CARD.md\n{"1" * 64}  other.npz\n'


def test_collect_of_a_run_still_going_says_so_with_the_running_code(tmp_path):
  """report_partial/ of a run in progress: the last invocation (recorded at its start) has no
  finish, so the provenance names its commit, the report's time and in_progress; a report newer
  than every recorded finish (an unrecorded invocation wrote it) leaves the commit unknown."""
  run = tmp_path / 'run'
  os.makedirs(run / 'report_partial')
  (run / 'report_partial' / 'objectives.csv').write_text('a\n1\n')
  _write_json(str(run / 'config.json'), {'stage': 'objectives'})
  done = {'commit': 'aaa', 'started_utc': '2020-01-01T00:00:00+00:00',
          'finished_utc': '2020-01-01T01:00:00+00:00', 'completed': False, 'wall_s': 3600.0}
  going = {'commit': 'bbb', 'started_utc': '2020-01-02T00:00:00+00:00'}
  _write_json(str(run / 'run.json'), {'code': {'commit': 'bbb', 'dirty': False},
                                      'finished_utc': None, 'invocations': [done, going]})
  dest = publish.collect(str(run), 'a', 'cmd', root=str(tmp_path / 'results'),
                         report='report_partial')
  with open(os.path.join(dest, 'provenance.json')) as f:
    prov = json.load(f)
  assert prov['in_progress'] and prov['code']['commit'] == 'bbb'
  assert [c['commit'] for c in prov['invocations']] == ['aaa', 'bbb']
  assert prov['finished_utc'] > '2026'  # the report's own time
  # a report-only invocation (finished, the report's writer) beside the long one still going
  report_only = {'commit': 'ccc', 'started_utc': '2020-01-03T00:00:00+00:00',
                 'finished_utc': '2099-01-01T00:00:00+00:00', 'completed': True}
  _write_json(str(run / 'run.json'), {'code': {'commit': 'ccc', 'dirty': False},
                                      'finished_utc': report_only['finished_utc'],
                                      'invocations': [done, going, report_only]})
  dest = publish.collect(str(run), 'c', 'cmd', root=str(tmp_path / 'results'),
                         report='report_partial')
  with open(os.path.join(dest, 'provenance.json')) as f:
    prov = json.load(f)
  assert prov['in_progress'] and prov['code']['commit'] == 'ccc'
  _write_json(str(run / 'run.json'), {'code': {'commit': 'aaa', 'dirty': False},
                                      'finished_utc': done['finished_utc'],
                                      'invocations': [done]})
  dest = publish.collect(str(run), 'b', 'cmd', root=str(tmp_path / 'results'),
                         report='report_partial')
  with open(os.path.join(dest, 'provenance.json')) as f:
    prov = json.load(f)
  assert prov['in_progress'] and prov['code']['commit'] is None
  assert prov['code']['recorded_by'].startswith('unknown')
