"""MIG and DCI (vaezoo.analysis.disentanglement) on codes with known answers, and `vaezoo disentanglement`."""

import itertools
import json

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import mutual_info_score

from vaezoo.analysis.disentanglement import (
    dci, dci_completeness, dci_disentanglement, discretize, entropy, factor_classes, mig, mutual_information,
)
from vaezoo.cli import main
from vaezoo.core.errors import InputError

from factor_tiny import RECIPE

SIZES = (3, 6, 10, 16)      # at most 20 values each, so 20 bins keep every value of a copied factor apart


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def full_grid(sizes=SIZES) -> np.ndarray:
    return np.array(list(itertools.product(*[range(s) for s in sizes])))


def sampled_grid(n: int, seed: int = 0, sizes=SIZES) -> np.ndarray:
    grid = full_grid(sizes)
    return grid[np.random.default_rng(seed).choice(len(grid), n, replace=False)]


# -- discrete information ---------------------------------------------------------------------------


def test_mutual_information_and_entropy_are_sklearns_plug_in_estimates():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 7, 400), rng.integers(0, 4, 400)
    b[:100] = a[:100] % 4                                                  # some dependence
    assert mutual_information(a, b) == pytest.approx(mutual_info_score(a, b), abs=1e-12)
    assert entropy(a) == pytest.approx(mutual_info_score(a, a), abs=1e-12)
    assert entropy(np.array([0, 0, 1, 1])) == pytest.approx(np.log(2))
    assert mutual_information(np.zeros(10), a[:10]) == 0.0


def test_discretize_uses_equal_width_bins_and_factor_classes_keep_whole_numbers():
    codes = np.array([[0.0, 5.0], [1.0, 5.0], [1.9, 5.0], [10.0, 5.0]])
    binned = discretize(codes, bins=10)
    assert binned[:, 0].tolist() == [1, 2, 2, 10] and len(set(binned[:, 1])) == 1   # a constant code: one bin
    factors = np.stack([np.arange(100) % 40, np.linspace(0, 1, 100)], 1)
    classes = factor_classes(factors, bins=20)
    assert len(np.unique(classes[:, 0])) == 40                             # whole numbers: every value a class
    assert len(np.unique(classes[:, 1])) == 20                             # 100 real values: 20 bins
    with pytest.raises(InputError, match="not all finite"):
        discretize(np.array([[0.0], [np.nan]]))


# -- MIG --------------------------------------------------------------------------------------------


def test_mig_is_one_when_the_codes_copy_the_factors():
    y = full_grid()                                                        # factors exactly independent
    result = mig(y.astype(float), y)
    assert result.score == pytest.approx(1.0, abs=1e-9)
    assert result.best_code == [0, 1, 2, 3]
    # Codes in another order, scaled and shifted, with extra dimensions of noise: still 1.
    rng = np.random.default_rng(0)
    codes = np.concatenate([rng.standard_normal((len(y), 3)), y[:, ::-1] * -0.37 + 5], 1)
    result = mig(codes, y)
    assert result.score == pytest.approx(1.0, abs=0.02)
    assert result.best_code == [6, 5, 4, 3]
    assert result.factor_entropy == pytest.approx(np.log(SIZES).tolist())


def test_mig_is_near_one_on_a_sample_of_the_grid_and_near_zero_on_noise():
    y = sampled_grid(2000)
    assert mig(y.astype(float), y).score > 0.98
    noise = mig(np.random.default_rng(1).standard_normal((2000, 10)), y)
    assert noise.score < 0.02
    assert all(g is not None and g < 0.03 for g in noise.per_factor)


def test_mig_rewards_one_code_per_factor_not_a_shared_one():
    y = full_grid((4, 4))
    both = (y[:, 0] * 4 + y[:, 1]).astype(float)                           # one code holds both factors
    result = mig(np.stack([both, np.zeros(len(y))], 1), y, bins=16)
    # That code has I = H for both factors, the other none: the gap is full for each ...
    assert result.score == pytest.approx(1.0)
    # ... but two codes that each hold both make the gap vanish.
    assert mig(np.stack([both, both[::-1].copy()], 1), y[::-1].copy(), bins=16).score < 1.0
    assert mig(np.stack([both, both], 1), y, bins=16).score == pytest.approx(0.0)


def test_mig_skips_constant_factors_and_handles_one_code():
    y = np.stack([np.arange(60) % 6, np.zeros(60, dtype=int)], 1)
    result = mig(y[:, :1].astype(float), y)
    assert result.per_factor[1] is None and result.score == pytest.approx(1.0)
    assert mig(np.zeros((60, 1)), y[:, 1:]).score is None                 # nothing varies


# -- DCI --------------------------------------------------------------------------------------------


def test_dci_scores_of_known_importance_matrices():
    assert dci_disentanglement(np.eye(3))[0] == pytest.approx(1.0) and dci_completeness(np.eye(3))[0] == pytest.approx(1.0)
    assert dci_disentanglement(np.ones((3, 3)))[0] == pytest.approx(0.0, abs=1e-9)
    assert dci_completeness(np.ones((3, 3)))[0] == pytest.approx(0.0, abs=1e-9)
    # Two codes, both devoted to factor 0: perfectly disentangled, but factor 0 is split in two.
    r = np.array([[1.0, 0.0], [1.0, 0.0]])
    d, per_code = dci_disentanglement(r)
    c, per_factor = dci_completeness(r)
    assert d == pytest.approx(1.0) and per_code == pytest.approx([1.0, 1.0])
    assert c == pytest.approx(0.0, abs=1e-9) and per_factor[0] == pytest.approx(0.0, abs=1e-9)
    # A code with no importance does not count.
    assert dci_disentanglement(np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]))[0] == pytest.approx(1.0)
    assert dci_disentanglement(np.zeros((2, 2)))[0] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("model", ["gbt", "forest"])
def test_dci_is_high_on_a_copy_and_low_on_noise(model):
    rng = np.random.default_rng(0)
    y = np.stack([rng.integers(0, s, 600) for s in (3, 4, 5)], 1)
    copy = dci(y + 0.01 * rng.standard_normal(y.shape), y, model=model, train=400, test=200)
    assert copy.disentanglement > 0.95 and copy.completeness > 0.95
    assert copy.informativeness_test == pytest.approx(1.0) and copy.n_train == 400 and copy.n_test == 200
    assert np.argmax(np.array(copy.importance), 0).tolist() == [0, 1, 2]
    noise = dci(rng.standard_normal((600, 6)), y, model=model, train=400, test=200)
    assert noise.disentanglement < 0.15 and noise.completeness < 0.15
    assert noise.informativeness_test < 0.6


def test_dci_with_few_examples_and_a_constant_factor():
    y = np.stack([np.arange(30) % 3, np.zeros(30, dtype=int)], 1)
    result = dci(y.astype(float), y, model="forest", train=2000, test=1000)
    assert (result.n_train, result.n_test) == (20, 10)                    # two thirds, one third
    assert [row[1] for row in result.importance] == [0.0, 0.0]             # the constant factor needs no code
    assert result.accuracy_test == [1.0, 1.0]
    with pytest.raises(ValueError, match="unknown DCI model"):
        dci(y.astype(float), y, model="svm")


# -- the command ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def factor_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("factors")
    recipe = root / "factors.toml"
    recipe.write_text(RECIPE)
    result = cli("train", recipe, "--run-dir", root / "run", "--no-progress")
    assert result.exit_code == 0, result.output
    return root / "run"


def test_disentanglement_command_writes_the_table_and_json(factor_run, tmp_path):
    out = tmp_path / "d.json"
    result = cli("disentanglement", factor_run, "--dci-model", "forest", "--json", out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "MIG" in result.output and "DCI disentanglement" in result.output and f"wrote {out}" in result.output
    info = json.loads(out.read_text())
    assert info["factor_names"] == ["u", "v"] and info["factor_values"] == [6, 4]
    assert info["n_examples"] == 32 and info["latent_dim"] == 2 and info["split"] == "test"
    assert 0 <= info["mig"]["score"] <= 1 and len(info["mig"]["mutual_information"]) == 2
    assert info["dci"]["model"] == "forest" and np.array(info["dci"]["importance"]).shape == (2, 2)
    assert "discrete" in info["mig"]["estimator"]

    result = cli("disentanglement", factor_run, "--dci-model", "none", "--split", "train", "--max-examples", 50,
                 "--no-progress")
    assert result.exit_code == 0, result.output
    info = json.loads((factor_run / "disentanglement.json").read_text())
    assert info["dci"] is None and info["n_examples"] == 50 and info["split"] == "train"


def test_a_run_without_factors_is_refused_in_one_line(labelled_run):
    result = cli("disentanglement", labelled_run)                          # with the progress bar
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and result.output.startswith("error: ")
    assert "no factor values" in result.output
    assert not (labelled_run / "disentanglement.json").exists()
