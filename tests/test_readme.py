"""The README as a user meets it: its links resolve and its tiny command block runs as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]


@pytest.mark.parametrize('doc', DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc):
  text = doc.read_text()
  links = re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', text)
  local = [ln for ln in links if not ln.startswith(('http://', 'https://', 'mailto:'))]
  missing = [ln for ln in local if not (doc.parent / ln).exists()]
  assert not missing, f'{doc.name}: links to missing files {missing}'


def readme_commands() -> list[str]:
  """The bash block of the README's 'Commands' section, one command per line."""
  text = (ROOT / 'README.md').read_text()
  section = text.split('\n## Commands\n', 1)[1].split('\n## ', 1)[0]
  block = section.split('```bash\n', 1)[1].split('```', 1)[0]
  return [ln for ln in block.splitlines() if ln.strip()]


def test_the_readme_command_block_runs_as_written(tmp_path):
  commands = readme_commands()
  assert len(commands) == 5 and all(c.startswith('python main.py ') for c in commands)
  workdir = str(tmp_path / 'tiny')
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  outputs = []
  for cmd in commands:
    args = cmd.replace('runs/tiny', workdir).split()[1:]
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, f'{cmd}\n{proc.stderr[-3000:]}'
    outputs.append(proc.stdout + proc.stderr)
  assert (tmp_path / 'tiny' / 'pretrain' / 'checkpoints').is_dir()
  assert (tmp_path / 'tiny' / 'report' / 'summary.md').is_file()
  assert list((tmp_path / 'tiny' / 'embed').glob('*_embeddings.npy'))
  assert (tmp_path / 'tiny' / 'evaluate' / 'metrics.json').is_file()
  assert 'within-subject r' in outputs[-1]
