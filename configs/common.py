"""Pieces shared by the config files (each config file still has its own ``get_config``)."""

import ml_collections

from ssl_imu_jax.errors import ConfigError

SIZES = ('tiny', 'default', 'large')
# Named alternatives to the reference recipe, chosen with the config argument 'size,variant'.
VARIANTS = ('reference', 'reference_small', 'two_encoder')


def parse_args(arg: str | None) -> tuple[str, str]:
  """(size, variant) from a config argument 'size[,variant]' ('' -> 'default', 'reference').

  variant: 'reference' (the paper's shared [3,4,6,3] ResNet, reference NCE loss, linear head),
  'reference_small' (the same with [2,2,2,2] blocks), 'two_encoder' (separate acc / gyr
  encoders with an embedding layer, symmetric InfoNCE, MLP head: this project's first design).
  """
  parts = [p.strip() for p in (arg or '').split(',') if p.strip()]
  size = parts[0] if parts else 'default'
  variant = parts[1] if len(parts) > 1 else 'reference'
  if size not in SIZES or variant not in VARIANTS or len(parts) > 2:
    raise ConfigError(f"config argument must be 'size[,variant]' with size in {SIZES} and "
                     f'variant in {VARIANTS}, got {arg!r}')
  return size, variant


def parse_arg(arg: str | None) -> str:
  """The size named by a config argument string ('' -> 'default')."""
  return parse_args(arg)[0]


def data_config(dataset: str, size: str, split: str = 'train') -> ml_collections.ConfigDict:
  """Which TFDS data set (and builder knobs) a stage reads."""
  return ml_collections.ConfigDict({
      'dataset': dataset,
      'size': size,               # builder size knob: tiny | default | large
      'sample_rate_hz': 100.0,    # must match between pre-training and fine-tuning
      'window_length': 128,
      'window_stride': 0,         # 0: non-overlapping / builder default
      'seed': 0,                  # generator seed (synthetic sets)
      'options': {},              # builder-specific options (e.g. real data modes)
      'manual_dir': '',           # raw files of the real data sets
      'split': split,
      'eval_split': '',           # held-out split ('' = none)
      'imu_sites': (),            # subset of sites to use, () = all
      'use_gyr': True,            # False: accelerometer-only (only the acc embedding is used)
      'targets': (),              # labels to fine-tune on, () = all labels of the data set
      # pre-training: read windows from the records as batches need them instead of loading the
      # split into memory (corpora larger than memory); the same batches either way
      'stream': False,
  })


def encoder_config(size: str, variant: str = 'reference') -> ml_collections.ConfigDict:
  """The 1-D ResNet (models/resnet1d.py); 'tiny' keeps the variant's shape at a fraction of it."""
  tiny = size == 'tiny'
  if variant == 'two_encoder':
    return ml_collections.ConfigDict({
        'widths': (8, 16, 32) if tiny else (16, 32, 64, 128),
        'blocks_per_stage': 1,
        'kernel_size': 5 if tiny else 9,
        'stem_kernel': 5 if tiny else 9,
        'stem_stride': 1,
        'stem_pool': False,
        'embed_dim': 32 if tiny else 128,
        'conv_bias': False,
        'zero_init_residual': True,
        'norm': 'batch',
        'shared': False,
    })
  blocks = (2, 2, 2, 2) if variant == 'reference_small' else (3, 4, 6, 3)
  return ml_collections.ConfigDict({
      'widths': (8, 16, 16, 32) if tiny else (16, 32, 64, 128),
      'blocks_per_stage': (1, 1, 1, 1) if tiny else blocks,
      'kernel_size': 5 if tiny else 9,
      'stem_kernel': 15 if tiny else 49,
      'stem_stride': 2,
      'stem_pool': True,
      'embed_dim': 0,             # 0: the last stage's width (no embedding layer)
      # The reference's convolutions carry biases that the BatchNorm after each of them cancels
      # (zero gradient up to rounding, which AdamW turns into random +-lr steps): left out.
      'conv_bias': False,
      'zero_init_residual': False,
      'norm': 'batch',            # 'batch' (synced: global batch under jit) | 'group'
      'shared': True,             # one encoder (one set of weights) for acc and gyr
      # 'auto': short, wide convolutions as banded matrix products (4-7x faster steps on a
      # CPU; equal up to rounding) | 'xla': XLA's convolution everywhere
      'conv_impl': 'auto',
  })


def model_config(size: str, variant: str = 'reference') -> ml_collections.ConfigDict:
  """The encoder and the heads (projection heads for pre-training, regression head)."""
  tiny = size == 'tiny'
  two = variant == 'two_encoder'
  return ml_collections.ConfigDict({
      'encoder': encoder_config(size, variant),
      'projection_dims': (32, 32) if tiny else (128, 128),
      'projection_batch_norm': not two,   # Dense -> BatchNorm -> ReLU -> Dense
      'head_dims': ((32,) if tiny else (128,)) if two else (),  # () = one Dense layer
      'dropout_rate': 0.0,
  })


def optimizer_config(learning_rate: float, weight_decay: float = 1e-5) -> ml_collections.ConfigDict:
  """AdamW with linear warm-up then cosine decay."""
  return ml_collections.ConfigDict({
      'learning_rate': learning_rate,
      'weight_decay': weight_decay,
      'b1': 0.9,
      'b2': 0.999,
      'warmup_fraction': 0.2,
      'final_lr_fraction': 0.0,
      'grad_clip_norm': 0.0,      # 0 = no clipping
      # Weight decay on kernels only (not BatchNorm scales / biases, biases, the temperature);
      # False decays every parameter, as the reference's torch AdamW does (at 1e-5, a tiny gap).
      'decay_kernels_only': True,
      # 'warmup_cosine': linear warm-up over warmup_fraction, then cosine decay;
      # 'cosine_times_warmup': cosine over all steps x a linear warm-up factor (the masked
      # reference's torch CosineAnnealingLR + pytorch_warmup, ssl_imu_jax/training/train_state.py)
      'schedule': 'warmup_cosine',
  })


def transformer_config(size: str) -> ml_collections.ConfigDict:
  """The masked-reconstruction Transformer (models/transformer.py; Tan et al. 2024): the
  reference's sizes by default, a small one for 'tiny'."""
  tiny = size == 'tiny'
  return ml_collections.ConfigDict({
      'width': 32 if tiny else 192,
      'depth': 2 if tiny else 6,
      'heads': 4 if tiny else 8,
      'ff': 64 if tiny else 512,
      'dropout': 0.1,
      'pos_base_factor': 2.0,     # the sinusoid's base is pos_base_factor x T (reference: 2T)
      # 'joint': one token per step over every site's acc and gyr channels (masked); 'separate':
      # acc and gyr tokens apart, through the same weights (NCE; models/transformer.py)
      'modalities': 'joint',
  })


def train_config(steps: int, batch_size: int) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      'steps': steps,
      'batch_size': batch_size,   # global batch (split over all devices)
      'eval_batch_size': 256,
      # 0 = from train.steps, whatever it is set to: a line every steps/20, a checkpoint and a
      # held-out evaluation every steps/4.
      'log_every': 0,
      'checkpoint_every': 0,
      'eval_every': 0,
      'max_to_keep': 2,
      'grad_accum_steps': 1,
      'compute_dtype': 'float32',  # or 'bfloat16' (parameters stay float32)
      'prefetch': 2,
      # Where training batches are gathered: 'host' (the input pipeline), 'device' (all windows
      # kept on the device, each step gathers its batch there: no host copy per step), 'auto'
      # ('device' where the windows fit in device_data_mb, one process, in-memory data).
      'batches_from': 'host',
      'device_data_mb': 1024.0,
      'progress': True,
      # a progress line at least this often (seconds of wall time) between logged steps; 0 = only
      # at logged steps. Does not change what a run computes (not in the config fingerprint).
      'progress_every_s': 30.0,
      # 'auto': a rerun resumes from the latest checkpoint if it ran with the same config and
      # data, and stops naming the changes otherwise; 'force': resume whatever changed.
      'resume': 'auto',
  })


def augment_config() -> ml_collections.ConfigDict:
  """On-device augmentation switches, all off (defined beside the code in
  ssl_imu_jax/training/augment.py)."""
  from ssl_imu_jax.training import augment

  return augment.default_config()
