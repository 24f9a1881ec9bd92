r"""Apply a fine-tuned model to new recordings ('predict'), or score it on labelled ones
('evaluate': the argument ``evaluate``; labels required).

  python main.py --config=configs/predict.py --workdir=runs/pred \
      --config.checkpoint=runs/ft/finetune --config.data.seed=1
  python main.py --config=configs/predict.py:evaluate --workdir=runs/eval \
      --config.checkpoint=runs/paper/final/synthetic_walking_grf --config.data.seed=1
  python main.py --config=configs/predict.py --workdir=runs/pred_lab \
      --config.checkpoint=runs/ft/finetune \
      --config.recording=/data/lab/s01_run.csv --config.schema=/data/lab/schema.yaml

``checkpoint`` (required): a fine-tuning run, its ``checkpoints`` dir or one step dir. The data:
left empty, the model's own data set (``--config.data.seed=1`` regenerates a synthetic set with
new subjects); ``data.dataset`` + ``data.manual_dir`` a registered data set or a ``lab_files``
folder (``data.options.schema``); ``recording`` + ``schema`` one file. Rate and window are the
model's (the converter resamples); sites are taken by name. Metrics on the model's own training
subjects (same source) are refused unless ``--config.allow_training_subjects=True`` (then labelled
a training-set score). Writes <workdir>/<stage>/ (ssl_imu_jax/deploy/predict.py).
"""

import ml_collections
from ml_collections import config_dict

from ssl_imu_jax.errors import ConfigError


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if (arg or 'predict') not in ('predict', 'evaluate'):
    raise ConfigError(f"config argument must be 'predict' or 'evaluate', got {arg!r}")
  c = ml_collections.ConfigDict()
  c.stage = arg or 'predict'
  c.checkpoint = config_dict.placeholder(str)  # required: a fine-tuned model
  c.data_dir = ''   # '' = <workdir>/tfds
  c.data = ml_collections.ConfigDict({
      'dataset': '',          # '' = the model's own data set
      'split': '',            # '' = every split
      'manual_dir': '',       # raw files of a real data set / lab_files folder
      'options': {},          # builder options ({} = the model's, for its own data set)
      'size': '',             # synthetic sets: '' = the model's
      'seed': -1,             # synthetic sets: generator seed (-1 = the model's)
      'window_stride': -1,    # unlabelled windows: samples between starts (-1 = the model's)
      'sample_rate_hz': 0.0,  # 0 = the model's (any other value is an error)
      'window_length': 0,     # 0 = the model's
  })
  c.recording = ''  # one recording file (read with ``schema`` as lab_files)
  c.schema = ''
  c.check_frame = True  # the data's axis frame must be the model's
  # Metrics on subjects the model was trained on (same source) are refused unless this is set;
  # then every output says 'training-set score'.
  c.allow_training_subjects = False
  c.batch_size = 256
  c.plot = True
  c.plot_trial = ''  # '<subject_id>/<trial>' of the trial plot ('' = the first)
  return c
