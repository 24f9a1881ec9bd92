r"""Per-IMU embeddings of a data set from a pre-trained encoder (for analyses outside ssl_imu_jax).

  python main.py --config=configs/embed.py:tiny --workdir=runs/embed_tiny \
      --config.checkpoint=runs/pretrain_tiny/pretrain/checkpoints \
      --config.data.dataset=synthetic_walking_grf
  python main.py --config=configs/embed.py --workdir=runs/embed \
      --config.checkpoint=runs/pretrain/pretrain/checkpoints/3000 \
      --config.data.dataset=synthetic_walking_kfm --config.data.split=train

Writes <workdir>/embed/<dataset>_<split>_{embeddings,subject_id,trial[,targets]}.npy and a JSON
describing them (ssl_imu_jax/deploy/encoder_api.py). ``checkpoint`` is required: a run dir, its
``checkpoints`` dir or one ``checkpoints/<step>`` dir. ``data.sample_rate_hz`` and
``data.window_length`` left at 0 are taken from the checkpoint (the encoder only makes sense on
windows of the rate and length it was trained on); a different explicit value is an error.
"""

import ml_collections
from ml_collections import config_dict

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  size = common.parse_arg(arg)
  c = ml_collections.ConfigDict()
  c.stage = 'embed'
  c.checkpoint = config_dict.placeholder(str)  # required
  c.data_dir = ''  # '' = <workdir>/tfds
  c.data = common.data_config('synthetic_walking_grf', size, split='train')
  c.data.sample_rate_hz = 0.0  # 0 = the checkpoint's
  c.data.window_length = 0     # 0 = the checkpoint's
  c.batch_size = 64 if size == 'tiny' else 256
  return c
