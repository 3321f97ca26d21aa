"""A shareable model folder: the smallest run directory that samples, evaluates and opens.

    FOLDER/
        README.md          the model card: what it is, the data, the recipe, the figures, samples, how to load it
        model-folder.json  the folder's kind, run format and versions (vaezoo, the plugin)
        recipe.toml        the resolved recipe
        best.safetensors   the weights (best, or last when the run has no best)
        eval.json          the run's eval table, when it has one
        samples/           what the run's writers left (the end-of-training samples)
        ...                the plugin's fitted state, as fit() wrote it (a tokenizer, statistics)

Because it is laid out as a run directory, ``vaezoo sample FOLDER``, ``vaezoo eval FOLDER``
and ``vaezoo.open_run(FOLDER)`` take it as they take a run. The plugin's fitted state is every
file at the top of the run directory that the core did not write (``CORE_FILES``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from vaezoo.analysis.batched import ALL
from vaezoo.core.errors import InputError
from vaezoo.core.files import write_json, write_text
from vaezoo.core.version import __version__
from vaezoo.train.checkpoints import BEST, CHECKPOINTS, EVAL, METRICS, RECIPE
from vaezoo.train.formats import RUN_FORMAT

MANIFEST = "model-folder.json"
CARD = "README.md"
#: what the core writes at the top of a run directory (everything else is the plugin's state)
CORE_FILES = {RECIPE, BEST, EVAL, METRICS, CHECKPOINTS, "tensorboard", "samples", "samplers", "latent-map", "export", "model",
              "report.html", "curves.png", "scores.csv", "scores.json", MANIFEST, CARD}
CARD_SAMPLE_LINES = 10


def plugin_state(run_dir: Path) -> list[Path]:
    """The files of the run directory that the plugin's fit() wrote."""
    return sorted(p for p in run_dir.iterdir() if p.name not in CORE_FILES and not p.name.startswith(".")
                  and not p.name.startswith("latents-") and p.is_file())


def write_model_folder(run, out: Path) -> list[Path]:
    """Write ``run`` as a model folder at ``out`` (a new or empty folder); returns its files."""
    if out.exists() and any(out.iterdir()):
        raise InputError(f"--out {out}: the folder exists and is not empty; a model folder needs a new or empty one")
    if run.weights_path is None:
        raise InputError(f"{run.path}: no weights to share")
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        shutil.copy2(run.path / RECIPE, staging / RECIPE)
        shutil.copy2(run.weights_path, staging / BEST)
        for path in plugin_state(run.path):
            shutil.copy2(path, staging / path.name)
        if (run.path / EVAL).is_file():
            shutil.copy2(run.path / EVAL, staging / EVAL)
        if (run.path / "samples").is_dir():   # the previews; not a large request's every-example files
            shutil.copytree(run.path / "samples", staging / "samples",
                            ignore=shutil.ignore_patterns(f"*{ALL}.safetensors", f"*{ALL}.txt"))
        write_json(staging / MANIFEST, manifest(run))
        write_text(staging / CARD, model_card(run, staging))
        if out.exists():
            out.rmdir()
        staging.rename(out)      # the folder appears whole, or not at all
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(p for p in out.rglob("*") if p.is_file())


def manifest(run) -> dict:
    meta = run.metadata
    return {"kind": "vaezoo model folder", "run_format": RUN_FORMAT, "vaezoo_version": __version__,
            "modality": run.recipe.modality, "plugin_distribution": meta.get("plugin_distribution", ""),
            "plugin_version": meta.get("plugin_version", ""), "plugin_api_version": meta.get("plugin_api_version", ""),
            "weights": run.weights, "weights_step": run.weights_step, "source_run": str(run.path)}


def model_card(run, folder: Path) -> str:
    """README.md: what the model is, its data, recipe, figures, samples and how to load it."""
    r, meta = run.recipe, run.metadata
    name = folder.name if folder.name and not folder.name.startswith(".") else r.name
    lines = [f"# {r.name}: a vaezoo {r.modality} VAE", ""]
    parts = [f"latent size {r.latent.dim}", f"prior {r.prior.kind}", f"posterior {r.posterior.kind}",
             f"objective {r.objective.kind} (beta {r.objective.beta:g})"]
    if r.condition.enabled:
        parts.append(f"conditional on {r.condition.classes} classes ({', '.join(r.condition.names[:12])}"
                     f"{' ...' if r.condition.classes > 12 else ''})")
    if r.adversarial.enabled:
        parts.append("with an adversarial stage (VAE-GAN)")
    lines += [f"A variational autoencoder for the `{r.modality}` modality: {'; '.join(parts)}. "
              f"Weights: the {run.weights} of the run (step {run.weights_step}), written by vaezoo "
              f"{meta.get('vaezoo_version', '?')} in run format {meta.get('run_format', '1')}.", ""]
    plugin = meta.get("plugin_distribution") or "the plugin"
    lines += ["## Data", "", f"The {r.modality} plugin's sections of the recipe (paths are those of the machine it "
              "was trained on):", ""]
    data = {k: v for k, v in r.to_dict().items() if k not in ("modality", "name", "seed", "latent", "prior", "posterior",
                                                                "objective", "adversarial", "condition", "train", "eval")}
    lines += ["```toml", *_toml_lines(data), "```", ""]
    lines += ["## Figures", ""]
    eval_path = run.path / EVAL
    if eval_path.is_file():
        figures = json.loads(eval_path.read_text(encoding="utf-8"))
        lines += ["| figure | value |", "|---|---|"]
        for key in ("split", "n_examples", "elbo", "iw_nll", "iw_samples", "kl", "active_units", "mutual_information"):
            if figures.get(key) is not None:
                value = figures[key]
                lines.append(f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |")
        lines.append("")
    else:
        lines += ["No eval.json: run `vaezoo eval FOLDER` where the data is.", ""]
    lines += ["## Samples", ""]
    samples = sorted((folder / "samples").rglob("*")) if (folder / "samples").is_dir() else []
    for path in samples:
        rel = path.relative_to(folder).as_posix()
        if path.suffix == ".png":
            lines.append(f"![{path.stem}]({rel})")
        elif path.suffix in (".txt", ".csv"):
            head = path.read_text(encoding="utf-8", errors="replace").splitlines()[:CARD_SAMPLE_LINES]
            lines += [f"`{rel}`:", "", "```", *head, "```"]
        elif path.suffix == ".wav":
            lines.append(f"- [{path.name}]({rel})")
    if not samples:
        lines.append("None were written (the recipe's train.samples was 0).")
    lines += ["", "## How to load it", "",
              f"Install vaezoo and {plugin} {meta.get('plugin_version', '')} (plugin API "
              f"{meta.get('plugin_api_version', '?')}), then:", "", "```sh",
              f"vaezoo sample {name} -n 16" + (" --condition all" if r.condition.enabled else ""),
              f"vaezoo eval {name}            # needs the data the recipe names",
              f"vaezoo export {name} --part decoder   # TorchScript, to run without vaezoo",
              "```", "", "```python", "import vaezoo", f'run = vaezoo.open_run("{name}")',
              "z, px = run.vae.sample(8" + (", condition=0" if r.condition.enabled else "") + ")", "```", "",
              "## Recipe", "", "```toml", r.to_toml().rstrip(), "```", ""]
    return "\n".join(lines)


def _toml_lines(table: dict) -> list[str]:
    import tomli_w

    return tomli_w.dumps(table).rstrip().splitlines() if table else ["# (none)"]
