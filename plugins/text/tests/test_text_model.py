"""The networks: word dropout, teacher-forced log-likelihood, decoding, IW-NLL and perplexity."""

import math

import pytest
import torch

from vaezoo.core.batches import repeat_batch
from vaezoo.core.estimators import iw_log_likelihood
from vaezoo.train.runs import build_vae
from vaezoo_text import perplexity
from vaezoo_text.networks import sample_top_p

from text_fixtures import fitted_modality, train_briefly, one_thread  # noqa: F401  (one_thread: an autouse fixture)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny VAE that has memorised 8 sentences: decodings are real sentences, not noise."""
    modality = fitted_modality(tmp_path_factory.mktemp("model"), 100, model={"word_dropout": 0.0})
    torch.manual_seed(0)
    vae = build_vae(modality)
    batch = modality.collate([modality.dataset("train")[i] for i in range(8)])
    train_briefly(vae, batch, steps=60)
    return modality, vae, batch


def manual_log_prob(decoder, z, x):
    """Sum of log-softmax scores of each real target token, one sentence at a time."""
    out = []
    for zi, xi in zip(z, x):
        xi = xi[xi != decoder.pad_id].unsqueeze(0)
        inputs = torch.cat([torch.tensor([[decoder.bos_id]]), xi[:, :-1]], 1)
        hidden, _ = decoder.run(inputs, zi.unsqueeze(0), decoder.initial_state(zi.unsqueeze(0)))
        logp = torch.log_softmax(decoder.to_vocab(hidden), -1)
        out.append(logp[0, torch.arange(xi.shape[1]), xi[0]].sum())
    return torch.stack(out)


# -- word dropout -------------------------------------------------------------------------------


def test_word_dropout_replaces_whole_tokens_in_training_only(tmp_path):
    modality = fitted_modality(tmp_path, 100, model={"word_dropout": 0.5})
    decoder = modality.build_decoder()
    batch = modality.collate([modality.dataset("train")[i] for i in range(32)])
    x = batch["x"]
    shifted = torch.cat([torch.full_like(x[:, :1], decoder.bos_id), x[:, :-1]], 1)

    decoder.eval()
    assert torch.equal(decoder.teacher_inputs(x), shifted)                     # never at evaluation

    decoder.train()
    torch.manual_seed(0)
    inputs = decoder.teacher_inputs(x)
    changed = inputs != shifted
    assert (inputs[changed] == decoder.unk_id).all()                           # whole tokens become <unk>
    assert (inputs[:, 0] == decoder.bos_id).all()                              # BOS is never dropped
    real = batch["mask"][:, :-1]
    rate = changed[:, 1:][real].float().mean().item()
    assert 0.4 < rate < 0.6

    # Nothing else is dropped: every embedded input is exactly the embedding of its token
    # (the original or <unk>), with no zeroed embedding dimensions.
    seen = {}
    decoder.embedding.register_forward_hook(lambda mod, args, out: seen.update(ids=args[0], vectors=out))
    z = torch.zeros(len(x), modality.recipe.latent.dim)
    torch.manual_seed(1)
    decoder(z).log_prob(x, batch["mask"])
    assert torch.equal(seen["vectors"], decoder.embedding.weight[seen["ids"]])
    assert ((seen["ids"] == shifted) | (seen["ids"] == decoder.unk_id)).all()


# -- the likelihood ---------------------------------------------------------------------------


def test_log_prob_sums_real_tokens_and_accepts_k_times_n_rows(trained):
    modality, vae, batch = trained
    decoder, x = vae.decoder, batch["x"]
    z = torch.randn(3 * len(x), modality.recipe.latent.dim)
    repeated = repeat_batch(batch, 3)                                          # what IW estimation does
    with torch.no_grad():
        lp = decoder(z).log_prob(repeated["x"], repeated["mask"])
        assert lp.shape == (3 * len(x),)
        assert torch.allclose(lp, manual_log_prob(decoder, z, repeated["x"]), atol=1e-4)
        # Extra padding changes nothing.
        padded = torch.cat([x, torch.full((len(x), 5), decoder.pad_id)], 1)
        assert torch.allclose(decoder(z[: len(x)]).log_prob(padded), lp[: len(x)], atol=1e-4)
        with pytest.raises(ValueError, match="one per z"):
            decoder(z).log_prob(x)


def test_encoder_ignores_padding(trained):
    modality, vae, batch = trained
    with torch.no_grad():
        both = vae.encoder(batch)
        one = vae.encoder(modality.collate([modality.dataset("train")[0]]))
    assert torch.allclose(both[0][:1], one[0], atol=1e-5) and torch.allclose(both[1][:1], one[1], atol=1e-5)


# -- decoding ---------------------------------------------------------------------------------


def test_greedy_is_deterministic_and_reconstructs_memorised_sentences(trained):
    modality, vae, batch = trained
    _, px = vae.reconstruct(batch)
    first, second = px.generate("greedy"), px.generate("greedy")
    assert torch.equal(first, second)
    assert torch.equal(px.mean, first)                                         # mean is the greedy decoding
    got, want = modality.decode_tokens(first), modality.decode_tokens(batch["x"])
    assert sum(g == w for g, w in zip(got, want)) >= 5, (got, want)


def test_beam_width_one_equals_greedy_and_rows_end_properly(trained):
    modality, vae, _ = trained
    _, px = vae.sample(16, generator=torch.Generator().manual_seed(0))
    greedy = px.generate("greedy", max_length=12)
    assert torch.equal(px.generate("beam", beam_width=1, max_length=12), greedy)
    tok = modality.tokenizer
    for strategy in ("greedy", "beam", "sample"):
        ids = px.generate(strategy, beam_width=3, max_length=12)
        assert ids.shape[0] == 16 and ids.shape[1] <= 12
        for row in ids.tolist():
            assert tok.bos_token_id not in row
            if tok.eos_token_id in row:                                        # after EOS only PAD
                end = row.index(tok.eos_token_id)
                assert all(t == tok.pad_token_id for t in row[end + 1 :])
                assert tok.pad_token_id not in row[:end]


def test_beam_search_scores_at_least_as_high_as_greedy_on_average(trained):
    modality, vae, _ = trained
    z, px = vae.sample(16, generator=torch.Generator().manual_seed(1))

    def score(ids):
        return vae.decoder(z).log_prob(ids).mean().item()

    with torch.no_grad():
        assert score(px.generate("beam", beam_width=4)) >= score(px.generate("greedy")) - 1e-4


def test_sampling_temperature_and_top_p(trained):
    _, vae, _ = trained
    _, px = vae.sample(8, generator=torch.Generator().manual_seed(2))
    a = px.generate("sample", temperature=0.8, generator=torch.Generator().manual_seed(5))
    b = px.generate("sample", temperature=0.8, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)                                                   # seeded
    # A vanishing nucleus keeps only the most likely token: greedy decoding.
    assert torch.equal(px.generate("sample", top_p=1e-6), px.generate("greedy"))
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(2000, 1)
    draws = sample_top_p(logits, 0.8, torch.Generator().manual_seed(0))       # p = .64 .24 .09 .03
    assert set(draws.tolist()) == {0, 1}
    with pytest.raises(ValueError, match="strategy"):
        px.generate("nucleus")


# -- IW-NLL and perplexity --------------------------------------------------------------------


def test_iw_nll_and_perplexity_arithmetic(tmp_path):
    """With q(z|x) = p(z) and a decoder that ignores z, every importance weight is p(x), so
    the IW-NLL is the exact language-model NLL and perplexity is exp(NLL / tokens)."""
    modality = fitted_modality(tmp_path, 100, model={"use_latent": False})
    torch.manual_seed(0)
    vae = build_vae(modality).eval()
    torch.nn.init.zeros_(vae.encoder.to_latent.weight)
    torch.nn.init.zeros_(vae.encoder.to_latent.bias)                           # mean 0, logvar 0
    batches = [modality.collate([modality.dataset("test")[i] for i in range(j, j + 4)]) for j in (0, 4)]
    with torch.no_grad():
        nll = torch.cat([-manual_log_prob(vae.decoder, torch.zeros(4, 4), b["x"]) for b in batches])
        iw = torch.cat([-iw_log_likelihood(vae, b, k=7, chunk_size=3) for b in batches])
    assert torch.allclose(iw, nll, atol=1e-4)
    tokens = sum(int(b["length"].sum()) for b in batches)
    base = {"n_examples": 8, "iw_nll": iw.mean().item(), "elbo": -iw.mean().item() - 0.5}
    extra = modality.extra_metrics(vae, batches, base)
    assert extra["tokens_per_sentence"] == pytest.approx(tokens / 8)
    assert extra["perplexity"] == pytest.approx(math.exp(nll.sum().item() / tokens), rel=1e-5)
    assert extra["perplexity_elbo"] == pytest.approx(math.exp((nll.sum().item() + 4.0) / tokens), rel=1e-5)
    assert "perplexity" not in modality.extra_metrics(vae, batches, {**base, "iw_nll": None})
    assert perplexity(math.log(50.0) * 10, 10) == pytest.approx(50.0)
    with pytest.raises(ValueError, match="at least one token"):
        perplexity(1.0, 0)
