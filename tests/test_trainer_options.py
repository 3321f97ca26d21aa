"""Trainer switches: gradient accumulation, bf16, IWAE, LR schedule, clipping, early stopping."""

import json
import os

import pytest
import torch

from vaezoo.train.checkpoints import latest_weights
from vaezoo.plugin.recipes import load_recipe
from vaezoo.core.schedules import LRSchedule
from vaezoo.train.trainer import Trainer

QUIET = ["eval.at_end=false", "train.samples=0"]


def train(tiny_recipe, run, *overrides):
    recipe = load_recipe(tiny_recipe, [*QUIET, *overrides])
    result = Trainer(recipe, run, progress_bar=False, echo=lambda m: None).fit()
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return result, lines


def split(lines, name):
    return [r for r in lines if r["split"] == name]


def test_gradient_accumulation_equals_the_large_batch(tiny_recipe, tmp_path):
    _, big = train(tiny_recipe, tmp_path / "big", "train.batch_size=16")
    _, acc = train(tiny_recipe, tmp_path / "acc", "train.batch_size=8", "train.grad_accum=2")
    assert [r["step"] for r in split(acc, "train")] == [r["step"] for r in split(big, "train")]
    assert [r["loss"] for r in split(acc, "train")] == pytest.approx([r["loss"] for r in split(big, "train")], abs=1e-5)


def test_iwae_bf16_cosine_schedule_and_clipping(tiny_recipe, tmp_path):
    result, lines = train(
        tiny_recipe, tmp_path / "run", "objective.kind=\"iwae\"", "objective.iwae_samples=4", "train.bf16=true",
        "train.lr_schedule=\"cosine\"", "train.warmup_steps=4", "train.min_lr_factor=0.1", "train.grad_clip=0.5",
        "train.optimizer=\"adamw\"", "train.weight_decay=0.01",
    )
    assert result.steps == 24
    records = split(lines, "train")
    schedule = LRSchedule("cosine", 4, 24, 0.1)
    assert [r["lr"] for r in records] == pytest.approx([0.01 * schedule(s) for s in range(24)])
    assert all(r["loss"] == r["loss"] for r in records)  # finite under bf16 autocast


def test_early_stopping_and_validation_every_n_steps(tiny_recipe, tmp_path):
    # min_delta so large that nothing counts as an improvement after the first validation.
    result, lines = train(
        tiny_recipe, tmp_path / "run", "train.eval_every=4", "train.early_stopping_patience=2",
        "train.early_stopping_min_delta=1e9", "train.epochs=10",
    )
    assert result.stopped_early
    assert [r["step"] for r in split(lines, "validation")] == [4, 8, 12]
    assert result.steps == 12
    state = json.loads((latest_weights(tmp_path / "run").parent / "trainer_state.json").read_text())
    assert state["hooks"]["validation"]["best_step"] == 4 and state["hooks"]["validation"]["bad_validations"] == 2


def test_max_steps_and_sgd(tiny_recipe, tmp_path):
    result, lines = train(tiny_recipe, tmp_path / "run", "train.max_steps=5", "train.optimizer=\"sgd\"", "train.log_every=2")
    assert result.steps == 5
    assert [r["step"] for r in split(lines, "train")] == [2, 4, 5]  # the last, shorter window too


def test_tensorboard_event_files_are_written(tiny_recipe, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny_recipe, tmp_path / "run", "train.tensorboard=true", "train.epochs=1")
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "train/loss" in tags and "validation/active_units" in tags
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 9))


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    from vaezoo.core.files import atomic_path

    target = tmp_path / "model.safetensors"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


@pytest.mark.parametrize("uses_latent", [True, False])
def test_collapse_warning_only_for_models_that_use_z(tiny_recipe, tmp_path, monkeypatch, uses_latent):
    import tiny_modality

    monkeypatch.setattr(tiny_modality.TinyVectors, "uses_latent", uses_latent)
    # beta = 1000 drives every posterior onto the prior: no active units.
    recipe = load_recipe(tiny_recipe, [*QUIET, "objective.beta=1000.0", 'objective.kl_schedule="constant"', "train.epochs=2"])
    said = []
    Trainer(recipe, tmp_path / "run", progress_bar=False, echo=said.append).fit()
    warned = any("no active latent units" in line for line in said)
    assert warned == uses_latent


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop"])
def test_fused_optimizer_kernel_matches_the_plain_one(tiny_recipe, tmp_path, name):
    from vaezoo.train.optim import FUSED_OPTIMIZERS, make_optimizer

    recipe = load_recipe(tiny_recipe, [f"train.optimizer=\"{name}\""])
    params = [torch.nn.Parameter(torch.randn(3, 4))]
    fused = make_optimizer([{"name": "encoder", "params": params}], recipe.train)
    assert bool(fused.defaults.get("fused")) == (name in FUSED_OPTIMIZERS)
    recipe.train.fused_optimizer = False
    assert not make_optimizer(params, recipe.train).defaults.get("fused")

    _, plain = train(tiny_recipe, tmp_path / "plain", f"train.optimizer=\"{name}\"", "train.fused_optimizer=false")
    _, quick = train(tiny_recipe, tmp_path / "fused", f"train.optimizer=\"{name}\"")
    assert [r["loss"] for r in split(quick, "train")] == pytest.approx([r["loss"] for r in split(plain, "train")], rel=1e-4)


@pytest.mark.parametrize("limit", [None, 13])
def test_extra_metrics_see_exactly_the_evaluated_examples(tiny_recipe, tmp_path, limit):
    from vaezoo.train.runs import build_modality, build_vae
    from vaezoo.train.evaluation import evaluate_split

    modality = build_modality(load_recipe(tiny_recipe, ["eval.batch_size=5"]), tmp_path)
    modality.extra_metrics = lambda vae, batches, base: {"rows": sum(len(b["x"]) for b in batches)}
    result = evaluate_split(modality, build_vae(modality), "test", device="cpu", iw_samples=0, max_examples=limit,
                            show_progress=False)
    expected = len(modality.dataset("test")) if limit is None else limit
    assert result.n_examples == expected and result.extra["rows"] == expected


@pytest.mark.parametrize("options, validated", [
    (["train.eval_every=5"], [5, 10, 15, 20, 24]),                  # 5 does not divide 24 steps
    (["train.max_steps=13"], [8, 13]),                              # stopped mid-epoch
    (["train.eval_every=4", "train.max_steps=12"], [4, 8, 12]),     # already validated: not twice
])
def test_the_last_step_is_always_validated(tiny_recipe, tmp_path, options, validated):
    from safetensors import safe_open

    result, lines = train(tiny_recipe, tmp_path / "run", *options, "eval.at_end=true", "eval.iw_samples=0")
    validations = split(lines, "validation")
    assert [r["step"] for r in validations] == validated
    best = min(validations, key=lambda r: r["loss"])
    with safe_open(str(tmp_path / "run" / "best.safetensors"), framework="pt") as f:
        assert f.metadata()["step"] == str(best["step"])
    figures = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert figures["step"] == validated[-1] and figures["weights"] == "best" and figures["weights_step"] == best["step"]
