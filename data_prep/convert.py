"""Converts raw data to TFDS records with any registered builder (real or synthetic).

  python -m data_prep.convert --dataset=ipol_gait --manual_dir=/data/ipol \
      --data_dir=~/tensorflow_datasets --sample_rate_hz=100 --window_length=128 \
      --option mode=strides --option foot=right

Options (``--option key=value``, repeatable) are builder-specific knobs; values are parsed as YAML
scalars (``true``, ``0.2``, ``1-3`` stays a string). Output goes to
``<data_dir>/<dataset>/<config name>/<version>``; the config name encodes every knob and, for
data sets read from files, ends with a short hash of the source (``_src-<hash>``: the folder,
the files' paths, sizes and modification times, the schema; data_prep/source.py). A finished
build is reused only for the same source, and TFDS writes into ``incomplete.*`` first so an
interrupted build is never mistaken for a complete one. ``--list`` prints the registered data sets.
``--beam_pipeline_options=runner=...,...`` runs the builder on Apache Beam (optional extra).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from data_prep import BUILDERS, get_builder_class, records

SCHEMA_NAMES = ('schema.yaml', 'schema.yml', 'schema.json')


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
  """['k=v', ...] -> {k: yaml scalar}; a ValueError naming a malformed pair."""
  out: dict[str, Any] = {}
  for p in pairs or []:
    if '=' not in p:
      raise ValueError(f'--option {p!r}: expected key=value')
    k, v = p.split('=', 1)
    k = k.strip()
    if not k:
      raise ValueError(f'--option {p!r}: empty key')
    val = yaml.safe_load(v) if v.strip() else ''
    if isinstance(val, (list, dict)):
      val = v  # keep structured values as written; builders parse 'a,b' / 'a+b'
    out[k] = val
  return out


def builder_config(builder_cls, size: str = 'default', sample_rate_hz: float = 100.0,
                   window_length: int = 128, window_stride: int = 0, seed: int = 0,
                   options: dict[str, Any] | None = None) -> records.ImuBuilderConfig:
  """``records.make_config`` that reuses the class's own config object when the name matches.

  TFDS refuses a new config object named like a predefined one ('default_100hz_t128'), so the
  predefined instance is returned in that case.
  """
  cfg = records.make_config(size, sample_rate_hz, window_length, window_stride, seed, options)
  predefined = {c.name: c for c in getattr(builder_cls, 'BUILDER_CONFIGS', [])}
  return predefined.get(cfg.name, cfg)


def lab_schema_options(manual_dir: str | None, options: dict[str, Any]) -> dict[str, Any]:
  """For lab_files: default ``schema`` to <manual_dir>/schema.{yaml,yml,json}.

  The schema's content hash is part of the build's source fingerprint (data_prep/source.py),
  so editing the schema gives a new output directory instead of reusing the old records.
  """
  opts = dict(options)
  if 'schema' not in opts:
    if not manual_dir:
      raise ValueError('lab_files needs --manual_dir (holding schema.yaml) or --option schema=PATH')
    found = [Path(manual_dir) / n for n in SCHEMA_NAMES if (Path(manual_dir) / n).is_file()]
    if not found:
      raise FileNotFoundError(f'{manual_dir}: no schema file ({", ".join(SCHEMA_NAMES)}); see '
                              f'docs/bring_your_own_data.md')
    opts['schema'] = str(found[0].resolve())
  schema = Path(str(opts['schema']))
  if not schema.is_file():
    raise FileNotFoundError(f'{schema}: schema file not found')
  opts['schema'] = str(schema.resolve())
  return opts


def convert(dataset: str, data_dir: str, manual_dir: str | None = None, size: str = 'default',
            sample_rate_hz: float = 100.0, window_length: int = 128, window_stride: int = 0,
            seed: int = 0, options: dict[str, Any] | None = None,
            beam_pipeline_options: str | None = None) -> str:
  """Builds ``dataset``; returns the output directory.

  With ``beam_pipeline_options`` ('runner=DataflowRunner,project=...'; needs apache-beam) the
  builder's Beam path runs on that runner (option ``beam=true`` is set).
  """
  cls = get_builder_class(dataset)
  options = dict(options or {})
  if dataset == 'lab_files':
    options = lab_schema_options(manual_dir, options)
  if beam_pipeline_options:
    options['beam'] = True
  cfg = builder_config(cls, size, sample_rate_hz, window_length, window_stride, seed, options)
  if manual_dir and not Path(manual_dir).is_dir():
    raise FileNotFoundError(f'--manual_dir {manual_dir} is not a directory')
  data_dir = os.path.expanduser(data_dir)
  manual_dir = os.path.expanduser(manual_dir) if manual_dir else None
  if not beam_pipeline_options:
    return records.build(cls, data_dir, cfg, manual_dir=manual_dir,
                         manual_dir_name='--manual_dir')
  try:
    from apache_beam.options.pipeline_options import PipelineOptions  # noqa: PLC0415
  except ImportError as e:
    raise ImportError("--beam_pipeline_options needs apache-beam: pip install -e '.[beam]'") from e
  flags = [f'--{o}' for o in beam_pipeline_options.split(',') if o]
  return records.build(cls, data_dir, cfg, manual_dir=manual_dir,
                       beam_options=PipelineOptions(flags=flags))


def main(argv: list[str] | None = None) -> int:
  ap = argparse.ArgumentParser(prog='python -m data_prep.convert', description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument('--dataset', help=f'one of {sorted(BUILDERS)}')
  ap.add_argument('--manual_dir', default=None, help='raw data folder (real data sets)')
  ap.add_argument('--data_dir', default=os.path.expanduser('~/tensorflow_datasets'))
  ap.add_argument('--size', default='default', help='tiny | default | large (synthetic sets)')
  ap.add_argument('--sample_rate_hz', type=float, default=100.0)
  ap.add_argument('--window_length', type=int, default=128)
  ap.add_argument('--window_stride', type=int, default=0, help='0 = non-overlapping')
  ap.add_argument('--seed', type=int, default=0)
  ap.add_argument('--option', action='append', default=[], metavar='KEY=VALUE',
                  help='builder option, repeatable')
  ap.add_argument('--beam_pipeline_options', default=None,
                  help="run the builder's Beam path, e.g. 'runner=DirectRunner,"
                  "direct_num_workers=8' (needs apache-beam)")
  ap.add_argument('--list', action='store_true', help='list the registered data sets')
  args = ap.parse_args(argv)
  if args.list:
    print('\n'.join(sorted(BUILDERS)))
    return 0
  if not args.dataset:
    ap.error('--dataset is required')
  if args.dataset not in BUILDERS:
    print(f'error: --dataset={args.dataset}: unknown data set (valid names: '
          f'{", ".join(sorted(BUILDERS))}; --list prints them)', file=sys.stderr)
    return 2
  try:
    path = convert(args.dataset, args.data_dir, args.manual_dir, args.size, args.sample_rate_hz,
                   args.window_length, args.window_stride, args.seed, parse_options(args.option),
                   args.beam_pipeline_options)
  except (FileNotFoundError, KeyError, ValueError, NotImplementedError, ImportError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  import tensorflow_datasets as tfds  # noqa: PLC0415

  info = tfds.builder_from_directory(path).info
  print(f'output: {path}')
  for name, split in info.splits.items():
    print(f'  {name}: {split.num_examples} examples')
  return 0


if __name__ == '__main__':
  sys.exit(main())
