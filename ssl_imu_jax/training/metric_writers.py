"""Scalars to a metrics JSONL file, TensorBoard event files (tensorboardX, no TensorFlow) and a
progress line on stderr (step, loss, retrieval accuracy, steps/s, ETA): at every logged step, and
at least every ``progress_every_s`` of wall time whatever the logging cadence (``due`` / ``show``:
the line only, nothing written)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping

import jax

from ssl_imu_jax import files


def _step_of(line: str) -> int | None:
  """The step of a metrics.jsonl row; None for a blank or half-written (killed) line."""
  try:
    return int(json.loads(line)['step'])
  except (ValueError, KeyError, TypeError):
    return None


def _summary_writer():
  """tensorboardX's SummaryWriter, imported without PyTorch. Where torch is installed (the test
  extras install it), tensorboardX imports it at import time only to name torch.Tensor in type
  hints: 2-4 s of CPU in every process that logs metrics. This writer logs Python floats, so the
  import is made to see no torch (unless the process already imported it)."""
  if 'tensorboardX' in sys.modules or 'torch' in sys.modules:
    from tensorboardX import SummaryWriter

    return SummaryWriter
  sys.modules['torch'] = None  # `import torch` raises ImportError while tensorboardX imports
  try:
    from tensorboardX import SummaryWriter
  finally:
    del sys.modules['torch']
  return SummaryWriter


class MetricWriter:
  """Writes on process 0 only; safe to call from every host."""

  def __init__(self, logdir: str, total_steps: int, progress: bool = True, tag: str = '',
               progress_every_s: float = 30.0):
    self.enabled = jax.process_index() == 0
    self.total_steps = total_steps
    self.progress = progress and self.enabled
    self.progress_every_s = float(progress_every_s)
    self.tag = tag
    self._tb = None
    self._t0 = None
    self._s0 = 0
    self._last_line = time.monotonic()
    if self.enabled:
      os.makedirs(logdir, exist_ok=True)
      self._jsonl = open(os.path.join(logdir, 'metrics.jsonl'), 'a')  # noqa: SIM115
      try:
        self._tb = _summary_writer()(logdir=os.path.join(logdir, 'tensorboard'))
      except ImportError:  # pragma: no cover - tensorboardX is a pinned requirement
        self._tb = None

  def start(self, step: int) -> None:
    """Marks the first step of this process; rates are timed from the first logged step on,
    so compilation does not enter the ETA. A run resumed at ``step`` drops the rows an
    interrupted run logged after it (they are logged again), so every step appears once."""
    self._t0, self._s0 = None, step
    self._last_line = time.monotonic()
    if self.enabled:
      self._truncate_after(step)

  def _truncate_after(self, step: int) -> None:
    path = self._jsonl.name
    self._jsonl.close()
    with open(path, encoding='utf-8') as f:
      lines = f.readlines()
    keep = [ln for ln in lines if _step_of(ln) is not None and _step_of(ln) <= step]
    if len(keep) != len(lines):
      files.write_text_atomic(path, ''.join(keep))
    self._jsonl = open(path, 'a')  # noqa: SIM115

  def note(self, message: str) -> None:
    """One line about the run (what runs, resuming or not, finished) on the progress stream."""
    if self.progress:
      print(f'[{self.tag}] {message}', file=sys.stderr, flush=True)

  def due(self) -> bool:
    """Whether a progress line is due: ``progress_every_s`` of wall time since the last line (a
    clock read; the caller then fetches that step's metrics, one step late, for ``show``)."""
    return (self.progress and self.progress_every_s > 0
            and time.monotonic() - self._last_line >= self.progress_every_s)

  def show(self, step: int, scalars: Mapping[str, float]) -> None:
    """A training progress line between logged steps (not written to metrics.jsonl)."""
    if self.progress:
      self._progress(step, scalars, 'train')

  def write(self, step: int, scalars: Mapping[str, float], prefix: str = 'train') -> None:
    if not self.enabled:
      return
    row = {'step': int(step), **{f'{prefix}/{k}': float(v) for k, v in scalars.items()}}
    self._jsonl.write(json.dumps(row) + '\n')
    self._jsonl.flush()
    if self._tb is not None:
      for k, v in scalars.items():
        self._tb.add_scalar(f'{prefix}/{k}', float(v), int(step))
    if self.progress:
      self._progress(step, scalars, prefix)

  def _progress(self, step: int, s: Mapping[str, float], prefix: str) -> None:
    rate = eta = float('nan')
    if prefix == 'train' and self._t0 is None:
      self._t0, self._s0 = time.time(), step  # the first logged step: compiled from here on
    elif self._t0 is not None and step > self._s0:
      rate = (step - self._s0) / max(time.time() - self._t0, 1e-9)
      eta = (self.total_steps - step) / rate
    shown = ' '.join(f'{k}={v:.4g}' for k, v in s.items()
                     if k in ('loss', 'top1', 'top5', 'mse', 'pearson_r', 'rmse'))
    timing = f'{rate:.2f} steps/s ETA {eta:.0f}s' if rate == rate else 'timing from here on'
    print(f'[{self.tag}] {prefix} step {step}/{self.total_steps} {shown} {timing}',
          file=sys.stderr, flush=True)
    self._last_line = time.monotonic()

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      if self._tb is not None:
        self._tb.close()
