"""Real-time factor of the mel-spectrogram VAE, and what the KL term costs in reconstruction.

Two measurements on one machine (2 CPU threads unless --threads says otherwise):

1. Real-time factor (seconds of audio made per second of compute) of
   - generation: prior sample -> decoder -> log-mel -> InverseMelScale + NNLS -> Griffin-Lim,
   - reconstruction: test clips -> encoder -> decoder -> the same inversion,
   each split into model time (the networks) and inversion time (mel -> linear -> waveform),
   the median of --repeats timed batches of --clips clips after one warm-up batch. The
   front end (decode the file, resample, log-mel) of reconstruction is timed separately.
   Target: >= 50x real time end to end (model + inversion).
2. Mel L1 and log-spectral distance (dB) of test-split reconstructions for the VAE and for a
   plain autoencoder of the same size: the same recipe with objective.beta = 0 (no KL term,
   no schedule, no free bits), trained for the same budget.

    .venv/bin/python benchmarks/audio_rtf.py                                # trains both (quick recipe)
    .venv/bin/python benchmarks/audio_rtf.py --vae-run runs/kq --ae-run runs/kq-ae   # reuse runs
    .venv/bin/python benchmarks/audio_rtf.py --recipe recipes/klettres-mel-vae.toml --epochs 5

Prints one JSON object per line: "rtf" (generation and reconstruction), one per model
("vae", "autoencoder"), then "comparison"; --json also writes them to a file as a list.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "klettres-quick.toml", help="the VAE recipe")
    p.add_argument("--vae-run", type=Path, help="use this trained run for the VAE instead of training one")
    p.add_argument("--ae-run", type=Path, help="use this trained run (beta = 0) for the autoencoder")
    p.add_argument("--epochs", type=int, help="training epochs for both (default: the recipe's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="recipe override applied to both trainings (repeatable)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads while timing")
    p.add_argument("--clips", type=int, default=32, help="clips per timed batch")
    p.add_argument("--repeats", type=int, default=5, help="timed batches (the median is reported)")
    p.add_argument("--eval-examples", type=int, default=0, help="test clips for the mel errors (0 = all)")
    p.add_argument("--only-rtf", action="store_true", help="skip the autoencoder comparison")
    p.add_argument("--out", type=Path, help="keep trained runs here (default: a temporary folder)")
    p.add_argument("--json", type=Path, help="also write the records to this file")
    return p.parse_args()


def train(recipe_path: Path, overrides: list[str], run_dir: Path, label: str) -> tuple[Path, float]:
    from vaezoo.plugin.recipes import load_recipe
    from vaezoo.train.trainer import Trainer

    recipe = load_recipe(recipe_path, overrides)
    started = time.perf_counter()
    Trainer(recipe, run_dir, progress_bar=False, echo=lambda msg: print(f"[{label}] {msg}", file=sys.stderr)).fit()
    return run_dir, time.perf_counter() - started


def median_time(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm-up: filters, FFT plans, allocator
    times, out = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def rtf_record(kind: str, audio_seconds: float, model_s: float, inverse_mel_s: float, griffin_lim_s: float, **extra) -> dict:
    inversion_s = inverse_mel_s + griffin_lim_s
    total = model_s + inversion_s
    return {
        "record": "rtf", "kind": kind, "audio_seconds": round(audio_seconds, 3),
        "model_seconds": round(model_s, 4), "inverse_mel_seconds": round(inverse_mel_s, 4),
        "griffin_lim_seconds": round(griffin_lim_s, 4), "inversion_seconds": round(inversion_s, 4),
        "model_rtf": round(audio_seconds / model_s, 1), "inversion_rtf": round(audio_seconds / inversion_s, 1),
        "end_to_end_rtf": round(audio_seconds / total, 1), "meets_50x": audio_seconds / total >= 50, **extra,
    }


def measure_rtf(run_dir: Path, args) -> list[dict]:
    import torch

    from vaezoo.train.runs import open_run

    torch.set_num_threads(args.threads)
    run = open_run(run_dir, device="cpu")
    modality, vae = run.modality, run.vae
    rate = modality.recipe.features.sample_rate
    audio_seconds = args.clips * modality.clip_samples / rate
    inverter = modality.inverter
    records = []
    load = os.getloadavg()[0]   # other work on the machine shows here; timings assume an idle one
    torch.manual_seed(0)

    # Generation: prior -> decoder means, then inversion of those.
    model_s, px = median_time(lambda: vae.sample(args.clips)[1], args.repeats)
    log_mel = modality.log_mel(px.mean)
    inverse_s, linear = median_time(lambda: inverter.linear_power(log_mel), args.repeats)
    gl_s, waves = median_time(lambda: inverter.griffin_lim(linear), args.repeats)
    assert waves.shape == (args.clips, modality.clip_samples)
    records.append(rtf_record("generation", audio_seconds, model_s, inverse_s, gl_s))

    # Reconstruction of test clips (tiles of the test recordings).
    test = modality.dataset("test")
    batch = modality.collate([test[i % len(test)] for i in range(args.clips)])
    model_s, px = median_time(lambda: vae.reconstruct(batch)[1], args.repeats)
    log_mel = modality.log_mel(px.mean)
    inverse_s, linear = median_time(lambda: inverter.linear_power(log_mel), args.repeats)
    gl_s, _ = median_time(lambda: inverter.griffin_lim(linear), args.repeats)
    # The front end from files on disk: decode, mix down, resample, log-mel (no cache).
    files = modality.source.files["test"][: args.clips]
    front_s, _ = median_time(lambda: modality.load_inputs([str(f) for f in files]), args.repeats)
    front_audio = len(files) * modality.clip_samples / rate   # load_inputs keeps one clip per file
    records.append(rtf_record("reconstruction", audio_seconds, model_s, inverse_s, gl_s,
                              front_end_seconds_per_clip=round(front_s / len(files), 4),
                              front_end_rtf=round(front_audio / front_s, 1)))
    for r in records:
        r.update({"threads": args.threads, "clips": args.clips, "clip_seconds": round(modality.clip_samples / rate, 3),
                  "griffin_lim_iterations": modality.recipe.inversion.iterations,
                  "nnls_iterations": modality.recipe.inversion.nnls_iterations, "run": str(run_dir),
                  "load_average_1m": round(load, 2)})
    return records


def mel_errors(run_dir: Path, label: str, args, train_seconds: float | None) -> dict:
    import torch

    from vaezoo.train.runs import open_run
    from vaezoo.train.evaluation import evaluate_split

    torch.set_num_threads(args.threads)
    run = open_run(run_dir, device="cpu")
    result = evaluate_split(run.modality, run.vae, "test", device=run.device, iw_samples=0,
                            max_examples=args.eval_examples or None)
    return {
        "record": "model", "model": label, "run": str(run_dir), "beta": run.recipe.objective.beta,
        "train_seconds": None if train_seconds is None else round(train_seconds, 1), "test_clips": result.n_examples,
        "mel_l1_db": round(result.extra["mel_l1_db"], 3), "lsd_db": round(result.extra["lsd_db"], 3),
        "elbo": round(result.elbo, 2), "kl": round(result.kl, 3), "active_units": result.active_units,
        "mutual_information": round(result.mutual_information, 3),  # over the test clips' aggregate posterior
        "mutual_information_bound": round(result.mutual_information_bound, 3),  # log N: MI cannot pass it
    }


def main() -> None:
    args = parse_args()
    budget = [f"train.epochs={args.epochs}"] if args.epochs else []
    base = ["train.tensorboard=false", "eval.at_end=false"] + budget + list(args.overrides)
    ae_overrides = base + ["objective.beta=0", "objective.kl_schedule=\"constant\"", "objective.free_bits=0"]
    records: list[dict] = []

    def emit(record: dict) -> None:
        records.append(record)
        print(json.dumps(record), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        vae_run, vae_seconds = args.vae_run, None
        if vae_run is None:
            vae_run, vae_seconds = train(args.recipe, base, out / "vae", "vae")
        for record in measure_rtf(vae_run, args):
            emit(record)
        if not args.only_rtf:
            ae_run, ae_seconds = args.ae_run, None
            if ae_run is None:
                ae_run, ae_seconds = train(args.recipe, ae_overrides, out / "autoencoder", "autoencoder")
            vae = mel_errors(vae_run, "vae", args, vae_seconds)
            ae = mel_errors(ae_run, "autoencoder", args, ae_seconds)
            emit(vae)
            emit(ae)
            emit({"record": "comparison", "mel_l1_db_vae_minus_ae": round(vae["mel_l1_db"] - ae["mel_l1_db"], 3),
                  "lsd_db_vae_minus_ae": round(vae["lsd_db"] - ae["lsd_db"], 3),
                  "mel_l1_ratio_vae_over_ae": round(vae["mel_l1_db"] / ae["mel_l1_db"], 3)})
    if args.json:
        args.json.write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
    main()
