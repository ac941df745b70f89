"""What every application stands on: data sets and models (with their registries), the SGD
training loop, evaluation (accuracy, BatchNorm recalibration) and plots."""
