"""Training: features, LightGBM, data-parallel Horovod ranks, the launcher, the training pipeline."""
