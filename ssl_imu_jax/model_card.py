"""Fills the model-card template (docs/model_card.md) from a pre-training checkpoint's record."""

from __future__ import annotations

import os
from typing import Any

from ssl_imu_jax.models.ssl_imu import embed_dim

_TEMPLATE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs',
                         'model_card.md')


def _fmt(d: dict[str, float]) -> str:
  return ', '.join(f'{k}={v:.4g}' for k, v in sorted(d.items())) or 'n/a'


def render(meta: dict[str, Any], train_metrics: dict[str, float],
           eval_metrics: dict[str, float]) -> str:
  cfg = meta['config']
  aug = cfg.get('augment', {})
  on = [k for k in ('rotation', 'scale', 'noise', 'time_shift') if aug.get(k)]
  norm = meta['normalization']
  ds = meta['dataset']
  enc = meta['encoder']
  shared = bool(enc.get('shared', False))
  loss = cfg['ssl'].get('loss', 'info_nce')
  fields = {
      'encoder_description': (
          'One 1-D ResNet encoder shared by the accelerometer and the gyroscope (one set of '
          'weights)' if shared else
          'Two 1-D ResNet encoders, one for accelerometer and one for gyroscope windows'),
      'encoder_params': '`encoder`' if shared else '`acc_encoder`, `gyr_encoder`',
      'objective': (
          'the reference NCE loss of Tan et al.: acc windows scored against gyr windows, the '
          'positive pair against negatives only (every acc-gyr pair of the same window masked '
          'out of the denominator)' if loss == 'reference_nce' else
          'symmetric InfoNCE between the acc and gyr embeddings of the same sensor window'),
      'window_length': ds['window_length'], 'sample_rate_hz': ds['sample_rate_hz'],
      'embed_dim': embed_dim(enc), 'encoder': enc,
      'temperature': cfg['ssl']['temperature'],
      'learnable_temperature': cfg['ssl']['learnable_temperature'],
      'negatives': cfg['ssl']['negatives'],
      'grouped_note': ' (other sites of the same window excluded)' if cfg['ssl']['grouped'] else '',
      'dataset': ds['name'], 'split': ds['split'], 'num_windows': ds['num_windows'],
      'num_subjects': len(ds['subjects']), 'sites': ', '.join(ds['sites']),
      'augment': ', '.join(on) or 'none', 'learning_rate': cfg['optimizer']['learning_rate'],
      'weight_decay': cfg['optimizer']['weight_decay'], 'steps': cfg['train']['steps'],
      'batch_size': cfg['train']['batch_size'],
      'warmup_fraction': cfg['optimizer']['warmup_fraction'],
      'acc_mean': norm['acc_mean'], 'acc_std': norm['acc_std'], 'gyr_mean': norm['gyr_mean'],
      'gyr_std': norm['gyr_std'],
      'temperature_param': ', `log_temperature`' if cfg['ssl']['learnable_temperature'] else '',
      'train_metrics': _fmt(train_metrics), 'eval_metrics': _fmt(eval_metrics),
      'checkpoint_dir': meta.get('checkpoint_dir', '<this folder>'),
  }
  with open(_TEMPLATE) as f:
    lines = [ln for ln in f.read().splitlines(keepends=True) if not ln.startswith('<!--')]
  return ''.join(lines).format(**fields)
