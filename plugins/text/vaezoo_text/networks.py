"""The sentence VAE's networks (Bowman et al. 2016) and its autoregressive p(x|z).

- ``Encoder``: embedding -> LSTM (optionally bidirectional, stacked) over the real tokens
  (packed, so padding never enters) -> the last layer's final states (with a conditional
  recipe's embedded class appended) -> (mean, logvar).
- ``Decoder``: ``decoder(z)`` returns a ``SentenceDistribution``. z (with a conditional
  recipe's class embedding appended: the modality's decoder_input_dim) sets the initial LSTM
  state and/or joins the input at every step; with ``use_latent = false`` the decoder
  ignores z and is a plain LSTM language model of the same size.
- ``SentenceDistribution``: ``log_prob(x, mask)`` scores whole sentences by teacher forcing;
  ``generate(...)`` decodes greedily, by (nucleus) sampling, or by beam search.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from vaezoo import Categorical
from vaezoo.nn import append_condition

from vaezoo_text.config import ModelConfig

# Logits are scored in row chunks of at most this many floats, so importance sampling with
# thousands of rows over a large vocabulary stays within memory.
LOGIT_CHUNK_ELEMENTS = 2**24


def lengths_of(batch: dict, pad_id: int) -> torch.Tensor:
    """Tokens per sentence (EOS included) from ``length``, ``mask`` or the padding."""
    if "length" in batch:
        return batch["length"]
    if "mask" in batch:
        return batch["mask"].sum(1)
    return (batch["x"] != pad_id).sum(1)


class Encoder(nn.Module):
    def __init__(self, vocab_size: int, cfg: ModelConfig, latent_dim: int, pad_id: int, condition_dim: int = 0):
        super().__init__()
        self.pad_id = pad_id
        self.directions = 2 if cfg.bidirectional else 1
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_dim, padding_idx=pad_id)
        self.lstm = nn.LSTM(
            cfg.embedding_dim, cfg.encoder_hidden, num_layers=cfg.encoder_layers, batch_first=True,
            bidirectional=cfg.bidirectional, dropout=cfg.dropout if cfg.encoder_layers > 1 else 0.0,
        )
        self.to_latent = nn.Linear(self.directions * cfg.encoder_hidden + condition_dim, 2 * latent_dim)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch["x"]
        lengths = lengths_of(batch, self.pad_id).clamp(min=1)
        packed = pack_padded_sequence(self.embedding(x), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)                            # h: [layers * directions, N, H]
        last = h[-self.directions :].transpose(0, 1).reshape(x.shape[0], -1)   # shape, not len: traceable
        mean, logvar = self.to_latent(append_condition(last, batch)).chunk(2, dim=-1)
        return mean, logvar


class Decoder(nn.Module):
    def __init__(self, vocab_size: int, cfg: ModelConfig, latent_dim: int, *, pad_id: int, unk_id: int,
                 bos_id: int, eos_id: int, max_length: int):
        super().__init__()
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = pad_id, unk_id, bos_id, eos_id
        self.vocab_size = vocab_size
        self.max_length = max_length
        self.word_dropout = cfg.word_dropout
        self.layers, self.hidden = cfg.decoder_layers, cfg.decoder_hidden
        self.z_every_step = cfg.use_latent and cfg.z_every_step
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_dim, padding_idx=pad_id)
        self.lstm = nn.LSTM(
            cfg.embedding_dim + (latent_dim if self.z_every_step else 0), cfg.decoder_hidden,
            num_layers=cfg.decoder_layers, batch_first=True, dropout=cfg.dropout if cfg.decoder_layers > 1 else 0.0,
        )
        # z -> (h0, c0) of every layer; absent when z does not set the state.
        self.init_state = (
            nn.Linear(latent_dim, 2 * cfg.decoder_layers * cfg.decoder_hidden)
            if cfg.use_latent and cfg.z_init_state else None
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.to_vocab = nn.Linear(cfg.decoder_hidden, vocab_size)

    def forward(self, z: torch.Tensor) -> "SentenceDistribution":
        return SentenceDistribution(self, z)

    def initial_state(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.init_state is None:
            return None  # zeros
        h, c = self.init_state(z).view(len(z), 2, self.layers, self.hidden).permute(1, 2, 0, 3).contiguous()
        return h, c

    def teacher_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder inputs for targets ``x``: BOS, then x shifted right by one.

        In training mode, word dropout replaces whole input tokens (never BOS) by <unk> with
        probability ``word_dropout`` (Bowman et al. 2016); in eval mode inputs are untouched.
        """
        bos = torch.full_like(x[:, :1], self.bos_id)
        inputs = torch.cat([bos, x[:, :-1]], dim=1)
        if self.training and self.word_dropout > 0:
            drop = torch.rand(inputs.shape, device=inputs.device) < self.word_dropout
            drop[:, 0] = False
            inputs = inputs.masked_fill(drop, self.unk_id)
        return inputs

    def run(self, tokens: torch.Tensor, z: torch.Tensor, state):
        """LSTM outputs ``[M, S, H]`` and the new state for input tokens ``[M, S]``."""
        h = self.embedding(tokens)
        if self.z_every_step:
            h = torch.cat([h, z.unsqueeze(1).expand(-1, tokens.shape[1], -1).to(h.dtype)], dim=-1)
        out, state = self.lstm(h, state)
        return self.dropout(out), state

    def next_logits(self, tokens: torch.Tensor, z: torch.Tensor, state, allow_unk: bool = True):
        """Float logits ``[M, V]`` of the next token after ``tokens [M, 1]``; PAD and BOS are
        never produced, nor <unk> when ``allow_unk`` is false."""
        out, state = self.run(tokens, z, state)
        logits = self.to_vocab(out[:, -1]).float()
        banned = [self.pad_id, self.bos_id] + ([] if allow_unk else [self.unk_id])
        logits[:, banned] = -math.inf
        return logits, state


class SentenceDistribution:
    """p(x|z) over whole sentences, for ``z [M, D]``.

    - ``log_prob(x, mask)``: log-likelihood of the targets ``x [M, T]`` (ending in EOS,
      padded with PAD) summed over their real tokens, ``[M]``.
    - ``generate(...)``: token ids ``[M, L]``, each row ending in EOS (unless cut at
      ``max_length``) and padded with PAD after it.
    - ``mean``: not an expectation (that is meaningless for token sequences): the greedy
      decoding, as token ids, so code that expects ``mean`` gets the most likely-looking text.
    - ``sample(generator)``: one ancestral sample (temperature 1, full distribution).
    """

    def __init__(self, decoder: Decoder, z: torch.Tensor):
        self.decoder = decoder
        self.z = z

    def log_prob(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 2 or x.shape[0] != self.z.shape[0]:
            raise ValueError(f"log_prob needs token ids [M, T] with M = {self.z.shape[0]} rows (one per z), "
                             f"got shape {tuple(x.shape)}")
        d = self.decoder
        hidden, _ = d.run(d.teacher_inputs(x), self.z, d.initial_state(self.z))
        # Only real tokens reach the vocabulary projection (the costly part): in a batch of
        # short sentences padded to the longest, most positions are padding.
        keep = x != d.pad_id if mask is None else mask.to(torch.bool) & (x != d.pad_id)
        rows, cols = keep.nonzero(as_tuple=True)
        hidden, targets = hidden[rows, cols], x[rows, cols]          # [K, H], [K]
        chunk = max(1, LOGIT_CHUNK_ELEMENTS // d.vocab_size)
        token_lp = torch.cat([
            Categorical(d.to_vocab(hidden[i : i + chunk])).elementwise_log_prob(targets[i : i + chunk])
            for i in range(0, len(targets), chunk)
        ]) if len(targets) else hidden.new_zeros(0)
        return torch.zeros(len(x), dtype=token_lp.dtype, device=x.device).index_add(0, rows, token_lp)

    @property
    def mean(self) -> torch.Tensor:
        return self.generate(strategy="greedy")

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.generate(strategy="sample", generator=generator)

    @torch.no_grad()
    def generate(
        self,
        strategy: str = "greedy",
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        beam_width: int = 5,
        max_length: int | None = None,
        allow_unk: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Decode every z. ``strategy``: 'greedy', 'sample' (with ``temperature`` and nucleus
        ``top_p``) or 'beam' (``beam_width`` hypotheses, ranked by total log-probability)."""
        max_length = max_length or self.decoder.max_length
        if strategy == "beam":
            return self._beam(beam_width, max_length, allow_unk)
        if strategy not in ("greedy", "sample"):
            raise ValueError(f"unknown decoding strategy {strategy!r}; expected 'greedy', 'sample' or 'beam'")
        if temperature <= 0 or not 0 < top_p <= 1:
            raise ValueError(f"need temperature > 0 and 0 < top_p <= 1, got temperature={temperature}, top_p={top_p}")
        d, z = self.decoder, self.z
        state = d.initial_state(z)
        tokens = torch.full((len(z), 1), d.bos_id, dtype=torch.long, device=z.device)
        done = torch.zeros(len(z), dtype=torch.bool, device=z.device)
        out = []
        for _ in range(max_length):
            logits, state = d.next_logits(tokens, z, state, allow_unk)
            if strategy == "greedy":
                token = logits.argmax(-1)
            else:
                token = sample_top_p(logits / temperature, top_p, generator)
            token = token.masked_fill(done, d.pad_id)
            out.append(token)
            done |= token == d.eos_id
            if done.all():
                break
            tokens = token.unsqueeze(1)
        return torch.stack(out, dim=1)

    def _beam(self, width: int, max_length: int, allow_unk: bool) -> torch.Tensor:
        """Beam search per row; a finished hypothesis keeps its score and continues with PAD
        at no cost. No length normalisation, so width 1 is exactly greedy decoding."""
        if width < 1:
            raise ValueError(f"beam_width must be >= 1, got {width}")
        d = self.decoder
        m, device = len(self.z), self.z.device
        z = self.z.repeat_interleave(width, dim=0)                # row m * width + b
        state = d.initial_state(z)
        scores = torch.full((m, width), -math.inf, device=device)
        scores[:, 0] = 0.0                                        # start from one hypothesis, not width copies
        done = torch.zeros(m, width, dtype=torch.bool, device=device)
        history = torch.empty(m, width, 0, dtype=torch.long, device=device)
        tokens = torch.full((m * width, 1), d.bos_id, dtype=torch.long, device=device)
        for _ in range(max_length):
            logits, state = d.next_logits(tokens, z, state, allow_unk)
            logp = torch.log_softmax(logits, -1).view(m, width, -1)
            finished = torch.full_like(logp[0, 0], -math.inf)
            finished[d.pad_id] = 0.0
            logp = torch.where(done.unsqueeze(-1), finished, logp)
            best, index = (scores.unsqueeze(-1) + logp).view(m, -1).topk(width, dim=-1)
            beam, token = index // d.vocab_size, index % d.vocab_size
            rows = (beam + torch.arange(m, device=device).unsqueeze(1) * width).view(-1)
            if state is not None:
                state = (state[0][:, rows], state[1][:, rows])
            history = torch.cat([history.gather(1, beam.unsqueeze(-1).expand(-1, -1, history.shape[-1])),
                                 token.unsqueeze(-1)], dim=-1)
            done = done.gather(1, beam) | (token == d.eos_id)
            scores = best
            tokens = token.view(-1, 1)
            if done.all():
                break
        winner = scores.argmax(-1)
        return history[torch.arange(m, device=device), winner]


class GreedyGenerator(nn.Module):
    """The decoder's greedy decoding (``SentenceDistribution.mean``, <unk> allowed) written for
    ``torch.jit.script``: the decoder's input ``[M, D_in]`` -> token ids ``[M, L]``, each row
    ending in EOS (unless cut at ``max_length``) and padded with PAD after it. It shares the
    decoder's layers; ``vaezoo export`` scripts it (the plugin's ``export_decoder``)."""

    def __init__(self, d: Decoder):
        super().__init__()
        self.embedding, self.lstm, self.to_vocab = d.embedding, d.lstm, d.to_vocab
        self.has_init_state = d.init_state is not None
        # TorchScript needs a module here even when z does not set the state (then it is unused)
        self.init_state = d.init_state if d.init_state is not None else nn.Linear(1, 1)
        self.z_every_step = bool(d.z_every_step)
        self.layers, self.hidden, self.max_length = d.layers, d.hidden, d.max_length
        self.bos_id, self.eos_id, self.pad_id = d.bos_id, d.eos_id, d.pad_id

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        n = z.shape[0]
        if self.has_init_state:
            state = self.init_state(z).view(n, 2, self.layers, self.hidden).permute(1, 2, 0, 3).contiguous()
            h, c = state[0], state[1]
        else:
            h = torch.zeros(self.layers, n, self.hidden, dtype=z.dtype, device=z.device)
            c = torch.zeros(self.layers, n, self.hidden, dtype=z.dtype, device=z.device)
        tokens = torch.full((n, 1), self.bos_id, dtype=torch.long, device=z.device)
        done = torch.zeros(n, dtype=torch.bool, device=z.device)
        out: list[torch.Tensor] = []
        for _ in range(self.max_length):
            inputs = self.embedding(tokens)
            if self.z_every_step:
                inputs = torch.cat([inputs, z.unsqueeze(1).to(inputs.dtype)], dim=-1)
            hidden, (h, c) = self.lstm(inputs, (h, c))
            logits = self.to_vocab(hidden[:, -1]).float()
            logits[:, self.pad_id] = -math.inf
            logits[:, self.bos_id] = -math.inf
            token = logits.argmax(-1).masked_fill(done, self.pad_id)
            out.append(token)
            done = done | (token == self.eos_id)
            if bool(done.all()):
                break
            tokens = token.unsqueeze(1)
        return torch.stack(out, dim=1)


def sample_top_p(logits: torch.Tensor, top_p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row from softmax(logits), restricted to the smallest set of most likely
    tokens whose probability reaches ``top_p`` (nucleus sampling, Holtzman et al. 2020)."""
    probs = torch.softmax(logits, -1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(-1, descending=True)
        # Drop a token once the mass before it already reaches top_p; the first always stays.
        sorted_probs = sorted_probs.masked_fill(sorted_probs.cumsum(-1) - sorted_probs >= top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
