"""Layer 1: the maths every VAE shares (distributions, likelihoods, objectives, estimators, the
VAE module, nn blocks, schedules, batches) and the plumbing under it (errors, files, data).
Imports nothing else of vaezoo."""
