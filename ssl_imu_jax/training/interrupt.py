"""Ctrl-C (SIGINT) and SIGTERM stop a run at the next step boundary, resumably.

``main.py`` installs the handler around a stage (``stop_on_signals``); library code never does,
so in a notebook or a test Ctrl-C stays Python's KeyboardInterrupt. With the handler installed:

- The first signal asks the run to stop. Inside a region that checks for it at every step
  (``checked``: the training loop, a sweep cell) the handler only sets a flag; the loop saves a
  checkpoint at the step it has reached (``trainer.train_loop``) and raises ``Interrupted``. Outside
  such a region (building data, writing a report) ``Interrupted`` is raised at once: nothing there
  is lost by stopping (writes are atomic).
- The first signal also gives both signals back to the operating system's default action, so a
  second Ctrl-C (or SIGTERM) ends the process at once, even inside a long compiled step.
- ``main.py`` prints ``Interrupted.line()`` (one line: where, at which step, rerun to resume) and
  exits with 128 + the signal number (130 for SIGINT, 143 for SIGTERM).

The handler's own acknowledgement is written with ``os.write`` (no buffered stream is touched
from inside a signal handler).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_NAMES = {signal.SIGINT: 'Ctrl-C (SIGINT)', signal.SIGTERM: 'SIGTERM'}

_requested: int | None = None   # the signal that asked the run to stop (None: not asked)
_checked_depth = 0              # > 0 while some loop checks ``requested()`` at its boundaries
_activity: list[str] = []       # what runs, innermost last (names the stage / cell in the line)


class Interrupted(BaseException):  # noqa: N818 -- like KeyboardInterrupt, not an Exception
  """The run stopped because a signal asked it to; ``line()`` says where and how to resume."""

  def __init__(self, signum: int, step: int | None = None, total: int | None = None,
               where: str = '', note: str = ''):
    super().__init__(signum, step, total, where, note)
    self.signum, self.step, self.total = int(signum), step, total
    self.where, self.note = where, note

  @property
  def exit_code(self) -> int:
    return 128 + self.signum

  def line(self) -> str:
    at = '' if self.step is None else f' at step {self.step}' + (
        f' of {self.total}' if self.total is not None else '')
    where = f' in {self.where}' if self.where else ''
    note = f' ({self.note})' if self.note else ''
    return f'interrupted{at}{where}{note}; rerun the same command to resume'

  def __str__(self) -> str:
    return self.line()


def requested() -> int | None:
  """The signal number if a stop was asked for, else None (a plain read: cheap in a loop)."""
  return _requested


def current() -> str:
  """The innermost activity (``activity``), '' when none."""
  return _activity[-1] if _activity else ''


def check(step: int | None = None, total: int | None = None, note: str = '') -> None:
  """Raises ``Interrupted`` if a stop was asked for (a boundary: nothing is half done here)."""
  if _requested is not None:
    raise Interrupted(_requested, step, total, current(), note)


@contextlib.contextmanager
def activity(label: str) -> Iterator[None]:
  """Names what runs inside (a stage, a sweep cell) for the interrupted line."""
  _activity.append(label)
  try:
    yield
  finally:
    _activity.pop()


@contextlib.contextmanager
def checked() -> Iterator[None]:
  """A region that calls ``check`` (or ``requested``) at its boundaries: a signal inside it only
  sets the flag instead of raising where the code happens to be."""
  global _checked_depth
  _checked_depth += 1
  try:
    yield
  finally:
    _checked_depth -= 1


def _in_finalizer(frame) -> bool:
  """Whether the handler interrupted a garbage-collection callback or ``__del__``, where Python
  would print 'Exception ignored' and drop the exception (XLA's ``_xla_gc_callback``)."""
  while frame is not None:
    if frame.f_code.co_name in ('_xla_gc_callback', '__del__'):
      return True
    frame = frame.f_back
  return False


def _handler(signum, frame) -> None:
  global _requested
  if _requested is None:
    _requested = signum
  for s in SIGNALS:  # a second signal ends the process at once (the default action)
    signal.signal(s, signal.SIG_DFL)
  if _checked_depth > 0 or _in_finalizer(frame):
    label = _NAMES.get(signum, f'signal {signum}')
    os.write(2, f'\n{label}: stopping at the next step boundary and saving a checkpoint '
                f'(send it again to stop at once)\n'.encode())
    return
  raise Interrupted(signum, where=current())


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
  """Installs the handler for SIGINT and SIGTERM (main thread only) and restores the previous
  handlers afterwards; the stop request is cleared on the way out."""
  global _requested
  previous = {s: signal.getsignal(s) for s in SIGNALS}
  _requested = None
  for s in SIGNALS:
    signal.signal(s, _handler)
  try:
    yield
  finally:
    for s, h in previous.items():
      signal.signal(s, h if h is not None else signal.SIG_DFL)
    _requested = None
