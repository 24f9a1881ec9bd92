"""The training loop shared by pre-training and fine-tuning.

Resume order (as in big_vision): the run's own latest checkpoint, else a fresh state (which the
caller may have initialised from a pre-trained checkpoint). The data position is the step, so the
resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import numpy as np

from ssl_imu_jax import checkpointing, parallel
from ssl_imu_jax.errors import ConfigError
from ssl_imu_jax.metric_writers import MetricWriter

# Config keys that do not change what a run computes (where data live, logging, resume policy,
# and implementation choices equal up to float rounding).
IGNORED_KEYS = frozenset({'data_dir', 'data.manual_dir', 'train.log_every', 'train.progress',
                          'train.checkpoint_every', 'train.eval_every', 'train.max_to_keep',
                          'train.prefetch', 'train.eval_batch_size', 'train.resume',
                          'data.stream', 'cache_embeddings', 'data.mix.manual_dir',
                          'train.batches_from', 'train.device_data_mb',
                          'model.encoder.conv_impl'})


def _flatten(d: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, Mapping):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = list(v) if isinstance(v, tuple) else v
  return out


def fingerprint(cfg) -> dict[str, Any]:
  """A config as flat JSON-able {key: value}, without the keys that do not affect results."""
  import json  # noqa: PLC0415

  flat = _flatten(json.loads(cfg.to_json_best_effort()))
  if not flat.get('data.mix.dataset'):  # no second corpus: its knobs change nothing
    flat = {k: v for k, v in flat.items() if not k.startswith('data.mix.')}
  return {k: v for k, v in sorted(flat.items()) if k not in IGNORED_KEYS}


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
  """'key: old -> new' for every key whose value differs (ignored keys left out)."""
  old = {k: v for k, v in old.items() if k not in IGNORED_KEYS}
  new = {k: v for k, v in new.items() if k not in IGNORED_KEYS}
  return [f'{k}: {old.get(k, "<absent>")!r} -> {new.get(k, "<absent>")!r}'
          for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


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


def train_loop(*, state: Any, step_fn: Callable, rng: jax.Array, total_steps: int,
               batches: Callable[[int], Iterator[tuple[int, Any]]],
               ckpt: checkpointing.Checkpointer, meta: Mapping[str, Any],
               writer: MetricWriter, log_every: int, checkpoint_every: int,
               eval_fn: Callable[[Any], Mapping[str, float]] | None = None,
               eval_every: int = 0) -> tuple[Any, dict[str, float]]:
  """Runs ``step_fn`` from the latest checkpoint (if any) to ``total_steps``.

  ``step_fn(state, batch, rng) -> (state, metrics)`` is compiled, with the state donated.
  Metrics are fetched from the device only at log / checkpoint steps, one step late so the device
  never waits for the host. A non-finite loss stops the run with FloatingPointError and nothing is
  saved after it, so the last good checkpoint stays the latest.

  Returns the final state and the last logged training metrics.
  """
  start = ckpt.latest_step()
  if start is not None:
    state, _ = ckpt.restore(state)
    start = int(start)
  else:
    start = 0
  last: dict[str, float] = {}
  if start >= total_steps:
    writer.note(f'already finished at step {start} of {total_steps}; nothing to train '
                f'(checkpoints in {ckpt.directory})')
    return state, last
  where = f'resuming from step {start}' if start else 'starting at step 0'
  writer.note(f'{total_steps} steps on {jax.device_count()} {jax.default_backend()} device(s), '
              f'{where}; checkpoints every {checkpoint_every} steps in {ckpt.directory}')
  writer.start(start)
  try:
    pending = None  # (step, device metrics) of the previous step, read after the next dispatch
    for step, batch in batches(start):
      state, metrics = step_fn(state, batch, rng)
      done = step + 1
      if pending is not None:
        last = _log(writer, *pending)
        pending = None
      if done % log_every == 0 or done == total_steps:
        pending = (done, metrics)
      if done % checkpoint_every == 0 or done == total_steps:
        if pending is not None:
          last = _log(writer, *pending)
          pending = None
        else:
          _check_finite(done, jax.device_get(metrics))
        ckpt.save(done, state, {**meta, 'step': done})
      if eval_fn is not None and eval_every and (done % eval_every == 0 or done == total_steps):
        writer.write(done, eval_fn(state), prefix='eval')
    if pending is not None:
      last = _log(writer, *pending)
  finally:
    ckpt.wait()  # an interrupted run still completes the saves it started
  return state, last


@dataclasses.dataclass(frozen=True)
class FitResult:
  state: Any
  last: dict[str, float]       # the last logged training scalars
  final_eval: dict[str, float]  # eval_fn on the final state ({} without one)
  checkpoint_dir: str


def fit(config, workdir: str, windows, train_idx, *, state, step_fn, meta, tag: str, sharding,
        eval_fn=None) -> FitResult:
  """A stage's whole run: checkpointer (resume) and config.json in ``<workdir>/checkpoints``,
  metric writer in ``workdir``, ``train_loop`` over ``windows[train_idx]`` with the knobs of
  ``config.train``, and the final evaluation."""
  from ssl_imu_jax import input_pipeline  # noqa: PLC0415

  t = config.train
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, 'checkpoints'), t.max_to_keep)
  data_fp = data_fingerprint(windows, train_idx)
  check_resume(ckpt, config, data_fp)
  meta = {**meta, 'fingerprint': {'config': fingerprint(config), 'data': data_fp}}
  if parallel.is_writer():
    ckpt.write_config(config.to_json_best_effort(indent=2, sort_keys=True))
  writer = MetricWriter(workdir, t.steps, t.progress, tag=tag)

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
  try:
    state, last = train_loop(state=state, step_fn=step_fn, rng=jax.random.key(config.seed),
                             total_steps=t.steps, batches=batches, ckpt=ckpt, meta=meta,
                             writer=writer, log_every=log_every,
                             checkpoint_every=checkpoint_every, eval_fn=eval_fn,
                             eval_every=eval_every if eval_fn is not None else 0)
    final_eval = dict(eval_fn(state)) if eval_fn is not None else {}
  finally:
    writer.close()
    ckpt.close()
  return FitResult(state, last, final_eval, ckpt.directory)


def device_resident(train_cfg, windows) -> bool:
  """Whether ``fit`` keeps the training windows on the device (config key train.batches_from:
  'host', 'device', or 'auto' = 'device' where they fit in train.device_data_mb)."""
  from ssl_imu_jax import input_pipeline  # noqa: PLC0415

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


def _log(writer: MetricWriter, step: int, metrics) -> dict[str, float]:
  host = {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}
  _check_finite(step, host)
  writer.write(step, host)
  return host


def _check_finite(step: int, metrics: Mapping[str, Any]) -> None:
  loss = float(np.asarray(metrics['loss']))
  if not math.isfinite(loss):
    raise FloatingPointError(
        f'loss is {loss} at step {step}; stopping. The last good checkpoint is kept; lower '
        f'optimizer.learning_rate or check the input data for NaN/Inf.')
