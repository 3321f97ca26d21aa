"""Decoder distributions p(x|z).

A decoder returns one of these (or any object with the same three members):

- ``log_prob(x, mask=None)``: log p(x|z) summed over every non-batch dimension, shape ``[N]``.
  ``mask`` (broadcastable to the per-element log-probabilities, 1 = observed, 0 = missing or
  padding) drops entries from the sum; this is how missing values and padding are handled.
- ``mean``: the expected value of x (what image and audio writers show).
- ``sample(generator=None)``: a draw of x.

Dimension 0 is always the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class Likelihood:
    """Base of the decoder distributions: shared masking and per-example summation.

    A subclass implements ``elementwise_log_prob``, ``mean`` and ``sample``; ``log_prob`` is
    inherited. Shapes: M is the number of rows decoded (dimension 0), ``*X`` the shape of one
    example x (``[C, H, W]`` for images, ``[T]`` for tokens, ``[F]`` for table columns).

    Members (what the core calls on any decoder distribution):
        log_prob(x, mask=None) (`torch.Tensor`, `[M]`):
            log p(x|z) in nats, summed over every non-batch dimension. ``x`` is ``[M, *X]``;
            ``mask`` (``None``, or broadcastable to ``[M, *X]``, 1 = observed) drops entries
            from the sum, and their values (even NaN) never reach the result or its gradients.
        elementwise_log_prob(x) (`torch.Tensor`, `[M, *X]`):
            the log-density of each element, unmasked and unsummed.
        mean (`torch.Tensor`, `[M, *X]`):
            the expected value of x (what the writers show).
        sample(generator=None) (`torch.Tensor`, `[M, *X]`):
            one draw of x, from ``generator`` when given (else torch's global RNG); not
            differentiable.
    """

    def elementwise_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            # A missing entry may hold NaN: zero it before the density too, or its gradient
            # (0 * NaN) would still poison the parameters though the sum below skips it.
            x = torch.where(mask.to(torch.bool), x, torch.zeros_like(x))
        lp = self.elementwise_log_prob(x)
        if mask is not None:
            # where() rather than a product so that a NaN or inf in a missing entry cannot leak in.
            lp = torch.where(mask.to(torch.bool).expand_as(lp), lp, torch.zeros_like(lp))
        return lp.reshape(lp.shape[0], -1).sum(-1)

    @property
    def mean(self) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError


class Bernoulli(Likelihood):
    """Bernoulli with logits; x may be binary or an intensity in [0, 1] (continuous cross-entropy).

    Attributes:
        logits (`torch.Tensor`, `[M, *X]`):
            log-odds of a 1 for every element of x; ``mean`` is ``sigmoid(logits)``, the
            probability of a 1 (of a white pixel, for images), and ``sample()`` gives 0s and
            1s in the logits' dtype.
    """

    def __init__(self, logits: torch.Tensor):
        self.logits = logits

    def elementwise_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return -F.binary_cross_entropy_with_logits(self.logits, x.to(self.logits.dtype), reduction="none")

    def log_prob(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            return super().log_prob(x, mask)
        # The same numbers as the elementwise path (negation is exact), with the minus taken
        # after the sum: one pass less over every element, forward and backward.
        nll = F.binary_cross_entropy_with_logits(self.logits, x.to(self.logits.dtype), reduction="none")
        return -nll.reshape(nll.shape[0], -1).sum(-1)

    @property
    def mean(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.bernoulli(self.mean, generator=generator)


class Gaussian(Likelihood):
    """Normal(loc, exp(log_scale)) for every element of a real-valued x.

    Attributes:
        loc (`torch.Tensor`, `[M, *X]`):
            the mean of every element; ``mean`` returns it.
        log_scale (`torch.Tensor`, a scalar or any shape broadcasting to `[M, *X]`):
            the log standard deviation: a fixed number (given as a float, stored as a 0-d
            tensor in ``loc``'s dtype and device) or a learned tensor such as an
            ``nn.Parameter`` of one value per channel or column (``[C, 1, 1]``, ``[F]``).
    """

    def __init__(self, loc: torch.Tensor, log_scale: torch.Tensor | float = 0.0):
        self.loc = loc
        self.log_scale = torch.as_tensor(log_scale, dtype=loc.dtype, device=loc.device)

    def elementwise_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.loc) * torch.exp(-self.log_scale)
        return -0.5 * z**2 - self.log_scale - 0.5 * math.log(2 * math.pi)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(self.loc.shape, generator=generator, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + torch.exp(self.log_scale) * eps


class Laplace(Likelihood):
    """Laplace(loc, exp(log_scale)): an L1 reconstruction term with a proper normaliser.

    Attributes:
        loc (`torch.Tensor`, `[M, *X]`):
            the location (median and mean) of every element; ``mean`` returns it.
        log_scale (`torch.Tensor`, a scalar or any shape broadcasting to `[M, *X]`):
            the log of the scale b (the standard deviation is ``sqrt(2) * b``); fixed or
            learned, as for ``Gaussian``.
    """

    def __init__(self, loc: torch.Tensor, log_scale: torch.Tensor | float = 0.0):
        self.loc = loc
        self.log_scale = torch.as_tensor(log_scale, dtype=loc.dtype, device=loc.device)

    def elementwise_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return -(x - self.loc).abs() * torch.exp(-self.log_scale) - self.log_scale - math.log(2.0)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        u = torch.rand(self.loc.shape, generator=generator, dtype=self.loc.dtype, device=self.loc.device)
        u = u.clamp(torch.finfo(u.dtype).tiny, 1.0) - 0.5
        return self.loc - torch.exp(self.log_scale) * u.sign() * torch.log1p(-2 * u.abs())


class Categorical(Likelihood):
    """Categorical over the last dimension of ``logits`` (e.g. ``[M, T, V]`` for tokens).

    x holds class indices of shape ``[M, *X]`` (any dtype; ``.long()`` is taken), one
    dimension fewer than the logits. Half-precision logits are upcast to float32 for the
    log-softmax.

    Attributes:
        logits (`torch.Tensor`, `[M, *X, K]`):
            unnormalised log-probabilities of the K classes at every position.
        pad_index (`int` or `None`):
            a class index that marks padding: every position whose target equals it is
            masked out of ``log_prob``, on top of any explicit mask.
        probs (`torch.Tensor`, `[M, *X, K]`):
            the class probabilities, ``softmax(logits)``; ``mean`` returns them (the expected
            one-hot vector), so ``mean`` has one more dimension than x.
        mode (`torch.Tensor`, `[M, *X]`, int64):
            the most likely class at every position (the argmax of the logits).
        sample(generator=None) (`torch.Tensor`, `[M, *X]`, int64):
            one class index drawn per position.
    """

    def __init__(self, logits: torch.Tensor, pad_index: int | None = None):
        self.logits = logits
        self.pad_index = pad_index

    def elementwise_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        # Half-precision logits are upcast: a log-softmax over a large vocabulary needs the range.
        logits = self.logits.float() if self.logits.dtype in (torch.float16, torch.bfloat16) else self.logits
        logp = torch.log_softmax(logits, dim=-1)
        return logp.gather(-1, x.long().unsqueeze(-1)).squeeze(-1)

    def log_prob(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.pad_index is not None:
            not_pad = x != self.pad_index
            mask = not_pad if mask is None else mask.to(torch.bool) & not_pad
        return super().log_prob(x, mask)

    @property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=-1)

    @property
    def mean(self) -> torch.Tensor:
        """Expected one-hot vector, i.e. the class probabilities."""
        return self.probs

    @property
    def mode(self) -> torch.Tensor:
        return self.logits.argmax(-1)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        flat = self.probs.reshape(-1, self.logits.shape[-1])
        return torch.multinomial(flat, 1, generator=generator).reshape(self.logits.shape[:-1])
