"""Exported decoders against the Python model: latency and throughput per modality, and the
audio real-time factor of z -> waveform.

For each row a run is trained for one step from its quick recipe (the speed of a network does
not depend on its weights), exported with `vaezoo export` (TorchScript, and ONNX where it can
be), and its decoder is timed three ways on the same z, at batch 1 and batch 64:

- python: ``vae.decode(z).mean`` under ``torch.no_grad()`` (what vaezoo runs);
- torchscript: ``torch.jit.load(decoder.pt)(z)``;
- onnxruntime: ``InferenceSession(decoder.onnx).run`` (CPU provider).

Each figure is the median of --repeats calls after --warmup calls, with --threads torch and
ONNX Runtime threads; ``speedup`` is python's latency over the exported one's (side by side in
one process, so a busy machine slows all alike). The audio row adds the real-time factor
(seconds of audio per second of compute) of z -> waveform: the plugin's path (decode, then
inverse mel and Griffin-Lim with random phases, split over threads) against the exported
``output.pt`` (the same steps from zero phase in one TorchScript module). The text decoder is a
generation loop: its TorchScript file is the scripted greedy generator (ONNX is refused).

    make bench-export                     # every row, a few minutes on 2 cores
    .venv/bin/python benchmarks/export_speed.py --rows image --repeats 5

Prints one JSON line per row and a summary, and writes them to
benchmarks/results/export_speed.jsonl (--out). Runs go to benchmarks/.runs/export_speed/.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fresh_runs import fresh_run  # noqa: E402
from results_log import ResultsFile, add_run_options, logger, parse_run_args, r4  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "export_speed.jsonl"
#: row -> (recipe, overrides that keep its one training step cheap)
ROWS = {
    "image": ("recipes/fashion-mnist-quick.toml", []),
    "audio": ("recipes/klettres-quick.toml", ["train.samples=0"]),
    "tabular": ("tabular-health", []),
    "text": ("recipes/wordnet-quick.toml", []),
}
BATCHES = (1, 64)

log = logger("export_speed")


def median_seconds(call, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def one_step_run(row: str, args: argparse.Namespace):
    from vaezoo.plugin.recipes import load_recipe, resolve_recipe_path

    recipe, extra = ROWS[row]
    path = ROOT / recipe if recipe.endswith(".toml") else resolve_recipe_path(recipe)
    overrides = ["train.max_steps=1", "eval.at_end=false", "train.samples=0", "train.tensorboard=false",
                 f"train.threads={args.threads}", f"seed={args.seed}", *extra]
    return fresh_run(row, load_recipe(path, overrides), args.work / row, log).result.run_dir


def exported(run, folder: Path, fmt: str, part: str = "decoder") -> Path | str:
    """The exported file, or the one-line reason it could not be exported."""
    from vaezoo.analysis.export import export_run
    from vaezoo.core.errors import VaezooError

    try:
        done, _ = export_run(run, folder, [part], fmt)
    except VaezooError as err:
        return str(err)
    return folder / done[0].file


def decoder_row(row: str, args: argparse.Namespace) -> dict:
    import onnxruntime

    from vaezoo.train.runs import open_run

    run = open_run(one_step_run(row, args), device="cpu")
    record: dict = {"row": row, "recipe": ROWS[row][0], "latent_dim": run.vae.latent_dim,
                    "parameters": sum(p.numel() for p in run.vae.parameters())}
    script = exported(run, args.work / row / "torchscript", "torchscript")
    onnx = exported(run, args.work / row / "onnx", "onnx")
    if isinstance(script, str):
        record["refused"] = script
        return record
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.load(str(script)).eval()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = None if isinstance(onnx, str) else onnxruntime.InferenceSession(str(onnx), options,
                                                                              providers=["CPUExecutionProvider"])
    if isinstance(onnx, str):
        record["onnx_refused"] = onnx
    for n in BATCHES:
        z = torch.randn(n, run.vae.latent_dim, generator=torch.Generator().manual_seed(n))
        timings = {}
        with torch.no_grad():
            timings["python"] = median_seconds(lambda: run.vae.decode(z).mean, args.warmup, args.repeats)
            timings["torchscript"] = median_seconds(lambda: traced(z), args.warmup, args.repeats)
            if session is not None:
                feed = {"z": z.numpy()}
                timings["onnxruntime"] = median_seconds(lambda: session.run(None, feed), args.warmup, args.repeats)
        record[f"batch_{n}"] = {
            way: {"latency_ms": r4(1000 * s), "examples_per_second": round(n / s, 1),
                  "speedup": r4(timings["python"] / s)} for way, s in timings.items()}
        log(f"{row} batch {n}: " + ", ".join(f"{w} {1000 * s:.3f} ms" for w, s in timings.items()))
    if row == "audio":
        record["waveform"] = waveform_figures(run, args)
    return record


def waveform_figures(run, args: argparse.Namespace) -> dict:
    """Real-time factor of z -> waveform: the plugin's path against the exported output.pt."""
    output = exported(run, args.work / "audio" / "output", "torchscript", "output")
    if isinstance(output, str):
        return {"refused": output}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.load(str(output)).eval()
    modality, rate = run.modality, run.recipe.features.sample_rate
    figures = {}
    for n in BATCHES:
        z = torch.randn(n, run.vae.latent_dim, generator=torch.Generator().manual_seed(n))
        with torch.no_grad():
            waves = traced(z)
            seconds_of_audio = waves.shape[-1] * n / rate
            plugin = median_seconds(lambda: modality.to_waves(modality.log_mel(run.vae.decode(z).mean)),
                                    args.warmup, args.repeats)
            script = median_seconds(lambda: traced(z), args.warmup, args.repeats)
        figures[f"batch_{n}"] = {"seconds_of_audio": r4(seconds_of_audio),
                                 "plugin_real_time_factor": round(seconds_of_audio / plugin, 1),
                                 "exported_real_time_factor": round(seconds_of_audio / script, 1)}
        log(f"audio waveform batch {n}: plugin {seconds_of_audio / plugin:.1f}x, exported {seconds_of_audio / script:.1f}x")
    figures["griffin_lim_iterations"] = run.recipe.inversion.iterations
    return figures


def summarise(records: list[dict], info: dict) -> dict:
    summary = {"summary": True, **info}
    for r in records:
        if "refused" in r:
            summary[r["row"]] = {"refused": r["refused"]}
            continue
        summary[r["row"]] = {f"batch_{n}_speedup": {w: f["speedup"] for w, f in r[f"batch_{n}"].items()}
                             for n in BATCHES}
        if "waveform" in r:
            summary[r["row"]]["waveform_real_time_factor"] = {
                k: v for k, v in r["waveform"].items() if k.startswith("batch_")}
    return summary


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of: {', '.join(ROWS)}")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=20)
    add_run_options(p, "export_speed", RESULTS)
    args = parse_run_args(p, ROWS)
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from vaezoo.core.progress import progress_bars

    results = ResultsFile(args.out, "export_speed.py", args.threads, args.seed, warmup=args.warmup,
                          repeats=args.repeats)
    with progress_bars(False):
        for row in args.rows:
            results.emit(decoder_row(row, args))
    results.finish(summarise)


if __name__ == "__main__":
    main()
