r"""Released weights: a pre-training checkpoint's encoder -> weights/<name>/ (card, checksums).

  python main.py --config=configs/release.py --workdir=runs/release \
      --config.checkpoint=runs/paper_cpu/pretrain_100hz_128 \
      --config.report=runs/paper_cpu/report \
      --config.reproduce='python main.py --config=configs/paper.py:cpu ...'

``name`` '' = <dataset>_<rate>hz_<window>; ``out_dir`` '' = the repository's weights/;
``report`` (optional) a sweep report whose rows at this rate and window go into the card as the
downstream results; ``licence`` '' = the known licence of the training data set.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  c = ml_collections.ConfigDict()
  c.stage = 'release'
  c.checkpoint = ''   # a pre-training run, its checkpoints dir or one step dir (required)
  c.name = ''
  c.out_dir = ''
  c.report = ''
  c.reproduce = ''    # the command that reproduces the checkpoint (required; goes into the card)
  c.licence = ''
  return c
