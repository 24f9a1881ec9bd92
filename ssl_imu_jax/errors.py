"""Errors that are the user's to fix (a config key, a path, the data), not bugs.

``main.py`` prints these as one plain line on stderr and exits with status 2; any other exception
is a bug and keeps its traceback (``--verbose`` shows tracebacks for these too).
"""


class UserError(Exception):
  """A mistake in the command, the config or the input data; the message says what to change."""


class ConfigError(UserError, ValueError):
  """A config value that cannot work (names the key and what was expected)."""


class MissingInputError(UserError, FileNotFoundError):
  """A file or directory the command needs is not there (names the path and what was expected)."""


USER_ERRORS = (UserError, FileNotFoundError)  # a missing file is the user's to supply


def one_line(err: BaseException) -> str:
  """The error as the user reads it: its message and notes, without a traceback."""
  msg = str(err)
  if isinstance(err, KeyError) and len(err.args) == 1:
    msg = str(err.args[0])
  notes = [n for n in getattr(err, '__notes__', ()) if n not in msg]
  return '; '.join([msg.strip()] + notes)
