"""`vaezoo report`: one static HTML page about a run, rendered from a Jinja2 template.

The page shows what the run directory holds, whatever the modality: the recipe, the curves
(drawn from metrics.jsonl when missing), the eval table, the files the plugin's writers left
in samples/ by extension (images as <img>, text files as lines, sound files as <audio>, any
other file as a link) and the latent maps (drawn for the test split when there is none).
Every link is relative to the page, so the run folder can be zipped and opened elsewhere.
With ``compare`` the page also shows, beside each other run, the sample groups both runs have
side by side and the eval.json numbers both share (a VAE-GAN's samples beside the plain VAE's).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from vaezoo.core.version import __version__
from vaezoo.core.files import write_text
from vaezoo.train.checkpoints import EVAL, METRICS, RECIPE, read_metrics
from vaezoo.analysis.curves import CURVES, adversarial, event_step, series, write_curves
from vaezoo.core.errors import InputError, RunDirError, VaezooError
from vaezoo.core.estimators import EvalResult
from vaezoo.analysis.latent_map import FOLDER as MAP_FOLDER, METHODS

REPORT = "report.html"
IMAGE = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"}
TEXT = {".txt"}
AUDIO = {".wav": "audio/wav", ".ogg": "audio/ogg", ".flac": "audio/flac", ".mp3": "audio/mpeg"}
TEXT_LINES = 200      # longer text files are cut, with a link to the whole file
# Files named NAME-NUMBER... (prior-00.wav, prior-01.wav) are shown together under NAME.
_GROUP = re.compile(r"^(.*?)-\d+(?:-.*)?$")
#: The adversarial (VAE-GAN) phase's figures of a training record, as training_rows names them.
ADVERSARIAL_ROWS = [("disc_loss", "last discriminator loss"), ("disc_real", "last discriminator score, real (logit)"),
                    ("disc_fake", "last discriminator score, fake (logit)"),
                    ("gen_adversarial", "last generator adversarial loss"), ("feature_matching", "last feature matching")]
#: The eval.json numbers a comparison shows first, then any other number both runs have.
COMPARED_FIRST = ("elbo", "iw_nll", "kl", "active_units", "mutual_information")
EVAL_LABELS = {"elbo": "ELBO", "iw_nll": "IW-NLL", "kl": "KL", "active_units": "active units",
               "mutual_information": "mutual information", "n_examples": "examples", "iw_samples": "IW-NLL samples (k)",
               "step": "evaluated at step", "weights_step": "weights of step"}


@dataclass
class SampleFile:
    name: str
    href: str
    kind: str                       # "image", "text", "audio" or "other"
    mime: str = ""
    entries: list[list[str]] = field(default_factory=list)   # text: one list item each
    more_lines: int = 0


@dataclass
class SampleGroup:
    title: str
    files: list[SampleFile] = field(default_factory=list)

    def of(self, kind: str) -> list[SampleFile]:
        return [f for f in self.files if f.kind == kind]


def _href(path: Path, base: Path) -> str:
    return quote(Path(os.path.relpath(path, base)).as_posix())


def sample_file(path: Path, base: Path) -> SampleFile:
    suffix = path.suffix.lower()
    item = SampleFile(path.name, _href(path, base), "other")
    if suffix in IMAGE:
        item.kind = "image"
    elif suffix in AUDIO:
        item.kind, item.mime = "audio", AUDIO[suffix]
    elif suffix in TEXT:
        item.kind = "text"
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        item.entries, item.more_lines = text_entries(lines[:TEXT_LINES]), max(0, len(lines) - TEXT_LINES)
    return item


def text_entries(lines: list[str]) -> list[list[str]]:
    """One entry per line; or, when blank lines split the file into blocks (a sentence and its
    reconstruction, the steps of a homotopy), one entry per block."""
    if all(line.strip() for line in lines):
        return [[line] for line in lines]
    blocks: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    return [block for block in blocks if block]


def sample_groups(samples: Path, base: Path) -> list[SampleGroup]:
    """Files under ``samples`` (hidden and temporary ones skipped), grouped by name stem."""
    if not samples.is_dir():
        return []
    groups: dict[str, SampleGroup] = {}
    for path in sorted(p for p in samples.rglob("*") if p.is_file()):
        rel = path.relative_to(samples)
        if any(part.startswith(".") for part in rel.parts):
            continue
        match = _GROUP.match(path.stem)
        key = (rel.parent / (match.group(1) if match else path.stem)).as_posix()
        groups.setdefault(key, SampleGroup(key)).files.append(sample_file(path, base))
    return list(groups.values())


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        raise RunDirError(f"{path}: unreadable ({err}); write it again (vaezoo eval / latent-map) or remove it") from None


def eval_rows(path: Path) -> list[tuple[str, str]]:
    """The eval table as `vaezoo eval` prints it, from eval.json."""
    data = read_json(path)
    names = {f.name for f in fields(EvalResult)}
    head = [(key, str(data[key])) for key in ("split", "step", "weights") if key in data]
    if "weights_step" in data and "weights" in data:
        head[-1] = ("weights", f"{data['weights']} (step {data['weights_step']})")
    try:
        rows = EvalResult(**{k: v for k, v in data.items() if k in names}).table()
    except TypeError:   # an eval.json from another version: show its plain numbers
        rows = [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in data.items()
                if isinstance(v, (int, float)) and k not in ("step",)]
    return head + rows


def training_rows(records: list[dict]) -> list[tuple[str, str]]:
    """A few figures of the training run from metrics.jsonl."""
    train = [r for r in records if r.get("split") == "train"]
    validation = [r for r in records if r.get("split") == "validation" and isinstance(r.get("loss"), (int, float))]
    timing = [r for r in records if r.get("split") == "timing"]   # per epoch (twice if resumed mid-epoch)
    rows = []
    if train:
        rows += [("optimiser steps", str(train[-1]["step"])), ("epochs", str(len({r["epoch"] for r in timing}))),
                 # -ELBO, not the loss: under a KL schedule or an adversarial stage they differ
                 ("last training -ELBO", f"{-train[-1].get('elbo', -train[-1]['loss']):.4f}")]
    if validation:
        best = min(validation, key=lambda r: r["loss"])
        rows += [("best validation -ELBO", f"{best['loss']:.4f} (step {best['step']})")]
    if timing:
        rows += [("training time", f"{sum(r['train_seconds'] for r in timing):.1f} s"),
                 ("examples per second", f"{timing[-1]['examples_per_second']:.0f}")]
    start = event_step(records)
    if start is not None:
        rows += [("adversarial phase from", f"step {start}")]
    if train:
        rows += [(label, f"{train[-1][key]:.4f}") for key, label in ADVERSARIAL_ROWS
                 if isinstance(train[-1].get(key), (int, float))]
    return rows


@dataclass
class Comparison:
    """Another run beside this one: the sample groups both have, the eval numbers both have."""
    name: str
    run_dir: str
    pairs: list[tuple[SampleGroup, SampleGroup]]        # (this run's group, the other's), same title
    eval_rows: list[tuple[str, str, str]]                # (label, this run's value, the other's)
    only_here: list[str]
    only_there: list[str]


def _number(value: int | float) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def eval_numbers(data: dict) -> dict[str, int | float]:
    """The numbers of an eval.json: its numeric keys, and those of its ``extra``."""
    def numeric(items):
        return {k: v for k, v in items if isinstance(v, (int, float)) and not isinstance(v, bool)}

    extra = data.get("extra")
    return {**(numeric(extra.items()) if isinstance(extra, dict) else {}), **numeric(data.items())}


def compare_eval_rows(this: dict, other: dict) -> list[tuple[str, str, str]]:
    """(label, this, other) for each eval.json number both runs have: COMPARED_FIRST first."""
    a, b = eval_numbers(this), eval_numbers(other)
    keys = [k for k in COMPARED_FIRST if k in a and k in b] + [k for k in a if k in b and k not in COMPARED_FIRST]
    rows = [("split", str(this["split"]), str(other["split"]))] if "split" in this and "split" in other else []
    return rows + [(EVAL_LABELS.get(k, k), _number(a[k]), _number(b[k])) for k in keys]


def check_compared(run_dir: Path, others: list[Path]) -> None:
    """Every ``--compare`` is a run directory other than ``run_dir``."""
    for other in others:
        if not (other / RECIPE).is_file():
            raise RunDirError(f"--compare {other}: not a run directory ({RECIPE} is missing)")
        if other.resolve() == run_dir.resolve():
            raise InputError(f"--compare {other}: that is the run itself; name another run directory")


def comparison(run_dir: Path, other: Path, base: Path) -> Comparison:
    """``other`` beside ``run_dir``, its links relative to ``base`` (the page's folder)."""
    try:
        name = tomllib.loads((other / RECIPE).read_text(encoding="utf-8")).get("name", other.name)
    except tomllib.TOMLDecodeError as err:
        raise RunDirError(f"{other / RECIPE}: unreadable ({err})") from None
    here = {g.title: g for g in sample_groups(run_dir.resolve() / "samples", base)}
    there = {g.title: g for g in sample_groups(other.resolve() / "samples", base)}
    evals = [read_json(path / EVAL) if (path / EVAL).exists() else None for path in (run_dir, other)]
    return Comparison(
        name=str(name), run_dir=str(other),
        pairs=[(group, there[title]) for title, group in here.items() if title in there],
        eval_rows=compare_eval_rows(evals[0], evals[1]) if evals[0] is not None and evals[1] is not None else [],
        only_here=[title for title in here if title not in there],
        only_there=[title for title in there if title not in here])


def _latent_maps(run_dir: Path, base: Path) -> list[dict]:
    maps = []
    for path in sorted((run_dir / MAP_FOLDER).glob("*.json")):
        info = read_json(path)
        png = path.parent / info["png"]
        if png.exists():
            maps.append({**info, "href": _href(png, base), "csv_href": _href(path.parent / info["csv"], base)})
    return maps


def write_report(run_dir: Path, *, out: Path | None = None, latent_map: bool = True, device: str = "auto",
                 compare=(), echo=print) -> list[Path]:
    """Render the page (and draw the curves and a latent map where missing); returns the files written.

    ``compare``: other run directories, each shown beside this run (samples, eval numbers)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    run_dir = Path(run_dir)
    if not (run_dir / RECIPE).is_file():
        raise RunDirError(f"{run_dir}: not a run directory ({RECIPE} is missing)")
    others = [Path(other) for other in compare]
    check_compared(run_dir, others)
    out = Path(out) if out is not None else run_dir / REPORT
    base = out.parent.resolve()
    comparisons = [comparison(run_dir, other, base) for other in others]   # bad input fails before any write
    written: list[Path] = []
    if not (run_dir / CURVES).exists():
        written += write_curves(run_dir)
    map_note = None
    if latent_map and not list((run_dir / MAP_FOLDER).glob("*.json")):
        from vaezoo.analysis.latent_map import make_latent_map
        from vaezoo.train.runs import open_run

        try:
            _, files = make_latent_map(open_run(run_dir, device=device), echo=echo)
            written += files
        except VaezooError as err:   # no weights yet, data not installed: the page still comes out
            map_note = f"no latent map: {err}"
            echo(f"note: {map_note}")

    recipe_text = (run_dir / RECIPE).read_text(encoding="utf-8")
    recipe = tomllib.loads(recipe_text)
    metrics = read_metrics(run_dir / METRICS) if (run_dir / METRICS).exists() else []
    run_abs = run_dir.resolve()
    context = {
        "name": recipe.get("name", run_dir.name),
        "modality": recipe.get("modality", "?"),
        "run_dir": str(run_dir),
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "version": __version__,
        "recipe_text": recipe_text,
        "training": training_rows(metrics),
        "curves": _href(run_abs / CURVES, base) if (run_dir / CURVES).exists() else None,
        "adversarial_curves": adversarial(series(metrics)),
        "eval_rows": eval_rows(run_dir / EVAL) if (run_dir / EVAL).exists() else [],
        "groups": sample_groups(run_abs / "samples", base),
        "maps": _latent_maps(run_abs, base),
        "map_note": map_note,
        "method_names": METHODS,
        "comparisons": comparisons,
    }
    env = Environment(loader=PackageLoader("vaezoo.analysis", "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    write_text(out, env.get_template("report.html").render(**context))
    return written + [out]
