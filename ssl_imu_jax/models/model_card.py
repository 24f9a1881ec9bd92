"""Model cards: a pre-training run's (the packaged template templates/pretrain_model_card.md
filled from its checkpoint record; ``render_transformer`` for the Transformer, either objective) and
a fine-tuned model's (``render_finetune``)."""

from __future__ import annotations

import importlib.resources
from typing import Any

from ssl_imu_jax.models.ssl_imu import embed_dim, is_transformer

TEMPLATE = 'templates/pretrain_model_card.md'  # package data: works from any install


def _fmt(d: dict[str, float]) -> str:
  return ', '.join(f'{k}={v:.4g}' for k, v in sorted(d.items())) or 'n/a'


def _mix_note(mix: dict[str, Any] | None) -> str:
  """The card's line on a pooled second corpus (config key data.mix), '' without one."""
  if not mix:
    return ''
  pairs = ', '.join(f'{a} as {b}' for a, b in zip(mix['sites'], mix['as_sites'], strict=True))
  return (f"\n- Pooled with `{mix['dataset']}`: {mix.get('num_windows', '?')} of these windows "
          f"from {mix.get('num_subjects', '?')} of these subjects (ids shifted by "
          f"{mix['subject_offset']}), its sites {pairs}; frame: {mix.get('frame', 'unknown')}.")


def render(meta: dict[str, Any], train_metrics: dict[str, float],
           eval_metrics: dict[str, float], released: bool = False) -> str:
  """The pre-training card; ``released``: of a release (weights/), which omits the heads."""
  if is_transformer(meta.get('encoder') or {}) or meta.get('objective', 'nce') == 'masked':
    return render_transformer(meta, train_metrics, eval_metrics, released)
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
      'projection_state': ('pre-trained but not released: used only by the SSL loss' if released
                           else 'pre-trained, used only by the SSL loss; fine-tuning discards '
                                'them'),
      'temperature_param': ', `log_temperature`' if cfg['ssl']['learnable_temperature'] else '',
      'train_metrics': _fmt(train_metrics), 'eval_metrics': _fmt(eval_metrics),
      'checkpoint_dir': meta.get('checkpoint_dir', '<this folder>'),
      'mix_note': _mix_note(ds.get('mix')),
  }
  text = importlib.resources.files('ssl_imu_jax').joinpath(TEMPLATE).read_text(encoding='utf-8')
  lines = [ln for ln in text.splitlines(keepends=True) if not ln.startswith('<!--')]
  return ''.join(lines).format(**fields)


# The masked reference's pre-training budget (../shared/docs/masked-recipe.md section 5: 5e4
# steps of 64 windows at its HEAD): a card says what fraction of it a run had.
REFERENCE_MASKED_STEPS, REFERENCE_MASKED_BATCH = 50_000, 64
REFERENCE_MASKED_WINDOWS = REFERENCE_MASKED_STEPS * REFERENCE_MASKED_BATCH


def render_transformer(meta: dict[str, Any], train_metrics: dict[str, float],
                       eval_metrics: dict[str, float], released: bool = False) -> str:
  """The card of a Transformer pre-training: masked reconstruction (``ssl.objective='masked'``)
  or acc <-> gyr NCE on the Transformer (``model.backbone='transformer'``); ``released``: of a
  release (weights/), which holds the backbone only."""
  cfg, ds, enc, norm = meta['config'], meta['dataset'], meta['encoder'], meta['normalization']
  opt, train = cfg['optimizer'], cfg['train']
  masked = meta.get('objective', 'nce') == 'masked'
  separate = enc.get('modalities', 'joint') == 'separate'
  tokens = list(meta.get('tokens', []))
  gyr = 'gyr_std' in norm
  n_sites = len(ds['sites'])
  scale = ', '.join(f'{k}={v:.4g}' for k, v in sorted(norm.items()))
  schedule = ('cosine over all steps x a linear warm-up factor over the first '
              f"{opt['warmup_fraction']:g} of them" if opt.get('schedule') == 'cosine_times_warmup'
              else f"warm-up {opt['warmup_fraction']:g} of the steps then cosine decay")
  mix = _mix_note(ds.get('mix'))
  width = int(enc['width'])
  if separate:
    token_text = (f'one token per time step of one modality: the accelerometer tokens '
                  f'({3 * n_sites} channels, every site\'s x, y, z) and the gyroscope tokens '
                  f'(the same for the gyroscope) go through the Transformer apart, the same '
                  f'weights for both')
    output = (f'[batch, {2 * width}]: the accelerometer tokens\' mean over time, then the '
              f"gyroscope tokens' ([batch, {width}] from acc alone)")
  else:
    token_text = (f'one token per time step: {len(tokens)} channels, every site\'s '
                  'accelerometer x, y, z' + (', then every site\'s gyroscope x, y, z' if gyr
                                             else ' (accelerometer-only corpus: no gyroscope)'))
    output = f"[batch, {width}]: the tokens' mean over time"
  if masked:
    title = 'masked-reconstruction pre-training (Transformer)'
    objective = (f"ssl.objective='masked' (Tan et al. 2024): one contiguous block of "
                 f"{meta.get('mask_ratio', cfg['ssl'].get('mask_ratio', 0.125)):g} of each "
                 'window, drawn per window and step, replaced by a learned input-space token; '
                 'MSE of the reconstruction on the masked steps only.')
    heads = '| `transformer/reconstruction` | pre-trained, used only by the reconstruction loss' + (
        '; not released |' if released else ' |')
    evaluated = ('held-out subjects (masked MSE on fixed per-window masks; zero_loss: '
                 'predicting 0; mean_loss: predicting each channel\'s mean over the unmasked '
                 'steps)')
  else:
    ssl = cfg['ssl']
    title = 'acc <-> gyr NCE pre-training of the Transformer'
    objective = (f"ssl.objective='nce' with model.backbone='transformer' (the crossed pairing "
                 f"of issue 27): each window's acc embedding scored against the gyr embeddings "
                 f"of the batch ({ssl.get('loss', 'info_nce')}, cosine similarity, temperature "
                 f"{ssl['temperature']}, negatives: {ssl['negatives']} batch), embeddings "
                 'projected by Dense-BatchNorm-ReLU-Dense heads.')
    heads = ('| `acc_projection`, `gyr_projection` | pre-trained, used only by the NCE loss'
             + ('; not released |' if released else ' |'))
    evaluated = 'held-out subjects (retrieval of the gyr window among the batch)'
  seen = int(train['steps']) * int(train['batch_size'])
  budget = (f' The reference pre-trained {REFERENCE_MASKED_STEPS:,} steps x '
            f'{REFERENCE_MASKED_BATCH} windows; this run saw {seen:,} windows, '
            f'{100 * seen / REFERENCE_MASKED_WINDOWS:.2g} % of that budget.' if masked else '')
  lines = [
      f'# Model card: ssl_imu_jax {title}',
      '',
      '## What it is',
      f"A post-LayerNorm Transformer ({enc['depth']} layers, width {width}, "
      f"{enc['heads']} heads, feed-forward {enc['ff']}, dropout {enc['dropout']}, fixed sinusoid "
      f"with base {enc['pos_base_factor']:g} x T) over a window [T={ds['window_length']} samples "
      f"at {ds['sample_rate_hz']} Hz]: {token_text} (sites in order: {', '.join(ds['sites'])}).",
      f'Encoder output (`load_encoder`): {output}; the tokens themselves are [batch, T, '
      f'{width}] per token sequence.',
      '',
      '## How it was pre-trained',
      f'- Objective: {objective}',
      f"- Data: `{ds['name']}` split `{ds['split']}`, {ds['num_windows']} windows from "
      f"{len(ds['subjects'])} subjects.{mix}",
      f"- Optimiser: AdamW, peak learning rate {opt['learning_rate']}, weight decay "
      f"{opt['weight_decay']} on "
      + ('kernels only' if opt.get('decay_kernels_only') else 'every parameter')
      + f", {train['steps']} steps, batch {train['batch_size']}, {schedule}.{budget}",
      f"- Input scaling (fitted on the pre-training subjects, ssl.normalization="
      f"'{cfg['ssl'].get('normalization', 'mean_std')}'; `load_encoder` applies it): {scale}.",
      '',
      '## Which parts are pre-trained',
      '| parameters | state |',
      '|---|---|',
      '| `transformer` (embedding, mask token, layers) | pre-trained, reused by fine-tuning |',
      heads,
      '| downstream `head` | not in this checkpoint: fine-tuning builds a fresh one |',
      '',
      '## Final metrics',
      f'- training (last logged step): {_fmt(train_metrics)}',
      f'- {evaluated}: {_fmt(eval_metrics)}',
      '',
      '## Use',
      'Fine-tune it with `--config.init_from=' + meta.get('checkpoint_dir', '<this checkpoints '
                                                           'folder>')
      + '` (configs/finetune.py: the Transformer is copied by name; peak values through the '
      "tokens' mean over time, curves through a head per token), or embed windows with it:",
      '```python',
      'import ssl_imu_jax',
      'apply_fn, params, info = ssl_imu_jax.load_encoder(' + repr(meta.get(
          'checkpoint_dir', '<this checkpoints folder>')) + ')',
      f'emb = apply_fn(params, acc, gyr)  # [batch, {n_sites}, {ds["window_length"]}, 3] each '
      f"(info['sites'] in order), m/s^2 and rad/s -> {output.split(':')[0]}",
      '```',
      '',
      '## Limits',
      'Pre-trained on the data named above only. The synthetic corpus (if named above) is a '
      'physics model, not people.',
  ]
  return '\n'.join(lines) + '\n'


def source_line(src) -> str:
  """The training records' source in one line (data_prep/source.py); evaluate / predict refuse
  to score these subjects of this source as held out."""
  if not src:
    return 'not recorded (a model trained before source fingerprints)'
  where = f"files in `{src['manual_dir']}`" if src.get('manual_dir') else 'generated'
  digest = f", files hash {src['hash']}" if src.get('hash') else ''
  return f"`{src.get('dataset')}`, {where} (source id {src.get('id')}{digest})"


def curve_lines(curve: dict[str, Any] | None) -> list[str]:
  """The model card's line on a curve output (none for scalar labels)."""
  if not curve:
    return []
  axes = [a for a, p in zip(curve['axes'], curve['present'], strict=True) if p]
  return [f"- a curve per window, [T, {len(curve['axes'])}]: axes {', '.join(axes)} "
          f"(absent axes NaN; frame: {curve.get('frame', 'unknown')})"]


def render_finetune(meta: dict[str, Any], ckpt_step: int, result: dict[str, Any] | None = None,
                    cv: dict[str, dict[str, float]] | None = None) -> str:
  """Model card of a fine-tuned model: what it was trained on, its inputs, outputs and accuracy.

  ``result``: the run's own result.json (held-out metrics of its fold, if it had one);
  ``cv``: {target: {'within_subject_r', 'within_subject_r_sd', 'pooled_r', 'rmse', ...}} from
  the sweep's cross-validation of the same recipe (final models).
  """
  cfg = meta['config']
  targets = list(meta['targets'])
  units = list(meta.get('units') or [''] * len(targets))
  norm = meta['normalization']
  final = bool(meta.get('final'))
  init = (f"pre-trained encoder from `{meta['init_from']}`" if meta.get('init_from')
          else 'random initialisation')
  gyr = meta.get('use_gyr', 'gyr_mean' in norm)
  lines = [
      f"# Model card: {', '.join(targets)} from IMUs ({cfg['data']['dataset']})",
      '',
      'A fine-tuned ssl_imu_jax regressor (Tan, Shull, Chaudhari, ASB 2023 recipe). Load it with',
      '`ssl_imu_jax.load_regressor(<this folder>)` or apply it with',
      '`python main.py --config=configs/predict.py --config.checkpoint=<this folder> ...`.',
      '',
      '## Training',
      f"- Data set: `{cfg['data']['dataset']}` (split `{cfg['data']['split']}`), "
      + ('**all subjects** (a final model, no held-out fold)' if final else
         f"fold {cfg['split']['fold']} of {cfg['split']['num_folds']} "
         f"(fold_seed {cfg['split']['fold_seed']})"),
      f"- Training subjects ({len(meta['train_subjects'])}): {meta['train_subjects']}",
      f"- Training source: {source_line(meta.get('source'))}",
      f"- Held-out subjects: {meta.get('test_subjects') or 'none'}",
      f"- Fraction of the training windows: {float(cfg['split']['fraction']):g}",
      f"- Start: {init}; protocol `{meta['protocol']}`; {cfg['train']['steps']} steps of "
      f"{cfg['train']['batch_size']} windows per stage; seed {meta.get('seed', cfg['seed'])}; "
      f'checkpoint step {ckpt_step}',
      f"- Encoder: {meta['encoder']}",
      '',
      '## Inputs',
      f"- Sites, in this order: {', '.join(meta.get('sites') or ['(all sites of the data set)'])}",
      f"- {meta.get('sample_rate_hz', cfg['data']['sample_rate_hz'])} Hz, windows of "
      f"{meta.get('window_length', cfg['data']['window_length'])} samples",
      f"- Axis frame: {meta.get('frame', 'unknown')}",
      '- Accelerometer specific force in m/s^2' + (' and gyroscope in rad/s' if gyr else
                                                  ' only (no gyroscope)'),
      '- Normalisation applied inside the model: '
      + ', '.join(f'{k}={v:.4g}' for k, v in sorted(norm.items())),
      '',
      '## Outputs',
      *[f'- `{t}`' + (f' ({u})' if u else '') for t, u in zip(targets, units, strict=True)],
      *curve_lines(meta.get('curve')),
      '',
      '## Accuracy',
  ]
  if cv:
    lines.append('Cross-validated by the sweep (same recipe, subject-wise folds; within-subject '
                 'r = mean over test subjects of the r on their own windows):')
    nan = float('nan')
    for t in targets:
      m = cv.get(t, {})
      if 'curve_axes' in m:
        lines.append(f"- `{t}` over {m.get('n_subjects', 0)} subjects ({m.get('cells', '')}), "
                     f'per subject over the samples where the true vertical force exceeds '
                     f'0.02 BW, mean ± sd over subjects:')
        for axis, v in m['curve_axes'].items():
          lines.append(f"  - {axis}: RMSE {v['rmse'][0]:.4g} ± {v['rmse'][1]:.4g}, rRMSE "
                       f"{v['rrmse'][0]:.1f} ± {v['rrmse'][1]:.1f} %, R² {v['r2'][0]:.3f} ± "
                       f"{v['r2'][1]:.3f}, r {v['pearson_r'][0]:.3f} ± {v['pearson_r'][1]:.3f}")
        continue
      lines.append(f"- `{t}`: within-subject r {m.get('within_subject_r', nan):.3f} "
                   f"± {m.get('within_subject_r_sd', nan):.3f} over {m.get('n_subjects', 0)} "
                   f"subjects, pooled r {m.get('pooled_r', nan):.3f}, "
                   f"RMSE {m.get('rmse', nan):.4g} ({m.get('cells', '')})")
  elif result and (result.get('curve_metrics') or {}).get('summary'):
    lines.append(f"On this run's held-out subjects {meta.get('test_subjects')}, per subject over "
                 'the samples where the true vertical force exceeds 0.02 BW, mean ± sd over '
                 'subjects:')
    for axis, m in result['curve_metrics']['summary'].items():
      lines.append(f"- {axis}: RMSE {m['rmse']['mean']:.4g} ± {m['rmse']['sd']:.4g}, rRMSE "
                   f"{m['rrmse']['mean']:.1f} ± {m['rrmse']['sd']:.1f} %, R² "
                   f"{m['r2']['mean']:.3f} ± {m['r2']['sd']:.3f}, r "
                   f"{m['pearson_r']['mean']:.3f} ± {m['pearson_r']['sd']:.3f}")
  elif result and result.get('metrics'):
    lines.append(f"On this run's held-out subjects {meta.get('test_subjects')} (pooled):")
    for t in targets:
      m = result['metrics'][t]
      lines.append(f"- `{t}`: r {m['pearson_r']:.3f}, RMSE {m['rmse']:.4g}, relative RMSE "
                   f"{m['rrmse']:.1f} %")
  else:
    lines.append('Not measured: a final model has no held-out subjects. Run the sweep with '
                 '`sweep.final_model=True` for cross-validated figures, or `evaluate` it on '
                 'subjects it never saw.')
  return '\n'.join(lines) + '\n'
