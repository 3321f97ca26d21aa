"""Layer 5: looking at trained runs: latents, latent maps, anomaly scores, curves, the report."""
