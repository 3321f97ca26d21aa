"""The `vaezoo` command line. Every command but `train` works on a run directory.

Nothing heavy is imported here: each command imports what it needs (torch, the trainer, the
analysis modules) when it runs, so `vaezoo --help`, `vaezoo recipes` and `vaezoo options`
answer at once. `tests/test_cli_startup.py` keeps torch out of them;
`benchmarks/cli_startup.py` measures them.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Literal, cast

import click

from vaezoo.core.errors import InputError, VaezooError

class FiniteFloatRange(click.FloatRange):
    """A FloatRange that also refuses nan and inf (nan passes every comparison of a range check)."""

    name = "finite float range"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def output_problem(path: Path, folder: bool) -> str | None:
    """Why ``path`` cannot be written as a folder (or a file), or None. Checked before any work,
    so a command that would fail at the end refuses at the start and leaves every file alone."""
    if path.exists() or path.is_symlink():
        if folder and not path.is_dir():
            return "exists and is not a folder; give a folder (new or existing)"
        if not folder and path.is_dir():
            return "is a folder; give a file name"
    parent = path.parent if path.exists() else path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is a file, so nothing can be written under it"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"no permission to write in {parent}"
    return None


def writable(folder: bool):
    """A click callback refusing an output path that cannot be written (see output_problem)."""

    def check(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
        problem = None if value is None else output_problem(Path(value), folder)
        if problem:
            raise InputError(f"{param.opts[0]} {value}: {problem}")
        return value

    return check


# click.Path checks nothing here: writable() does, with a message that says what to do.
OUTPUT_DIR = dict(type=click.Path(path_type=Path), callback=writable(folder=True))
OUTPUT_FILE = dict(type=click.Path(path_type=Path), callback=writable(folder=False))

RUN = click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
SET = click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                   help="Override a recipe key (repeatable), e.g. --set train.lr=3e-4; "
                        "--set data.labels= (nothing after =) unsets a key, so its default applies.")
WEIGHTS = click.option("--weights", type=click.Choice(["best", "last"]), default="best", show_default=True,
                       help="Best-validation or latest weights.")
DEVICE = click.option("--device", default="auto", show_default=True, help="'auto', 'cpu', 'cuda' or 'cuda:N'.")
SEED = click.option("--seed", type=int, default=0, show_default=True,
                    help="Seeds every random draw, so the same command writes the same files.")
# Commands that walk a split set vaezoo.core.progress.progress_bars(not no_progress) around that walk.
NO_PROGRESS = click.option("--no-progress", is_flag=True, help="No progress bar.")
# Decoding: 500 rows at a time run about as fast as one large batch on a CPU, where 100 (the
# usual [eval] batch_size) ran 1.5-3x slower. Encoding and scoring keep the recipe's batches,
# so their files are the ones they always were.
DECODE_BATCH = 500


def batch_size_option(default: int | None):
    fallback = "" if default is not None else " (default: the recipe's [eval] batch_size)"
    return click.option("--batch-size", type=click.IntRange(1), default=default, show_default=default is not None,
                        metavar="N", help=f"Examples per batch: memory grows with N, not with how many examples "
                                          f"there are{fallback}.")


# The modality's writer takes the preview whole. Reconstructions keep more: they are the product
# for small inputs (an imputed table of up to this many rows stays one whole CSV).
SAMPLE_PREVIEW = 64
RECONSTRUCT_PREVIEW = 1000


def preview_option(default: int, what: str):
    return click.option("--preview", type=click.IntRange(1), default=default, show_default=True, metavar="N",
                        help=f"The first N {what} go to the modality's files (grid, lines, WAVs, CSV), decoded "
                             "in one piece; a larger request also writes every one to a -all.safetensors file "
                             "(see above).")


INPUT_CLASS = click.option("--condition", "input_class", metavar="NAME|ID",
                           help="Conditional runs: the class of the inputs (required for INPUTS read from the "
                                "command line, which carry none; replaces a split's own classes).")


def _class_of(run, value: str | None, option: str) -> int | None:
    """The class id ``value`` names (a name or an id) for a conditional run; None when not given.
    A run that is not conditional refuses it."""
    if value is None:
        return None
    if run.vae.condition is None:
        raise InputError(f"{option} {value}: {run.path} is not a conditional run (its recipe does not set "
                         "[condition] enabled = true); drop the option")
    try:
        return run.vae.condition.lookup(value)
    except InputError as err:
        raise InputError(f"{option}: {err}") from None


def _with_class(run, batch, class_id: int | None):
    """``batch`` with every example of class ``class_id`` (unchanged when None)."""
    return batch if class_id is None else run.vae.condition.labelled(batch, class_id)


def opens_a_run(command):
    """--weights, --set and --device: how a command opens RUN_DIR."""
    return WEIGHTS(SET(DEVICE(command)))


class VaezooGroup(click.Group):
    """Turns every VaezooError into one line on stderr and its exit code, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except VaezooError as err:
            for line in str(err).splitlines() or [""]:   # a recipe with several problems: one line each
                click.echo(f"error: {line}", err=True)
            sys.exit(err.exit_code)
        except OSError as err:
            # A file the system refused (permissions, a full disk, a path that is not a folder):
            # say which and why in one line; every write is atomic, so nothing is half-written.
            where = f"{err.filename}: " if err.filename else ""
            click.echo(f"error: {where}{err.strerror or err}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("aborted", err=True)
            sys.exit(130)


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from vaezoo.core.version import __version__   # reads the package metadata: only when asked

    click.echo(f"vaezoo, version {__version__}")
    ctx.exit()


@click.group(cls=VaezooGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version and exit.")
def main() -> None:
    """vaezoo: train and use variational autoencoders for images, text, audio and more.

    A recipe (TOML) describes a run; `vaezoo train RECIPE` writes a run directory that the
    other commands read. `vaezoo recipes` lists the shipped recipes, `vaezoo options
    [MODALITY]` every recipe key with its default and help, `vaezoo plugins` the installed
    modalities.
    """


def _open(run_dir: Path, weights: str = "best", overrides=(), device: str = "auto"):
    from vaezoo.train.runs import open_run

    which = cast(Literal["best", "last"], weights)   # click.Choice(["best", "last"]) checked it
    return open_run(run_dir, weights=which, overrides=overrides, device=device)


def _out_dir(run, out: Path | None) -> Path:
    return out if out is not None else run.path / "samples"


def _echo_files(files) -> None:
    for f in files:
        click.echo(f"wrote {f}")


# -- train -----------------------------------------------------------------------------------


@main.command()
@click.argument("recipe", required=False)
@SET
@click.option("--run-dir", **OUTPUT_DIR,
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
    from datetime import datetime

    from vaezoo.core.errors import RecipeError
    from vaezoo.plugin.recipes import load_recipe, resolve_recipe_path
    from vaezoo.train.runs import load_recipe_of_run
    from vaezoo.train.trainer import Trainer

    if resume is not None:
        if recipe is not None:
            raise click.UsageError("give either RECIPE or --resume RUN_DIR, not both")
        for expr in overrides:
            if not expr.split("=", 1)[0].strip().startswith(("train.", "eval.")):
                raise RecipeError("--set", expr.split("=", 1)[0], "only [train] and [eval] keys can change when resuming")
        # The trainer writes the overridden recipe.toml only once every check has passed.
        trainer = Trainer(load_recipe_of_run(resume, overrides), resume, resume=True, progress_bar=not no_progress)
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
    from vaezoo.analysis.curves import write_curves  # matplotlib loads only here, once a run ends

    _echo_files(result.files + write_curves(result.run_dir))
    click.echo(f"run: {result.run_dir}")


# -- generate ---------------------------------------------------------------------------------


@main.command()
@RUN
@click.option("-n", "--n", "count", type=click.IntRange(1), default=64, show_default=True, help="How many samples.")
@click.option("--sampler", type=click.Choice(["prior", "gmm"]), default="prior", show_default=True,
              help="Draw z from the prior N(0, I), or from a Gaussian mixture fitted to the posterior means of "
                   "the training split (Ghosh et al. 2020), saved as RUN_DIR/samplers/gmm.safetensors and reused.")
@click.option("--components", type=click.IntRange(1), metavar="K",
              help="gmm: mixture components (default: 10); another K than the saved mixture's refits it.")
@click.option("--refit", is_flag=True, help="gmm: fit the mixture again even if the saved one fits these weights.")
@click.option("--max-examples", type=click.IntRange(0),
              help="gmm: fit on at most this many training examples, a seeded random subset when the split "
                   "is larger (default: 20000; 0 = all).")
@click.option("--temperature", type=FiniteFloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Scale of the spread: the prior's standard deviation, or (gmm) each component's spread "
                   "around its mean.")
@click.option("--condition", "conditions", multiple=True, metavar="NAME|ID|all",
              help="Conditional runs: the class to sample, by name or id (repeatable), or all (the default): "
                   "the same N latents decoded once per class, a file set per class.")
@SEED
@click.option("--out", **OUTPUT_DIR, help="Output folder (default: RUN_DIR/samples).")
@batch_size_option(DECODE_BATCH)
@preview_option(SAMPLE_PREVIEW, "samples")
@NO_PROGRESS
@opens_a_run
def sample(run_dir: Path, count: int, sampler: str, components: int | None, refit: bool, max_examples: int | None,
           temperature: float, conditions: tuple[str, ...], seed: int, out: Path | None, batch_size: int,
           preview: int, no_progress: bool, weights: str, overrides, device: str) -> None:
    """Draw samples and write them with the modality's writer (PNG, text, WAV ...).

    --sampler prior (the default) decodes z ~ N(0, temperature^2 I): files samples-tT-seedS.
    --sampler gmm decodes z from a Gaussian mixture (full covariances) fitted to the posterior
    means of the training split, which covers the latents the decoder was trained on better
    than the prior does: files samples-gmm-tT-seedS. The first use encodes the training split
    and fits the mixture, saved in the run; later uses load it, and fit it again when the
    weights, K or the example cap changed, or when told to (--refit).

    A conditional run decodes the same latents once per class asked for (--condition), into
    STEM-classII-NAME files.

    Large requests: the modality's files (STEM.png, STEM.txt ...) show the first --preview
    samples, exactly as before when -n is no larger. A larger -n also writes every sample,
    decoded --batch-size at a time, to STEM-all.safetensors as it goes: "x" the decoded
    means [N, ...] (when real-valued: not text), "z" the latents [N, D] and, for a
    conditional run, "condition" [N]. Text also gets every sentence, one per line, in
    STEM-all.txt. One seed gives the same latents and the same preview at every batch size;
    sentences sampled at random (generate.strategy = "sample") after the preview follow the
    batches.
    """
    if sampler == "prior" and (components is not None or refit or max_examples is not None):
        raise InputError("--components, --refit and --max-examples apply to --sampler gmm only")
    import torch

    from vaezoo.analysis.batched import sample_in_batches
    from vaezoo.core.progress import progress_bars

    run = _open(run_dir, weights, overrides, device)
    classes: list[int] | None = None
    if conditions and "all" not in conditions:
        classes = list(dict.fromkeys(cast(int, _class_of(run, value, "--condition")) for value in conditions))
    elif conditions:
        _class_of(run, "0", "--condition")   # refuses "all" for a run that is not conditional
    if sampler == "prior":
        generator = torch.Generator(run.device).manual_seed(seed)
        torch.manual_seed(seed)
        p = next(run.vae.parameters())

        def draw(rows: int) -> torch.Tensor:
            return run.vae.prior.sample(rows, temperature=temperature, generator=generator, device=p.device,
                                        dtype=p.dtype)
        stem = f"samples-t{temperature:g}-seed{seed}"
    else:
        from vaezoo.analysis.samplers import DEFAULT_COMPONENTS, DEFAULT_MAX_EXAMPLES, FILE, gmm_for_run

        with progress_bars(not no_progress):
            mixture, fitted = gmm_for_run(run, components=components or DEFAULT_COMPONENTS,
                                          max_examples=DEFAULT_MAX_EXAMPLES if max_examples is None else max_examples,
                                          refit=refit, echo=lambda message: click.echo(message, err=True))
        if fitted:
            click.echo(f"wrote {run.path / FILE} ({mixture.components} components, "
                       f"{mixture.metadata['examples']} examples)")
        # z is drawn on the CPU, so one seed gives the same latents on every device.
        cpu = torch.Generator().manual_seed(seed)

        def draw(rows: int) -> torch.Tensor:
            return mixture.sample(rows, generator=cpu, temperature=temperature)
        torch.manual_seed(seed)
        stem = f"samples-gmm-t{temperature:g}-seed{seed}"
    metadata = {"run": str(run.path), "sampler": sampler, "temperature": f"{temperature:g}", "seed": str(seed)}
    with progress_bars(not no_progress):
        files = sample_in_batches(run.vae, run.modality, draw, count, _out_dir(run, out) / stem, classes=classes,
                                  batch_size=batch_size, preview=preview,
                                  metadata=metadata)
    _echo_files(files)


def _input_rows(run, inputs, split: str, n: int, batch_size: int, preview: int):
    """The rows to reconstruct: the preview batch (the first ``preview`` rows), and when there
    are more, every row in batches of ``batch_size`` and how many batches (None: unknown)."""
    from vaezoo.analysis.batched import spans
    from vaezoo.analysis.scoring import input_batches
    from vaezoo.core.batches import batch_size as rows_in, slice_batch
    from vaezoo.core.data import dataset_length, examples_at

    if inputs:
        items = list(inputs)
        first = run.modality.load_inputs(items[:preview])
        if len(items) <= preview and rows_in(first) <= preview:
            return first, None, None
        return slice_batch(first, slice(0, preview)), input_batches(run.modality, items, batch_size), None
    dataset = run.modality.dataset(split)
    size = dataset_length(dataset)
    if size == 0:
        raise InputError(f"the {split} split is empty")

    def rows(a: int, b: int):   # cycling when the split holds fewer than n
        return examples_at(dataset, run.modality.collate, [i % size for i in range(a, b)])
    if n <= preview:
        return rows(0, n), None, None
    pieces = spans(0, n, batch_size)
    return rows(0, preview), (rows(a, b) for a, b in pieces), len(pieces)


@main.command()
@RUN
@click.argument("inputs", nargs=-1)
@click.option("-n", "--n", "count", type=click.IntRange(1), default=8, show_default=True,
              help="Examples taken from --split when no INPUTS are given.")
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True)
@click.option("--out", **OUTPUT_DIR, help="Output folder (default: RUN_DIR/samples).")
@INPUT_CLASS
@click.option("--as", "as_class", metavar="NAME|ID",
              help="Conditional runs: decode every input as this class (style transfer: each input's code, "
                   "another class); default: each input's own class.")
@SEED
@batch_size_option(DECODE_BATCH)
@preview_option(RECONSTRUCT_PREVIEW, "rows")
@NO_PROGRESS
@opens_a_run
def reconstruct(run_dir: Path, inputs, count: int, split: str, out: Path | None, input_class: str | None,
                as_class: str | None, seed: int, batch_size: int, preview: int, no_progress: bool,
                weights: str, overrides, device: str) -> None:
    """Encode INPUTS (files or strings, as the modality reads them) or examples of a split, and decode them.

    A conditional run decodes each input with its own class, or with --as NAME: files
    reconstructions-as-classII-NAME.

    The modality's files (reconstructions.png, .txt, .csv ...) hold the first --preview rows;
    when there are more (a larger -n, more INPUTS, a table of more rows), every row is also
    reconstructed --batch-size at a time into reconstructions-all.safetensors: "x" the decoded
    means (when real-valued: not text), "z" the posterior points decoded and, for a
    conditional run, "condition" (the class each row was decoded as).
    """
    import torch

    from vaezoo.analysis.batched import reconstruct_in_batches
    from vaezoo.core.batches import to_device
    from vaezoo.core.progress import progress_bars
    from vaezoo.train.samples import class_stem

    run = _open(run_dir, weights, overrides, device)
    own, target = _class_of(run, input_class, "--condition"), _class_of(run, as_class, "--as")
    torch.manual_seed(seed)
    first, rest, total = _input_rows(run, inputs, split, count, batch_size, preview)
    stem = _out_dir(run, out) / "reconstructions"
    if target is not None:
        stem = class_stem(stem.with_name("reconstructions-as"), run.vae.condition, target)
    with progress_bars(not no_progress):
        files = reconstruct_in_batches(run.vae, run.modality, first, rest, stem, condition=target, total=total,
                                       prepare=lambda batch: _with_class(run, to_device(batch, run.device), own),
                                       metadata={"run": str(run.path), "split": "inputs" if inputs else split})
    _echo_files(files)


@main.command()
@RUN
@click.argument("inputs", nargs=-1)
@click.option("--steps", type=click.IntRange(2), default=8, show_default=True, help="Points on each path, ends included.")
@click.option("--method", type=click.Choice(["linear", "spherical"]), default="linear", show_default=True)
@click.option("--pairs", type=click.IntRange(1), default=4, show_default=True,
              help="Paths between consecutive examples of --split when no INPUTS are given.")
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True)
@click.option("--out", **OUTPUT_DIR, help="Output folder (default: RUN_DIR/samples).")
@INPUT_CLASS
@click.option("--as", "as_class", metavar="NAME|ID",
              help="Conditional runs: decode the whole path as this class; default: the class moves from A's "
                   "to B's along the path (each end is its input's reconstruction).")
@SEED
@opens_a_run
def interpolate(run_dir: Path, inputs, steps: int, method: str, pairs: int, split: str, out: Path | None,
                input_class: str | None, as_class: str | None, seed: int, weights: str, overrides, device: str) -> None:
    """Walk the latent space between two inputs (INPUT_A INPUT_B), or between pairs of a split."""
    import torch

    from vaezoo.core.batches import slice_batch, to_device
    from vaezoo.core.data import first_examples
    from vaezoo.train.samples import class_stem

    run = _open(run_dir, weights, overrides, device)
    own, target = _class_of(run, input_class, "--condition"), _class_of(run, as_class, "--as")
    torch.manual_seed(seed)
    if inputs:
        if len(inputs) != 2:
            raise InputError(f"interpolate takes two inputs (A and B), got {len(inputs)}")
        both = to_device(run.modality.load_inputs(list(inputs)), run.device)
    else:
        both = to_device(first_examples(run.modality.dataset(split), run.modality.collate, 2 * pairs), run.device)
    both = _with_class(run, both, own)
    a, b = slice_batch(both, slice(0, None, 2)), slice_batch(both, slice(1, None, 2))
    _, px = run.vae.interpolate(a, b, steps=steps, method=method, condition=target)
    stem = _out_dir(run, out) / f"interpolation-{method}"
    if target is not None:
        stem = class_stem(stem.with_name(f"{stem.name}-as"), run.vae.condition, target)
    _echo_files(run.modality.write_interpolations(px, steps, stem))


@main.command()
@RUN
@click.option("--dims", metavar="D,D-D", help="Latent dimensions to sweep, e.g. 0,1,5 or 0-3 (default: all).")
@click.option("--steps", type=click.IntRange(2), default=9, show_default=True, help="Values per dimension, ends included.")
@click.option("--span", type=FiniteFloatRange(min=0, min_open=True), default=3.0, show_default=True,
              help="Sweep from -SPAN to +SPAN (prior standard deviations for the standard normal prior).")
@click.option("--from", "source", default="zeros", show_default=True, metavar="zeros|SPLIT:INDEX|INPUT",
              help="Base point: zeros, the posterior point of an example (test:0), or an input the modality reads.")
@click.option("--relative", is_flag=True, help="Sweep the base's own value +- SPAN instead of -SPAN ... +SPAN.")
@click.option("--out", **OUTPUT_DIR, help="Output folder (default: RUN_DIR/samples).")
@click.option("--condition", "input_class", metavar="NAME|ID",
              help="Conditional runs: the class decoded (and given to an INPUT base); default: the base "
                   "example's own class, or the first class from zeros.")
@SEED
@opens_a_run
def traverse(run_dir: Path, dims: str | None, steps: int, span: float, source: str, relative: bool, out: Path | None,
             input_class: str | None, seed: int, weights: str, overrides, device: str) -> None:
    """Latent traversals: one row per latent dimension, swept while the others stay at a base point.

    The rows are decoded and written with the modality's interpolation writer (a PNG grid,
    lines of text, a WAV per row ...) as traversal-zeros, traversal-SPLIT-INDEX or traversal-input.
    """
    import torch

    from vaezoo.analysis.traversal import parse_dims, traverse_run

    run = _open(run_dir, weights, overrides, device)
    class_id = _class_of(run, input_class, "--condition")
    torch.manual_seed(seed)
    result = traverse_run(run, dims=parse_dims(dims, run.vae.latent_dim), steps=steps, span=span, source=source,
                          relative=relative, out_dir=out, condition=class_id)
    low, high = result.values[0], result.values[-1]
    sweep = f"base {low:g} ... base +{high:g}" if relative else f"{low:g} ... {high:g}"
    of_class = "" if result.condition is None else f", class {run.vae.condition.names[result.condition]}"
    click.echo(f"rows: z{', z'.join(map(str, result.dims))} (values {sweep}, {steps} steps, from {source}{of_class})")
    _echo_files(result.files)


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
@click.option("--json", "json_path", **OUTPUT_FILE, help="Also write the results here (default: RUN_DIR/eval.json).")
@NO_PROGRESS
@opens_a_run
def eval_(run_dir: Path, split: str | None, iw_samples, max_examples, batch_size, json_path, no_progress: bool, weights: str,
          overrides, device: str) -> None:
    """ELBO, importance-weighted NLL, KL, active units and mutual information of a split.

    Prints a table and writes the same numbers as JSON (with the KL of every latent dimension).
    """
    from vaezoo.core.files import write_json
    from vaezoo.core.progress import progress_bars
    from vaezoo.train.checkpoints import EVAL
    from vaezoo.train.distributed import distributed
    from vaezoo.train.evaluation import evaluate_split
    from vaezoo.train.samples import condition_of

    run = _open(run_dir, weights, overrides, device)
    split = split or run.recipe.eval.split
    # Under torchrun each process evaluates its share of the split; rank 0 prints and writes.
    with distributed(run.device) as (ctx, on_device), progress_bars(not no_progress):
        result = evaluate_split(run.modality, run.vae.to(on_device), split, device=on_device, iw_samples=iw_samples,
                                max_examples=max_examples, batch_size=batch_size, ctx=ctx)
    if not ctx.is_main:
        return
    head = [("split", split), ("weights", f"{run.weights} (step {run.weights_step})")]
    if run.vae.condition is not None:   # the figures are of log p(x|c): say so beside them
        c = run.vae.condition
        head.append(("condition", f"{c.key!r}, {c.classes} classes: ELBO and IW-NLL are of log p(x|c)"))
    _print_table(head + result.table())
    path = json_path or run.path / EVAL
    write_json(path, {"split": split, "weights": run.weights, "weights_step": run.weights_step, **result.as_dict(),
                      **condition_of(run.vae)})
    click.echo(f"wrote {path}")


@main.command()
@RUN
@click.argument("inputs", nargs=-1)
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True)
@click.option("--max-examples", type=click.IntRange(1), help="Encode at most this many examples of the split.")
@click.option("--out", **OUTPUT_FILE, help="Output file (default: RUN_DIR/latents-SPLIT.safetensors).")
@click.option("--condition", "input_class", metavar="NAME|ID",
              help="Conditional runs: the class of the INPUTS (which carry none); a split's examples have their own.")
@batch_size_option(None)
@NO_PROGRESS
@opens_a_run
def encode(run_dir: Path, inputs, split: str, max_examples, out: Path | None, input_class: str | None,
           batch_size: int | None, no_progress: bool, weights: str, overrides, device: str) -> None:
    """Write posterior means and log-variances of INPUTS or a split to a safetensors file.

    Tensors: "mean" and "logvar" [N, D], and any integer "label" the batches carry; for a
    conditional run also "condition" [N], each example's class (the metadata's
    "condition_names" lists the names, as JSON). Examples are encoded --batch-size at a time
    and their rows written as they come, so memory does not grow with N.
    """
    from vaezoo.analysis.latents import encode_to_file
    from vaezoo.analysis.scoring import input_batches
    from vaezoo.core.data import batches_in, split_batches
    from vaezoo.core.progress import progress_bars

    run = _open(run_dir, weights, overrides, device)
    class_id = _class_of(run, input_class, "--condition")
    if class_id is not None and not inputs:
        raise InputError(f"--condition {input_class}: gives the class of INPUTS; the {split} split's examples "
                         "carry their own")
    size = batch_size or run.recipe.eval.batch_size
    batches: Iterator[dict[str, Any]]
    if inputs:
        batches = (_with_class(run, batch, class_id) for batch in input_batches(run.modality, list(inputs), size))
        total, default = None, run.path / "latents-inputs.safetensors"
    else:
        batches = split_batches(run.modality, split, size, max_examples)
        total, default = batches_in(run.modality, split, size, max_examples), run.path / f"latents-{split}.safetensors"
    metadata = {"run": str(run.path), "split": "inputs" if inputs else split}
    if run.vae.condition is not None:
        metadata["condition_names"] = json.dumps(run.vae.condition.names)
    path = out or default
    with progress_bars(not no_progress):
        rows, dims = encode_to_file(run.vae, batches, run.device, path, metadata, total=total)
    click.echo(f"wrote {path} ({rows} x {dims})")


@main.command(name="latent-map")
@RUN
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True)
@click.option("--method", type=click.Choice(["pca", "tsne"]), default="pca", show_default=True,
              help="PCA (fast, linear) or t-SNE (scikit-learn; local neighbourhoods, slower).")
@click.option("--color-by", type=click.Choice(["label", "cluster"]),
              help="Colour points by their label or by k-means cluster (default: label when the data has labels).")
@click.option("--clusters", type=click.IntRange(1), help="k of k-means (default: the number of labels, else 10).")
@click.option("--max-examples", type=click.IntRange(0), default=2000, show_default=True,
              help="Map at most this many examples of the split (0 = all).")
@click.option("--out", **OUTPUT_DIR, help="Output folder (default: RUN_DIR/latent-map).")
@SEED
@NO_PROGRESS
@opens_a_run
def latent_map(run_dir: Path, split: str, method: str, color_by, clusters, max_examples: int, out: Path | None,
               seed: int, no_progress: bool, weights: str, overrides, device: str) -> None:
    """Draw the posterior means of a split in 2-D, coloured by label, and cluster them.

    Writes SPLIT-METHOD.png (the scatter), .csv (the plotted points) and .json. k-means runs on
    the full-dimensional means; with labels it prints the adjusted Rand index against them.
    """
    from vaezoo.analysis.latent_map import make_latent_map
    from vaezoo.core.progress import progress_bars

    run = _open(run_dir, weights, overrides, device)
    with progress_bars(not no_progress):
        result, files = make_latent_map(run, split=split, method=method, color_by=color_by, clusters=clusters,
                                        max_examples=max_examples or None, out_dir=out, seed=seed,
                                        echo=lambda msg: click.echo(msg, err=True))
    if result.adjusted_rand_index is not None:
        click.echo(f"k-means ({result.clusters} clusters) vs labels: adjusted Rand index {result.adjusted_rand_index:.4f}")
    _echo_files(files)


@main.command()
@RUN
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True)
@click.option("--max-examples", type=click.IntRange(0), default=10000, show_default=True,
              help="Measure at most this many examples of the split (0 = all).")
@click.option("--bins", type=click.IntRange(2), default=20, show_default=True, help="Bins per latent dimension for MIG.")
@click.option("--dci-model", type=click.Choice(["gbt", "forest", "none"]), default="gbt", show_default=True,
              help="Classifiers whose feature importances make DCI: gradient boosted trees (as disentanglement_lib), "
                   "a random forest (faster), or none (MIG only).")
@click.option("--dci-train", type=click.IntRange(1), default=2000, show_default=True,
              help="Examples the DCI classifiers train on (a seeded draw); up to --dci-test others measure them.")
@click.option("--dci-test", type=click.IntRange(1), default=1000, show_default=True,
              help="Other examples (seeded) on which the DCI classifiers' accuracy, the informativeness, is measured.")
@click.option("--jobs", type=click.IntRange(1), help="Processes fitting the DCI classifiers (default: one per factor, up to the cores).")
@click.option("--json", "json_path", **OUTPUT_FILE, help="Where to write the results (default: RUN_DIR/disentanglement.json).")
@SEED
@NO_PROGRESS
@opens_a_run
def disentanglement(run_dir: Path, split: str, max_examples: int, bins: int, dci_model: str, dci_train: int, dci_test: int,
                    jobs: int | None, json_path: Path | None, seed: int, no_progress: bool, weights: str, overrides,
                    device: str) -> None:
    """MIG and DCI of the latent space against the known factors that generated the data.

    The split's batches must carry "factors" [N, F] (e.g. images from `python -m
    vaezoo_image.shapes` with data.factors = true; `--set data.factors=true` adds them to a run
    trained without). MIG is the discrete estimator (codes in equal-width bins, as
    disentanglement_lib), normalised by each factor's entropy; DCI's importances come from
    one classifier per factor. Prints a table and writes it all as JSON.
    """
    from vaezoo.analysis.disentanglement import JSON_NAME, measure_run, save
    from vaezoo.core.progress import progress_bars

    run = _open(run_dir, weights, overrides, device)
    with progress_bars(not no_progress):
        result = measure_run(run, split=split, max_examples=max_examples or None, bins=bins,
                             dci_model=None if dci_model == "none" else dci_model, dci_train=dci_train,
                             dci_test=dci_test, seed=seed, jobs=jobs, echo=lambda msg: click.echo(msg, err=True))
    _print_table(result.table())
    _echo_files([save(result, json_path or run.path / JSON_NAME)])


@main.command()
@RUN
@click.argument("inputs", nargs=-1)
@click.option("-k", "--k", type=click.IntRange(0), default=0, show_default=True,
              help="0 or 1: score by -ELBO; K > 1: by importance-weighted -log p(x) with K samples.")
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True,
              help="Split scored when no INPUTS are given; its inputs are named SPLIT:INDEX.")
@click.option("--max-examples", type=click.IntRange(1), help="Score at most this many examples of the split.")
@click.option("--labels", "labels_path", type=click.Path(dir_okay=False, path_type=Path),
              help="CSV with the header input,label (1 = anomalous, 0 = normal; the rows of an input that "
                   "holds several as INPUT:0, INPUT:1 ...): print and save the ROC AUC.")
@click.option("--out", **OUTPUT_FILE, help="Scores CSV (default: RUN_DIR/scores.csv).")
@INPUT_CLASS
@SEED
@batch_size_option(None)
@NO_PROGRESS
@opens_a_run
def score(run_dir: Path, inputs, k: int, split: str, max_examples, labels_path: Path | None, out: Path | None,
          input_class: str | None, seed: int, batch_size: int | None, no_progress: bool, weights: str, overrides,
          device: str) -> None:
    """Anomaly score of INPUTS or of a split: higher means less likely under the model.

    Writes a CSV (input, score in nats). An input that holds several rows (a CSV table for
    the tabular modality) gets a score per row, named INPUT:0, INPUT:1 ...; --labels names
    them the same way. With --labels also the ROC AUC of telling the anomalous inputs from
    the normal ones, beside the CSV as .json. A conditional run scores -log p(x|c) (or the
    -ELBO given c) with each example's class, or the class --condition names.

    Examples are scored --batch-size at a time (K > 1: at most --batch-size x [eval]
    chunk_size latents per decoder call). The posterior draws follow the batches: another
    batch size draws others, and the scores differ by their noise.
    """
    from vaezoo.core.progress import progress_bars
    from vaezoo.analysis.scoring import save_scores, score_run

    run = _open(run_dir, weights, overrides, device)
    class_id = _class_of(run, input_class, "--condition")
    with progress_bars(not no_progress):
        result = score_run(run, inputs, split=split, k=k, max_examples=max_examples, seed=seed, labels_path=labels_path,
                           condition=class_id, batch_size=batch_size)
    rows = len(result.names)
    of_inputs = f" rows of {len(inputs)} inputs" if inputs and rows != len(inputs) else " inputs"
    click.echo(f"scored {rows}{of_inputs} by {result.kind}")
    if result.roc_auc is not None:
        click.echo(f"ROC AUC {result.roc_auc:.4f} ({result.anomalous} anomalous, {len(result.names) - (result.anomalous or 0)} normal)")
    _echo_files(save_scores(result, out or run.path / "scores.csv", labels_path))


@main.command()
@RUN
@click.option("--format", "fmt", type=click.Choice(["torchscript", "onnx", "folder"]), default="torchscript",
              show_default=True,
              help="torchscript: modules loaded with torch alone (torch.jit.load); onnx: ONNX files for ONNX "
                   "Runtime (needs pip install 'vaezoo[export]'); folder: a shareable model "
                   "folder (weights, recipe, the plugin's fitted state, eval table, samples, a model card) that "
                   "vaezoo sample, vaezoo eval and vaezoo.open_run take like a run.")
@click.option("--part", type=click.Choice(["decoder", "encoder", "output", "all"]), default="decoder",
              show_default=True,
              help="torchscript, onnx: decoder (z -> the decoded mean), encoder (x -> mean, logvar), all (both); "
                   "output: z -> what the modality makes of the mean (audio: the waveform, Griffin-Lim included).")
@click.option("--batch-size", type=click.IntRange(0), default=0, show_default=True,
              help="torchscript, onnx: a fixed batch size (0 = any batch size, checked at two).")
@click.option("--out", **OUTPUT_DIR, help="Output folder (default: RUN_DIR/export, or RUN_DIR/model for a folder).")
@opens_a_run
def export(run_dir: Path, fmt: str, part: str, batch_size: int, out: Path | None, weights: str, overrides,
           device: str) -> None:
    """Export a run: networks that run without vaezoo, or a model folder to share.

    --format torchscript writes PART.pt files (--format onnx: PART.onnx) and export.json
    (inputs, outputs, classes). Each
    part is traced and checked against the Python model at another batch size before anything
    is written; one that cannot be exported (a text decoder's generation loop, an encoder that
    reads more than x) is refused with the reason, and nothing is written.

    --format folder writes a model folder with a README.md model card.
    """
    run = _open(run_dir, weights, overrides, "cpu" if device == "auto" else device)
    if fmt == "folder":
        from vaezoo.analysis.model_folder import write_model_folder

        _echo_files(write_model_folder(run, out or run.path / "model"))
        return
    from vaezoo.analysis.export import PARTS, export_run

    folder = out or run.path / "export"
    done, manifest = export_run(run, folder, list(PARTS) if part == "all" else [part], fmt, batch_size)
    for e in done:
        click.echo(f"{e.part}: {', '.join(i['name'] for i in e.inputs)} -> {e.output}; "
                   f"max abs difference from the model {e.max_abs_difference:.2g}")
    beside = json.loads(manifest.read_text(encoding="utf-8"))["plugin_state"]
    _echo_files([folder / e.file for e in done] + [folder / name for name in beside] + [manifest])


@main.command()
@RUN
@click.option("--out", **OUTPUT_FILE, help="HTML file (default: RUN_DIR/report.html).")
@click.option("--latent-map/--no-latent-map", "with_map", default=True, show_default=True,
              help="Draw the test split's latent map when RUN_DIR has none yet (reads the data).")
@click.option("--compare", "compare", multiple=True, type=click.Path(path_type=Path),
              metavar="OTHER_RUN", help="Show another run beside this one (repeatable): the sample groups both "
                                        "have side by side, and the eval numbers both have.")
@DEVICE
def report(run_dir: Path, out: Path | None, with_map: bool, compare: tuple[Path, ...], device: str) -> None:
    """A static HTML page about a run: recipe, curves, eval table, what the writers left in
    samples/ (images, sentences, audio) and the latent map. Opens from disk, no server.
    With --compare OTHER_RUN also a section per other run: both runs' samples side by side
    and their eval.json numbers in two columns (a VAE-GAN's samples beside the plain VAE's)."""
    from vaezoo.analysis.report import write_report

    _echo_files(write_report(run_dir, out=out, latent_map=with_map, device=device, compare=compare,
                             echo=lambda msg: click.echo(msg, err=True)))


# -- discover ----------------------------------------------------------------------------------


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List the installed modality plugins: name, status, distribution, API version, location.

    A plugin that fails to import or targets another plugin API is listed with the reason;
    it never stops the other plugins from working. `vaezoo plugins check NAME` tests one.
    """
    if ctx.invoked_subcommand is None:
        from vaezoo.plugin.registry import entries, listing

        click.echo(listing(entries(), as_json))


@plugins.command(name="check")
@click.argument("name")
@SET
@click.option("--batch-size", type=click.IntRange(1), default=4, show_default=True, help="Examples in the example batch.")
def plugins_check(name: str, overrides, batch_size: int) -> None:
    """Build plugin NAME from its default recipe and run one forward/backward pass.

    The default recipe is every section's defaults with the plugin's `example_recipe` over
    them (and --set over both). Checks shapes, a finite ELBO, gradients reaching encoder and
    decoder, and an importance-weighted pass. Exit 0 when all hold, 1 with one line when not.
    """
    from vaezoo.plugin.check import check_plugin

    click.echo("\n".join(check_plugin(name, overrides, batch_size=batch_size).lines()))


@main.command(name="new-plugin")
@click.argument("name")
@click.option("--dir", "target", **OUTPUT_DIR,
              help="Folder to create (default: ./vaezoo-NAME); it must not exist or be empty.")
def new_plugin(name: str, target: Path | None) -> None:
    """Write a new modality plugin distribution, vaezoo-NAME, ready to `pip install -e`.

    NAME is a lowercase Python identifier (e.g. vectors, point_cloud). The plugin models
    real-valued vectors (synthetic or CSV) with MLPs and trains at once; see docs/plugins.md.
    """
    from vaezoo.plugin.scaffold import new_plugin as write_plugin, next_steps

    click.echo(next_steps(name, write_plugin(name, target)))


@main.command()
@click.argument("modalities", nargs=-1, metavar="[MODALITY]")
@click.option("--markdown", is_flag=True,
              help="The reference page instead (docs/recipes.md): the core's sections and each MODALITY's "
                   "(default: every installed modality).")
def options(modalities: tuple[str, ...], markdown: bool) -> None:
    """Every recipe section and key: type, default, range or choices and help, as commented TOML.

    \b
    Examples:
      vaezoo options                 # the core's sections, and the installed modalities
      vaezoo options image > my.toml # a whole recipe for images, every key at its default

    Keys at their defaults are written out, required keys and unset ones commented out, so the
    output pastes into a recipe: keep the keys you change. MODALITY is an installed modality
    or "package.module:Class".
    """
    from vaezoo.config.reference import ModalityDoc, options_markdown, options_toml
    from vaezoo.plugin.registry import discover, get_modality, plugin_info

    def doc(name: str) -> ModalityDoc:
        cls = get_modality(name)
        return ModalityDoc(name, dict(cls.sections), getattr(cls, "description", "") or "", plugin_info(name).distribution)

    if markdown:
        names = modalities or [name for name, info in discover().items() if info.status == "ok"]
        click.echo(options_markdown([doc(name) for name in names]), nl=False)
        return
    if len(modalities) > 1:
        raise click.UsageError("give one MODALITY (a recipe has one), or none for the core's sections")
    if modalities:
        click.echo(options_toml(doc(modalities[0])), nl=False)
        return
    installed = [(name, info.description or "" if info.status == "ok" else f"({info.status_text}: {info.error})")
                 for name, info in discover().items()]
    click.echo(options_toml(None, installed), nl=False)


@main.command()
@click.argument("name", required=False)
def recipes(name: str | None) -> None:
    """List the recipes ($VAEZOO_RECIPES, ./recipes, the source tree's recipes/, the folders plugins ship), or print one."""
    from vaezoo.plugin.recipes import list_recipes, resolve_recipe_path

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
