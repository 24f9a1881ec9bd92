"""Training: train state, jit-compiled steps, losses, augmentation, the shared loop (``trainer``),
checkpoints, metric writers, and the two stages built on them (``pretrain``, ``finetune``)."""
