"""Shared helpers for the text plugin's tests: a tiny made-up corpus and recipes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import tomli_w
import torch

from vaezoo.core.objectives import elbo_objective
from vaezoo.plugin.recipes import build_recipe

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and with other jobs on the same cores a
    second OpenMP thread mostly spins; the previous setting is restored afterwards.
    Test modules import this fixture to use it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SUBJECTS = ["the cat", "the dog", "a man", "my sister", "the old farmer", "her friend", "the teacher", "a child"]
VERBS = ["saw", "liked", "found", "painted", "carried", "followed"]
OBJECTS = ["the red ball", "a small house", "the river", "his car", "the yellow bird", "an apple", "the station"]
ENDINGS = ["", " yesterday", " in the morning", " again", " at night"]


def make_sentences(n: int = 300, seed: int = 0) -> list[str]:
    """``n`` distinct sentences from a small grammar (deterministic)."""
    rng = random.Random(seed)
    out: list[str] = []
    seen = set()
    while len(out) < n:
        s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(ENDINGS)}"
        s = s[0].upper() + s[1:] + rng.choice([".", ".", "!"])
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def write_corpus(path: Path, n: int = 300, seed: int = 0) -> Path:
    path.write_text("\n".join(make_sentences(n, seed)) + "\n", encoding="utf-8")
    return path


def recipe_text(corpus: Path, **sections: dict) -> str:
    """A tiny recipe as TOML text; ``sections`` override or add keys, e.g. model={"use_latent": False}."""
    tables = {
        "latent": {"dim": 4},
        "data": {"path": str(corpus), "validation_fraction": 0.1, "test_fraction": 0.1},
        "tokenizer": {"kind": "word", "vocab_size": 200, "min_frequency": 1, "max_length": 16},
        "model": {"embedding_dim": 16, "encoder_hidden": 16, "decoder_hidden": 32, "word_dropout": 0.2},
        "generate": {"max_length": 16},
        "objective": {"kl_schedule": "linear", "kl_warmup_steps": 20},
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.01, "log_every": 5, "samples": 5, "tensorboard": False},
        "eval": {"iw_samples": 5, "batch_size": 50, "chunk_size": 5},
    }
    for name, values in sections.items():
        tables.setdefault(name, {}).update(values)
    return tomli_w.dumps({"modality": "text", "name": "tiny-text", "seed": 0, **tables})


def make_recipe(corpus: Path, **sections: dict):
    import tomllib

    raw = tomllib.loads(recipe_text(corpus, **sections))
    return build_recipe(raw, source="<test>", base_dir=corpus.parent)


def fitted_modality(tmp_path: Path, n: int = 300, **sections: dict):
    """A TextModality whose tokenizer is trained on a fresh tiny corpus in ``tmp_path``."""
    from vaezoo_text import TextModality

    corpus = write_corpus(tmp_path / "corpus.txt", n)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    modality = TextModality(make_recipe(corpus, **sections), run_dir)
    modality.fit(run_dir)
    return modality


def train_briefly(vae, batch: dict, steps: int, lr: float = 0.02, beta: float = 0.1) -> float:
    """Adam on one fixed batch (memorisation): enough to make decodings meaningful."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    vae.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = elbo_objective(vae, batch, beta=beta).loss
        loss.backward()
        opt.step()
    vae.eval()
    return loss.item()
