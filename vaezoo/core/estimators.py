"""Evaluation estimators: importance-weighted log-likelihood, KL, active units, mutual information.

- ``iw_log_likelihood``: log p(x) ~ logsumexp_i(log w_i) - log k with k posterior samples,
  computed in chunks of samples so memory stays bounded (Burda et al. 2016).
- ``active_units``: dimensions whose posterior mean varies across the data, Cov_x(E_q[z_d]) > 0.01
  (Burda et al. 2016).
- ``mutual_information``: I(x; z) under the aggregate posterior q(z) = 1/N sum_n q(z|x_n) of
  the whole evaluated set (its first ``MI_MAX_EXAMPLES`` examples), the quantity He et al.
  2019 track against posterior collapse. With x uniform over the N examples this is
  I(n; z), which lies in [0, log N]: a figure near log N only says that z tells these N
  examples apart, so ``EvalResult`` carries log N beside it.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Iterable, Iterator

import torch

from vaezoo.core.batches import Batch, batch_size, slice_batch, to_device
from vaezoo.core.distributions import DiagonalGaussian
from vaezoo.core.model import VAE
from vaezoo.core.objectives import elbo_terms, log_importance_weights


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


MI_MAX_EXAMPLES = 10_000  # the aggregate posterior mixes the first this-many examples' posteriors
MI_SAMPLES = 4_096        # z draws in all (at least one per example): Monte-Carlo noise ~0.01-0.02 nats


@torch.no_grad()
def mutual_information(q: DiagonalGaussian, *, samples: int = MI_SAMPLES, chunk_elements: int = 1 << 20) -> torch.Tensor:
    """I(n; z) for n uniform over the N rows of ``q`` and z ~ q(z|x_n), in nats, a 0-dim tensor.

    I = E_n E_{z ~ q(z|x_n)} [log q(z|x_n) - log q(z)], q(z) = 1/N sum_m q(z|x_m) the aggregate
    posterior, with ceil(samples / N) draws of z per example from the global RNG. log q(z) is
    exact (a finite mixture); only the draws of z are random. Each draw contributes
    log N + log r, r = q(z|x_n) / sum_m q(z|x_m) <= 1, so the estimate never exceeds log N,
    and identical posteriors give exactly 0. (The closed-form -entropy in place of the
    sampled log q(z|x_n) is unbiased too, but in our checks its noise was 1.5 to 8 times
    larger, and it can cross log N.) Costs O(draws * N * D), in chunks of about
    ``chunk_elements`` pairs (8 MB of float64 each).
    """
    q = DiagonalGaussian(q.mean.double(), q.logvar.double())
    n, d = q.mean.shape
    draws = math.ceil(samples / n) * n  # the same number of draws for every example
    rows = max(1, chunk_elements // n)
    total = torch.zeros((), dtype=torch.float64, device=q.mean.device)
    for start in range(0, draws, rows):
        owner = torch.arange(start, min(start + rows, draws), device=q.mean.device) % n  # x_n each z comes from
        z = q[owner].rsample()
        log_q = q.cross_log_prob(z)  # [rows, N]: log q(z_i|x_m)
        # own entry from the same table as the log-sum-exp, so identical posteriors cancel exactly
        total += (log_q.gather(1, owner.unsqueeze(1)).squeeze(1) - torch.logsumexp(log_q, 1)).sum()
    mi = total / draws + math.log(n)
    # I(n; z) >= 0 always; a value just below 0 is Monte-Carlo noise when z carries nothing.
    return mi.clamp_min(0.0).to(q.mean.dtype)


@dataclass
class EvalResult:
    n_examples: int
    elbo: float                 # mean per-example ELBO (nats)
    reconstruction: float       # mean log p(x|z) at a posterior sample
    kl: float                   # mean KL(q(z|x) || p(z))
    iw_nll: float | None        # mean -log p(x) by importance weighting (None when k = 0)
    iw_samples: int
    active_units: int
    mutual_information: float   # I(x; z) over the aggregate posterior of the first mutual_information_examples
    mutual_information_bound: float | None = None   # log N, the most I(x; z) can be over N examples
    mutual_information_examples: int | None = None  # N: min(n_examples, MI_MAX_EXAMPLES)
    kl_per_dim: list[float] = field(default_factory=list)   # closed-form KL per dimension ([] when estimated)
    extra: dict[str, float] = field(default_factory=dict)
    latent_dim: int = 0         # D (0 in eval.json files written before it was recorded)

    def as_dict(self) -> dict:
        return asdict(self)

    def table(self) -> list[tuple[str, str]]:
        rows = [
            ("examples", str(self.n_examples)),
            ("ELBO", f"{self.elbo:.4f}"),
            ("reconstruction", f"{self.reconstruction:.4f}"),
            ("KL", f"{self.kl:.4f}"),
            (f"IW-NLL (k={self.iw_samples})", "-" if self.iw_nll is None else f"{self.iw_nll:.4f}"),
            ("active units", f"{self.active_units}/{self.latent_dim or len(self.kl_per_dim)}"),
            ("mutual information", self._mutual_information_text()),
        ]
        rows += [(name, f"{value:.4f}") for name, value in self.extra.items()]
        return rows

    def _mutual_information_text(self) -> str:
        """The MI with its ceiling log N, and a warning when it is close to it (then it measures
        little more than that z tells the N examples apart)."""
        value = f"{self.mutual_information:.4f}"
        bound = self.mutual_information_bound
        if bound is None:  # an eval.json written before the bound was recorded
            return value
        n = self.mutual_information_examples
        capped = n is not None and n < self.n_examples
        ceiling = f"at most log N = {bound:.2f}" + (f" over the first {n} examples" if capped else "")
        if self.mutual_information < 0.9 * bound:
            return f"{value} ({ceiling})"
        advice = "saturated: z tells these examples apart" if capped else "evaluate more examples for a meaningful figure"
        return f"{value} ({ceiling}: {advice})"


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
    random stream and the same model always gets the same figures. The MI is over the
    aggregate posterior of the first ``MI_MAX_EXAMPLES`` examples (see ``mutual_information``).
    """
    totals = {"elbo": 0.0, "rec": 0.0, "kl": 0.0, "ll": 0.0}
    kl_dims, means, mi_means, mi_logvars = [], [], [], []
    n = 0
    with evaluation_mode(vae, device, seed):
        for batch in batches:
            batch = to_device(batch, device)
            if max_examples is not None and n >= max_examples:
                break
            if max_examples is not None and n + batch_size(batch) > max_examples:
                batch = slice_batch(batch, slice(0, max_examples - n))
            b = batch_size(batch)
            terms = elbo_terms(vae, batch)   # the same terms training optimises
            q, kl_dim = terms.posterior, terms.kl_per_dim
            totals["rec"] += terms.reconstruction.sum().item()
            totals["kl"] += terms.kl.sum().item()
            totals["elbo"] += terms.elbo.sum().item()
            if iw_samples > 0:
                totals["ll"] += iw_log_likelihood(vae, batch, iw_samples, chunk_size=chunk_size).sum().item()
            if kl_dim is not None:      # closed form only; a Monte-Carlo KL has no per-dimension split
                kl_dims.append(kl_dim.sum(0))
            means.append(q.mean.float().cpu())
            keep = max(0, min(b, MI_MAX_EXAMPLES - n))  # posteriors that join the aggregate q(z)
            mi_means.append(q.mean[:keep].float().cpu())
            mi_logvars.append(q.logvar[:keep].float().cpu())
            n += b
        if n == 0:
            raise ValueError("evaluation got no examples")
        # Inside the seeded, forked RNG: the z draws repeat and the caller's stream stays put.
        # On the CPU, so the figure does not depend on the device the model runs on.
        aggregate = DiagonalGaussian(torch.cat(mi_means), torch.cat(mi_logvars))
        mi = mutual_information(aggregate).item()
    au, _ = active_units(torch.cat(means))
    return EvalResult(
        n_examples=n,
        elbo=totals["elbo"] / n,
        reconstruction=totals["rec"] / n,
        kl=totals["kl"] / n,
        iw_nll=-totals["ll"] / n if iw_samples > 0 else None,
        iw_samples=iw_samples,
        active_units=au,
        mutual_information=mi,
        mutual_information_bound=math.log(len(aggregate.mean)),
        mutual_information_examples=len(aggregate.mean),
        kl_per_dim=(torch.stack(kl_dims).sum(0) / n).tolist() if kl_dims else [],
        latent_dim=int(torch.cat(means).shape[-1]),
    )
