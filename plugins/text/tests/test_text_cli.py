"""End to end through the `vaezoo` command line: train -> sample -> reconstruct -> interpolate -> eval."""

import json

import pytest
from click.testing import CliRunner

from vaezoo.cli import main
from vaezoo.plugin.registry import get_modality
from vaezoo_text import TextModality

from text_fixtures import recipe_text, write_corpus, one_thread  # noqa: F401  (one_thread: an autouse fixture)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def blocks(path):
    return [block.splitlines() for block in path.read_text(encoding="utf-8").strip().split("\n\n")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    corpus = write_corpus(root / "sentences.txt", 300)
    recipe = root / "tiny.toml"
    recipe.write_text(recipe_text(corpus))
    result = cli("train", recipe, "--run-dir", root / "run", "--no-progress")
    assert result.exit_code == 0, result.output
    return root / "run", result.output


def test_the_plugin_is_registered():
    assert get_modality("text") is TextModality


def test_train_writes_tokenizer_samples_and_perplexity(run):
    run_dir, output = run
    for name in ["tokenizer.json", "tokenizer_config.json", "best.safetensors", "eval.json",
                 "samples/prior.txt", "samples/reconstructions.txt"]:
        assert (run_dir / name).is_file(), name
    assert "perplexity" in output and "IW-NLL (k=5)" in output
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["extra"]["perplexity"] == pytest.approx(
        2.718281828 ** (result["iw_nll"] / result["extra"]["tokens_per_sentence"]), rel=1e-4)
    assert len((run_dir / "samples/prior.txt").read_text().splitlines()) == 5
    assert all(len(b) == 2 for b in blocks(run_dir / "samples/reconstructions.txt"))
    validations = [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
                   if r["split"] == "validation"]
    assert len(validations) == 2 and {"kl", "active_units", "mutual_information"} <= set(validations[0])


@pytest.mark.parametrize("strategy", ["greedy", "sample", "beam"])
def test_sample_with_each_decoding_strategy(run, tmp_path, strategy):
    run_dir, _ = run
    result = cli("sample", run_dir, "--n", 6, "--out", tmp_path, "--set", f"generate.strategy={strategy}")
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "samples-t1-seed0.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 6 and all(line.strip() for line in lines)


def test_reconstruct_and_interpolate_sentences_from_the_command_line(run, tmp_path):
    run_dir, _ = run
    result = cli("reconstruct", run_dir, "The cat saw the river.", "A child found a zebra!", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    pairs = blocks(tmp_path / "reconstructions.txt")
    assert [p[0] for p in pairs] == ["the cat saw the river.", "a child found a <unk>!"]
    result = cli("interpolate", run_dir, "the cat sat on the mat", "he walked to the station", "--steps", 4, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert [len(b) for b in blocks(tmp_path / "interpolation-linear.txt")] == [4]
    result = cli("interpolate", run_dir, "--pairs", 2, "--steps", 3, "--out", tmp_path)   # pairs of the test split
    assert result.exit_code == 0, result.output
    assert [len(b) for b in blocks(tmp_path / "interpolation-linear.txt")] == [3, 3]


def test_eval_prints_perplexity_and_collapse_diagnostics(run, tmp_path):
    run_dir, _ = run
    result = cli("eval", run_dir, "--k", 3, "--max-examples", 10, "--json", tmp_path / "e.json")
    assert result.exit_code == 0, result.output
    for row in ["IW-NLL (k=3)", "active units", "mutual information", "perplexity", "perplexity_elbo"]:
        assert row in result.output
    assert json.loads((tmp_path / "e.json").read_text())["n_examples"] == 10


def test_bad_inputs_give_one_clear_line(run):
    run_dir, _ = run
    result = cli("interpolate", run_dir, "only one sentence")
    assert result.exit_code == 2 and "two inputs" in result.output
    result = cli("reconstruct", run_dir, "  ")
    assert result.exit_code == 2 and "input 1 is empty" in result.output
    result = cli("sample", run_dir, "--set", "generate.top_p=1.5")
    assert result.exit_code == 2 and "[generate] top_p" in result.output and "Traceback" not in result.output


def test_aggressive_encoder_updates_train_and_are_refused_for_the_lm(tmp_path):
    corpus = write_corpus(tmp_path / "sentences.txt", 120)
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(recipe_text(corpus))
    quick = ["--set", "train.epochs=1", "--set", "train.aggressive_encoder=true", "--set", "train.aggressive_max_inner=3",
             "--set", "eval.at_end=false", "--set", "train.samples=0", "--no-progress"]
    result = cli("train", recipe, "--run-dir", tmp_path / "vae", *quick)
    assert result.exit_code == 0, result.output
    train = [r for r in map(json.loads, (tmp_path / "vae" / "metrics.jsonl").read_text().splitlines()) if r["split"] == "train"]
    assert train and all(r["encoder_steps"] == 3 for r in train)
    result = cli("train", recipe, "--run-dir", tmp_path / "lm", "--set", "model.use_latent=false", *quick)
    assert result.exit_code == 2 and "[train] aggressive_encoder: true needs a model that uses its latent" in result.output
    assert not (tmp_path / "lm").exists()


def test_traverse_writes_a_block_of_sentences_per_dimension(run, tmp_path):
    run_dir, _ = run
    result = cli("traverse", run_dir, "--dims", "0-1", "--steps", 3, "--from", "the cat sat on the mat", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert [len(b) for b in blocks(tmp_path / "traversal-input.txt")] == [3, 3]


def test_a_mixture_prior_trains_and_the_vampprior_is_refused(tmp_path):
    """The model family needs no text code: a mog prior trains, samples and evaluates; the
    VampPrior needs continuous pseudo-inputs, which token inputs do not have."""
    corpus = write_corpus(tmp_path / "sentences.txt", 120)
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(recipe_text(corpus))
    quick = ["--set", "train.epochs=1", "--set", "train.samples=4", "--no-progress"]
    result = cli("train", recipe, "--run-dir", tmp_path / "mog", "--set", "prior.kind=mog", "--set", "prior.components=4",
                 *quick)
    assert result.exit_code == 0, result.output
    figures = json.loads((tmp_path / "mog" / "eval.json").read_text())
    assert figures["kl"] > 0 and figures["iw_nll"] is not None and "perplexity" in figures["extra"]
    assert (tmp_path / "mog" / "samples" / "prior.txt").read_text().strip()
    result = cli("train", recipe, "--run-dir", tmp_path / "vamp", "--set", "prior.kind=vamp", *quick)
    assert result.exit_code == 2 and "[prior] kind: 'vamp' needs pseudo-inputs" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "vamp").exists()


def test_the_adversarial_stage_is_refused_with_one_line(tmp_path):
    """Token ids are discrete: no discriminator can take gradients through them."""
    corpus = write_corpus(tmp_path / "sentences.txt", 40)
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(recipe_text(corpus))
    result = cli("train", recipe, "--run-dir", tmp_path / "gan", "--set", "adversarial.enabled=true", "--no-progress")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "[adversarial] enabled: the text modality's inputs x are int64 tensors" in errors[0]
    assert "Traceback" not in result.output and not (tmp_path / "gan").exists()
