"""Supervised fine-tuning on one subject-wise CV fold, from a pre-trained encoder or random init.

``train_and_evaluate(config, workdir, data_dir)`` trains, evaluates the held-out subjects in the
label's units and writes ``<workdir>/result.json`` (atomically: its presence means the cell is
complete) and ``<workdir>/model_card.md``. ``split.fold = -1`` (FINAL_FOLD) trains a model to
deploy on every subject of the data set, with no test fold.

Two backbones: the 1-D ResNet (NCE pre-training, ``model.encoder``) and the Transformer
(``ssl.objective='masked'`` pre-training, or NCE with ``model.backbone='transformer'``;
models/sequence.py). A
pre-trained arm takes its backbone from the checkpoint's meta record (the Transformer's tokens
must be the checkpoint's, meta['tokens']: ``match_tokens``); a random arm from
``model.backbone`` ('resnet' | 'transformer', sizes in ``model.transformer``). The Transformer's
inputs are scaled only (one pooled std per modality, refit on the training subjects: the masked
reference's normalisation).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from ssl_imu_jax import files, metrics, parallel
from ssl_imu_jax.data import input_pipeline, splits
from ssl_imu_jax.errors import ConfigError, MissingInputError
from ssl_imu_jax.models import ENCODERS, RegressionModel, model_card
from ssl_imu_jax.models.sequence import regression_model
from ssl_imu_jax.models.ssl_imu import (
  dtype_from_name,
  encoder_spec,
  is_transformer,
  transformer_sizes,
)
from ssl_imu_jax.models.transformer import token_channels
from ssl_imu_jax.training import checkpointing, losses, steps, train_state, trainer

RESULT_FILE = 'result.json'
# 'linear_probe': only the head trains (encoder frozen); 'full_from_probe': the reference's two
# stages, a linear probe and then the whole network fine-tuned from it; 'full': the whole network
# from a fresh head.
PROTOCOLS = ('linear_probe', 'full_from_probe', 'full')
NORM_POLICIES = ('train_subjects', 'checkpoint', 'auto')
BACKBONES = ('resnet', 'transformer')
PROBE_DIR = 'probe'
FINAL_FOLD = -1  # split.fold of a final model: all subjects train, none are held out
MODEL_CARD = 'model_card.md'


def check_protocol(protocol: str) -> None:
  if protocol not in PROTOCOLS:
    raise ConfigError(f'config key protocol must be one of {PROTOCOLS}, got {protocol!r}')


def check_config(config) -> None:
  """The mistakes a fine-tuning config can show before any data is read or built: the data
  set's name, the protocol, the input normalisation (each error names its key)."""
  input_pipeline.check_dataset(config.data.dataset, 'data.dataset')
  check_protocol(config.protocol)
  norm_policy(config, bool(config.init_from))
  if config.get('input_norm', 'train_subjects') == 'checkpoint' and not config.init_from:
    raise ConfigError("config key input_norm='checkpoint' needs config.init_from")
  backbone_config(config)


def backbone_config(config) -> ml_collections.ConfigDict:
  """The encoder config of a random-init arm: ``model.encoder`` (the ResNet; an encoder config
  that names ``backbone: 'transformer'`` itself, as a sweep's random arm copies it from the
  pre-trained arm's checkpoint, is the Transformer), or, with ``model.backbone='transformer'``,
  ``{'backbone': 'transformer', **model.transformer}``. A pre-trained arm uses its checkpoint's."""
  backbone = str(config.model.get('backbone', 'resnet'))
  if backbone not in BACKBONES:
    raise ConfigError(f'config key model.backbone must be one of {BACKBONES}, got {backbone!r}')
  if backbone == 'transformer':
    sizes = config.model.get('transformer') or {}
    return ml_collections.ConfigDict({'backbone': 'transformer', **transformer_sizes(sizes)})
  return config.model.encoder


def build_model(config: ml_collections.ConfigDict, encoder_cfg: ml_collections.ConfigDict,
                num_targets: int, use_gyr: bool, curve: bool = False):
  """The fine-tuning model (``models.sequence.regression_model``) of ``encoder_cfg``'s
  backbone; ``curve``: a per-time-step head (``num_targets`` = the curve's axes)."""
  check_protocol(config.protocol)
  return regression_model(encoder_cfg, head_dims=tuple(config.model.head_dims),
                          num_targets=num_targets, use_gyr=use_gyr,
                          freeze_encoder=config.protocol == 'linear_probe',
                          encoder_bn_adapt=bool(config.get('linear_probe_bn_adapt', True)),
                          dropout_rate=config.model.dropout_rate,
                          dtype=dtype_from_name(config.train.compute_dtype), curve=curve)


def _inputs(batch, stats, use_gyr):
  acc = steps.normalize(batch['acc'], stats['acc_mean'], stats['acc_std'])
  gyr = (steps.normalize(batch['gyr'], stats['gyr_mean'], stats['gyr_std']) if use_gyr
         else batch['gyr'])
  return acc, gyr


def target_loss(model, pred, y):
  """MSE of standardised targets: scalar targets [B, K] as before; a curve [B, T, A] over its
  present (finite) entries only (``losses.present_mse``: an axis the source lacks is NaN)."""
  if getattr(model, 'curve', False):
    return losses.present_mse(pred, y)
  return losses.mse(pred, y)


def make_train_step(config, model: RegressionModel, tx, schedule):
  """``(state, batch, rng) -> (state, metrics)``; MSE on standardised targets (a curve target:
  over its present entries, ``target_loss``).

  Input and target statistics come from ``state.norm`` (fitted on the training subjects), and
  so does the schedule's length (``schedule_steps``): one compiled step serves every cell.
  """

  def step(state, batch, rng):
    stats = state.norm
    y_mean, y_std = stats['y_mean'], stats['y_std']
    rng = jax.random.fold_in(rng, state.step)
    aug_rng, drop_rng = jax.random.split(rng)
    acc, gyr = batch['acc'], batch['gyr']
    if model.use_gyr:
      acc, gyr = steps.apply_augmentation(aug_rng, acc, gyr, config.augment)
    else:
      acc, _ = steps.apply_augmentation(aug_rng, acc, None, config.augment)
    acc, gyr = _inputs({'acc': acc, 'gyr': gyr}, stats, model.use_gyr)
    y = (batch['targets'] - y_mean) / y_std

    def loss_fn(params):
      pred, new_vars = model.apply({'params': params, 'batch_stats': state.batch_stats}, acc, gyr,
                                   train=True, mutable=['batch_stats'], rngs={'dropout': drop_rng})
      return target_loss(model, pred, y), new_vars.get('batch_stats', state.batch_stats)

    (loss, bstats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state, norms = steps.apply_gradients(state, tx, schedule, grads, bstats,
                                             total=stats['schedule_steps'])
    return new_state, {'loss': loss, **norms}

  return step


def cache_refusal(config, encoder_cfg=None) -> str:
  """Why this run cannot train on cached embeddings ('' = it can): the encoder must be frozen
  (a linear probe), its BatchNorm in inference mode (the Transformer: no dropout) and the
  inputs unaugmented, so that every window's embedding is one fixed array."""
  if not config.get('cache_embeddings', True):
    return 'cache_embeddings=False'
  if config.protocol != 'linear_probe':
    return f'protocol {config.protocol!r} trains the encoder'
  if encoder_cfg is not None and is_transformer(encoder_cfg):
    if transformer_sizes(encoder_cfg)['dropout'] > 0:
      return ("the frozen Transformer's dropout stays on during the probe (the masked "
              'reference)')
  elif config.get('linear_probe_bn_adapt', True):
    return ("the frozen encoder's BatchNorm adapts to each batch (linear_probe_bn_adapt=True, "
            'the reference default)')
  on = [k for k in ('rotation', 'scale', 'noise', 'time_shift') if config.augment.get(k)]
  if on:
    return f'augmentation ({", ".join(on)}) changes the inputs every step'
  return ''


def make_cached_train_step(config, model: RegressionModel, tx, schedule):
  """The linear-probe step on cached embeddings (``batch['acc']`` holds [B, N, E]): the same
  loss, random numbers and update as ``make_train_step`` with a frozen, inference-mode encoder."""
  del config

  def step(state, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    _, drop_rng = jax.random.split(rng)
    y = (batch['targets'] - state.norm['y_mean']) / state.norm['y_std']

    def loss_fn(params):
      pred = model.apply({'params': params, 'batch_stats': state.batch_stats}, batch['acc'],
                         train=True, method='from_embedding',
                         rngs={'dropout': drop_rng})
      return target_loss(model, pred, y)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    new_state, norms = steps.apply_gradients(state, tx, schedule, grads, state.batch_stats,
                                             total=state.norm['schedule_steps'])
    return new_state, {'loss': loss, **norms}

  return step


def make_cached_predict_step(model: RegressionModel):
  def predict(state, batch):
    pred = model.apply({'params': state.params, 'batch_stats': state.batch_stats}, batch['acc'],
                       train=False, method='from_embedding')
    return pred * state.norm['y_std'] + state.norm['y_mean']

  return predict


def make_embed_step(model: RegressionModel):
  def embed(state, batch):
    acc, gyr = _inputs(batch, state.norm, model.use_gyr)
    return model.apply({'params': state.params, 'batch_stats': state.batch_stats}, acc, gyr,
                       train=False, method='embed')

  return embed


def make_predict_step(model: RegressionModel):
  """Predictions in the label's units (de-standardised with ``state.norm``)."""

  def predict(state, batch):
    stats = state.norm
    acc, gyr = _inputs(batch, stats, model.use_gyr)
    pred = model.apply({'params': state.params, 'batch_stats': state.batch_stats}, acc, gyr,
                       train=False)
    return pred * stats['y_std'] + stats['y_mean']

  return predict


def pretrained_info(init_from: str) -> tuple[str, int, dict[str, Any]]:
  """(checkpoints dir, step, meta) of a pre-training run, its checkpoints dir (latest step) or
  one step directory ``<checkpoints>/<step>`` (an intermediate budget).

  Either objective: an NCE pre-training (its ResNet encoder, or with meta['encoder']['backbone']
  = 'transformer' its Transformer, tokens per modality) or a masked-reconstruction one
  (``ssl.objective='masked'``: its Transformer, meta['encoder']['backbone'] = 'transformer')."""

  try:
    ckpt_dir, step = checkpointing.resolve_checkpoint(init_from)
  except FileNotFoundError as e:
    raise MissingInputError(f'config key init_from: {e}') from None
  step, meta = checkpointing.read_meta(ckpt_dir, step)
  if meta.get('kind') != 'pretrain':
    raise ConfigError(f'config key init_from: {ckpt_dir} holds a {meta.get("kind")!r} checkpoint, '
                      f'expected a pre-training checkpoint')
  if checkpointing.objective(meta) == 'masked' and not is_transformer(meta.get('encoder', {})):
    raise ConfigError(f"config key init_from: {ckpt_dir}: pre-trained with ssl.objective="
                      f"'masked' but its meta record names no Transformer encoder")
  return ckpt_dir, step, meta


def select_checkpoint(candidates, data_cfg: ml_collections.ConfigDict) -> str:
  """The one pre-training checkpoint among ``candidates`` whose sample rate and window length
  are those of ``data_cfg`` (per-task pre-training); a clear error naming both otherwise.

  A single candidate is returned as it is: fine-tuning checks it against the data itself.
  """
  candidates = list(candidates)
  if len(candidates) == 1:
    return candidates[0]
  found = []
  for cand in candidates:
    ckpt_dir, _, meta = pretrained_info(cand)
    d = meta['dataset']
    rate, window = float(d['sample_rate_hz']), int(d['window_length'])
    found.append(f'{ckpt_dir} ({rate:g} Hz / {window} samples)')
    if abs(rate - float(data_cfg.sample_rate_hz)) < 1e-6 and window == int(data_cfg.window_length):
      return cand
  raise ConfigError(f'no pre-training checkpoint matches {data_cfg.dataset} at '
                    f'{float(data_cfg.sample_rate_hz):g} Hz / {int(data_cfg.window_length)} '
                    f'samples '
                    f'(config keys data.sample_rate_hz / data.window_length); candidates in '
                    f'config.init_from: {"; ".join(found) or "none"}')


def check_compatible(meta: dict[str, Any], ws: input_pipeline.WindowSet, ckpt_dir: str) -> None:
  """The encoder only makes sense on windows of the rate and length it was trained on."""
  d = meta['dataset']
  if abs(float(d['sample_rate_hz']) - ws.sample_rate_hz) > 1e-6:
    raise ConfigError(f'{ckpt_dir} was pre-trained at {d["sample_rate_hz"]} Hz but {ws.path} is at '
                      f'{ws.sample_rate_hz} Hz (config key data.sample_rate_hz)')
  if int(d['window_length']) != ws.window_length:
    raise ConfigError(f'{ckpt_dir} was pre-trained on {d["window_length"]}-sample windows but '
                      f'{ws.path} has {ws.window_length} (config key data.window_length)')


def optimizer_config(config) -> ml_collections.ConfigDict:
  """``config.optimizer``, with ``linear_probe_learning_rate`` (when > 0) as the peak rate of a
  linear probe (the probe stage of full_from_probe included)."""
  opt = config.optimizer
  probe_lr = float(config.get('linear_probe_learning_rate', 0.0) or 0.0)
  if config.protocol == 'linear_probe' and probe_lr > 0:
    opt = opt.copy_and_resolve_references()
    opt.learning_rate = probe_lr
  return opt


@dataclasses.dataclass(frozen=True)
class Programs:
  """The model, optimiser and compiled functions of a fine-tuning run."""

  model: RegressionModel
  tx: Any
  init: Any      # (rng, norm) -> TrainState, replicated
  step: Any      # (state, batch, rng) -> (state, metrics), state donated
  predict: Any   # (state, batch) -> predictions in label units
  train_step: Any      # the step before jit (multicell vmaps it over cells)
  embed: Any           # (state, batch) -> per-site embeddings [B, N, E] (inference mode)
  cached_step: Any     # the linear-probe step on cached embeddings
  cached_predict: Any  # predictions from cached embeddings


_PROGRAMS: dict[str, Programs] = {}


def programs(config, encoder_cfg, num_targets: int, use_gyr: bool, sample_shape, mesh,
             curve: bool = False) -> Programs:
  """Programs shared by every run that differs only in data (fold, fraction, init, statistics):
  a sweep traces and compiles them once per process instead of once per cell."""
  key = json.dumps({
      # The encoder as built (a checkpoint's config may lack keys that then take the defaults).
      'model': {k: v for k, v in config.model.to_dict().items() if k != 'encoder'},
      'encoder': encoder_spec(encoder_cfg), 'frozen': config.protocol == 'linear_probe',
      'bn_adapt': bool(config.get('linear_probe_bn_adapt', True)),
      'optimizer': optimizer_config(config).to_dict(), 'augment': config.augment.to_dict(),
      'dtype': config.train.compute_dtype,
      'k': num_targets, 'gyr': use_gyr, 'curve': bool(curve),
      'shape': list(sample_shape), 'devices': [d.id for d in mesh.devices.flat],
  }, sort_keys=True, default=str)
  if key not in _PROGRAMS:
    dsh, rep = parallel.data_sharding(mesh), parallel.replicated(mesh)
    model = build_model(config, encoder_cfg, num_targets, use_gyr, curve=curve)
    frozen = (lambda p: p[0] in ENCODERS) if config.protocol == 'linear_probe' else None
    tx, schedule = train_state.make_optimizer(optimizer_config(config), None, frozen)
    train_step = make_train_step(config, model, tx, schedule)
    _PROGRAMS[key] = Programs(
        model=model, tx=tx, init=steps.make_init(model, tx, sample_shape, mesh),
        step=jax.jit(train_step, in_shardings=(rep, dsh, rep), out_shardings=(rep, rep),
                     donate_argnums=(0,)),
        train_step=train_step,
        predict=jax.jit(make_predict_step(model), in_shardings=(rep, dsh)),
        embed=jax.jit(make_embed_step(model), in_shardings=(rep, dsh)),
        cached_step=jax.jit(make_cached_train_step(config, model, tx, schedule),
                            in_shardings=(rep, dsh, rep), out_shardings=(rep, rep),
                            donate_argnums=(0,)),
        cached_predict=jax.jit(make_cached_predict_step(model), in_shardings=(rep, dsh)))
  return _PROGRAMS[key]


def norm_policy(config, pretrained: bool) -> str:
  """The input-normalisation policy a run applies ('train_subjects' or 'checkpoint')."""
  mode = config.get('input_norm', 'train_subjects')
  if mode not in NORM_POLICIES:
    raise ConfigError(f'config key input_norm must be one of {NORM_POLICIES}, got {mode!r}')
  if mode == 'auto':
    return 'checkpoint' if pretrained else 'train_subjects'
  return mode


def input_stats(config, ws, train_idx, pretrain_meta, scale_only: bool = False
                ) -> dict[str, float]:
  """Input normalisation: statistics of this cell's training subjects, or the pre-trained
  encoder's own statistics (its input contract, as ``load_encoder`` applies them).
  ``scale_only`` (the Transformer): the training subjects' pooled std per modality, means 0
  (``fit_input_stats(normalization='scale')``, the masked reference's scaler).

  ``config.input_norm``: 'train_subjects' (the default: refit on every fold's training subjects
  for the pre-trained and the random arm alike, as the reference does, so the two arms differ
  only in their initialisation), 'checkpoint' (needs init_from), or 'auto' (the checkpoint's
  when initialising from one, else the training subjects': the arms then differ in more than
  the initialisation).
  """
  if config.get('input_norm', 'train_subjects') == 'checkpoint' and pretrain_meta is None:
    raise ConfigError("config key input_norm='checkpoint' needs config.init_from")
  if norm_policy(config, pretrain_meta is not None) == 'checkpoint':
    keep = ('acc_mean', 'acc_std') + (('gyr_mean', 'gyr_std') if ws.gyr is not None else ())
    return {k: float(pretrain_meta['normalization'][k]) for k in keep}
  return input_pipeline.fit_input_stats(ws, train_idx,
                                        normalization='scale' if scale_only else 'mean_std')


def match_tokens(ws: input_pipeline.WindowSet, tokens: list[str] | None,
                 where: str, gyr_optional: bool = False) -> input_pipeline.WindowSet:
  """The windows a Transformer takes: with a pre-trained one's ``tokens`` (meta['tokens'],
  e.g. 'acc/pelvis/x'), its sites in its order and its modalities (a checkpoint pre-trained
  without gyroscopes drops the windows' gyr), so every token channel means what it meant in
  pre-training; a ConfigError names what the data lack. ``tokens`` None (random init): the
  windows as they are. ``gyr_optional`` (tokens per modality, an NCE-pre-trained backbone): the
  acc tokens alone are whole, so windows without gyr (``data.use_gyr=False``) are taken."""
  if tokens is None:
    return ws
  tokens = [str(t) for t in tokens]
  sites = list(dict.fromkeys(t.split('/')[1] for t in tokens if t.startswith('acc/')))
  use_gyr = any(t.startswith('gyr/') for t in tokens)
  missing = [s_ for s_ in sites if s_ not in ws.sites]
  if missing:
    raise ConfigError(f'{where}: its Transformer was pre-trained on the sites {sites}; '
                      f'{ws.path} lacks {missing} (it has {list(ws.sites)}; config key '
                      f'data.imu_sites)')
  if use_gyr and ws.gyr is None and not gyr_optional:
    raise ConfigError(f'{where}: its Transformer was pre-trained with gyroscope tokens; '
                      f'{ws.path} is read without gyr (config key data.use_gyr, or an '
                      f'accelerometer-only data set)')
  out = ws
  if list(ws.sites) != sites:
    out = input_pipeline.select_sites(ws, sites)
  if not use_gyr and ws.gyr is not None:
    out = dataclasses.replace(out, gyr=None)
  want = tokens if out.gyr is not None else [t for t in tokens if t.startswith('acc/')]
  if token_channels(out.sites, out.gyr is not None) != want:
    raise ConfigError(f'{where}: its tokens {tokens} cannot be made from {ws.path}')
  return out


@dataclasses.dataclass(frozen=True)
class Budget:
  """How long a cell trains: ``steps`` in all (``train.epochs`` passes over its training
  windows when > 0, else ``train.steps``), validation every ``validate_every`` steps (0: no
  validation subjects, the last state is scored) and a stop after ``patience`` validations
  without a new best (0: never early)."""

  steps: int
  steps_per_epoch: int
  validate_every: int
  patience: int
  epochs: float          # the budget in passes over the training windows


def budget(config, n_train: int, validated: bool) -> Budget:
  """The cell's ``Budget`` from config.train (epochs, steps, batch_size, validate_every_epochs,
  patience_epochs) and its number of training windows."""
  t = config.train
  per_epoch = max(1, math.ceil(n_train / int(t.batch_size)))
  epochs = float(t.get('epochs', 0.0) or 0.0)
  if epochs < 0:
    raise ConfigError(f'config key train.epochs must be >= 0 (0 = train.steps), got {epochs}')
  steps = max(1, math.ceil(epochs * n_train / int(t.batch_size))) if epochs else int(t.steps)
  if steps < 1:
    raise ConfigError(f'config key train.steps must be >= 1, got {steps}')
  every = patience = 0
  if validated:
    every_epochs = float(t.get('validate_every_epochs', 1.0))
    if every_epochs <= 0:
      raise ConfigError(f'config key train.validate_every_epochs must be > 0, got {every_epochs}')
    every = max(1, round(every_epochs * n_train / int(t.batch_size)))
    patience = math.ceil(float(t.get('patience_epochs', 0.0) or 0.0) / every_epochs)
  return Budget(steps=steps, steps_per_epoch=per_epoch, validate_every=min(every, steps),
                patience=patience, epochs=steps * int(t.batch_size) / max(n_train, 1))


@dataclasses.dataclass
class Cell:
  """One fine-tuning run set up and ready to train (``prepare``), then reported (``finish``)."""

  config: ml_collections.ConfigDict
  workdir: str
  ws: input_pipeline.WindowSet
  train_idx: np.ndarray
  test_idx: np.ndarray
  state: Any
  meta: dict[str, Any]
  progs: Programs
  mesh: Any
  windows: input_pipeline.WindowSet  # what the step reads: ``ws`` or its cached embeddings
  step_fn: Any
  predict: Any
  refusal: str                       # why embeddings are not cached ('' = they are)
  val_idx: np.ndarray                # validation windows (early stopping; none: empty)
  plan: Budget                       # steps, epochs, validation interval and patience


_WINDOWS: dict[Any, input_pipeline.WindowSet] = {}


def curve_target(targets, path: str) -> str:
  """The curve label ``data.targets`` names ('' = scalar labels only). A curve target is
  fine-tuned alone: with other labels beside it, a ConfigError."""
  if not targets:
    return ''
  specs = input_pipeline.curve_specs(path)
  curves = [t for t in targets if t in specs]
  if curves and len(targets) > 1:
    raise ConfigError(f'config key data.targets={list(targets)}: a curve label '
                      f'({curves[0]!r}) is fine-tuned alone; name only it')
  return curves[0] if curves else ''


def load_windows(config, data_dir: str) -> input_pipeline.WindowSet:
  """The labelled windows of ``config.data``. The last set read is kept, read-only, for the next
  run in this process (a sweep's cells read one data set after another, each many times)."""
  path = input_pipeline.ensure_built(config.data, data_dir)
  key = (os.path.abspath(path), os.stat(path).st_mtime_ns, config.data.split,
         str(config.data.imu_sites), bool(config.data.use_gyr),
         str(config.data.get('targets', ())))
  if key not in _WINDOWS:
    targets = tuple(config.data.get('targets', ()) or ())
    curve = curve_target(targets, path)
    ws = input_pipeline.load_split(path, config.data.split, config.data.imu_sites,
                                   config.data.use_gyr, targets=() if curve else targets)
    if curve:
      ws = input_pipeline.with_curve_target(ws, config.data.split, curve)
    for a in (ws.acc, ws.gyr, ws.subject_id, ws.trial, ws.targets, ws.start_s):
      if a is not None:
        a.flags.writeable = False
    _WINDOWS.clear()
    _WINDOWS[key] = ws
  ws = _WINDOWS[key]
  input_pipeline.check_matches(ws, config.data)
  if not ws.target_names:
    raise ConfigError(f'{path}: data set {config.data.dataset!r} has no targets to fine-tune on')
  unit = split_unit(config)
  if unit != 'subject':  # the trials of one subject stand in for subjects from here on
    ws = dataclasses.replace(ws, subject_id=splits.units(ws.subject_id, ws.trial, unit, path))
  return ws


def split_unit(config) -> str:
  """``config.split.unit``: 'subject' (the default; absent in older configs) or 'trial'."""
  return str((config.get('split', None) or {}).get('unit', 'subject'))


def prepare(config: ml_collections.ConfigDict, workdir: str, data_dir: str,
            ws: input_pipeline.WindowSet | None = None) -> Cell:
  """Split, statistics, initial state (random, pre-trained encoder or probe) and programs."""
  os.makedirs(workdir, exist_ok=True)
  check_config(config)
  pre = None
  if config.init_from:
    pre = pretrained_info(config.init_from)
  ws = ws if ws is not None else load_windows(config, data_dir)
  encoder_cfg = backbone_config(config)
  if pre is not None:
    check_compatible(pre[2], ws, pre[0])
    encoder_cfg = ml_collections.ConfigDict(pre[2]['encoder'])
  transformer = is_transformer(encoder_cfg)
  if transformer:
    ws = match_tokens(ws, pre[2].get('tokens') if pre else None,
                      f'config key init_from: {pre[0]}' if pre else 'model.backbone',
                      gyr_optional=transformer_sizes(encoder_cfg)['modalities'] == 'separate')
  use_gyr = ws.gyr is not None
  final = int(config.split.fold) == FINAL_FOLD
  if final:
    train_idx, test_idx = np.arange(len(ws)), np.zeros(0, np.int64)
  else:
    folds = splits.assign_folds(ws.subject_id, config.split.num_folds, config.split.fold_seed)
    files.write_json_atomic(os.path.join(workdir, 'folds.json'), folds)
    train_idx, test_idx = splits.fold_indices(ws.subject_id, folds, config.split.fold)
  train_idx, val_idx = splits.train_validation_indices(
      ws.subject_id, train_idx, config.split.fraction,
      float(config.split.get('validation_fraction', 0.0)), config.split.fraction_seed,
      int(config.split.get('validation_seed', 0)))
  train_subjects = sorted(set(ws.subject_id[train_idx].tolist()))
  val_subjects = sorted(set(ws.subject_id[val_idx].tolist()))
  test_subjects = sorted(set(ws.subject_id[test_idx].tolist()))
  assert not (set(train_subjects) & set(test_subjects) or set(val_subjects) & set(test_subjects)
              or set(train_subjects) & set(val_subjects))
  plan = budget(config, len(train_idx), len(val_idx) > 0)
  config = config.copy_and_resolve_references()
  config.train.steps = plan.steps  # what trainer.fit runs (and config.json records)

  probe_dir = ''
  if config.protocol == 'full_from_probe':
    probe_dir = probe_checkpoint(config, workdir, data_dir, train_subjects)
  stats = input_stats(config, ws, train_idx, pre[2] if pre else None, scale_only=transformer)
  target_stats = input_pipeline.fit_target_stats(ws, train_idx)

  mesh = parallel.make_mesh()
  parallel.check_batch(config.train.batch_size, mesh)
  rep = parallel.replicated(mesh)
  curve = ws.curve is not None
  progs = programs(config, encoder_cfg, ws.targets.shape[-1] if curve else len(ws.target_names),
                   use_gyr, (1,) + ws.acc.shape[1:], mesh, curve=curve)
  norm = {'acc_mean': 0.0, 'acc_std': 1.0, 'gyr_mean': 0.0, 'gyr_std': 1.0, **stats,
          'y_mean': target_stats['mean'], 'y_std': target_stats['std'],
          'schedule_steps': float(plan.steps)}
  state = progs.init(steps.init_key(config.seed), train_state.norm_arrays(norm))
  if probe_dir:
    state = load_subtrees(state, progs.tx, probe_dir, None, rep, everything=True)
  elif pre is not None:
    state = load_encoders(state, progs.tx, pre[0], pre[1], rep)
  meta = {'kind': 'finetune', 'config': config.to_dict(), 'normalization': stats,
          'target_normalization': target_stats, 'targets': list(ws.target_names),
          **({'curve': ws.curve} if curve else {}),
          'encoder': encoder_cfg.to_dict(), 'init_from': pre[0] if pre else '',
          'probe_from': probe_dir, 'protocol': config.protocol, 'seed': int(config.seed),
          'train_subjects': train_subjects, 'validation_subjects': val_subjects,
          'test_subjects': test_subjects, 'final': final, 'budget': dataclasses.asdict(plan),
          'norm_policy': norm_policy(config, pre is not None),
          'input_scaling': 'scale' if transformer else 'mean_std',
          **({'tokens': token_channels(ws.sites, use_gyr)} if transformer else {}),
          'source': input_pipeline.source_summary(ws, config.data),
          **input_pipeline.input_facts(ws)}
  refusal = cache_refusal(config, encoder_cfg)
  windows, step_fn, predict = ws, progs.step, progs.predict
  if not refusal:  # a frozen encoder in inference mode: embed once, train the head on that
    windows = embedded_windows(progs, state, ws, np.union1d(np.union1d(train_idx, val_idx),
                                                            test_idx),
                               config.train.eval_batch_size, mesh, cache_key=(
                                   meta['init_from'], probe_dir, use_gyr,
                                   config.train.compute_dtype, json.dumps(norm, sort_keys=True)))
    step_fn, predict = progs.cached_step, progs.cached_predict
  return Cell(config, workdir, ws, train_idx, test_idx, state, meta, progs, mesh, windows,
              step_fn, predict, refusal, val_idx, plan)


def finish(cell: Cell, state, last: dict[str, float],
           validation: dict[str, Any] | None = None) -> dict[str, Any]:
  """Predicts the held-out subjects and writes result.json and the model card."""
  config, ws, meta, test_idx = cell.config, cell.ws, cell.meta, cell.test_idx
  y_pred = predict_windows(cell.predict, state, cell.windows, test_idx,
                           config.train.eval_batch_size, cell.mesh)
  y_true = ws.targets[test_idx]
  curve = ws.curve is not None
  result = {
      'final': meta['final'],
      'dataset': config.data.dataset,
      'targets': list(ws.target_names),
      'units': list(ws.target_units),
      'init': 'pretrained' if meta['init_from'] else 'random',
      'protocol': config.protocol,
      'use_gyr': ws.gyr is not None,
      'norm_policy': meta['norm_policy'],
      'linear_probe_bn_adapt': bool(config.get('linear_probe_bn_adapt', True)),
      'embedding_cache': 'used' if not cell.refusal else f'not used: {cell.refusal}',
      'probe_from': meta['probe_from'],
      'seed': int(config.seed),
      'fold': int(config.split.fold),
      'fraction': float(config.split.fraction),
      'split_unit': split_unit(config),
      'n_train': int(len(cell.train_idx)),
      'n_test': int(len(test_idx)),
      'train_subjects': meta['train_subjects'],
      'test_subjects': meta['test_subjects'],
      'train_loss': last.get('loss', float('nan')),
      'training': training_summary(cell, validation or {}),
      'metrics': {} if meta['final'] or curve else {
          t: metrics.regression_metrics(y_true[:, k], y_pred[:, k])
          for k, t in enumerate(ws.target_names)},
      'predictions': {} if curve else {'subject_id': ws.subject_id[test_idx].tolist(),
                                       'y_true': y_true.tolist(), 'y_pred': y_pred.tolist()},
  }
  if curve:
    result.update(curve_result(cell.workdir, ws, test_idx, y_true, y_pred))
  card = model_card.render_finetune(meta, ckpt_step=int(config.train.steps), result=result)
  files.write_text_atomic(os.path.join(cell.workdir, MODEL_CARD), card)
  files.write_json_atomic(os.path.join(cell.workdir, RESULT_FILE), result)
  result['predictions'] = {k: np.asarray(v) if k != 'file' else v
                           for k, v in result['predictions'].items()}
  if curve:  # the curves themselves are in the .npz beside result.json; returned as arrays
    result['predictions'].update(y_true=y_true, y_pred=y_pred)
  return result


CURVES_FILE = 'curves.npz'


def curve_result(workdir: str, ws: input_pipeline.WindowSet, test_idx: np.ndarray,
                 y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
  """The result.json fields of a curve target (a fine-tuned cell's or the feature baseline's):
  ``curve`` (its spec), ``curve_metrics`` (``metrics.curve_metrics``: per test subject over the
  samples where the true vertical force exceeds 0.02 BW, RMSE, rRMSE, R² and r per present axis,
  then mean ± sd over subjects), and ``predictions`` naming ``curves.npz`` in ``workdir``
  (subject_id [n], y_true / y_pred [n, T, A] in the label's units) instead of listing the
  curves."""
  spec = dict(ws.curve)
  axes = tuple(spec['axes'])
  sid = ws.subject_id[test_idx]
  files.write_npz_atomic(os.path.join(workdir, CURVES_FILE), subject_id=sid,
                         trial=ws.trial[test_idx], window=test_idx.astype(np.int64),
                         y_true=y_true.astype(np.float32), y_pred=y_pred.astype(np.float32))
  scored = {}
  if len(test_idx):
    scored = metrics.curve_metrics(y_true, y_pred, sid, axes=axes,
                                   present=tuple(bool(p) for p in spec['present']))
  return {'curve': {k: spec[k] for k in ('axes', 'present', 'unit', 'frame') if k in spec},
          'curve_metrics': scored,
          'predictions': {'subject_id': sid.tolist(), 'file': CURVES_FILE}}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       data_dir: str | None = None) -> dict[str, Any]:
  """Fine-tunes on the training subjects of ``config.split.fold``; evaluates its test subjects."""
  data_dir = data_dir or input_pipeline.resolve_data_dir(config, workdir)
  return fit_and_finish(prepare(config, workdir, data_dir))


def validation_loss(cell: Cell, state) -> float:
  """MSE of the standardised targets on the cell's validation windows (inference mode): the
  quantity the training loss minimises, on subjects the cell does not train on (a curve: over
  its present entries, as ``target_loss``)."""
  y_pred = predict_windows(cell.predict, state, cell.windows, cell.val_idx,
                           cell.config.train.eval_batch_size, cell.mesh)
  t = cell.meta['target_normalization']
  y_true = cell.ws.targets[cell.val_idx]
  z = (y_pred - y_true) / np.asarray(t['std'], np.float64)
  return float(np.mean(z[np.isfinite(y_true)] ** 2))  # a curve's absent entries do not count


def fit_and_finish(cell: Cell) -> dict[str, Any]:
  """Trains a prepared cell alone (resumable, ``trainer.fit``; early stopping on its validation
  subjects when it has some) and reports it."""
  config, plan = cell.config, cell.plan
  validation = None
  if len(cell.val_idx):
    validation = trainer.Validation(lambda state: validation_loss(cell, state),
                                    plan.validate_every, plan.patience, plan.steps_per_epoch)
  stage = 'probe' if config.protocol == 'linear_probe' else config.protocol
  out = trainer.fit(config, cell.workdir, cell.windows, cell.train_idx, state=cell.state,
                    step_fn=cell.step_fn, meta=cell.meta,
                    tag=f'finetune {config.data.dataset} {fold_name(config)} {stage}',
                    sharding=parallel.data_sharding(cell.mesh), validation=validation)
  return finish(cell, out.state, out.last, out.validation)


def fold_name(config) -> str:
  """'fold<k>', or 'all subjects' for a final model."""
  fold = int(config.split.fold)
  return 'all subjects' if fold == FINAL_FOLD else f'fold{fold}'


def training_summary(cell: Cell, validation: dict[str, Any]) -> dict[str, Any]:
  """How long the cell trained and where its scored state comes from (result.json, report)."""
  plan = cell.plan
  out = {'budget_steps': plan.steps, 'budget_epochs': plan.epochs,
         'steps_per_epoch': plan.steps_per_epoch, 'n_validation': int(len(cell.val_idx)),
         'validation_subjects': cell.meta['validation_subjects']}
  if validation:
    out.update({k: validation[k] for k in ('steps_run', 'epochs_run', 'best_step', 'best_epoch',
                                           'best_val_loss', 'stopped_early', 'still_improving',
                                           'late_improvement', 'patience')})
    out['scored'] = 'best validation loss'
    out['val_loss'] = [[h['epoch'], h['val_loss']] for h in validation['history']]
  else:
    out.update({'steps_run': plan.steps, 'epochs_run': plan.epochs, 'best_step': None,
                'best_epoch': None, 'stopped_early': False, 'still_improving': None,
                'late_improvement': None,
                'scored': 'last step (no validation subjects)'})
  return out


def probe_checkpoint(config, workdir: str, data_dir: str, train_subjects: list[int]) -> str:
  """The linear-probe checkpoint a 'full_from_probe' run starts from.

  ``config.probe_from`` names one (the sweep passes the sibling linear-probe cell); it must be a
  linear probe of the same init and training subjects. Without it, the probe is trained here
  first, in ``<workdir>/probe``, with this run's config and protocol 'linear_probe'.
  """
  src = config.get('probe_from', '')
  if not src:
    probe_cfg = config.copy_and_resolve_references()
    probe_cfg.unlock()
    probe_cfg.protocol = 'linear_probe'
    probe_cfg.probe_from = ''
    train_and_evaluate(probe_cfg, os.path.join(workdir, PROBE_DIR), data_dir)
    src = os.path.join(workdir, PROBE_DIR)
  ckpt_dir = checkpointing.find_checkpoint_dir(src)
  _, meta = checkpointing.read_meta(ckpt_dir)
  pcfg = meta.get('config', {})
  def where(p):
    return os.path.abspath(checkpointing.locate(p)) if p else ''

  want_init, got_init = where(config.init_from), where(pcfg.get('init_from', ''))
  problems = []
  if meta.get('kind') != 'finetune' or pcfg.get('protocol') != 'linear_probe':
    problems.append(f'it is a {meta.get("kind")!r} / {pcfg.get("protocol")!r} checkpoint, '
                    f"expected a 'linear_probe' fine-tuning")
  if sorted(meta.get('train_subjects', [])) != sorted(train_subjects):
    problems.append(f'its training subjects {meta.get("train_subjects")} differ from this '
                    f"run's {train_subjects}")
  if not trainer.same_path(got_init, want_init):  # a copied work directory: the same place
    problems.append(f'it started from {got_init or "random init"!r}, this run from '
                    f'{want_init or "random init"!r}')
  if problems:
    raise ConfigError(f'config key probe_from: {ckpt_dir} cannot start this full_from_probe run: '
                     + '; '.join(problems))
  return ckpt_dir


def load_encoders(state, tx, ckpt_dir: str, step: int, rep) -> train_state.TrainState:
  """Copies the pre-trained encoders (params + BatchNorm statistics) into a fresh state."""
  return load_subtrees(state, tx, ckpt_dir, step, rep)


def load_subtrees(state, tx, ckpt_dir: str, step: int | None, rep,
                  everything: bool = False) -> train_state.TrainState:
  """A fresh state with the encoder subtrees (or, ``everything``, all params and BatchNorm
  statistics: a probe's encoder and head) restored from a checkpoint; new optimiser state."""
  if step is None:
    step, _ = checkpointing.read_meta(ckpt_dir)
  names = list(state.params) if everything else [k for k in ENCODERS if k in state.params]
  target = {'params': {k: state.params[k] for k in names}}
  if state.batch_stats:
    target['batch_stats'] = {k: state.batch_stats[k] for k in names if k in state.batch_stats}
  restored = checkpointing.restore_subtrees(ckpt_dir, step, target)
  params = {**state.params, **restored['params']}
  bstats = {**state.batch_stats, **restored.get('batch_stats', {})}
  # Replicated like the state it replaces, so the compiled step sees one input sharding only.
  return jax.device_put(train_state.create(params, bstats, tx, state.norm), rep)


_EMBEDDINGS: dict[Any, tuple[np.ndarray, np.ndarray]] = {}
_EMBEDDINGS_KEPT = 2  # entries kept per process (cells of one fold and fraction share one)


def embedded_windows(progs: Programs, state, ws: input_pipeline.WindowSet, idx: np.ndarray,
                     batch_size: int, mesh, cache_key) -> input_pipeline.WindowSet:
  """``ws`` with ``acc`` replaced by the frozen encoder's embeddings [n, N, E] of the windows
  ``idx`` (others left zero), computed once per (data, encoder weights, normalisation) and
  reused by later cells in this process; ``gyr`` dropped."""
  key = (ws.path, ws.sites, len(ws), cache_key, checkpointing.params_digest(jax.device_get(
      {'params': {k: v for k, v in state.params.items() if k in ENCODERS},
       'batch_stats': state.batch_stats})))
  emb, done = _EMBEDDINGS.get(key, (None, np.zeros(len(ws), bool)))
  todo = np.setdiff1d(np.asarray(idx), np.flatnonzero(done))
  if len(todo):
    out = predict_windows(progs.embed, state, ws, todo, batch_size, mesh)
    if emb is None:
      emb = np.zeros((len(ws),) + out.shape[1:], np.float32)
    emb[todo] = out
    done = done.copy()
    done[todo] = True
  _EMBEDDINGS.pop(key, None)
  _EMBEDDINGS[key] = (emb, done)
  while len(_EMBEDDINGS) > _EMBEDDINGS_KEPT:
    _EMBEDDINGS.pop(next(iter(_EMBEDDINGS)))
  return dataclasses.replace(ws, acc=emb, gyr=None)


def predict_windows(predict, state, ws, idx, batch_size: int, mesh) -> np.ndarray:
  """Predictions for the windows ``idx``, in batches of at most ``batch_size``; a small set
  (a validation set at 10 % of the labels) runs in the next power of two, not a padded full
  batch: a few batch shapes, each compiled once per process."""
  bucket = 8
  while bucket < min(len(idx), int(batch_size)):
    bucket *= 2
  bs = steps.eval_batch_size(min(bucket, int(batch_size)), mesh)
  out = []
  for batch, n_real in input_pipeline.eval_batches(ws, idx, bs, parallel.data_sharding(mesh)):
    out.append(np.asarray(jax.device_get(predict(state, batch)))[:n_real])
  if out:
    return np.concatenate(out)
  return np.zeros((0,) + tuple(ws.targets.shape[1:]), np.float32)

