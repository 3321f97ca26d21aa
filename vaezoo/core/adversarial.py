"""The adversarial stage's losses, and the generator's objective: a VAE objective plus the
GAN terms (Larsen et al. 2016, VAE-GAN; Caillon & Esling 2021, RAVE's second phase).

A discriminator returns ``list[list[Tensor]]``: per scale, its feature maps and, last, its
logits (``vaezoo.core.discriminators``). The losses average over scales and over every
logit (patch). ``AdversarialObjective`` wraps any objective whose loss is
``-mean log p(x|z) + penalty`` and adds, while ``active``:

    - adversarial_weight * E * L_gen(D(fake))           fool the discriminator
    - feature_matching_weight * E * FM(D(x), D(x~))      learned similarity, in D's layers
    - (1 - likelihood_weight) * mean log p(x|z)          the part of the likelihood replaced

E is the number of elements of one example of x: the likelihood term is a sum over them,
so both GAN terms weigh "per element" and a weight of 1 puts them on that scale. The ELBO,
reconstruction and KL of the output stay the likelihood model's own (the bound logged is
honest); the GAN terms are in ``extra``. The discriminator is held outside the module tree,
so DistributedDataParallel and the VAE's optimiser never see its parameters.
"""

from __future__ import annotations

from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vaezoo.core.batches import Batch
from vaezoo.core.objectives import Objective, ObjectiveOutput

GanLoss = Literal["hinge", "non-saturating", "least-squares"]
GAN_LOSSES = ("hinge", "non-saturating", "least-squares")
Verdicts = list[list[torch.Tensor]]


def _logits(out: Verdicts) -> list[torch.Tensor]:
    return [scale[-1] for scale in out]


def discriminator_loss(kind: GanLoss, real: Verdicts, fakes: list[Verdicts]) -> torch.Tensor:
    """The discriminator's loss on real data and on each kind of fake (reconstructions,
    prior samples), the fakes' terms averaged: hinge, non-saturating (the logistic loss of
    Goodfellow et al.) or least squares (Mao et al. 2017, targets 1 and 0)."""
    def on_real(d: torch.Tensor) -> torch.Tensor:
        if kind == "hinge":
            return F.relu(1 - d).mean()
        if kind == "non-saturating":
            return F.softplus(-d).mean()
        return ((d - 1) ** 2).mean()

    def on_fake(d: torch.Tensor) -> torch.Tensor:
        if kind == "hinge":
            return F.relu(1 + d).mean()
        if kind == "non-saturating":
            return F.softplus(d).mean()
        return (d ** 2).mean()

    real_term = torch.stack([on_real(d) for d in _logits(real)]).mean()
    fake_term = torch.stack([torch.stack([on_fake(d) for d in _logits(f)]).mean() for f in fakes]).mean()
    return real_term + fake_term


def generator_loss(kind: GanLoss, fake: Verdicts) -> torch.Tensor:
    """The generator's adversarial loss on its fakes' verdicts (hinge: -D, as in SAGAN and
    RAVE; non-saturating: -log sigmoid D; least squares: (D - 1)^2)."""
    terms = []
    for d in _logits(fake):
        if kind == "hinge":
            terms.append(-d.mean())
        elif kind == "non-saturating":
            terms.append(F.softplus(-d).mean())
        else:
            terms.append(((d - 1) ** 2).mean())
    return torch.stack(terms).mean()


def feature_matching(real: Verdicts, fake: Verdicts, distance: Literal["l1", "l2"] = "l1") -> torch.Tensor:
    """Mean distance between the discriminator's features of real data and of their
    reconstructions, layer by layer (the logits left out), averaged over layers and scales.
    L1 as MelGAN and RAVE; L2 is Larsen et al.'s Gaussian in feature space."""
    terms = []
    for real_scale, fake_scale in zip(real, fake):
        for r, f in zip(real_scale[:-1], fake_scale[:-1]):
            diff = f - r.detach()
            terms.append(diff.abs().mean() if distance == "l1" else (diff ** 2).mean())
    if not terms:   # a discriminator without intermediate features
        return torch.zeros((), device=_logits(fake)[0].device)
    return torch.stack(terms).mean()


def mean_logit(out: Verdicts) -> torch.Tensor:
    return torch.stack([d.float().mean() for d in _logits(out)]).mean()


class AdversarialObjective(Objective):
    """``inner`` (a VAE objective) plus the generator's GAN terms while ``active``.

    ``discriminator`` is a callable held outside the module tree (see the module docstring);
    ``options`` is the recipe's ``[adversarial]`` section. Every active forward keeps the
    pair the discriminator trains on next: the real batch, and its detached fakes (the
    reconstructions' means, and decoded prior samples when ``options.prior_samples``);
    ``take_pairs()`` hands them over. Missing entries of x (``batch["mask"]``) are filled
    with the reconstruction, so that missingness tells the discriminator nothing.
    """

    def __init__(self, inner: Objective, discriminator: Callable[[torch.Tensor], Verdicts], options: Any):
        super().__init__(inner.vae)
        if options.likelihood_weight != 1.0 and not getattr(inner, "separable_reconstruction", False):
            raise ValueError(f"likelihood_weight {options.likelihood_weight} needs an objective whose loss holds "
                             f"-mean log p(x|z) as a term (elbo, beta-tcvae), not {type(inner).__name__}")
        self.inner = inner
        self._discriminator = (discriminator,)   # a tuple: not a submodule
        self.options = options
        self.active = False
        self._pairs: list[tuple[torch.Tensor, list[torch.Tensor]]] = []

    @property
    def discriminator(self) -> Callable[[torch.Tensor], Verdicts]:
        return self._discriminator[0]

    def take_pairs(self) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        pairs, self._pairs = self._pairs, []
        return pairs

    def forward(self, batch: Batch, *, beta: float = 1.0) -> ObjectiveOutput:
        out = self.inner(batch, beta=beta)
        if not self.active:
            return out
        o, x = self.options, batch["x"]
        if out.likelihood is None:
            raise ValueError(f"{type(self.inner).__name__} returns no likelihood: the adversarial stage needs p(x|z)")
        n = x.shape[0]
        fake = out.likelihood.mean[:n]    # IWAE decodes k samples per example; its first N rows are the first sample
        mask = batch.get("mask")
        real = x if mask is None else torch.where(mask.bool(), x, fake.detach())
        fakes = [fake]
        if o.prior_samples:
            z = self.vae.prior.sample(n, device=fake.device, dtype=fake.dtype)
            fakes.append(self.vae.decode(z, self.vae.conditions(batch)).mean)   # a conditional VAE: the batch's classes
        d = self.discriminator
        real_out, fake_outs = d(real), [d(f) for f in fakes]
        adversarial = torch.stack([generator_loss(o.loss, f) for f in fake_outs]).mean()
        matching = feature_matching(real_out, fake_outs[0], o.feature_distance)
        elements = x[0].numel()
        loss = out.loss + elements * (o.adversarial_weight * adversarial + o.feature_matching_weight * matching)
        if o.likelihood_weight != 1.0:
            loss = loss + (1.0 - o.likelihood_weight) * out.reconstruction.mean()
        self._pairs.append((real.detach(), [f.detach() for f in fakes]))
        out.loss = loss
        out.extra = {**out.extra, "gen_adversarial": adversarial, "feature_matching": matching}
        return out
