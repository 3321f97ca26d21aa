"""The class condition (Sohn et al. 2015): c reaches the decoder (and the encoder when asked),
every decoding call site passes it on, and an unconditional recipe is untouched by it."""

import csv
import json
import math

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file

from vaezoo.cli import main
from vaezoo.core.conditions import ENCODER_KEY, ClassCondition, append_condition
from vaezoo.core.errors import InputError
from vaezoo.core.model import VAE
from vaezoo.core.objectives import elbo_objective, iwae_objective, log_importance_weights
from vaezoo.train.runs import open_run

from tiny_modality import TINY_RECIPE, Decoder, Encoder

CONDITIONAL = TINY_RECIPE.replace("TinyVectors", "LabelledTiny") + "\n[condition]\nenabled = true\nembedding_dim = 3\n"
FAST = ["--no-progress"]


class Recording(torch.nn.Module):
    """Wraps a module and keeps what it was last called with."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.seen = inner, None

    def forward(self, arg):
        self.seen = arg
        return self.inner(arg)


def tiny_vae(*, to_encoder=True, classes=4, latent=2, dim=6, embedding=3):
    torch.manual_seed(0)
    condition = ClassCondition(classes, embedding, names=["a", "b", "c", "d"][:classes], to_encoder=to_encoder)
    encoder = Recording(Encoder(dim, 8, latent, embedding if to_encoder else 0))
    decoder = Recording(Decoder(dim, 8, latent + embedding))
    return VAE(encoder, decoder, latent, condition=condition)


def batch_of(n=6, dim=6):
    return {"x": torch.randn(n, dim, generator=torch.Generator().manual_seed(1)), "label": torch.arange(n) % 4}


# -- the module ---------------------------------------------------------------------------------


def test_the_decoder_gets_z_with_the_embedding_and_the_class_changes_its_output():
    vae = tiny_vae()
    z = torch.randn(4, 2)
    px = vae.decode(z, torch.tensor([0, 1, 2, 3]))
    seen = vae.decoder.seen
    assert torch.equal(seen[:, :2], z) and torch.equal(seen[:, 2:], vae.condition.embedding.weight)
    same_z = z[:1].expand(4, -1)
    means = vae.decode(same_z, torch.arange(4)).mean
    assert all(not torch.allclose(means[0], means[i]) for i in (1, 2, 3))
    # one id for every row is the same as that id repeated
    assert torch.equal(vae.decode(z, 2).mean, vae.decode(z, torch.full((4,), 2)).mean)
    assert px.mean.shape == (4, 6)


def test_the_encoder_gets_the_embedding_only_when_asked():
    batch = batch_of()
    vae = tiny_vae(to_encoder=True)
    vae.encode(batch)
    assert torch.equal(vae.encoder.seen[ENCODER_KEY], vae.condition(batch["label"]))
    assert ENCODER_KEY not in batch                          # the caller's batch is left alone
    vae = tiny_vae(to_encoder=False)
    vae.encode(batch)
    assert ENCODER_KEY not in vae.encoder.seen
    features = torch.ones(2, 3)
    assert append_condition(features, {"x": 0}) is features
    assert append_condition(features, {ENCODER_KEY: torch.zeros(2, 4)}).shape == (2, 7)


def test_decode_refuses_a_missing_or_unwanted_condition():
    vae = tiny_vae()
    with pytest.raises(ValueError, match="conditional: decode"):
        vae.decode(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="3 class ids for 2 latents"):
        vae.decode(torch.zeros(2, 2), torch.tensor([0, 1, 2]))
    plain = VAE(Encoder(6, 8, 2), Decoder(6, 8, 2), 2)
    with pytest.raises(ValueError, match="not conditional"):
        plain.decode(torch.zeros(2, 2), 1)
    assert plain.conditions(batch_of()) is None


@pytest.mark.parametrize("labels, message", [
    (None, "conditional on the batch key 'label', but the batch has none"),
    (torch.tensor([0.0, 1.0]), "must be an integer tensor"),
    (torch.tensor([[0], [1]]), r"one per example \(shape \[N\]\), got shape \[2, 1\]"),
    (torch.tensor([0, 4]), r"class 4 is outside the model's 4 classes \(0 .. 3\)"),
    (torch.tensor([-1, 0]), "class -1 is outside"),
])
def test_bad_class_ids_are_one_clear_error(labels, message):
    vae = tiny_vae()
    batch = {"x": torch.zeros(2, 6)} if labels is None else {"x": torch.zeros(2, 6), "label": labels}
    with pytest.raises(InputError, match=message):
        vae(batch)


def test_lookup_by_name_or_id():
    c = ClassCondition(4, 2, names=["cat", "dog", "7", "eel"])
    assert [c.lookup(v) for v in ("dog", "0", "7", "3")] == [1, 0, 2, 3]    # a name wins over an id
    with pytest.raises(InputError, match=r"unknown class 'fox': this model's classes are cat, dog, 7, eel \(or ids 0 .. 3\)"):
        c.lookup("fox")
    with pytest.raises(InputError, match="unknown class '4'"):
        c.lookup("4")
    assert ClassCondition(2, 2).names == ["0", "1"]


def test_every_importance_sample_keeps_its_class():
    vae, batch = tiny_vae(), batch_of()
    torch.manual_seed(5)
    log_w, log_px = log_importance_weights(vae, batch, 3)
    torch.manual_seed(5)
    q = vae.encode(batch)
    z, log_q = q.rsample_with_log_prob((3,))
    want_px = torch.stack([vae.decode(z[i], batch["label"]).log_prob(batch["x"]) for i in range(3)])
    assert torch.allclose(log_px, want_px, atol=1e-5)
    assert torch.allclose(log_w, want_px + vae.prior.log_prob(z) - log_q, atol=1e-5)
    torch.manual_seed(0)
    elbo = -elbo_objective(vae, batch).loss
    torch.manual_seed(0)
    iwae = -iwae_objective(vae, batch, k=200).loss
    assert iwae >= elbo - 0.05


def test_interpolation_walks_the_class_from_a_to_b():
    vae, batch = tiny_vae(), batch_of(4)
    a = {"x": batch["x"][:2], "label": torch.tensor([0, 1])}
    b = {"x": batch["x"][2:], "label": torch.tensor([3, 2])}
    _, px = vae.interpolate(a, b, steps=3)
    means = px.mean.view(2, 3, -1)
    assert torch.allclose(means[:, 0], vae.reconstruct(a)[1].mean, atol=1e-6)
    assert torch.allclose(means[:, -1], vae.reconstruct(b)[1].mean, atol=1e-6)
    _, fixed = vae.interpolate(a, b, steps=3, condition=1)
    assert torch.allclose(fixed.mean.view(2, 3, -1)[:, -1], vae.reconstruct(b, condition=1)[1].mean, atol=1e-6)
    assert not torch.allclose(fixed.mean, px.mean)


# -- training and the command line --------------------------------------------------------------


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("conditional")
    recipe = root / "c.toml"
    recipe.write_text(CONDITIONAL)
    result = CliRunner().invoke(main, ["train", str(recipe), "--run-dir", str(root / "run"), *FAST])
    assert result.exit_code == 0, result.output
    return root / "run"


def test_training_resolves_the_classes_and_writes_a_row_per_class(conditional_run):
    run = open_run(conditional_run)
    c = run.vae.condition
    assert (c.classes, c.names, c.dim, c.to_encoder) == (4, ["--", "-+", "+-", "++"], 3, True)
    assert run.recipe.condition.classes == 4 and run.recipe.condition.names == ["--", "-+", "+-", "++"]
    figures = json.loads((conditional_run / "eval.json").read_text())
    assert figures["condition"] == {"key": "label", "classes": 4, "names": ["--", "-+", "+-", "++"], "encoder": True}
    weights = load_file(str(conditional_run / "best.safetensors"))
    assert weights["condition.embedding.weight"].shape == (4, 3)
    samples = sorted(p.name for p in (conditional_run / "samples").glob("prior*"))
    assert samples == ["prior-class0.csv", "prior-class1.csv", "prior-class2.csv", "prior-class3.csv"]
    rows = [(conditional_run / "samples" / name).read_text().splitlines() for name in samples]
    assert all(len(r) == 4 for r in rows) and rows[0] != rows[1]      # max(4, ceil(5 / 4)) samples each, per class
    report = CliRunner().invoke(main, ["report", str(conditional_run)])
    assert report.exit_code == 0, report.output
    html = (conditional_run / "report.html").read_text()
    assert all(f"prior-class{i}" in html for i in range(4))


def test_sample_a_chosen_class_by_name_or_id(conditional_run, tmp_path):
    result = CliRunner().invoke(main, ["sample", str(conditional_run), "--condition", "++", "--condition", "1",
                                       "-n", "3", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["samples-t1-seed0-class1.csv", "samples-t1-seed0-class3.csv"]
    # the same latents for both classes, decoded by hand
    run = open_run(conditional_run)
    z = run.vae.prior.sample(3, generator=torch.Generator().manual_seed(0))
    want = run.vae.decode(z, 3).mean
    got = torch.tensor([[float(v) for v in line.split(",")] for line in (tmp_path / files[1]).read_text().split()])
    assert torch.allclose(got, want, atol=1e-4)
    every = CliRunner().invoke(main, ["sample", str(conditional_run), "--condition", "all", "-n", "2",
                                      "--out", str(tmp_path / "all")])
    assert every.exit_code == 0 and len(list((tmp_path / "all").iterdir())) == 4


def test_condition_errors_are_one_line_and_exit_2(conditional_run, labelled_run, tmp_path):
    runner = CliRunner()
    cases = [
        (["sample", str(conditional_run), "--condition", "nope"],
         "error: --condition: unknown class 'nope': this model's classes are --, -+, +-, ++ (or ids 0 .. 3)"),
        (["sample", str(labelled_run), "--condition", "1"],
         f"error: --condition 1: {labelled_run} is not a conditional run"),
        (["sample", str(labelled_run), "--condition", "all"], "is not a conditional run"),
        (["reconstruct", str(labelled_run), "--as", "1"], "error: --as 1: "),
        (["reconstruct", str(conditional_run), "1,2,3,4,5,6"], "conditional on the batch key 'label', but the batch has none"),
        (["encode", str(conditional_run), "--condition", "1"], "gives the class of INPUTS"),
        (["traverse", str(conditional_run), "--condition", "9"], "unknown class '9'"),
    ]
    for args, message in cases:
        result = runner.invoke(main, args + ["--out", str(tmp_path / "out.safetensors" if args[0] == "encode" else tmp_path / "o")])
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, result.output)
    assert not (tmp_path / "o").exists() and not (tmp_path / "out.safetensors").exists()


def test_reconstruct_as_another_class_and_inputs_given_a_class(conditional_run, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["reconstruct", str(conditional_run), "-n", "4", "--as", "+-", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "reconstructions-as-class2.safetensors").exists()
    own = runner.invoke(main, ["reconstruct", str(conditional_run), "1,2,3,4,5,6", "--condition", "0",
                               "--out", str(tmp_path)])
    assert own.exit_code == 0, own.output
    run = open_run(conditional_run)
    batch = {"x": torch.tensor([[1.0, 2, 3, 4, 5, 6]]), "label": torch.tensor([0])}
    want = run.vae.reconstruct(batch)[1].mean
    got = load_file(str(tmp_path / "reconstructions.safetensors"))["reconstruction"]
    assert torch.allclose(got, want, atol=1e-5)
    walk = runner.invoke(main, ["interpolate", str(conditional_run), "--pairs", "2", "--steps", "3", "--as", "-+",
                                "--out", str(tmp_path)])
    assert walk.exit_code == 0 and (tmp_path / "interpolation-linear-as-class1.safetensors").exists(), walk.output
    sweep = runner.invoke(main, ["traverse", str(conditional_run), "--from", "test:0", "--out", str(tmp_path)])
    own_class = int(run.modality.dataset("test").tensors[1][0])
    assert sweep.exit_code == 0 and (tmp_path / f"traversal-test-0-class{own_class}.csv").exists(), sweep.output


def test_encode_stores_each_examples_class(conditional_run, tmp_path):
    out = tmp_path / "latents.safetensors"
    result = CliRunner().invoke(main, ["encode", str(conditional_run), "--max-examples", "10", "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    tensors = load_file(str(out))
    run = open_run(conditional_run)
    assert torch.equal(tensors["condition"], run.modality.dataset("test").tensors[1][:10])
    with safe_open(str(out), "pt") as f:
        assert json.loads(f.metadata()["condition_names"]) == ["--", "-+", "+-", "++"]
    inputs = tmp_path / "inputs.safetensors"
    given = CliRunner().invoke(main, ["encode", str(conditional_run), "1,2,3,4,5,6", "--condition", "++", "--out", str(inputs)])
    assert given.exit_code == 0 and load_file(str(inputs))["condition"].tolist() == [3], given.output


# -- refusals and the unconditional path --------------------------------------------------------


def train(tmp_path, text, *extra):
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    return CliRunner().invoke(main, ["train", str(recipe), "--run-dir", str(tmp_path / "run"), *FAST, *extra])


@pytest.mark.parametrize("text, extra, message", [
    (TINY_RECIPE + "\n[condition]\nenabled = true\n", [],
     "[condition] classes: is 0 (read from the data), but the tiny_modality:TinyVectors data names no classes"),
    (CONDITIONAL, ["--set", "condition.classes=2"], "[condition] classes: is 2, but the tiny_modality:LabelledTiny data has 4"),
    (CONDITIONAL, ["--set", "condition.names=['x', 'y']"],
     "[condition] names: gives 2 names, but the tiny_modality:LabelledTiny data has 4 classes"),
    (CONDITIONAL.replace("LabelledTiny", "OutOfRangeTiny"), ["--set", "condition.classes=2"],
     "batch key 'label': class 3 is outside the model's 2 classes (0 .. 1)"),
    (CONDITIONAL, ["--set", "prior.kind=vamp"], "[condition] encoder: true cannot go with prior.kind = 'vamp'"),
    (CONDITIONAL, ["--set", "condition.classes=3", "--set", "condition.names=['x', 'y']"],
     "names: 2 names for classes = 3"),
    (CONDITIONAL.replace("LabelledTiny", "UnsizedDecoderTiny"), [],
     "[condition] enabled: the 'tiny_modality:UnsizedDecoderTiny' plugin's decoder does not take "
     "decoder_input_dim = 5 inputs (z and the class embedding)"),
    (CONDITIONAL.replace("LabelledTiny", "OldLabelledTiny"), [],
     "the 'tiny_modality:OldLabelledTiny' plugin was written for plugin API 1.3; a conditional model needs"),
])
def test_conditional_recipes_that_cannot_work_are_refused(tmp_path, text, extra, message):
    result = train(tmp_path, text, *extra)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert not (tmp_path / "run").exists()          # a refused run leaves nothing behind


def test_an_unconditional_recipe_ignores_the_condition_options(tmp_path):
    """With enabled = false the other [condition] keys change nothing: same weights, same losses."""
    plain = tmp_path / "plain"
    plain.mkdir()
    assert train(plain, TINY_RECIPE.replace("LabelledTiny", "TinyVectors")).exit_code == 0
    other = tmp_path / "other"
    other.mkdir()
    text = TINY_RECIPE + "\n[condition]\nenabled = false\nembedding_dim = 7\nencoder = false\nclasses = 5\n"
    assert train(other, text).exit_code == 0
    a, b = load_file(str(plain / "run" / "best.safetensors")), load_file(str(other / "run" / "best.safetensors"))
    assert a.keys() == b.keys() and not any(k.startswith("condition") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    losses = [[json.loads(line).get("loss") for line in (d / "run" / "metrics.jsonl").read_text().splitlines()]
              for d in (plain, other)]
    assert losses[0] == losses[1]
    assert sorted(p.name for p in (plain / "run" / "samples").glob("prior*")) == ["prior.csv"]
    assert "condition" not in json.loads((plain / "run" / "eval.json").read_text())


def test_score_gives_inputs_a_class_and_the_class_changes_the_score(conditional_run, tmp_path):
    runner = CliRunner()
    scores = []
    for name in ("--", "++"):
        out = tmp_path / f"{name}.csv"
        result = runner.invoke(main, ["score", str(conditional_run), "1,2,3,4,5,6", "--condition", name, "-k", "10",
                                      "--out", str(out), *FAST])
        assert result.exit_code == 0, result.output
        rows = list(csv.DictReader(out.open()))
        assert [r["input"] for r in rows] == ["1,2,3,4,5,6"]
        scores.append(float(rows[0]["score"]))
    assert scores[0] != scores[1]
    refused = runner.invoke(main, ["score", str(conditional_run), "1,2,3,4,5,6", "--out", str(tmp_path / "x.csv")])
    assert refused.exit_code == 2 and "--condition" in refused.output and not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("extra", [
    ["--set", "objective.kind=iwae"],
    ["--set", "objective.kind=beta-tcvae", "--set", "objective.beta=4"],
    ["--set", "prior.kind=mog", "--set", "posterior.kind=iaf", "--set", "objective.free_bits=0"],
    ["--set", "modality=tiny_modality:LabelledTinyImages", "--set", "data.dim=16", "--set", "prior.kind=vamp",
     "--set", "prior.components=3", "--set", "condition.encoder=false"],
    ["--set", "condition.encoder=false", "--set", "train.aggressive_encoder=true"],
], ids=["iwae", "beta-tcvae", "mog+iaf", "vamp, decoder only", "aggressive encoder"])
def test_the_condition_combines_with_the_model_family(tmp_path, extra):
    result = train(tmp_path, CONDITIONAL, "--set", "train.epochs=1", *extra)
    assert result.exit_code == 0, result.output
    run = open_run(tmp_path / "run")
    assert run.vae.condition is not None and run.vae.condition.classes == 4
    z = torch.zeros(2, run.vae.latent_dim)
    means = run.vae.decode(z, torch.tensor([0, 3])).mean
    assert not torch.allclose(means[0], means[1])
    figures = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert math.isfinite(figures["iw_nll"]) and figures["iw_nll"] <= -figures["elbo"] + 1e-3   # IW-NLL <= -ELBO
