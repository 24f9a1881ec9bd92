"""The training loop shared by pre-training and fine-tuning.

Resume order (as in big_vision): the run's own latest checkpoint, else a fresh state (which the
caller may have initialised from a pre-trained checkpoint). The data position is the step, so the
resumed run sees the same batches as an uninterrupted one.

A signal that asks the run to stop (Ctrl-C, SIGTERM; ``interrupt.py``, installed by main.py) is
honoured at the next step boundary: the loop saves a checkpoint at that step (marked
``interrupted``; a resumed run deletes it before its next save, so the checkpoints kept are those
of an unbroken run) and raises ``interrupt.Interrupted``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import numpy as np

from ssl_imu_jax import files, parallel
from ssl_imu_jax.errors import ConfigError
from ssl_imu_jax.training import checkpointing, interrupt
from ssl_imu_jax.training.metric_writers import MetricWriter

# Config keys that do not change what a run computes (where data live, logging, resume policy,
# and implementation choices equal up to float rounding).
IGNORED_KEYS = frozenset({'data_dir', 'data.manual_dir', 'train.log_every', 'train.progress',
                          'train.progress_every_s',
                          'train.checkpoint_every', 'train.eval_every', 'train.max_to_keep',
                          'train.prefetch', 'train.eval_batch_size', 'train.resume',
                          'data.stream', 'cache_embeddings', 'data.mix.manual_dir',
                          'train.batches_from', 'train.device_data_mb',
                          'model.encoder.conv_impl'})


# Keys added after fingerprints were first written, with the value their absence meant: a key at
# that value is left out of the fingerprint, so checkpoints written before the key existed still
# resume. Keys of the masked objective are left out of a run with another objective (they change
# nothing there).
ABSENT_MEANS = {'ssl.objective': 'nce', 'ssl.normalization': 'mean_std',
                'optimizer.schedule': 'warmup_cosine', 'model.backbone': 'resnet',
                'model.transformer.modalities': 'joint'}
MASKED_ONLY = ('ssl.mask_ratio',)
TRANSFORMER_ONLY = ('model.transformer.',)  # a run of the ResNet leaves these out


def _flatten(d: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, Mapping):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = list(v) if isinstance(v, tuple) else v
  return out


# Paths inside the work directory of this invocation enter fingerprints relative to it, as
# '<workdir>/...', so a work directory that was copied or moved still resumes (``run_root``).
WORKDIR = '<workdir>'
_RUN_ROOT: contextvars.ContextVar[str] = contextvars.ContextVar('ssl_imu_jax_run_root',
                                                                default='')


@contextlib.contextmanager
def run_root(workdir: str):
  """Within, config paths inside ``workdir`` (a sweep cell's ``probe_from``, the paper stage's
  own pre-trainings as ``init_from``) are fingerprinted relative to it. The outermost call wins:
  a sweep run by the paper stage keeps the paper's work directory as the root."""
  if _RUN_ROOT.get():
    yield
    return
  token = _RUN_ROOT.set(os.path.normpath(os.path.abspath(workdir)))
  try:
    yield
  finally:
    _RUN_ROOT.reset(token)


def relative_path(value: Any) -> Any:
  """``value`` as '<workdir>/rel' when it is an absolute path inside the current ``run_root``;
  anything else as it is."""
  root = _RUN_ROOT.get()
  if root and isinstance(value, str) and os.path.isabs(value):
    path = os.path.normpath(value)
    if path == root or path.startswith(root + os.sep):
      return WORKDIR + path[len(root):]
  return value


def _other_root(old: Any, new: Any) -> str | None:
  """The work directory a stored absolute path was inside, when ``old`` is such a path (written
  before paths were stored relative to the work directory) and ``new`` is '<workdir>/rel' with
  ``old`` ending in /rel: the same place of a work directory that was copied or moved since.
  None otherwise (paths stored relative compare as they are)."""
  if (isinstance(new, str) and new.startswith(WORKDIR + os.sep) and isinstance(old, str)
      and os.path.isabs(old)):
    tail, old = new[len(WORKDIR):], os.path.normpath(old)
    if old.endswith(tail) and len(old) > len(tail):
      return old[:-len(tail)]
  return None


def same_path(stored: str, current: str) -> bool:
  """Whether a path stored by an earlier run names the same place of the work directory as
  ``current`` (``config_changes`` for one path)."""
  return not config_changes({'path': stored}, {'path': current})


def fingerprint(cfg) -> dict[str, Any]:
  """A config as flat JSON-able {key: value}, without the keys that do not affect results; paths
  inside the work directory relative to it (``run_root``)."""
  import json  # noqa: PLC0415

  flat = _flatten(json.loads(cfg.to_json_best_effort()))
  if not flat.get('data.mix.dataset'):  # no second corpus: its knobs change nothing
    flat = {k: v for k, v in flat.items() if not k.startswith('data.mix.')}
  masked = flat.get('ssl.objective', 'nce') == 'masked'
  if not masked:
    flat = {k: v for k, v in flat.items() if not k.startswith(MASKED_ONLY)}
  if not (masked or flat.get('model.backbone', 'resnet') == 'transformer'):
    flat = {k: v for k, v in flat.items() if not k.startswith(TRANSFORMER_ONLY)}
  if masked:  # the masked objective has one backbone: model.backbone is not read
    flat.pop('model.backbone', None)
  flat = {k: v for k, v in flat.items() if k not in ABSENT_MEANS or v != ABSENT_MEANS[k]}
  return {k: relative_path(v) for k, v in sorted(flat.items()) if k not in IGNORED_KEYS}


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
  """'key: old -> new' for every key whose value differs (ignored keys left out).

  Paths are compared relative to the work directory (``run_root``): an absolute path stored by
  an older version inside this work directory equals its '<workdir>/...' form, and one inside
  another directory with the same relative path (the work directory was copied or moved) is the
  same place when every such path of the fingerprint points into that same other directory.
  """
  old = {k: relative_path(v) for k, v in old.items() if k not in IGNORED_KEYS}
  new = {k: relative_path(v) for k, v in new.items() if k not in IGNORED_KEYS}
  keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
  moved = {k: _other_root(old.get(k), new.get(k)) for k in keys}
  if len({r for r in moved.values() if r}) == 1:  # one consistent former work directory
    keys = [k for k in keys if moved[k] is None]
  return [f'{k}: {old.get(k, "<absent>")!r} -> {new.get(k, "<absent>")!r}' for k in keys]


def data_fingerprint(windows, train_idx) -> dict[str, Any]:
  """What a run trains on: the records (data set / builder config / version) and their sizes."""
  paths = str(getattr(windows, 'path', '') or '').split(' + ')  # ' + ': a pooled corpus
  records = ' + '.join('/'.join(os.path.normpath(p).split(os.sep)[-3:]) for p in paths)
  return {'records': records, 'num_windows': int(len(windows)),
          'num_train_windows': int(len(train_idx))}


def check_resume(ckpt: checkpointing.Checkpointer, config, data_fp: Mapping[str, Any]) -> None:
  """A run resumes only with the config and data it started with (``train.resume='force'``
  overrides); a ConfigError names every change. Checkpoints from before fingerprints pass."""
  step = ckpt.latest_step()
  if step is None:
    return
  _, meta = checkpointing.read_meta(ckpt.directory, step)
  saved = meta.get('fingerprint')
  if not saved:
    return
  changes = config_changes(saved['config'], fingerprint(config))
  changes += [f'data {k}: {saved["data"].get(k)!r} -> {v!r}' for k, v in data_fp.items()
              if saved['data'].get(k) != v]
  mode = str(config.train.get('resume', 'auto'))
  if mode not in ('auto', 'force'):
    raise ConfigError(f"config key train.resume={mode!r}; expected 'auto' or 'force'")
  if changes and mode != 'force':
    shown = '; '.join(changes[:6]) + (f'; and {len(changes) - 6} more' if len(changes) > 6 else '')
    raise ConfigError(f'{ckpt.directory} (step {step}) was trained with another config or data: '
                      f'{shown}. Use a new --workdir, or --config.train.resume=force to continue '
                      f'from it with the new one')


VALIDATION_FILE = 'validation.json'
BEST_DIR = 'best'


class EarlyStopping:
  """Validation loss every ``every`` steps; the best state kept (on the host, and in
  ``<workdir>/best`` with each checkpoint); a stop after ``patience`` validations without a
  new best (0: never early). The history goes to ``<workdir>/validation.json``.

  A run that resumes from its checkpoint at step k keeps the validations up to k and the best
  among them, so it continues the same history; a finished run is marked so and not resumed.
  """

  def __init__(self, workdir: str, loss_fn: Callable[[Any], float], every: int, patience: int,
               steps_per_epoch: int, total_steps: int):
    self.loss_fn, self.every, self.patience = loss_fn, int(every), int(patience)
    self.steps_per_epoch, self.total_steps = int(steps_per_epoch), int(total_steps)
    self.path = os.path.join(workdir, VALIDATION_FILE)
    self.best_ckpt = checkpointing.Checkpointer(os.path.join(workdir, BEST_DIR), max_to_keep=2)
    self.history: list[dict[str, float]] = []
    self.best_step, self.best_val, self.best_state = 0, math.inf, None
    self._saved_best = -1
    self.stopped_at = 0

  def saved(self) -> dict[str, Any]:
    if not os.path.exists(self.path):
      return {}
    with open(self.path, encoding='utf-8') as f:
      return json.load(f)

  def resume(self, start: int, state: Any) -> None:
    """Keeps the saved validations up to ``start`` and restores their best state."""
    self.history = [h for h in self.saved().get('history', []) if h['step'] <= start]
    if self.history:
      best = min(self.history, key=lambda h: (h['val_loss'], h['step']))
      self.best_step, self.best_val = int(best['step']), float(best['val_loss'])
      self.best_state = jax.device_get(self.best_ckpt.restore(state, self.best_step)[0])
      self._saved_best = self.best_step

  def validate(self, state: Any, step: int) -> bool:
    """Records the validation loss at ``step``; True when the run should stop."""
    loss = float(self.loss_fn(state))
    if not math.isfinite(loss):
      raise FloatingPointError(f'validation loss is {loss} at step {step}; stopping. Lower '
                               f'optimizer.learning_rate or check the data for NaN/Inf.')
    self.history.append({'step': int(step), 'epoch': step / self.steps_per_epoch,
                         'val_loss': loss})
    if loss < self.best_val:  # NaN never becomes the best
      self.best_step, self.best_val, self.best_state = step, loss, jax.device_get(state)
    since = sum(1 for h in self.history if h['step'] > self.best_step)
    return bool(self.patience) and since >= self.patience and step < self.total_steps

  def persist(self, finished: bool = False) -> None:
    """Saves the best state (if new) and then the history (atomically), before the run's own
    checkpoint, so that the history never names a best state that is not on disk."""
    if self.best_state is not None and self._saved_best != self.best_step:
      if self.best_step in self.best_ckpt.all_steps():  # written before a kill: same values
        self.best_ckpt.delete(self.best_step)
      self.best_ckpt.save(self.best_step, self.best_state, {'step': self.best_step},
                          wait=True)
      self._saved_best = self.best_step
    files.write_json_atomic(self.path, self.summary(finished))

  def summary(self, finished: bool = False) -> dict[str, Any]:
    """The figures a report needs: where the best was, how long it ran, whether it stopped."""
    last = self.history[-1]['step'] if self.history else 0
    late = [h for h in self.history if h['step'] > 0.75 * self.total_steps]
    # how much the best validation loss fell in the last quarter of the steps run (relative)
    early_best = min((h['val_loss'] for h in self.history if h['step'] <= 0.75 * last),
                     default=math.nan)
    late_gain = (max(0.0, (early_best - self.best_val) / early_best)
                 if math.isfinite(early_best) and early_best > 0 else 0.0)
    return {
        'finished': bool(finished), 'history': self.history, 'total_steps': self.total_steps,
        'steps_per_epoch': self.steps_per_epoch, 'best_step': int(self.best_step),
        'best_epoch': self.best_step / self.steps_per_epoch, 'best_val_loss': self.best_val,
        'steps_run': int(last), 'epochs_run': last / self.steps_per_epoch,
        'stopped_early': bool(last < self.total_steps and self.history),
        # the budget ran out while the validation loss was still falling: its best came in
        # the last quarter of the budget
        'still_improving': bool(last >= self.total_steps and late and
                                self.best_step > 0.75 * self.total_steps),
        'late_improvement': late_gain,
        'patience': self.patience, 'validate_every': self.every,
    }

  def close(self) -> None:
    self.best_ckpt.close()


def train_loop(*, state: Any, step_fn: Callable, rng: jax.Array, total_steps: int,
               batches: Callable[[int], Iterator[tuple[int, Any]]],
               ckpt: checkpointing.Checkpointer, meta: Mapping[str, Any],
               writer: MetricWriter, log_every: int, checkpoint_every: int,
               eval_fn: Callable[[Any], Mapping[str, float]] | None = None,
               eval_every: int = 0,
               early: EarlyStopping | None = None) -> tuple[Any, dict[str, float]]:
  """Runs ``step_fn`` from the latest checkpoint (if any) to ``total_steps``.

  ``step_fn(state, batch, rng) -> (state, metrics)`` is compiled, with the state donated.
  Metrics are fetched from the device only at log / checkpoint steps (and for a progress line
  when ``writer.due()``: at most one per ``progress_every_s`` of wall time), one step late so the
  device never waits for the host. A non-finite loss stops the run with FloatingPointError and
  nothing is saved after it, so the last good checkpoint stays the latest.

  ``early``: validation every ``early.every`` steps, the best state kept, and a stop after
  ``early.patience`` validations without a new best (saved with each checkpoint, so a resumed
  run continues the same history).

  A stop asked for by a signal (``interrupt.requested()``) ends the loop at the next step
  boundary: the validation history and a checkpoint at that step are saved (as at a checkpoint
  step), then ``interrupt.Interrupted`` is raised.

  Returns the final state and the last logged training metrics.
  """
  start = ckpt.latest_step()
  stale = None  # an interrupted run's extra checkpoint: deleted before this run's first save
  if start is not None:
    state, saved_meta = ckpt.restore(state)
    start = int(start)
    if saved_meta.get('interrupted'):
      stale = start
  else:
    start = 0
  if early is not None:
    early.resume(start, state)
  last: dict[str, float] = {}
  if start >= total_steps:
    writer.note(f'already finished at step {start} of {total_steps}; nothing to train '
                f'(checkpoints in {ckpt.directory})')
    return state, last
  where = f'resuming from step {start}' if start else 'starting at step 0'
  writer.note(f'{total_steps} steps on {jax.device_count()} {jax.default_backend()} device(s), '
              f'{where}; checkpoints every {checkpoint_every} steps in {ckpt.directory}')
  writer.start(start)

  def save(done: int, state, pending, metrics, **extra) -> None:
    """The checkpoint at ``done`` (the pending metrics logged and checked first)."""
    nonlocal last, stale
    if pending is not None:
      last = _log(writer, *pending)
    else:
      _check_finite(done, jax.device_get(metrics))
    if early is not None:
      early.persist()
    if stale is not None:  # the kept checkpoints become those of an unbroken run
      ckpt.delete(stale)
      stale = None
    ckpt.save(done, state, {**meta, 'step': done, **extra})

  with interrupt.checked():
    interrupt.check(start, total_steps)  # asked to stop before the first step
    try:
      pending = None  # (step, device metrics) of the previous step, read after the next dispatch
      shown = None    # the same for a progress line only (nothing written)
      for step, batch in batches(start):
        state, metrics = step_fn(state, batch, rng)
        done = step + 1
        if pending is not None:
          last = _log(writer, *pending)
          pending = None
        if shown is not None:
          writer.show(*_fetch(*shown))
          shown = None
        if done % log_every == 0 or done == total_steps:
          pending = (done, metrics)
        elif writer.due():
          shown = (done, metrics)
        stop = False
        if early is not None and (done % early.every == 0 or done == total_steps):
          if pending is not None:  # a NaN loss stops here, before it can become the best
            last = _log(writer, *pending)
            pending = None
          stop = early.validate(state, done)
          writer.write(done, {'loss': early.history[-1]['val_loss']}, prefix='val')
        saved = done % checkpoint_every == 0 or done == total_steps or stop
        if saved:
          save(done, state, pending, metrics)
          pending = None
        if eval_fn is not None and eval_every and (done % eval_every == 0 or done == total_steps):
          writer.write(done, eval_fn(state), prefix='eval')
        if stop:
          writer.note(f'stopped early at step {done} ({done / early.steps_per_epoch:.1f} '
                      f'epochs): no better validation loss in {early.patience} validations '
                      f'since step {early.best_step}')
          break
        if interrupt.requested() is not None and done < total_steps:
          if not saved:
            save(done, state, pending, metrics, interrupted=True)
            pending = None
          ckpt.wait()
          interrupt.check(done, total_steps)
      if pending is not None:
        last = _log(writer, *pending)
      if shown is not None:
        writer.show(*_fetch(*shown))
    finally:
      ckpt.wait()  # an interrupted run still completes the saves it started
  return state, last


@dataclasses.dataclass(frozen=True)
class FitResult:
  state: Any
  last: dict[str, float]       # the last logged training scalars
  final_eval: dict[str, float]  # eval_fn on the final state ({} without one)
  checkpoint_dir: str
  validation: dict[str, Any] = dataclasses.field(default_factory=dict)  # EarlyStopping.summary


@dataclasses.dataclass(frozen=True)
class Validation:
  """Early stopping for ``fit``: ``loss_fn(state)`` on held-out windows every ``every`` steps,
  a stop after ``patience`` validations without a new best; the best state is returned and is
  the run's last checkpoint."""

  loss_fn: Callable[[Any], float]
  every: int
  patience: int
  steps_per_epoch: int


def fit(config, workdir: str, windows, train_idx, *, state, step_fn, meta, tag: str, sharding,
        eval_fn=None, validation: Validation | None = None) -> FitResult:
  """A stage's whole run: checkpointer (resume) and config.json in ``<workdir>/checkpoints``,
  metric writer in ``workdir``, ``train_loop`` over ``windows[train_idx]`` with the knobs of
  ``config.train``, and the final evaluation. With ``validation``, the best state (not the last)
  is returned and saved as the run's latest checkpoint."""
  from ssl_imu_jax.data import input_pipeline  # noqa: PLC0415

  t = config.train
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, 'checkpoints'), t.max_to_keep)
  data_fp = data_fingerprint(windows, train_idx)
  check_resume(ckpt, config, data_fp)
  meta = {**meta, 'fingerprint': {'config': fingerprint(config), 'data': data_fp}}
  if parallel.is_writer():
    ckpt.write_config(config.to_json_best_effort(indent=2, sort_keys=True))
  writer = MetricWriter(workdir, t.steps, t.progress, tag=tag,
                        progress_every_s=float(t.get('progress_every_s', 30.0)))

  def batches(start):
    return input_pipeline.train_iterator(windows, train_idx, t.batch_size, config.seed, start,
                                         t.steps, sharding, prefetch=t.prefetch)

  if device_resident(t, windows):
    data = input_pipeline.device_arrays(windows, sharding)
    gather_step = _gather_step(step_fn, sharding)
    step_fn = lambda state, idx, rng: gather_step(state, data, idx, rng)  # noqa: E731

    def batches(start):  # noqa: F811
      return input_pipeline.index_iterator(train_idx, t.batch_size, config.seed, start, t.steps,
                                           sharding)

  log_every, checkpoint_every, eval_every = intervals(t)
  early = None if validation is None else EarlyStopping(
      workdir, validation.loss_fn, validation.every, validation.patience,
      validation.steps_per_epoch, int(t.steps))
  summary: dict[str, Any] = {}
  # A signal after the last step lets the run finish (the final evaluation, the best state):
  # the caller stops at its next boundary (a sweep: before its next cell).
  with interrupt.checked():
    try:
      done_before = early.saved() if early is not None else {}
      if done_before.get('finished'):  # stopped (early or not) in an earlier run: nothing to train
        summary = done_before
        writer.note(f'already finished (best validation at step {summary["best_step"]}); '
                    f'nothing to train (checkpoints in {ckpt.directory})')
        last = {}
      else:
        state, last = train_loop(state=state, step_fn=step_fn, rng=jax.random.key(config.seed),
                                 total_steps=t.steps, batches=batches, ckpt=ckpt, meta=meta,
                                 writer=writer, log_every=log_every,
                                 checkpoint_every=checkpoint_every, eval_fn=eval_fn,
                                 eval_every=eval_every if eval_fn is not None else 0, early=early)
        if early is not None:
          early.persist(finished=True)
          summary = early.summary(finished=True)
      if early is not None:
        state = _keep_best(ckpt, early, state, meta, summary)
      final_eval = dict(eval_fn(state)) if eval_fn is not None else {}
    finally:
      writer.close()
      ckpt.close()
      if early is not None:
        early.close()
  return FitResult(state, last, final_eval, ckpt.directory, summary)


def _keep_best(ckpt: checkpointing.Checkpointer, early: EarlyStopping, state, meta,
               summary: Mapping[str, Any]):
  """Makes the run's latest checkpoint hold the best validated state (idempotent: a rerun after
  a kill in between completes it) and returns that state."""
  ckpt.wait()
  last = ckpt.latest_step()
  _, saved_meta = checkpointing.read_meta(ckpt.directory, last)
  best = int(summary['best_step'])
  if saved_meta.get('scored') == 'best':
    return ckpt.restore(state, last)[0]
  best_state = early.best_state
  if best_state is None or early.best_step != best:
    best_state = early.best_ckpt.restore(state, best)[0]
  best_state = jax.device_put(best_state, jax.tree.map(lambda x: x.sharding, state))
  ckpt.delete(last)
  ckpt.save(last, best_state, {**meta, 'step': best, 'stopped_at': last, 'scored': 'best',
                               'validation': {k: v for k, v in summary.items()
                                              if k != 'history'}}, wait=True)
  return best_state


def device_resident(train_cfg, windows) -> bool:
  """Whether ``fit`` keeps the training windows on the device (config key train.batches_from:
  'host', 'device', or 'auto' = 'device' where they fit in train.device_data_mb)."""
  from ssl_imu_jax.data import input_pipeline  # noqa: PLC0415

  mode = train_cfg.get('batches_from', 'host')
  if mode not in ('host', 'device', 'auto'):
    raise ConfigError(f"config key train.batches_from must be 'host', 'device' or 'auto', got "
                      f'{mode!r}')
  possible = jax.process_count() == 1 and isinstance(windows.acc, np.ndarray)
  if mode == 'device' and not possible:
    raise ConfigError("config key train.batches_from='device' needs in-memory windows "
                      '(data.stream=False) and one process')
  if mode == 'auto':
    mb = input_pipeline.data_bytes(windows) / 2**20
    return possible and mb <= float(train_cfg.get('device_data_mb', 1024))
  return mode == 'device'


_GATHER_STEPS: dict[int, tuple[Any, Any]] = {}


def _gather_step(step_fn, sharding):
  """``(state, data, idx, rng) -> step_fn(state, data[idx], rng)`` compiled as one program
  (the batch gathered on the device, sharded like a host batch; the state donated)."""
  hit = _GATHER_STEPS.get(id(step_fn))
  if hit is None or hit[0] is not step_fn:
    def gstep(state, data, idx, rng):
      batch = {k: jax.lax.with_sharding_constraint(v[idx], sharding) for k, v in data.items()}
      return step_fn(state, batch, rng)

    hit = (step_fn, jax.jit(gstep, donate_argnums=(0,)))
    _GATHER_STEPS[id(step_fn)] = hit
  return hit[1]


def intervals(train_cfg) -> tuple[int, int, int]:
  """(log_every, checkpoint_every, eval_every); a 0 in the config follows ``train.steps``:
  steps/20, steps/4, steps/4 (at least 1)."""
  steps = int(train_cfg.steps)
  auto = (max(1, steps // 20), max(1, steps // 4), max(1, steps // 4))
  given = (train_cfg.log_every, train_cfg.checkpoint_every, train_cfg.eval_every)
  return tuple(int(g) if int(g) > 0 else a for g, a in zip(given, auto, strict=True))


def _fetch(step: int, metrics) -> tuple[int, dict[str, float]]:
  host = {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}
  _check_finite(step, host)
  return step, host


def _log(writer: MetricWriter, step: int, metrics) -> dict[str, float]:
  step, host = _fetch(step, metrics)
  writer.write(step, host)
  return host


def _check_finite(step: int, metrics: Mapping[str, Any]) -> None:
  loss = float(np.asarray(metrics['loss']))
  if not math.isfinite(loss):
    raise FloatingPointError(
        f'loss is {loss} at step {step}; stopping. The last good checkpoint is kept; lower '
        f'optimizer.learning_rate or check the input data for NaN/Inf.')
