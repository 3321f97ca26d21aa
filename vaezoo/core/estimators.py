"""Evaluation estimators: importance-weighted log-likelihood, KL, active units, mutual information.

- ``iw_log_likelihood``: log p(x) ~ logsumexp_i(log w_i) - log k with k posterior samples,
  computed in chunks of samples so memory stays bounded (Burda et al. 2016), each decoded in
  blocks whose activations fit a CPU's caches.
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
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator

import torch

from vaezoo.core.batches import Batch, batch_size, slice_batch, to_device
from vaezoo.core.distributions import DiagonalGaussian
from vaezoo.core.model import VAE
from vaezoo.core.objectives import elbo_terms
from vaezoo.core.seeds import derive_seed


#: On a CPU, latents are decoded in blocks whose largest activation (the biggest tensor a
#: decoder module outputs) holds about this many elements, 8 MB of float32: a block that
#: outgrows the caches decodes 2 to 3 times slower per latent (the quick image and audio
#: recipes' chunks of 1,000 latents against blocks of 83 and 32; benchmarks/eval_speed.py).
CPU_ACTIVATION_ELEMENTS = 1 << 21
PROBE_ROWS = 8  # the first block's rows, whose activations size the blocks after it


@torch.no_grad()
def iw_log_likelihood(vae: VAE, batch: Batch, k: int, *, chunk_size: int = 100, rows: int | None = None,
                      posterior: Any = None) -> torch.Tensor:
    """Importance-weighted estimate of log p(x) per example, ``[N]``.

    Draws ``chunk_size`` latents per example at a time, the same draws as
    ``log_importance_weights`` over the same chunks, and decodes them ``rows`` latents per
    decoder call (at most a chunk's ``chunk_size * N``). With ``rows`` None: on a CPU, as many
    as keep the decoder's largest activation near ``CPU_ACTIVATION_ELEMENTS``; on another
    device, a whole chunk. ``posterior``: q(z|x) of the batch when the caller has it already.
    """
    q = vae.encode(batch) if posterior is None else posterior
    blocks = _DecodeBlocks(vae, batch, rows)
    chunks = []
    for start in range(0, k, chunk_size):
        z, log_q = q.rsample_with_log_prob((min(chunk_size, k - start),))   # [c, N, D], [c, N]
        log_px = blocks.log_px(z.flatten(0, 1)).view_as(log_q)
        chunks.append(log_px + (vae.prior.log_prob(z) - log_q))   # log w (log_importance_weights)
    return torch.logsumexp(torch.cat(chunks), 0) - math.log(k)


class _DecodeBlocks:
    """log p(x_n|z) of latents in sample-major order (row r is example r mod N's), decoded in
    blocks; each block gathers its rows of x and mask, so the batch is never copied once per
    sample, and a conditional VAE's classes are checked and embedded once."""

    def __init__(self, vae: VAE, batch: Batch, rows: int | None):
        if rows is not None and rows < 1:
            raise ValueError(f"rows must be at least 1, got {rows}")
        self.vae, self.x, self.mask = vae, batch["x"], batch.get("mask")
        condition = vae.condition
        self.embedded = None if condition is None else condition(condition.ids_of(batch))   # [N, E]
        # None: the first block (PROBE_ROWS) measures the activations and sizes the rest.
        self.rows = rows if rows is not None or self.x.device.type == "cpu" else sys.maxsize

    def log_px(self, z: torch.Tensor) -> torch.Tensor:
        """``[M]`` for latents ``z`` ``[M, D]``, M a multiple of N."""
        out, start = [], 0
        while start < len(z):
            stop = min(len(z), start + (self.rows or PROBE_ROWS))
            owner = torch.arange(start, stop, device=z.device) % len(self.x)
            if self.rows is None:
                out.append(self._probe(z[start:stop], owner))
            else:
                out.append(self._decode(z[start:stop], owner))
            start = stop
        return torch.cat(out)

    def _decode(self, z: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        px = self.vae.decode(z) if self.embedded is None else self.vae.decode_embedded(z, self.embedded[owner])
        return px.log_prob(self.x[owner], None if self.mask is None else self.mask[owner])

    def _probe(self, z: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        """``_decode``, noting the most elements a decoder module outputs, which sets ``rows``."""
        largest = 0

        def note(module: torch.nn.Module, inputs: Any, output: Any) -> None:
            nonlocal largest
            first = output[0] if isinstance(output, (tuple, list)) else output   # an LSTM's: (output, state)
            if isinstance(first, torch.Tensor):
                largest = max(largest, first.numel())

        handles = [module.register_forward_hook(note) for module in self.vae.decoder.modules()]
        try:
            log_px = self._decode(z, owner)
        finally:
            for handle in handles:
                handle.remove()
        self.rows = max(1, CPU_ACTIVATION_ELEMENTS * len(z) // max(largest, 1))
        return log_px


#: a latent dimension is active when its posterior mean varies more than this over the data (Burda et al. 2016)
ACTIVE_UNIT_THRESHOLD = 0.01


def active_units(posterior_means: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> tuple[int, torch.Tensor]:
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


# A block's row (float64): its examples, whether the KL of each dimension is in closed form,
# the sums of log p(x|z), KL, ELBO and log p(x) (IW); then per dimension the KL sum, the
# posterior means' mean and their sum of squared deviations from it (3 * D numbers).
_SUMS = 6


def block_seed(seed: int, b: int) -> int:
    """The seed of evaluation block ``b``'s draws. Block 0 keeps the evaluation's seed itself,
    so an evaluation that fits in one batch gives the figures it gave before blocks were seeded."""
    return seed if b == 0 else derive_seed(seed, "eval", b)


def block_figures(vae: VAE, batch: Batch, iw_samples: int, chunk_size: int, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One evaluation block's row of sums (float64, see ``_SUMS``), and the posteriors (mean,
    log-variance) of its first ``keep`` examples for the aggregate posterior. Blocks come down
    to sums and moments, so any grouping of them combines (``block_result``) to the same figures."""
    terms = elbo_terms(vae, batch)   # the same terms training optimises
    q = terms.posterior
    ll = (iw_log_likelihood(vae, batch, iw_samples, chunk_size=chunk_size, posterior=q) if iw_samples > 0
          else torch.zeros(1))   # q: the ELBO's posterior, one encoder pass for both
    means = q.mean.detach().cpu().double()
    center = means.mean(0)
    closed_form = terms.kl_per_dim is not None     # a Monte-Carlo KL has no per-dimension split
    kl_dims = terms.kl_per_dim.cpu().double().sum(0) if terms.kl_per_dim is not None else torch.zeros_like(center)
    # Summed in float64 on the CPU (MPS has no float64), so no device rounds differently.
    sums = [batch_size(batch), float(closed_form)] + [t.detach().cpu().double().sum().item() for t in (
        terms.reconstruction, terms.kl, terms.elbo, ll)]
    row = torch.cat([torch.tensor(sums, dtype=torch.float64), kl_dims, center, ((means - center) ** 2).sum(0)])
    posterior = torch.cat([q.mean[:keep], q.logvar[:keep]], dim=1).float().cpu()
    return row, posterior


def block_result(table: torch.Tensor, posteriors: torch.Tensor, iw_samples: int, seed: int) -> EvalResult:
    """The figures of every block's row (``table``, in block order) and the aggregate
    posterior's ``posteriors`` (in example order): sums add up, the posterior means' variance
    comes from the blocks' moments (Chan et al.'s pairwise rule), and the mutual information
    draws from a seed of its own (so it does not depend on how many draws the blocks took)."""
    if len(table) == 0:
        raise ValueError("evaluation got no examples")
    aggregate = DiagonalGaussian(*posteriors.chunk(2, dim=1))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "mutual_information"))
        mi = mutual_information(aggregate).item()
    counts = table[:, 0]
    n = int(counts.sum())
    totals = table[:, 2:_SUMS].sum(0) / n
    dim = (table.shape[1] - _SUMS) // 3
    kl_dims, centers, squares = table[:, _SUMS:].split(dim, dim=1)
    mean = (counts[:, None] * centers).sum(0) / n
    spread = squares.sum(0) + (counts[:, None] * (centers - mean) ** 2).sum(0)
    variance = spread / (n - 1) if n > 1 else torch.zeros(dim, dtype=torch.float64)
    return EvalResult(
        n_examples=n,
        elbo=totals[2].item(),
        reconstruction=totals[0].item(),
        kl=totals[1].item(),
        iw_nll=-totals[3].item() if iw_samples > 0 else None,
        iw_samples=iw_samples,
        active_units=int((variance > ACTIVE_UNIT_THRESHOLD).sum()),
        mutual_information=mi,
        mutual_information_bound=math.log(len(aggregate.mean)),
        mutual_information_examples=len(aggregate.mean),
        kl_per_dim=(kl_dims.sum(0) / n).tolist() if bool(table[:, 1].all()) else [],
        latent_dim=dim,
    )


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
    """ELBO, KL, AU and MI over the batches, and the IW-NLL when ``iw_samples > 0``, in one
    process (``vaezoo.train.evaluation.ShardedEvaluation`` shares the same blocks out over
    ranks, with the same figures). Each batch is a block whose draws come from
    ``block_seed(seed, b)``, under a forked RNG, so evaluating never shifts the training random
    stream and the same model always gets the same figures. The MI is over the aggregate
    posterior of the first ``MI_MAX_EXAMPLES`` examples (see ``mutual_information``).
    """
    rows, posteriors, n = [], [], 0
    with evaluation_mode(vae, device, seed):
        for b, batch in enumerate(batches):
            if max_examples is not None and n >= max_examples:
                break
            batch = to_device(batch, device)
            if max_examples is not None and n + batch_size(batch) > max_examples:
                batch = slice_batch(batch, slice(0, max_examples - n))
            torch.manual_seed(block_seed(seed, b))
            row, posterior = block_figures(vae, batch, iw_samples, chunk_size, keep=max(0, MI_MAX_EXAMPLES - n))
            rows.append(row)
            posteriors.append(posterior)
            n += batch_size(batch)
    if not rows:
        raise ValueError("evaluation got no examples")
    return block_result(torch.stack(rows), torch.cat(posteriors), iw_samples, seed)
