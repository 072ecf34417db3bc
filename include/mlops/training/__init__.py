"""Training: LightGBM, single-process or data-parallel across Horovod worker processes."""
