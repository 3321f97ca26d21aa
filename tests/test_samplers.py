"""Ex-post sampling (`vaezoo sample --sampler gmm`): the mixture fit, its sampling, its file,
when it is refitted, and the command end to end on a tiny trained run."""

import os
import shutil

import pytest
import torch
from click.testing import CliRunner

from vaezoo.analysis.samplers import FILE, GaussianMixture, fit_gmm, gmm_for_run, load_gmm, save_gmm
from vaezoo.cli import main
from vaezoo.core.errors import InputError
from vaezoo.train.runs import open_run


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def known_mixture() -> GaussianMixture:
    """Three well separated 2-D Gaussians with unequal weights and correlated covariances."""
    means = torch.tensor([[-6.0, 0.0], [6.0, 1.0], [0.0, 8.0]], dtype=torch.float64)
    covariances = torch.tensor([[[1.0, 0.5], [0.5, 0.8]],
                                [[0.5, -0.2], [-0.2, 1.5]],
                                [[2.0, 0.0], [0.0, 0.3]]], dtype=torch.float64)
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    return GaussianMixture(weights, means, covariances, torch.linalg.cholesky(covariances))


@pytest.fixture
def run_copy(labelled_run, tmp_path):
    """A copy of the shared trained run, which the tests here may write into."""
    return shutil.copytree(labelled_run, tmp_path / "run")


def test_fit_recovers_the_components_of_a_known_mixture():
    truth = known_mixture()
    points = truth.sample(6000, generator=torch.Generator().manual_seed(0))
    fitted = fit_gmm(points, 3, seed=0)
    assert fitted.components == 3 and fitted.covariance_type == "full" and fitted.metadata["converged"] == "true"
    # Components come back in any order: match each true one to the nearest fitted mean.
    order = torch.cdist(truth.means, fitted.means).argmin(1)
    assert sorted(order.tolist()) == [0, 1, 2]
    torch.testing.assert_close(fitted.means[order], truth.means, atol=0.1, rtol=0)
    torch.testing.assert_close(fitted.weights[order], truth.weights, atol=0.03, rtol=0)
    torch.testing.assert_close(fitted.covariances[order], truth.covariances, atol=0.15, rtol=0)
    torch.testing.assert_close(fitted.scale_tril @ fitted.scale_tril.mT, fitted.covariances)


@pytest.mark.parametrize("covariance_type", ["diag", "spherical", "tied"])
def test_other_covariance_types_are_stored_as_full_matrices(covariance_type):
    points = known_mixture().sample(600, generator=torch.Generator().manual_seed(1))
    fitted = fit_gmm(points, 3, covariance_type=covariance_type, seed=0)
    assert fitted.covariances.shape == fitted.scale_tril.shape == (3, 2, 2)
    if covariance_type != "tied":
        assert torch.equal(fitted.covariances, torch.diag_embed(fitted.covariances.diagonal(dim1=-2, dim2=-1)))


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sampled_latents_have_the_moments_of_the_mixture(temperature):
    mixture = known_mixture()
    z = mixture.sample(200_000, generator=torch.Generator().manual_seed(2), temperature=temperature)
    assert z.shape == (200_000, 2) and z.dtype == torch.float64
    torch.testing.assert_close(z.mean(0), mixture.mean(), atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), mixture.covariance(temperature), atol=0.02, rtol=0.01)
    # The components' shares: each draw lies next to the mean it came from.
    nearest = torch.cdist(z, mixture.means).argmin(1)
    shares = torch.bincount(nearest, minlength=3).double() / len(z)
    torch.testing.assert_close(shares, mixture.weights, atol=0.01, rtol=0)


def test_same_seed_same_latents_other_seed_others():
    mixture = known_mixture()
    a = mixture.sample(50, generator=torch.Generator().manual_seed(7))
    b = mixture.sample(50, generator=torch.Generator().manual_seed(7))
    c = mixture.sample(50, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_save_and_load_round_trip_exactly(tmp_path):
    fitted = fit_gmm(known_mixture().sample(500, generator=torch.Generator().manual_seed(3)), 3, seed=0)
    fitted.metadata["weights_file"] = "best.safetensors"
    path = save_gmm(fitted, tmp_path / "gmm.safetensors")
    loaded = load_gmm(path)
    for name in ("weights", "means", "covariances", "scale_tril"):
        assert torch.equal(getattr(loaded, name), getattr(fitted, name)), name
    assert loaded.covariance_type == "full"
    assert {k: loaded.metadata[k] for k in fitted.metadata} == fitted.metadata
    assert loaded.metadata["components"] == "3" and loaded.metadata["latent_dim"] == "2"
    g = torch.Generator()
    assert torch.equal(loaded.sample(9, generator=g.manual_seed(0)), fitted.sample(9, generator=g.manual_seed(0)))


def test_bad_component_counts_and_corrupt_files_are_input_errors(tmp_path):
    points = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(InputError, match="6 mixture components for 5 examples"):
        fit_gmm(points, 6)
    fitted = fit_gmm(points, 2)
    path = save_gmm(fitted, tmp_path / "gmm.safetensors")
    (tmp_path / "short.safetensors").write_bytes(path.read_bytes()[:-8])          # truncated
    save_gmm(GaussianMixture(fitted.weights * 2, fitted.means, fitted.covariances, fitted.scale_tril),
             tmp_path / "weights.safetensors")                                    # weights sum to 2
    save_gmm(GaussianMixture(fitted.weights, fitted.means, fitted.covariances, fitted.scale_tril.mT.contiguous()),
             tmp_path / "upper.safetensors")                                      # not lower-triangular
    for name, problem in [("short", "not a usable"), ("weights", "weights are not a distribution"),
                          ("upper", "not a Cholesky factor"), ("missing", "not a usable")]:
        with pytest.raises(InputError, match=problem):
            load_gmm(tmp_path / f"{name}.safetensors")


def test_gmm_for_run_fits_posterior_means_saves_and_reuses(run_copy):
    from vaezoo.analysis.latents import encode_split

    run = open_run(run_copy)
    notes = []
    mixture, fitted = gmm_for_run(run, components=4, echo=notes.append)
    assert fitted and len(notes) == 1 and notes[0].startswith("fitting")
    path = run_copy / FILE
    meta = load_gmm(path).metadata
    assert meta["weights_file"] == "best.safetensors" and meta["weights_step"] == str(run.weights_step)
    assert meta["examples"] == "128" and meta["max_examples"] == "20000" and meta["fitted_on"] == "posterior means"
    assert meta["components"] == "4" and meta["covariance_type"] == "full" and meta["vaezoo_version"]
    # The mixture is the fit to the posterior means, not to reparameterised draws.
    means = encode_split(run, "train").mean
    expected = fit_gmm(means, 4, seed=run.recipe.seed)
    torch.testing.assert_close(mixture.means, expected.means)
    again, refitted = gmm_for_run(run, components=4, echo=notes.append)
    assert not refitted and len(notes) == 1 and torch.equal(again.means, mixture.means)
    # A cap above the split's size picks the same examples: no refit; a smaller one refits on a subset.
    assert not gmm_for_run(run, components=4, max_examples=0)[1]
    subset, refitted = gmm_for_run(run, components=4, max_examples=50, echo=notes.append)
    assert refitted and subset.metadata["examples"] == "50" and "cap" in notes[-1]


def stat(path):
    info = os.stat(path)
    return path.read_bytes(), info.st_ino, info.st_mtime_ns


def test_refit_only_when_asked_or_when_the_weights_change(run_copy, tmp_path):
    out = tmp_path / "out"
    first = cli("sample", run_copy, "--sampler", "gmm", "--n", 4, "--out", out, "--no-progress")
    assert first.exit_code == 0, first.output
    path = run_copy / FILE
    before = stat(path)
    # An unchanged run loads the saved mixture: the file is not rewritten.
    same = cli("sample", run_copy, "--sampler", "gmm", "--n", 4, "--out", out, "--no-progress")
    assert same.exit_code == 0 and "fitting" not in same.stderr and "refitting" not in same.stderr
    assert stat(path) == before
    # --refit rewrites it (a new file) with the same mixture: the fit is seeded. (Not the same
    # bytes: safetensors writes metadata keys in an arbitrary order.)
    saved = load_gmm(path)
    asked = cli("sample", run_copy, "--sampler", "gmm", "--refit", "--n", 4, "--out", out, "--no-progress")
    assert asked.exit_code == 0 and asked.stderr.count("refitting") == 1
    assert stat(path)[1:] != before[1:]
    again = load_gmm(path)
    assert torch.equal(again.means, saved.means) and torch.equal(again.scale_tril, saved.scale_tril)
    assert again.metadata == saved.metadata
    before = stat(path)
    # Other weights: a different file (the last checkpoint), then a later step of it after more training.
    last = cli("sample", run_copy, "--sampler", "gmm", "--weights", "last", "--out", out, "--no-progress")
    assert last.exit_code == 0, last.output
    best, latest = open_run(run_copy), open_run(run_copy, weights="last")
    assert [line for line in last.stderr.splitlines() if "refitting" in line] == [
        f"refitting the Gaussian mixture in {path}: it was fitted on best.safetensors (step {best.weights_step}), "
        f"these weights are {latest.weights_path.relative_to(run_copy).as_posix()} (step {latest.weights_step})"]
    assert stat(path)[1:] != before[1:] and load_gmm(path).metadata["weights_file"].startswith("checkpoints/")
    more = cli("train", "--resume", run_copy, "--set", "train.epochs=4", "--no-progress")
    assert more.exit_code == 0, more.output
    step = open_run(run_copy, weights="last").weights_step
    assert step > latest.weights_step
    later = cli("sample", run_copy, "--sampler", "gmm", "--weights", "last", "--out", out, "--no-progress")
    assert later.exit_code == 0 and f"(step {latest.weights_step}), these weights are checkpoints/" in later.stderr
    assert f"(step {step})" in later.stderr and load_gmm(path).metadata["weights_step"] == str(step)


def test_same_weights_but_new_content_refit(run_copy):
    from safetensors.torch import load_file, save_file

    from vaezoo.train.checkpoints import read_metadata

    run = open_run(run_copy)
    gmm_for_run(run, components=3)
    best = run_copy / "best.safetensors"
    tensors, meta = load_file(best), read_metadata(best)
    save_file({name: t + 0.01 for name, t in tensors.items()}, str(best), metadata=meta)   # same file and step
    notes = []
    _, refitted = gmm_for_run(open_run(run_copy), components=3, echo=notes.append)
    assert refitted and notes == [f"refitting the Gaussian mixture in {run_copy / FILE}: "
                                  "best.safetensors has changed since it was fitted"]


def test_sample_command_writes_gmm_samples_reproducibly(run_copy, tmp_path):
    result = cli("sample", run_copy, "--sampler", "gmm", "--n", 6, "--temperature", 0.5, "--no-progress")
    assert result.exit_code == 0, result.output
    written = run_copy / "samples" / "samples-gmm-t0.5-seed0.csv"
    assert f"wrote {run_copy / FILE} (10 components, 128 examples)" in result.stdout
    assert f"wrote {written}" in result.stdout
    rows = [[float(v) for v in line.split(",")] for line in written.read_text().split()]
    assert len(rows) == 6 and all(len(row) == 6 for row in rows)
    # The file holds the decoded mixture draws of seed 0 at temperature 0.5.
    run = open_run(run_copy)
    z = load_gmm(run_copy / FILE).sample(6, generator=torch.Generator().manual_seed(0), temperature=0.5)
    expected = run.vae.decode(z.float().to(run.device)).mean.cpu()
    torch.testing.assert_close(torch.tensor(rows), expected, atol=1e-4, rtol=0)
    # Same seed, same file; another seed, another file.
    for seed, out in [(0, "a"), (0, "b"), (1, "c")]:
        assert cli("sample", run_copy, "--sampler", "gmm", "--seed", seed, "--out", tmp_path / out).exit_code == 0
    a, b = (tmp_path / "a" / "samples-gmm-t1-seed0.csv").read_text(), (tmp_path / "b" / "samples-gmm-t1-seed0.csv").read_text()
    assert a == b and a != (tmp_path / "c" / "samples-gmm-t1-seed1.csv").read_text()
    # The prior sampler keeps its file names.
    assert cli("sample", run_copy, "--out", tmp_path / "p").exit_code == 0
    assert (tmp_path / "p" / "samples-t1-seed0.csv").is_file()


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(result):
    lines = result.stderr.splitlines()
    return result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output


def test_bad_input_gives_one_line_exit_2_and_changes_nothing(run_copy, tmp_path):
    before = snapshot(run_copy)
    too_many = cli("sample", run_copy, "--sampler", "gmm", "--components", 129, "--no-progress")
    assert one_error_line(too_many) and "at most 128" in too_many.stderr
    assert snapshot(run_copy) == before and not (run_copy / "samplers").exists()
    capped = cli("sample", run_copy, "--sampler", "gmm", "--components", 11, "--max-examples", 10, "--no-progress")
    assert one_error_line(capped) and "at most 10" in capped.stderr
    prior_only = cli("sample", run_copy, "--refit")
    assert one_error_line(prior_only) and "--sampler gmm" in prior_only.stderr
    assert snapshot(run_copy) == before
    # A corrupt mixture is reported, not silently replaced; --refit replaces it.
    (run_copy / "samplers").mkdir()
    (run_copy / FILE).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}")
    before = snapshot(run_copy)
    corrupt = cli("sample", run_copy, "--sampler", "gmm", "--no-progress")
    assert one_error_line(corrupt) and str(run_copy / FILE) in corrupt.stderr and "--refit" in corrupt.stderr
    assert snapshot(run_copy) == before
    fixed = cli("sample", run_copy, "--sampler", "gmm", "--refit", "--no-progress")
    assert fixed.exit_code == 0, fixed.output
    assert load_gmm(run_copy / FILE).components == 10


def test_an_empty_training_split_gives_one_line_exit_2(tiny_recipe, tmp_path):
    run = tmp_path / "tiny"
    assert cli("train", tiny_recipe, "--run-dir", run, "--no-progress").exit_code == 0
    before = snapshot(run)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = cli("sample", run, "--sampler", "gmm", "--set", f"data.csv={empty}", "--no-progress")
    assert one_error_line(result) and "the train split" in result.stderr and "is empty" in result.stderr
    assert snapshot(run) == before
