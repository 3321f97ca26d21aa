"""Evaluation estimators: importance-weighted log-likelihood, KL, active units, mutual information.

- ``iw_log_likelihood``: log p(x) ~ logsumexp_i(log w_i) - log k with k posterior samples,
  computed in chunks of samples so memory stays bounded (Burda et al. 2016).
- ``active_units``: dimensions whose posterior mean varies across the data, Cov_x(E_q[z_d]) > 0.01
  (Burda et al. 2016).
- ``mutual_information``: I(x; z) under the aggregate posterior, estimated on a minibatch
  as in He et al. 2019 (``calc_mi`` of the lagging-inference-networks code).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Iterable, Iterator

import torch

from vaezoo.batches import Batch, batch_size, slice_batch, to_device
from vaezoo.distributions import LOG_2PI, DiagonalGaussian
from vaezoo.model import VAE
from vaezoo.objectives import log_importance_weights


@torch.no_grad()
def iw_log_likelihood(vae: VAE, batch: Batch, k: int, *, chunk_size: int = 100) -> torch.Tensor:
    """Importance-weighted estimate of log p(x) per example, ``[N]``."""
    q = vae.encode(batch)
    chunks = []
    for start in range(0, k, chunk_size):
        log_w, _ = log_importance_weights(vae, batch, min(chunk_size, k - start), posterior=q)
        chunks.append(log_w)
    return torch.logsumexp(torch.cat(chunks), 0) - math.log(k)


def active_units(posterior_means: torch.Tensor, threshold: float = 0.01) -> tuple[int, torch.Tensor]:
    """Number of dimensions whose posterior mean has variance above ``threshold`` over the data."""
    variance = posterior_means.double().var(0, unbiased=True) if len(posterior_means) > 1 else torch.zeros(posterior_means.shape[-1])
    return int((variance > threshold).sum()), variance.float()


@torch.no_grad()
def mutual_information(q: DiagonalGaussian) -> torch.Tensor:
    """I(x; z) = E_x E_q[log q(z|x)] - E_q(z)[log q(z)], q(z) the minibatch aggregate posterior."""
    n, d = q.mean.shape
    neg_entropy = (-0.5 * d * LOG_2PI - 0.5 * (1 + q.logvar).sum(-1)).mean()
    z = q.rsample()                                          # [N, D], one sample per example
    dev = z.unsqueeze(1) - q.mean.unsqueeze(0)              # [N(z), N(x), D]
    log_density = -0.5 * (dev**2 / q.variance.unsqueeze(0)).sum(-1) - 0.5 * (d * LOG_2PI + q.logvar.sum(-1)).unsqueeze(0)
    log_qz = torch.logsumexp(log_density, dim=1) - math.log(n)
    return neg_entropy - log_qz.mean()


@dataclass
class EvalResult:
    n_examples: int
    elbo: float                 # mean per-example ELBO (nats)
    reconstruction: float       # mean log p(x|z) at a posterior sample
    kl: float                   # mean KL(q(z|x) || p(z))
    iw_nll: float | None        # mean -log p(x) by importance weighting (None when k = 0)
    iw_samples: int
    active_units: int
    mutual_information: float
    kl_per_dim: list[float] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def table(self) -> list[tuple[str, str]]:
        rows = [
            ("examples", str(self.n_examples)),
            ("ELBO", f"{self.elbo:.4f}"),
            ("reconstruction", f"{self.reconstruction:.4f}"),
            ("KL", f"{self.kl:.4f}"),
            (f"IW-NLL (k={self.iw_samples})", "-" if self.iw_nll is None else f"{self.iw_nll:.4f}"),
            ("active units", f"{self.active_units}/{len(self.kl_per_dim)}"),
            ("mutual information", f"{self.mutual_information:.4f}"),
        ]
        rows += [(name, f"{value:.4f}") for name, value in self.extra.items()]
        return rows


@contextmanager
def evaluation_mode(vae, device, seed: int) -> Iterator[None]:
    """Eval mode, no gradients, and a forked RNG seeded with ``seed``: the same model always
    gives the same figures, and evaluating never shifts the training random stream."""
    was_training = vae.training
    vae.eval()
    device = torch.device(device)
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            yield
    finally:
        vae.train(was_training)


def evaluate(
    vae: VAE,
    batches: Iterable[Batch],
    *,
    iw_samples: int = 0,
    max_examples: int | None = None,
    device: torch.device | str = "cpu",
    chunk_size: int = 100,
    seed: int = 0,
) -> EvalResult:
    """ELBO, KL, AU and MI over the batches, and the IW-NLL when ``iw_samples > 0``.

    Runs under a forked RNG seeded with ``seed`` so evaluating never shifts the training
    random stream and the same model always gets the same figures.
    """
    totals = {"elbo": 0.0, "rec": 0.0, "kl": 0.0, "ll": 0.0, "mi": 0.0}
    kl_dims, means = [], []
    n = 0
    with evaluation_mode(vae, device, seed):
        for batch in batches:
            batch = to_device(batch, device)
            if max_examples is not None and n >= max_examples:
                break
            if max_examples is not None and n + batch_size(batch) > max_examples:
                batch = slice_batch(batch, slice(0, max_examples - n))
            b = batch_size(batch)
            q = vae.encode(batch)
            rec = vae.decode(q.rsample()).log_prob(batch["x"], batch.get("mask"))
            kl_dim = q.kl_per_dim()
            kl = kl_dim.sum(-1)
            totals["rec"] += rec.sum().item()
            totals["kl"] += kl.sum().item()
            totals["elbo"] += (rec - kl).sum().item()
            totals["mi"] += mutual_information(q).item() * b
            if iw_samples > 0:
                totals["ll"] += iw_log_likelihood(vae, batch, iw_samples, chunk_size=chunk_size).sum().item()
            kl_dims.append(kl_dim.sum(0))
            means.append(q.mean.float().cpu())
            n += b
    if n == 0:
        raise ValueError("evaluation got no examples")
    au, _ = active_units(torch.cat(means))
    return EvalResult(
        n_examples=n,
        elbo=totals["elbo"] / n,
        reconstruction=totals["rec"] / n,
        kl=totals["kl"] / n,
        iw_nll=-totals["ll"] / n if iw_samples > 0 else None,
        iw_samples=iw_samples,
        active_units=au,
        mutual_information=totals["mi"] / n,
        kl_per_dim=(torch.stack(kl_dims).sum(0) / n).tolist(),
    )
