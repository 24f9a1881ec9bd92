"""The README as a user meets it: its links resolve (its tiny command block runs as written in
test_main_e2e.py, whose pipeline tests use its outputs)."""

import re
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
