"""Self-supervised pre-training over a device mesh, with one of two objectives
(``config.ssl.objective``):

- 'nce' (the default): acc vs gyr InfoNCE on a ResNet encoder (Tan et al. 2023), or, with
  ``model.backbone='transformer'``, on the masked objective's Transformer
  (``ContrastiveTransformer``: acc and gyr tokens embedded apart, ``model.transformer.modalities
  ='separate'``), so the two objectives compare on one backbone (issue 27, the crossed pairing);
- 'masked': masked reconstruction on a Transformer (Tan et al. 2024): one contiguous block of
  each window replaced by a learned token, MSE on the masked steps (``make_masked_train_step``).
  It needs no gyroscope, so accelerometer-only corpora pre-train with it.

Entry point ``run(config, workdir)``; checkpoints in ``<workdir>/checkpoints`` with the config
beside them (``config.json``) and a model card (``MODEL_CARD.md``). The checkpoint's meta record
names the objective (``meta['objective']``) and the backbone (``meta['encoder']``; a
Transformer's ``backbone: 'transformer'``, its sizes and ``modalities``, and its token channels
``meta['tokens']``).
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssl_imu_jax import files, parallel
from ssl_imu_jax.data import input_pipeline
from ssl_imu_jax.errors import ConfigError
from ssl_imu_jax.models import ContrastiveModel
from ssl_imu_jax.models.ssl_imu import dtype_from_name, transformer_sizes
from ssl_imu_jax.models.transformer import (
  ContrastiveTransformer,
  MaskedImuModel,
  contiguous_mask,
  imu_tokens,
  token_channels,
)
from ssl_imu_jax.training import losses, steps, train_state, trainer

OBJECTIVES = ('nce', 'masked')
BACKBONES = ('resnet', 'transformer')
# The eval masks' random stream: window i of the held-out split is masked with
# fold_in(fold_in(key(seed), EVAL_MASK_STREAM), i) at every evaluation, whatever the batch size.
EVAL_MASK_STREAM = 0x6D61736B
NCE_DROPOUT_STREAM = 0x64726F70  # the NCE step's dropout key: fold_in(step key, this)


def objective(config: ml_collections.ConfigDict) -> str:
  """``config.ssl.objective`` ('nce' for configs written before the key existed)."""
  obj = str(config.ssl.get('objective', 'nce'))
  if obj not in OBJECTIVES:
    raise ConfigError(f'config key ssl.objective must be one of {OBJECTIVES}, got {obj!r}')
  return obj


def backbone(config: ml_collections.ConfigDict) -> str:
  """The network pre-trained: 'transformer' for the masked objective (its only backbone: there
  ``model.backbone`` is not read), else ``model.backbone`` ('resnet' when absent). A refused
  pairing of objective, backbone and ``model.transformer.modalities`` is one ConfigError line."""
  if objective(config) == 'masked':
    mods = transformer_sizes(config.model.get('transformer') or {})['modalities']
    if mods != 'joint':
      raise ConfigError(f"config key model.transformer.modalities={mods!r}: ssl.objective="
                        f"'masked' reconstructs every channel of a step from one token, so it "
                        f"needs 'joint'")
    return 'transformer'
  name = str(config.model.get('backbone', 'resnet'))
  if name not in BACKBONES:
    raise ConfigError(f'config key model.backbone must be one of {BACKBONES}, got {name!r}')
  if name == 'transformer':
    mods = transformer_sizes(config.model.get('transformer') or {})['modalities']
    if mods != 'separate':
      raise ConfigError(f"config key model.transformer.modalities={mods!r}: ssl.objective='nce' "
                        f"with model.backbone='transformer' embeds the acc and the gyr tokens "
                        f"apart to contrast them, so it needs 'separate' (configs/pretrain.py:"
                        f"nce_transformer sets it)")
  return name


def build_model(config: ml_collections.ConfigDict, use_gyr: bool = True):
  """The objective's model: ``ContrastiveModel`` (nce, ResNet), ``ContrastiveTransformer`` (nce,
  ``model.backbone='transformer'``) or ``MaskedImuModel`` (masked); Transformer sizes from
  ``config.model.transformer``; ``use_gyr=False`` for an accelerometer-only corpus (masked)."""
  net = backbone(config)
  dtype = dtype_from_name(config.train.compute_dtype)
  if net == 'transformer':
    t = transformer_sizes(config.model.transformer)
    sizes = {k: t[k] for k in ('width', 'depth', 'heads', 'ff', 'dropout', 'pos_base_factor')}
    if objective(config) == 'masked':
      return MaskedImuModel(**sizes, use_gyr=use_gyr, dtype=dtype)
    return ContrastiveTransformer(
        projection_dims=tuple(config.model.projection_dims), temperature=config.ssl.temperature,
        learnable_temperature=config.ssl.learnable_temperature,
        projection_batch_norm=config.model.get('projection_batch_norm', False), dtype=dtype,
        **sizes)
  return ContrastiveModel(encoder_config=config.model.encoder,
                          projection_dims=tuple(config.model.projection_dims),
                          temperature=config.ssl.temperature,
                          learnable_temperature=config.ssl.learnable_temperature,
                          projection_batch_norm=config.model.get('projection_batch_norm', False),
                          dtype=dtype_from_name(config.train.compute_dtype))


def ssl_loss(config, z_acc, z_gyr, temp, local_blocks: int = 1, weights_B=None):
  """``config.ssl.loss`` ('reference_nce' | 'info_nce') on projected embeddings."""
  return losses.contrastive_loss(config.ssl.get('loss', 'info_nce'), z_acc, z_gyr, temp,
                                 grouped=config.ssl.grouped, local_blocks=local_blocks,
                                 weights_B=weights_B,
                                 chunk_size=int(config.ssl.get('chunk_size', 0)))


def make_gradient_fn(config: ml_collections.ConfigDict, model: ContrastiveModel, num_devices: int):
  """``(params, batch_stats, acc, gyr, dropout_rng=None) -> (loss, batch_stats, metrics,
  grads)`` on normalised inputs; with ``train.grad_accum_steps`` = k, the mean of the k
  micro-batches' gradients (negatives then come from each micro-batch; micro-batch i's dropout
  key is ``fold_in(dropout_rng, i)``). ``dropout_rng`` feeds the Transformer's dropout (the
  ResNet has none and needs no key)."""
  local_blocks = num_devices if config.ssl.negatives == 'local' else 1
  accum = int(config.train.grad_accum_steps)

  def loss_fn(params, batch_stats, acc, gyr, dropout_rng):
    (z_acc, z_gyr, temp), new_vars = model.apply(
        {'params': params, 'batch_stats': batch_stats}, acc, gyr, train=True,
        mutable=['batch_stats'], rngs={} if dropout_rng is None else {'dropout': dropout_rng})
    loss, m = ssl_loss(config, z_acc, z_gyr, temp, local_blocks=local_blocks)
    return loss, (new_vars['batch_stats'], {**m, 'temperature': temp})

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def gradients(params, batch_stats, acc, gyr, dropout_rng=None):
    if accum == 1:
      (loss, (bstats, m)), grads = grad_fn(params, batch_stats, acc, gyr, dropout_rng)
      return loss, bstats, m, grads
    micro = lambda x: x.reshape((accum, x.shape[0] // accum) + x.shape[1:])

    def body(carry, xs):
      bstats, gsum = carry
      i, a, g_ = xs
      key = None if dropout_rng is None else jax.random.fold_in(dropout_rng, i)
      (l_, (bstats, m_)), g = grad_fn(params, bstats, a, g_, key)
      return (bstats, jax.tree.map(jnp.add, gsum, g)), (l_, m_)

    zeros = jax.tree.map(jnp.zeros_like, params)
    (bstats, grads), (ls, ms) = jax.lax.scan(body, (batch_stats, zeros),
                                             (jnp.arange(accum), micro(acc), micro(gyr)))
    grads = jax.tree.map(lambda g: g / accum, grads)
    return jnp.mean(ls), bstats, jax.tree.map(jnp.mean, ms), grads

  return gradients


def make_train_step(config: ml_collections.ConfigDict, model, tx, schedule, num_devices: int):
  """``(state, batch, rng) -> (state, metrics)``; batch = {'acc','gyr'} [B, N, T, 3] raw units.

  The input normalisation comes from ``state.norm``. The state is donated by the caller's jit.
  ``ssl.objective='masked'``: ``make_masked_train_step``.
  """
  if objective(config) == 'masked':
    return make_masked_train_step(config, model, tx, schedule)
  gradients = make_gradient_fn(config, model, num_devices)

  def step(state: train_state.TrainState, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    acc, gyr = steps.apply_augmentation(rng, batch['acc'], batch['gyr'], config.augment)
    stats = state.norm
    acc = steps.normalize(acc, stats['acc_mean'], stats['acc_std'])
    gyr = steps.normalize(gyr, stats['gyr_mean'], stats['gyr_std'])
    loss, bstats, m, grads = gradients(state.params, state.batch_stats, acc, gyr,
                                       nce_dropout_rng(rng))
    new_state, norms = steps.apply_gradients(state, tx, schedule, grads, bstats)
    return new_state, {'loss': loss, **m, **norms}

  return step


def nce_dropout_rng(step_rng: jax.Array) -> jax.Array:
  """The NCE step's dropout key (the Transformer's) from the step's key, which the augmentation
  uses as it is."""
  return jax.random.fold_in(step_rng, NCE_DROPOUT_STREAM)


def masked_inputs(state: train_state.TrainState, batch, use_gyr: bool):
  """(acc, gyr or None) of a batch, normalised with ``state.norm`` (with
  ``ssl.normalization='scale'`` the means are 0: divided only)."""
  stats = state.norm
  acc = steps.normalize(batch['acc'], stats['acc_mean'], stats['acc_std'])
  gyr = steps.normalize(batch['gyr'], stats['gyr_mean'], stats['gyr_std']) if use_gyr else None
  return acc, gyr


def masked_step_rngs(rng: jax.Array, step) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(augmentation, mask, dropout) keys of training step ``step`` from the run's key: a new mask
  and new dropout every step."""
  aug, mask, dropout = jax.random.split(jax.random.fold_in(rng, step), 3)
  return aug, mask, dropout


def make_masked_train_step(config: ml_collections.ConfigDict, model: MaskedImuModel, tx,
                           schedule):
  """``(state, batch, rng) -> (state, metrics)`` of the masked objective (Tan et al. 2024).

  batch = {'acc', 'gyr'} [B, N, T, 3] raw units (gyr [B, N, T, 0] or ignored for an
  accelerometer-only corpus); tokens [B, T, C] (``imu_tokens``: C = 6N, acc channels first,
  site-major), scaled by ``state.norm``; one contiguous block of round(mask_ratio x T) steps per
  window (``contiguous_mask`` [B, T], drawn from this step's key: a new block every step)
  replaced by the learned token; dropout on (this step's key); loss = ``losses.masked_mse`` of
  the reconstruction [B, T, C] against the scaled tokens, on the masked steps only.

  Multi-device: the batch is sharded on the mesh axis 'data' and the state replicated, as for
  NCE, and jit computes the loss over the global batch. Unlike NCE, the loss needs no global
  negatives: each window's term depends on that window alone, so the global loss is the mean of
  the per-device means (every window masks the same number of steps), and its gradient is the
  mean of the per-device gradients -- plain data parallelism. (``ssl.negatives``,
  ``ssl.chunk_size`` do not apply.) The mask and dropout draws are the same on any device count
  (threefry keys, partitionable). The state is donated by the caller's jit.
  """
  ratio = float(config.ssl.mask_ratio)
  use_gyr = model.use_gyr

  def loss_fn(params, acc, gyr, mask, dropout_rng):
    _, recon = model.apply({'params': params}, acc, gyr, mask, train=True,
                           rngs={'dropout': dropout_rng})
    return losses.masked_mse(recon, imu_tokens(acc, gyr), mask)

  grad_fn = jax.value_and_grad(loss_fn)

  def step(state: train_state.TrainState, batch, rng):
    aug_rng, mask_rng, dropout_rng = masked_step_rngs(rng, state.step)
    acc, gyr = steps.apply_augmentation(aug_rng, batch['acc'],
                                        batch['gyr'] if use_gyr else None, config.augment)
    acc, gyr = masked_inputs(state, {'acc': acc, 'gyr': gyr}, use_gyr)
    mask = contiguous_mask(mask_rng, acc.shape[0], acc.shape[2], ratio)
    loss, grads = grad_fn(state.params, acc, gyr, mask, dropout_rng)
    new_state, norms = steps.apply_gradients(state, tx, schedule, grads, state.batch_stats)
    return new_state, {'loss': loss, **norms}

  return step


def eval_masks(seed: int, index_B, length: int, ratio: float) -> jax.Array:
  """[B, T] eval masks: window ``index_B[b]`` of the held-out split gets the same block at every
  evaluation, whatever the batch size or device count, so evaluations compare."""
  key = jax.random.fold_in(jax.random.key(seed), EVAL_MASK_STREAM)
  one = lambda i: contiguous_mask(jax.random.fold_in(key, i), 1, length, ratio)[0]  # noqa: E731
  return jax.vmap(one)(index_B)


def make_masked_eval_step(config: ml_collections.ConfigDict, model: MaskedImuModel):
  """Masked MSE on padded eval batches (dropout off, the fixed ``eval_masks``), beside two
  references on the same masked steps: ``zero_loss`` (predicting 0 = the scaled signal's mean
  square) and ``mean_loss`` (predicting each channel's mean over the window's unmasked steps)."""
  ratio = float(config.ssl.mask_ratio)
  use_gyr = model.use_gyr

  def step(state, batch):
    acc, gyr = masked_inputs(state, batch, use_gyr)
    x = imu_tokens(acc, gyr)
    mask = eval_masks(config.seed, batch['index'], x.shape[1], ratio)
    _, recon = model.apply({'params': state.params}, acc, gyr, mask, train=False)
    # Padding windows (weight 0) leave the mask; every real window masks the same number of
    # steps, so the mean over masked steps is the mean of the windows' masked MSEs.
    real = mask & (batch['weights'][:, None] > 0)
    visible = (~mask)[..., None].astype(x.dtype)
    visible_mean = jnp.sum(visible * x, 1, keepdims=True) / jnp.sum(visible, 1, keepdims=True)
    return {'loss': losses.masked_mse(recon, x, real),
            'zero_loss': losses.masked_mse(jnp.zeros_like(x), x, real),
            'mean_loss': losses.masked_mse(jnp.broadcast_to(visible_mean, x.shape), x, real)}

  return step


def make_eval_step(config: ml_collections.ConfigDict, model):
  """Loss and retrieval accuracy (top-1 / top-5 within the batch) on padded eval batches;
  ``ssl.objective='masked'``: ``make_masked_eval_step``."""
  if objective(config) == 'masked':
    return make_masked_eval_step(config, model)

  def step(state, batch):
    stats = state.norm
    acc = steps.normalize(batch['acc'], stats['acc_mean'], stats['acc_std'])
    gyr = steps.normalize(batch['gyr'], stats['gyr_mean'], stats['gyr_std'])
    z_acc, z_gyr, temp = model.apply({'params': state.params, 'batch_stats': state.batch_stats},
                                     acc, gyr, train=False)
    loss, m = ssl_loss(config, z_acc, z_gyr, temp, weights_B=batch['weights'])
    return {'loss': loss, **m}

  return step


class Training(NamedTuple):
  """What ``build_training`` returns: the pieces ``run`` trains with."""

  model: ContrastiveModel
  tx: Any
  schedule: Any
  state: train_state.TrainState
  step_fn: Any  # jitted (state, batch, rng) -> (state, metrics); the state is donated
  mesh: jax.sharding.Mesh
  data_sharding: jax.sharding.NamedSharding
  replicated: jax.sharding.NamedSharding
  eval_step: Any = None  # jitted (state, batch) -> metrics on a padded eval batch


def build_training(config: ml_collections.ConfigDict, sample_shape: tuple[int, ...],
                   stats: dict[str, float], mesh=None) -> Training:
  """The model, optimiser, initial state on the mesh and the jitted, state-donating train step
  of ``run`` (the one implementation; benchmarks/pretrain_throughput.py times it too).

  ``sample_shape`` is one batch's [1, N, T, 3]; ``stats`` the input normalisation
  (``input_pipeline.fit_input_stats``; without gyr statistics the corpus is accelerometer-only);
  ``mesh`` defaults to all devices.
  """
  mesh = parallel.make_mesh() if mesh is None else mesh
  parallel.check_batch(config.train.batch_size, mesh)
  if config.train.batch_size % config.train.grad_accum_steps:
    raise ConfigError('config key train.batch_size must be divisible by train.grad_accum_steps')
  if objective(config) == 'masked' and int(config.train.grad_accum_steps) != 1:
    raise ConfigError("config key train.grad_accum_steps must be 1 with ssl.objective='masked' "
                      '(gradient accumulation is implemented for the NCE step only)')
  p = programs(config, tuple(sample_shape), 'gyr_std' in stats, mesh)
  state = p.init(steps.init_key(config.seed), train_state.norm_arrays(stats))
  return Training(p.model, p.tx, p.schedule, state, p.step, mesh, parallel.data_sharding(mesh),
                  parallel.replicated(mesh), p.eval)


class Programs(NamedTuple):
  """The jitted programs of one pre-training set-up (``programs``)."""

  model: Any
  tx: Any
  schedule: Any
  init: Any   # (rng, norm) -> replicated TrainState
  step: Any   # (state, batch, rng) -> (state, metrics); the state is donated
  eval: Any   # (state, batch) -> metrics


_PROGRAMS: dict[str, Programs] = {}

# config.train's knobs that only steer I/O (logging, checkpoints, the input pipeline): runs that
# differ in them alone run the same programs.
_IO_KNOBS = ('log_every', 'checkpoint_every', 'eval_every', 'max_to_keep', 'prefetch',
             'batches_from', 'device_data_mb', 'progress', 'progress_every_s', 'resume')


def programs(config: ml_collections.ConfigDict, sample_shape: tuple[int, ...], use_gyr: bool,
             mesh) -> Programs:
  """The model, optimiser and jitted programs, shared by every run in the process that differs
  only in data source, statistics, I/O knobs or (NCE) seed, as finetune.programs: a pre-training
  seed series, or the objectives comparison, traces and compiles them once."""
  # Every knob keys the programs except those known not to reach them (a new knob is keyed
  # until shown otherwise): the data's source (not its window), I/O knobs and, for NCE, the seed
  # (it reaches the programs only as the init key; the masked eval step draws its masks from it).
  cfg = config.to_dict()
  cfg['data'] = {'window_length': config.data.window_length}
  cfg['train'] = {k: v for k, v in cfg['train'].items() if k not in _IO_KNOBS}
  for k in ('data_dir', 'stage') + (() if objective(config) == 'masked' else ('seed',)):
    cfg.pop(k, None)
  key = json.dumps({'config': cfg, 'shape': list(sample_shape), 'gyr': bool(use_gyr),
                    'devices': [d.id for d in mesh.devices.flat]}, sort_keys=True, default=str)
  if key not in _PROGRAMS:
    model = build_model(config, use_gyr=use_gyr)
    tx, schedule = train_state.make_optimizer(config.optimizer, config.train.steps)
    dsh, rep = parallel.data_sharding(mesh), parallel.replicated(mesh)
    _PROGRAMS[key] = Programs(
        model=model, tx=tx, schedule=schedule,
        init=steps.make_init(model, tx, tuple(sample_shape), mesh),
        step=jax.jit(make_train_step(config, model, tx, schedule, mesh.devices.size),
                     in_shardings=(rep, dsh, rep), out_shardings=(rep, rep), donate_argnums=(0,)),
        eval=jax.jit(make_eval_step(config, model), in_shardings=(rep, dsh)))
  return _PROGRAMS[key]


def check_mask_ratio(config: ml_collections.ConfigDict) -> None:
  """ssl.mask_ratio must mask at least one step and leave at least one visible."""
  t, ratio = int(config.data.window_length), float(config.ssl.mask_ratio)
  n = int(round(ratio * t))
  if not 0 < n < t:
    raise ConfigError(f'config key ssl.mask_ratio={ratio} masks {n} of the {t} steps of a window '
                      f'(data.window_length); expected at least 1 and fewer than {t}')


def make_eval_fn(config: ml_collections.ConfigDict, model, held_out: input_pipeline.WindowSet,
                 setup: Training):
  """``state -> {metric: mean over the held-out windows}``: the objective's eval step over fixed,
  padded batches (pads weigh 0)."""
  eval_step = setup.eval_step
  eval_bs = steps.eval_batch_size(config.train.eval_batch_size, setup.mesh)
  with_index = objective(config) == 'masked'  # per-window eval masks

  def eval_fn(st):
    tot, n = {}, 0
    for batch, n_real in input_pipeline.eval_batches(held_out, np.arange(len(held_out)),
                                                     eval_bs, setup.data_sharding,
                                                     with_index=with_index):
      m = jax.device_get(eval_step(st, batch))
      for k, v in m.items():
        tot[k] = tot.get(k, 0.0) + float(v) * n_real
      n += n_real
    return {k: v / n for k, v in tot.items()}

  return eval_fn


def run(config: ml_collections.ConfigDict, workdir: str, data_dir: str) -> dict[str, Any]:
  """Pre-trains (or resumes) into ``workdir``; returns the last training and eval metrics."""
  os.makedirs(workdir, exist_ok=True)
  input_pipeline.check_dataset(config.data.dataset, 'data.dataset')
  if input_pipeline.mix_config(config.data) is not None:
    input_pipeline.check_dataset(config.data.mix.dataset, 'data.mix.dataset')
  if config.ssl.negatives not in ('global', 'local'):
    raise ConfigError(f"config key ssl.negatives must be 'global' or 'local', got "
                      f'{config.ssl.negatives!r}')
  if config.ssl.get('loss', 'info_nce') not in losses.LOSSES:
    raise ConfigError(f'config key ssl.loss must be one of {losses.LOSSES}, got '
                      f'{config.ssl.loss!r}')
  obj = objective(config)
  backbone(config)  # a refused pairing stops here, before the data are read
  if obj == 'masked':
    check_mask_ratio(config)
  stream = bool(config.data.get('stream', False))
  train, held_out = input_pipeline.load_corpus(config.data, data_dir, stream=stream)
  path = train.path
  if train.gyr is None and obj == 'nce':
    raise ConfigError(
        f"{path}: {config.data.dataset!r} is read without gyroscopes (an accelerometer-only "
        f"corpus, or config key data.use_gyr=False), and ssl.objective='nce' "
        f'contrasts the accelerometer window of a sensor with its gyroscope window, so it has '
        f'nothing to pair; pre-train it with the masked objective (configs/pretrain.py:masked, '
        f"ssl.objective='masked': reconstruction of the acc channels), or pre-train on a corpus "
        f'with gyroscopes (or use released weights) and fine-tune on this one with '
        f'--config.data.use_gyr=False (the acc encoder alone)')
  if held_out is not None:
    shared = set(train.subject_id.tolist()) & set(held_out.subject_id.tolist())
    if shared:
      raise ConfigError(f'{path}: subjects {sorted(shared)[:5]} are in both {config.data.split!r} '
                        f'and {config.data.eval_split!r}')
  stats = input_pipeline.fit_input_stats(
      train, np.arange(len(train)), normalization=str(config.ssl.get('normalization', 'mean_std')))

  setup = build_training(config, (1,) + tuple(train.acc.shape[1:]), stats)
  model, state, step_fn = setup.model, setup.state, setup.step_fn
  dsh = setup.data_sharding

  meta = {
      'kind': 'pretrain',
      'config': config.to_dict(),
      'dataset': {'name': config.data.dataset, 'path': path, 'split': config.data.split,
                  'sites': list(train.sites), 'sample_rate_hz': train.sample_rate_hz,
                  'window_length': train.window_length, 'num_windows': len(train),
                  'subjects': sorted(set(train.subject_id.tolist())),
                  **({'mix': train.metadata['mix']} if 'mix' in train.metadata else {})},
      'normalization': stats,
      'objective': obj,
      'data_position': 'step',  # batches are a pure function of (data seed, step)
  }
  if backbone(config) == 'transformer':  # its sizes, token form and channels, in order
    meta['encoder'] = {'backbone': 'transformer',
                       **transformer_sizes(config.model.transformer)}
    meta['tokens'] = token_channels(train.sites, train.gyr is not None)
    if obj == 'masked':
      meta['mask_ratio'] = float(config.ssl.mask_ratio)
  else:
    meta['encoder'] = config.model.encoder.to_dict()
  eval_fn = (make_eval_fn(config, model, held_out, setup)
             if held_out is not None and len(held_out) else None)
  out = trainer.fit(config, workdir, train, np.arange(len(train)), state=state, step_fn=step_fn,
                    meta=meta, tag='pretrain', sharding=dsh, eval_fn=eval_fn)
  write_model_card(workdir, meta, out.last, out.final_eval)
  return {'train': out.last, 'eval': out.final_eval, 'checkpoint_dir': out.checkpoint_dir,
          'state': out.state}


def write_model_card(workdir: str, meta: dict[str, Any], train_metrics: dict[str, float],
                     eval_metrics: dict[str, float]) -> None:
  """Fills the packaged model-card template's fields into <workdir>/checkpoints/MODEL_CARD.md."""
  from ssl_imu_jax.models import model_card  # noqa: PLC0415

  text = model_card.render(meta, train_metrics, eval_metrics)
  if parallel.is_writer():
    files.write_text_atomic(os.path.join(workdir, 'checkpoints', 'MODEL_CARD.md'), text)
  parallel.barrier('model card')
