"""Layer 4: the training loop and its hooks, checkpoints, run directories, evaluation of a run."""
