"""The VAE: a plugin's encoder and decoder around the core's posterior and prior.

- ``encoder(batch) -> (mean, logvar)``, each ``[N, D]``: the parameters of q(z|x).
- ``decoder(z) -> distribution`` for ``z`` of shape ``[M, D]``: p(x|z), an object with
  ``log_prob(x, mask)``, ``mean`` and ``sample()`` (see ``vaezoo.core.likelihoods``).

A conditional VAE (``condition``, a ``vaezoo.core.conditions.ClassCondition``) reads each
example's class from the batch: the decoder receives ``[z, embedding(c)]`` (``[M, D + E]``)
and, with ``condition.to_encoder``, the encoder finds the embedding in ``batch["condition"]``.

The VAE knows no training objective: ``vaezoo.core.objectives`` wraps it (and
DistributedDataParallel wraps the objective), so a new objective needs no change here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from vaezoo.core.batches import Batch
from vaezoo.core.conditions import ENCODER_KEY, ClassCondition
from vaezoo.core.distributions import DiagonalGaussian
from vaezoo.core.posteriors import IAFPosterior, InverseAutoregressiveFlow, build_flow
from vaezoo.core.priors import Prior, StandardNormalPrior, VampPrior, build_prior


@dataclass
class VAEOutput:
    """One pass x -> q(z|x) -> z -> p(x|z), what ``VAE.forward`` returns."""

    posterior: Any                # q(z|x): a DiagonalGaussian or an IAFPosterior
    z: torch.Tensor               # [N, D], one reparameterised draw from the posterior
    likelihood: Any               # p(x|z): the decoder's distribution (log_prob, mean, sample)
    log_q: torch.Tensor | None = None  # [N] log q(z|x) of that draw, when the KL is estimated from it


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Straight line from ``a`` to ``b``; ``a, b`` are ``[N, D]``, ``t`` is ``[S]`` -> ``[N, S, D]``."""
    t = t.view(1, -1, 1)
    return (1 - t) * a.unsqueeze(1) + t * b.unsqueeze(1)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985); falls back to lerp for (anti)parallel endpoints."""
    a_unit = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b_unit = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    omega = torch.acos((a_unit * b_unit).sum(-1).clamp(-1 + 1e-7, 1 - 1e-7)).view(-1, 1, 1)  # [N,1,1]
    t = t.view(1, -1, 1)
    sin_omega = torch.sin(omega)
    nearly_parallel = sin_omega.abs() < 1e-4
    wa = torch.where(nearly_parallel, 1 - t, torch.sin((1 - t) * omega) / sin_omega)
    wb = torch.where(nearly_parallel, t, torch.sin(t * omega) / sin_omega)
    return wa * a.unsqueeze(1) + wb * b.unsqueeze(1)


class VAE(nn.Module):
    """A plugin's encoder and decoder with the core's prior and posterior over ``latent_dim``
    dimensions.

    Attributes:
        encoder: ``encoder(batch) -> (mean, logvar)``, each ``[N, D]``; it may return a third
            tensor ``h`` ``[N, C]``, its context vector for an IAF posterior.
        decoder: ``decoder(z [M, D]) -> distribution`` over x (``log_prob(x, mask) -> [M]``,
            ``mean``, ``sample()``).
        latent_dim: D, the size of z.
        prior: p(z), a ``vaezoo.core.priors.Prior`` (standard normal unless one is given).
        flow: the IAF on top of the encoder's Gaussian, or None (``vaezoo.core.posteriors``).
        condition: the class condition, or None for an unconditional VAE.

    ``forward(batch)`` returns a ``VAEOutput`` (posterior, one draw z, its log q(z|x) when the
    KL needs it, p(x|z)); ``encode``, ``decode``, ``sample``, ``reconstruct`` and
    ``interpolate`` are the uses. For a conditional VAE, every call that decodes takes the
    classes as ``condition`` (ids ``[M]``, or one id for all); the batch's own classes are
    used where a batch is given and no ``condition``.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int, *, prior: Prior | None = None,
                 flow: InverseAutoregressiveFlow | None = None, condition: ClassCondition | None = None):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.prior = prior if prior is not None else StandardNormalPrior(latent_dim)
        if isinstance(self.prior, VampPrior):
            if condition is not None and condition.to_encoder:
                raise ValueError("cannot go with an encoder that reads the class: its pseudo-inputs carry none")
            self.prior.bind(lambda batch: self._gaussian(batch)[:2])
        self.flow = flow
        self.condition = condition

    @property
    def closed_form_kl(self) -> bool:
        """KL(q || p) in closed form, per dimension: a diagonal posterior and a standard prior."""
        return self.flow is None and self.prior.closed_form_kl

    def conditions(self, batch: Batch) -> torch.Tensor | None:
        """The batch's class ids [N] for a conditional VAE (checked), None for an unconditional one."""
        return None if self.condition is None else self.condition.ids_of(batch)

    def _condition_ids(self, condition: Any, rows: int, device: torch.device) -> torch.Tensor:
        """``condition`` (ids [rows], or one int for every row) as checked int64 ids on ``device``."""
        assert self.condition is not None
        if isinstance(condition, int) and not isinstance(condition, bool):
            condition = torch.full((rows,), condition, dtype=torch.long)
        ids = self.condition.check_ids(condition, "condition")
        if len(ids) != rows:
            raise ValueError(f"condition: {len(ids)} class ids for {rows} latents")
        return ids.to(device)

    def _embedded(self, batch: Batch) -> torch.Tensor | None:
        """The batch's classes embedded [N, E] (checked once), or None for an unconditional VAE."""
        return None if self.condition is None else self.condition(self.condition.ids_of(batch))

    def _encoder_batch(self, batch: Batch, embedded: torch.Tensor | None) -> Batch:
        if self.condition is None or not self.condition.to_encoder:
            return batch
        return {**batch, ENCODER_KEY: self._embedded(batch) if embedded is None else embedded}

    def _gaussian(self, batch: Batch, embedded: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        out = self.encoder(self._encoder_batch(batch, embedded))
        mean, logvar, context = (out[0], out[1], out[2] if len(out) > 2 else None)
        if mean.shape[-1] != self.latent_dim:
            raise ValueError(f"encoder returned {mean.shape[-1]} latent dimensions, the recipe says {self.latent_dim}")
        return mean, logvar, context

    def encode(self, batch: Batch, embedded: torch.Tensor | None = None) -> DiagonalGaussian | IAFPosterior:
        """q(z|x): the encoder's diagonal Gaussian, with the flow on top when there is one
        (``embedded``: the batch's classes already embedded, so a caller embeds them once)."""
        mean, logvar, context = self._gaussian(batch, embedded)
        q = DiagonalGaussian(mean, logvar)
        if self.flow is None:
            return q
        if context is None:
            context = torch.cat([mean, logvar], -1)
        return IAFPosterior(q, self.flow, context)

    def decode(self, z: torch.Tensor, condition: torch.Tensor | int | None = None):
        """p(x|z) for z [M, D]; a conditional VAE needs ``condition``: class ids [M], or one id
        for every row (``ValueError`` without one); an unconditional VAE refuses one."""
        if self.condition is None:
            if condition is not None:
                raise ValueError("this VAE is not conditional: it takes no condition")
            return self.decoder(z)
        if condition is None:
            raise ValueError("this VAE is conditional: decode(z, condition) needs the classes (ids [M], or one id)")
        ids = self._condition_ids(condition, z.shape[0], z.device)
        return self.decode_embedded(z, self.condition(ids))

    def decode_embedded(self, z: torch.Tensor, embedded: torch.Tensor):
        """p(x|z, c) from an embedded condition [M, E] (a mix of classes' embeddings, for instance)."""
        return self.decoder(torch.cat([z, embedded.to(z.dtype)], dim=-1))

    def forward(self, batch: Batch) -> VAEOutput:
        """Encode, draw one reparameterised z (with log q(z|x) unless the KL is closed form), decode.
        A conditional VAE checks and embeds the batch's classes once for both networks."""
        embedded = self._embedded(batch)
        q = self.encode(batch, embedded)
        if self.closed_form_kl:
            z, log_q = q.rsample(), None
        else:
            z, log_q = q.rsample_with_log_prob()
        px = self.decoder(z) if embedded is None else self.decode_embedded(z, embedded)
        return VAEOutput(q, z, px, log_q)

    def _param(self) -> torch.Tensor:
        return next(self.parameters())

    @torch.no_grad()
    def sample(self, n: int, *, temperature: float = 1.0, generator: torch.Generator | None = None,
               condition: torch.Tensor | int | None = None):
        """Decode ``n`` latents drawn from the prior, its spread scaled by ``temperature``
        (of class ``condition`` for a conditional VAE). Returns ``(z, p(x|z))``."""
        p = self._param()
        z = self.prior.sample(n, temperature=temperature, generator=generator, device=p.device, dtype=p.dtype)
        return z, self.decode(z, condition)

    @torch.no_grad()
    def reconstruct(self, batch: Batch, *, use_mean: bool = True, condition: torch.Tensor | int | None = None):
        """Decode the posterior's point (its mean; for an IAF, the flow of the base mean) or one
        posterior sample. A conditional VAE decodes with each input's own class, or with
        ``condition`` (style transfer: the code of x, the class asked for). Returns ``(z, p(x|z))``."""
        q = self.encode(batch)
        z = q.point if use_mean else q.rsample()
        return z, self.decode(z, self.conditions(batch) if condition is None else condition)

    @torch.no_grad()
    def interpolate(
        self, batch_a: Batch, batch_b: Batch, *, steps: int = 8, method: Literal["linear", "spherical"] = "linear",
        condition: torch.Tensor | int | None = None,
    ):
        """Walk between the posterior points (means) of paired examples.

        Returns ``(z, p(x|z))`` with ``z`` of shape ``[N * steps, D]``, row-major: the ``steps``
        points of pair 0 first, end points included. A conditional VAE walks the class
        embedding too, from A's class to B's (so each end is its own reconstruction), or keeps
        ``condition`` (ids [N] or one id) all along.
        """
        za, zb = self.encode(batch_a).point, self.encode(batch_b).point
        t = torch.linspace(0, 1, steps, device=za.device, dtype=za.dtype)
        walk = slerp if method == "spherical" else lerp
        z = walk(za, zb, t).reshape(-1, self.latent_dim)
        if self.condition is None:
            return z, self.decode(z, condition)
        if condition is not None:
            ids = self._condition_ids(condition, len(za), za.device)
            return z, self.decode(z, ids.repeat_interleave(steps))
        ca, cb = (self.condition(self.conditions(b)) for b in (batch_a, batch_b))
        return z, self.decode_embedded(z, lerp(ca, cb, t).reshape(len(za) * steps, -1))


def make_vae(encoder: nn.Module, decoder: nn.Module, latent_dim: int, *, prior: Any = None, posterior: Any = None,
             pseudo_inputs: Any = None, condition: ClassCondition | None = None) -> VAE:
    """A VAE with the prior and posterior that ``prior`` and ``posterior`` (the recipe's
    ``[prior]`` and ``[posterior]`` sections, or None for the defaults) ask for;
    ``pseudo_inputs(k)`` is the modality's hook for the VampPrior; ``condition`` makes it
    conditional. ``ValueError`` says why a choice cannot be built (the caller names the recipe key)."""
    return VAE(encoder, decoder, latent_dim, prior=build_prior(prior, latent_dim, pseudo_inputs),
               flow=build_flow(posterior, latent_dim), condition=condition)
