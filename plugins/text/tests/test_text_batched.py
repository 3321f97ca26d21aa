"""vaezoo sample of text in batches (--batch-size): every sentence in STEM-all.txt, one per line,
streamed batch by batch after the preview's lines, the same at every batch size for greedy and
beam decoding; the latents in STEM-all.safetensors."""

import pytest
import torch
from safetensors.torch import load_file

from test_text_cli import cli
from text_fixtures import recipe_text, write_corpus


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("text-batched")
    (root / "tiny.toml").write_text(recipe_text(write_corpus(root / "sentences.txt", 300)))
    result = cli("train", root / "tiny.toml", "--run-dir", root / "run", "--no-progress")
    assert result.exit_code == 0, result.output
    return root / "run"


def sample(run, out, size, strategy, n=40, preview=5):
    result = cli("sample", run, "-n", n, "--preview", preview, "--batch-size", size, "--out", out, "--no-progress",
                 "--set", f"generate.strategy={strategy}")
    assert result.exit_code == 0, result.output
    lines = (out / "samples-t1-seed0.txt").read_text(encoding="utf-8").splitlines()
    every = (out / "samples-t1-seed0-all.txt").read_text(encoding="utf-8").splitlines()
    return lines, every, load_file(str(out / "samples-t1-seed0-all.safetensors"))


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_every_sentence_streamed_the_same_at_any_batch_size(run, tmp_path, strategy):
    preview, every, tensors = sample(run, tmp_path / "7", 7, strategy)
    assert len(preview) == 5 and len(every) == 40 and all(line.strip() for line in every)
    assert every[:5] == preview   # the preview's lines open the file
    assert tensors.keys() == {"z"} and tensors["z"].shape == (40, 4)   # no "x": text has no real-valued mean
    again, every_16, tensors_16 = sample(run, tmp_path / "16", 16, strategy)
    assert again == preview and every_16 == every and torch.equal(tensors_16["z"], tensors["z"])


def test_sampled_sentences_keep_the_preview_and_count(run, tmp_path):
    # The sample strategy draws from the global RNG batch by batch: beyond the preview, the
    # sentences depend on the batch size; the preview and the number of lines never do.
    preview, every, _ = sample(run, tmp_path / "7", 7, "sample")
    again, every_16, _ = sample(run, tmp_path / "16", 16, "sample")
    assert again == preview and every[:5] == every_16[:5] == preview
    assert len(every) == len(every_16) == 40 and all(line.strip() for line in every + every_16)
