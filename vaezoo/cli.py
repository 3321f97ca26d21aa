"""The `vaezoo` command line. Every command but `train` works on a run directory."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click
import torch
from safetensors.torch import save_file

from vaezoo import __version__
from vaezoo.batches import concat_batches, slice_batch, to_device
from vaezoo.checkpoints import EVAL, atomic_path, write_json
from vaezoo.data import first_examples, make_loader
from vaezoo.errors import InputError, VaezooError
from vaezoo.modality import PLUGIN_API_VERSION

RUN = click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
SET = click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                   help="Override a recipe key (repeatable), e.g. --set train.lr=3e-4.")
WEIGHTS = click.option("--weights", type=click.Choice(["best", "last"]), default="best", show_default=True,
                       help="Best-validation or latest weights.")
DEVICE = click.option("--device", default="auto", show_default=True, help="'auto', 'cpu', 'cuda' or 'cuda:N'.")
SEED = click.option("--seed", type=int, default=0, show_default=True,
                    help="Seeds every random draw, so the same command writes the same files.")


class VaezooGroup(click.Group):
    """Turns every VaezooError into one line on stderr and its exit code, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except VaezooError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("aborted", err=True)
            sys.exit(130)


@click.group(cls=VaezooGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="vaezoo")
def main() -> None:
    """vaezoo: train and use variational autoencoders for images, text, audio and more.

    A recipe (TOML) describes a run; `vaezoo train RECIPE` writes a run directory that the
    other commands read. `vaezoo recipes` lists the shipped recipes, `vaezoo plugins` the
    installed modalities.
    """


def _open(run_dir: Path, weights: str = "best", overrides=(), device: str = "auto"):
    from vaezoo.runs import open_run

    return open_run(run_dir, weights=weights, overrides=overrides, device=device)


def _out_dir(run, out: Path | None) -> Path:
    return out if out is not None else run.path / "samples"


def _echo_files(files) -> None:
    for f in files:
        click.echo(f"wrote {f}")


# -- train -----------------------------------------------------------------------------------


@main.command()
@click.argument("recipe", required=False)
@SET
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the run (default: runs/NAME-TIMESTAMP). Must be new or empty.")
@click.option("--resume", type=click.Path(file_okay=False, path_type=Path), metavar="RUN_DIR",
              help="Continue the run in RUN_DIR from its last checkpoint (RECIPE is then omitted).")
@click.option("--no-progress", is_flag=True, help="No progress bar (epoch summaries are still printed).")
def train(recipe: str | None, overrides, run_dir: Path | None, resume: Path | None, no_progress: bool) -> None:
    """Train the model described by RECIPE (a .toml file or a recipe name from `vaezoo recipes`).

    \b
    Examples:
      vaezoo train recipes/fashion-mnist-quick.toml
      vaezoo train fashion-mnist-quick --set train.epochs=2 --run-dir runs/try
      vaezoo train --resume runs/try --set train.epochs=4
      torchrun --nproc-per-node 2 -m vaezoo.cli train RECIPE --run-dir runs/ddp

    On resume only [train] and [eval] keys may be overridden (e.g. to train longer).
    Ctrl-C stops after the current step with a checkpoint that --resume continues exactly.
    """
    from vaezoo.errors import RecipeError
    from vaezoo.recipes import load_recipe, resolve_recipe_path
    from vaezoo.runs import load_recipe_of_run
    from vaezoo.checkpoints import RECIPE as RECIPE_FILE, write_text
    from vaezoo.trainer import Trainer

    if resume is not None:
        if recipe is not None:
            raise click.UsageError("give either RECIPE or --resume RUN_DIR, not both")
        for expr in overrides:
            if not expr.split("=", 1)[0].strip().startswith(("train.", "eval.")):
                raise RecipeError("--set", expr.split("=", 1)[0], "only [train] and [eval] keys can change when resuming")
        parsed = load_recipe_of_run(resume, overrides)
        if overrides:
            write_text(resume / RECIPE_FILE, parsed.to_toml())
        trainer = Trainer(parsed, resume, resume=True, progress_bar=not no_progress)
    else:
        if recipe is None:
            raise click.UsageError("missing RECIPE (a .toml file or a name from `vaezoo recipes`), or --resume RUN_DIR")
        parsed = load_recipe(resolve_recipe_path(recipe), overrides)
        if run_dir is None:
            run_dir = Path("runs") / f"{parsed.name}-{datetime.now():%Y%m%d-%H%M%S}"
        click.echo(f"run directory: {run_dir}", err=True)
        trainer = Trainer(parsed, run_dir, progress_bar=not no_progress)
    result = trainer.fit()
    if result.interrupted:
        sys.exit(130)
    if not result.is_main:
        return
    if result.eval is not None:
        _print_table(result.eval.table())
    _echo_files(result.files)
    click.echo(f"run: {result.run_dir}")


# -- generate ---------------------------------------------------------------------------------


@main.command()
@RUN
@click.option("-n", "--n", "count", type=click.IntRange(1), default=64, show_default=True, help="How many samples.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Scale of the prior's standard deviation.")
@SEED
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder (default: RUN_DIR/samples).")
@WEIGHTS
@SET
@DEVICE
def sample(run_dir: Path, count: int, temperature: float, seed: int, out: Path | None, weights: str, overrides, device: str) -> None:
    """Draw samples from the prior and write them with the modality's writer (PNG, text, WAV ...)."""
    run = _open(run_dir, weights, overrides, device)
    generator = torch.Generator(run.device).manual_seed(seed)
    torch.manual_seed(seed)
    _, px = run.vae.sample(count, temperature=temperature, generator=generator)
    _echo_files(run.modality.write_samples(px, _out_dir(run, out) / f"samples-t{temperature:g}-seed{seed}"))


def _inputs_or_split(run, inputs, split: str, n: int):
    batch = run.modality.load_inputs(list(inputs)) if inputs else first_examples(run.modality.dataset(split), run.modality.collate, n)
    return to_device(batch, run.device)


@main.command()
@RUN
@click.argument("inputs", nargs=-1)
@click.option("-n", "--n", "count", type=click.IntRange(1), default=8, show_default=True,
              help="Examples taken from --split when no INPUTS are given.")
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder (default: RUN_DIR/samples).")
@SEED
@WEIGHTS
@SET
@DEVICE
def reconstruct(run_dir: Path, inputs, count: int, split: str, out: Path | None, seed: int, weights: str, overrides,
                device: str) -> None:
    """Encode INPUTS (files or strings, as the modality reads them) or examples of a split, and decode them."""
    run = _open(run_dir, weights, overrides, device)
    torch.manual_seed(seed)
    batch = _inputs_or_split(run, inputs, split, count)
    _, px = run.vae.reconstruct(batch)
    _echo_files(run.modality.write_reconstructions(batch, px, _out_dir(run, out) / "reconstructions"))


@main.command()
@RUN
@click.argument("inputs", nargs=-1)
@click.option("--steps", type=click.IntRange(2), default=8, show_default=True, help="Points on each path, ends included.")
@click.option("--method", type=click.Choice(["linear", "spherical"]), default="linear", show_default=True)
@click.option("--pairs", type=click.IntRange(1), default=4, show_default=True,
              help="Paths between consecutive examples of --split when no INPUTS are given.")
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder (default: RUN_DIR/samples).")
@SEED
@WEIGHTS
@SET
@DEVICE
def interpolate(run_dir: Path, inputs, steps: int, method: str, pairs: int, split: str, out: Path | None,
                seed: int, weights: str, overrides, device: str) -> None:
    """Walk the latent space between two inputs (INPUT_A INPUT_B), or between pairs of a split."""
    run = _open(run_dir, weights, overrides, device)
    torch.manual_seed(seed)
    if inputs:
        if len(inputs) != 2:
            raise InputError(f"interpolate takes two inputs (A and B), got {len(inputs)}")
        both = to_device(run.modality.load_inputs(list(inputs)), run.device)
        a, b = slice_batch(both, slice(0, 1)), slice_batch(both, slice(1, 2))
    else:
        both = to_device(first_examples(run.modality.dataset(split), run.modality.collate, 2 * pairs), run.device)
        a, b = slice_batch(both, slice(0, None, 2)), slice_batch(both, slice(1, None, 2))
    _, px = run.vae.interpolate(a, b, steps=steps, method=method)
    _echo_files(run.modality.write_interpolations(px, steps, _out_dir(run, out) / f"interpolation-{method}"))


# -- measure -----------------------------------------------------------------------------------


def _print_table(rows) -> None:
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name:<{width}}  {value}")


@main.command(name="eval")
@RUN
@click.option("--split", type=click.Choice(["train", "validation", "test"]), help="Split to evaluate (default: the recipe's [eval] split).")
@click.option("-k", "--k", "iw_samples", type=click.IntRange(0), help="Importance samples for the IW-NLL (default: [eval] iw_samples).")
@click.option("--max-examples", type=click.IntRange(1), help="Evaluate at most this many examples.")
@click.option("--batch-size", type=click.IntRange(1), help="Examples per batch.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the results here (default: RUN_DIR/eval.json).")
@WEIGHTS
@SET
@DEVICE
def eval_(run_dir: Path, split: str | None, iw_samples, max_examples, batch_size, json_path, weights: str, overrides, device: str) -> None:
    """ELBO, importance-weighted NLL, KL, active units and mutual information of a split.

    Prints a table and writes the same numbers as JSON (with the KL of every latent dimension).
    """
    from vaezoo.trainer import evaluate_split

    run = _open(run_dir, weights, overrides, device)
    split = split or run.recipe.eval.split
    result = evaluate_split(run.modality, run.vae, split, device=run.device, iw_samples=iw_samples,
                            max_examples=max_examples, batch_size=batch_size)
    _print_table([("split", split), ("weights", weights)] + result.table())
    path = json_path or run.path / EVAL
    write_json(path, {"split": split, "weights": weights, **result.as_dict()})
    click.echo(f"wrote {path}")


@main.command()
@RUN
@click.argument("inputs", nargs=-1)
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True)
@click.option("--max-examples", type=click.IntRange(1), help="Encode at most this many examples of the split.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Output file (default: RUN_DIR/latents-SPLIT.safetensors).")
@WEIGHTS
@SET
@DEVICE
def encode(run_dir: Path, inputs, split: str, max_examples, out: Path | None, weights: str, overrides, device: str) -> None:
    """Write posterior means and log-variances of INPUTS or a split to a safetensors file.

    Tensors: "mean" and "logvar" [N, D], and any integer "label" the batches carry.
    """
    run = _open(run_dir, weights, overrides, device)
    if inputs:
        batches = [run.modality.load_inputs(list(inputs))]
        default = run.path / "latents-inputs.safetensors"
    else:
        loader = make_loader(run.modality.dataset(split), run.modality.collate, run.recipe.eval.batch_size)
        batches, seen = [], 0
        for b in loader:
            batches.append(b)
            seen += len(b["x"])
            if max_examples and seen >= max_examples:
                break
        default = run.path / f"latents-{split}.safetensors"
    means, logvars = [], []
    with torch.no_grad():
        for b in batches:
            q = run.vae.encode(to_device(b, run.device))
            means.append(q.mean.float().cpu())
            logvars.append(q.logvar.float().cpu())
    tensors = {"mean": torch.cat(means), "logvar": torch.cat(logvars)}
    merged = concat_batches(batches)
    if isinstance(merged.get("label"), torch.Tensor):
        tensors["label"] = merged["label"]
    if max_examples:
        tensors = {k: v[:max_examples].contiguous() for k, v in tensors.items()}
    path = out or default
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"run": str(run.path), "split": "inputs" if inputs else split})
    click.echo(f"wrote {path} ({tensors['mean'].shape[0]} x {tensors['mean'].shape[1]})")


# -- discover ----------------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List the installed modality plugins with their status.

    A plugin that fails to import or targets another plugin API is listed with the reason;
    it never stops the other plugins from working.
    """
    from vaezoo.plugins import discover

    found = discover()
    rows = [
        {"name": p.name, "status": p.status, "distribution": p.distribution, "version": p.version,
         "api_version": p.api_version, "location": p.location, "error": p.error}
        for p in found.values()
    ]
    if as_json:
        click.echo(json.dumps({"plugin_api_version": PLUGIN_API_VERSION, "plugins": rows}, indent=2))
        return
    click.echo(f"plugin API {PLUGIN_API_VERSION}; entry-point group vaezoo.modalities")
    if not rows:
        click.echo("no modality plugins installed")
    for r in rows:
        dist = f"{r['distribution']} {r['version']}" if r["distribution"] else "-"
        click.echo(f"{r['name']:<12} {r['status']:<12} {dist:<24} api {r['api_version'] if r['api_version'] is not None else '?'}  {r['location'] or ''}")
        if r["error"]:
            click.echo(f"{'':<12} {r['error']}")


@main.command()
@click.argument("name", required=False)
def recipes(name: str | None) -> None:
    """List the recipes (./recipes, $VAEZOO_RECIPES, the source tree's recipes/), or print one."""
    from vaezoo.recipes import list_recipes, resolve_recipe_path

    if name:
        click.echo(resolve_recipe_path(name).read_text(), nl=False)
        return
    found = list_recipes()
    if not found:
        click.echo("no recipes found")
    for recipe_name, path in found.items():
        click.echo(f"{recipe_name:<28} {path}")


if __name__ == "__main__":
    main()
