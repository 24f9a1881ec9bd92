"""Pieces shared by the config files (each config file still has its own ``get_config``)."""

import ml_collections

SIZES = ('tiny', 'default', 'large')


def parse_arg(arg: str | None) -> str:
  """The size named by a config argument string ('' -> 'default')."""
  size = (arg or 'default').strip()
  if size not in SIZES:
    raise ValueError(f'config argument must be one of {SIZES}, got {size!r}')
  return size


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
      'use_gyr': True,            # False: accelerometer-only (only the acc encoder is used)
  })


def model_config(size: str) -> ml_collections.ConfigDict:
  """The 1-D ResNet encoder and the heads."""
  tiny = size == 'tiny'
  return ml_collections.ConfigDict({
      'encoder': {
          'widths': (8, 16, 32) if tiny else (16, 32, 64, 128),
          'blocks_per_stage': 1,
          'kernel_size': 5 if tiny else 9,
          'embed_dim': 32 if tiny else 128,
          'norm': 'batch',        # 'batch' (synced: global batch under jit) | 'group'
      },
      'projection_dims': (32, 32) if tiny else (128, 128),
      'head_dims': (32,) if tiny else (128,),
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
  })


def train_config(steps: int, batch_size: int) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      'steps': steps,
      'batch_size': batch_size,   # global batch (split over all devices)
      'eval_batch_size': 256,
      'log_every': max(1, steps // 20),
      'checkpoint_every': max(1, steps // 4),
      'eval_every': max(1, steps // 4),
      'max_to_keep': 2,
      'grad_accum_steps': 1,
      'compute_dtype': 'float32',  # or 'bfloat16' (parameters stay float32)
      'prefetch': 2,
      'progress': True,
  })


def augment_config() -> ml_collections.ConfigDict:
  """On-device augmentation switches, all off (defined beside the code, ssl_imu_jax/augment.py)."""
  from ssl_imu_jax import augment

  return augment.default_config()
