r"""Self-supervised pre-training: acc vs gyr contrastive learning on an unlabelled corpus.

The default is the reference recipe (Tan et al. 2023): one ResNet shared by acc and gyr, projection
heads Dense-BatchNorm-ReLU-Dense, the reference NCE loss (tau 0.1), AdamW 1e-4, 20 % warm-up then
cosine decay. ':default,two_encoder' selects this project's first design instead.

',masked' (e.g. ':tiny,masked', ':masked') selects the masked-reconstruction objective of Tan et
al. 2024 instead (ssl.objective='masked'; issue 27): a post-LN Transformer over one token per time
step (every site's acc channels, then every site's gyr channels), one contiguous block of
ssl.mask_ratio of the window replaced by a learned input-space token, MSE on the masked steps of
the input scaled by one pooled std per modality (ssl.normalization='scale'); AdamW 1e-4 with
weight decay 0.01 on every parameter, cosine x linear warm-up factor over the first 20 %. The
budget (steps, batch) stays this config's, so both objectives compare at one budget (the
reference ran 5e4 steps of 64). Setting --config.ssl.objective=masked alone keeps the NCE
optimiser; the ',masked' argument sets every knob.

',nce_transformer' (e.g. ':tiny,nce_transformer') is the crossed pairing (issue 27): the NCE
objective (the reference NCE loss, tau 0.1, global negatives) on the masked objective's
Transformer (model.backbone='transformer'), so the objectives compare on one backbone. The acc
and the gyr tokens of a window ([T, 3N] each: every site's x, y, z of that modality) are embedded
apart by the one Transformer (model.transformer.modalities='separate'), averaged over time and
projected (Dense-BatchNorm-ReLU-Dense). Everything else is the ',masked' recipe's: the scaling
(ssl.normalization='scale'), AdamW with decay 0.01 on every parameter, cosine x warm-up factor.

  python main.py --config=configs/pretrain.py:tiny,masked --workdir=runs/pretrain_masked_tiny
  python main.py --config=configs/pretrain.py:tiny,nce_transformer --workdir=runs/pretrain_nce_t

  python main.py --config=configs/pretrain.py:tiny --workdir=runs/pretrain_tiny
  python main.py --config=configs/pretrain.py --workdir=runs/pretrain \
      --config.optimizer.learning_rate=3e-4 --config.train.steps=10000

Checkpoints go to <workdir>/pretrain/checkpoints (Orbax); rerunning resumes from the latest.
"""

import ml_collections

from configs import common
from ssl_imu_jax.errors import ConfigError


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parts = [p.strip() for p in (arg or '').split(',') if p.strip()]
  masked = 'masked' in parts
  nce_transformer = 'nce_transformer' in parts
  if masked and nce_transformer:
    raise ConfigError(f"config argument {arg!r}: ',masked' and ',nce_transformer' name two "
                      f'objectives; choose one')
  size, variant = common.parse_args(','.join(p for p in parts
                                             if p not in ('masked', 'nce_transformer')))
  tiny = size == 'tiny'
  c = ml_collections.ConfigDict()
  c.stage = 'pretrain'
  c.seed = 0
  c.data_dir = ''  # '' = <workdir>/tfds
  c.data = common.data_config('synthetic_movi', size, split='train')
  c.data.eval_split = 'validation'
  # A second unlabelled corpus pooled with this one ('' = none; configs/paper.py's 'ipol_windows'
  # variant adds the real IPOL walks): its imu_sites take data.imu_sites' names in order, its
  # subjects are renumbered after these, rate and window are data's.
  c.data.mix = ml_collections.ConfigDict({
      'dataset': '', 'size': size, 'options': {}, 'manual_dir': '', 'imu_sites': (),
      'split': 'train', 'eval_split': 'validation'})
  c.model = common.model_config(size, variant)
  # ssl.objective='nce': 'resnet' (model.encoder) | 'transformer' (model.transformer, with
  # modalities='separate'). The masked objective always trains the Transformer (key not read).
  c.model.backbone = 'transformer' if masked or nce_transformer else 'resnet'
  c.ssl = ml_collections.ConfigDict({
      # 'reference_nce': acc -> gyr, negatives-only denominator (all pairs of the same window
      # masked out); 'info_nce': symmetric InfoNCE with the positive in the denominator.
      'loss': 'info_nce' if variant == 'two_encoder' else 'reference_nce',
      'temperature': 0.1,
      'learnable_temperature': False,
      'negatives': 'global',   # 'global' (whole batch across devices) | 'local' (per device)
      'grouped': False,        # info_nce: exclude the other sites of the same window
      # >0: the loss in column blocks of this many site-windows, memory ~ M x chunk instead of
      # M x M (M = global batch x sites); equal to the dense loss. 0: dense (faster when it fits).
      'chunk_size': 0,
      # 'nce' (the keys above) | 'masked' (the keys below; the ',masked' config argument)
      'objective': 'masked' if masked else 'nce',
      'mask_ratio': 0.125,     # masked: one contiguous block of this fraction of each window
      # input scaling: 'mean_std' (subtract the pooled mean, divide by the pooled std, per
      # modality) | 'scale' (divide only, the masked reference's StandardScaler(with_mean=False))
      'normalization': 'scale' if masked or nce_transformer else 'mean_std',
  })
  c.model.transformer = common.transformer_config(size)  # the Transformer backbone
  if nce_transformer:
    c.model.transformer.modalities = 'separate'
  c.augment = common.augment_config()
  c.optimizer = common.optimizer_config(learning_rate=1e-3 if tiny else 1e-4)
  # torch AdamW: decay 0.01 on every parameter; the warm-up multiplies the cosine
  if masked or nce_transformer:
    c.optimizer.weight_decay = 0.01
    c.optimizer.decay_kernels_only = False
    c.optimizer.schedule = 'cosine_times_warmup'
  c.train = common.train_config(steps=60 if tiny else 3000, batch_size=16 if tiny else 64)
  return c
