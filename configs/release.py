r"""Released weights: a pre-training checkpoint's encoder -> weights/<name>/ (card, checksums).

  python main.py --config=configs/release.py --workdir=runs/release \
      --config.checkpoint=runs/paper_cpu/pretrain_100hz_128 \
      --config.report=runs/paper_cpu/report --config.results=paper_cpu \
      --config.reproduce='python main.py --config=configs/paper.py:cpu ...'

``name`` '' = <dataset>_<rate>hz_<window>; ``out_dir`` '' = the repository's weights/;
``report`` (optional) a sweep report: the card quotes the rows of its data sets fine-tuned from
this checkpoint from ``results`` (required with it), the name of the committed results/ folder
of that run (`python -m ssl_imu_jax.evaluation.publish collect`), through a results block;
``licence``
'' = the known licence of the training data set.
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
  c.results = ''     # results/<name>/ collected from that report's run (required with report)
  c.reproduce = ''    # the command that reproduces the checkpoint (required; goes into the card)
  c.licence = ''
  return c
