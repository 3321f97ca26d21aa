"""VAE-GAN against the plain VAE, at an equal wall-clock budget (issue "VAE-GAN").

Every row trains two models one after the other in this process, from the same seed:

1. the VAE-GAN by its recipe (the plain twin plus an [adversarial] section), whose training
   seconds T are the sum of its metrics.jsonl "timing" records (the epochs' steps and hooks,
   validation left out);
2. the plain twin with ``train.max_steps`` = round(T * r), r being the plain model's steps
   per second, so that it trains for about T seconds too (its cosine learning-rate schedule
   then runs over those steps, and ``train.epochs`` is raised to hold them). r is measured on
   the VAE-GAN's own epochs before its adversarial phase (the same network, a plain VAE step
   until then, on the machine as loaded at the time; the first epoch is left out when later
   ones exist), or, when no whole epoch precedes the phase (or --calibration-steps is set), by
   a short calibration run of the plain twin. Each record's "budget" says which, and how close
   the plain run's seconds came (``ratio`` = plain seconds / VAE-GAN seconds).

Rows:

- fmnist: recipes/fashion-mnist-quick.toml against recipes/fashion-mnist-vaegan-quick.toml
  (the same conv VAE plus the stage). Figures: fid_prior (FID-FMNIST of --fid-examples
  decoded prior samples, the decoder's mean image), fid_recon (of the first --fid-examples
  test images' reconstructions from their posterior means), both against the first
  --fid-examples test images in the feature space of benchmarks/fid_fmnist.py's classifier
  (cached in benchmarks/.cache/); and the price in likelihood: test IW-NLL with k importance
  samples on the first --fmnist-test-examples test images (``vaezoo eval``'s path,
  evaluate_split on the best weights; during the adversarial phase the trainer keeps the latest
  weights as best), with the ELBO, its KL, active units and MI. The trainer's end-of-training
  PNG grids (64 prior samples, reconstructions of 8 validation images) are reported as paths.
  Both recipes put a Bernoulli on [0, 1] intensities, so the NLL is a cross-entropy in nats
  per image.
- klettres: recipes/klettres-quick.toml against recipes/klettres-vaegan-quick.toml (the
  same mel VAE plus the stage, multi-scale discriminator). Figures over every clip of the test
  recordings (tiled into 64-frame clips, padding skipped), from their reconstructions (the
  decoder's mean at the posterior mean): mel L1 and log-spectral distance in dB (the audio
  plugin's extra_metrics, ``mel_errors``), test ELBO and IW-NLL (k = --klettres-k), and two
  harmonic-structure measures computed the same way on the reconstructions and on the
  originals (the reference), over the "loud" frames only (real frames whose original energy,
  summed over mel bands, is within 30 dB of the loudest frame of the same recording) and over
  the mel bands centred at or below --harmonic-max-hz (2 kHz: there the mel bands, 27 to 100 Hz
  wide, resolve the harmonics of a voice):
  - spectral_flatness: per frame, geometric mean / arithmetic mean of the mel power spectrum
    (Wiener entropy; 1 = flat like white noise, towards 0 = peaky, tonal), averaged over the
    frames. A blurred (over-smoothed) spectrogram is flatter than the original.
  - peak_contrast_db: per frame, the local maxima along the mel bands, each scored by how far
    it stands above the higher of its two valleys (the minima of the 3 bands on either side),
    in dB; averaged over the frame's peaks, then over the frames. Sharp harmonics give tall
    peaks; with peaks_per_frame beside it.
  "closer" in the summary is |model - original|, smaller being more like the recordings.
  WAVs: ``vaezoo reconstruct RUN FILES --out RUN/test-reconstructions`` on the first
  --wav-recordings test recordings (the same files for both models; the CLI takes the first 64
  frames of each trimmed recording): the input's log-mel and its reconstruction, both inverted
  by the same Griffin-Lim (so the comparison is not the vocoder's), and a PNG of the pair.

Until the VAE-GAN recipes exist, the plain twins with the [adversarial] overrides of
FALLBACK are used (the record says so in "vaegan_recipe").

    make bench-vaegan                                  # both rows, about 20 minutes on 2 busy cores
    .venv/bin/python benchmarks/vaegan.py --rows fmnist
    .venv/bin/python benchmarks/vaegan.py --fmnist-epochs 1 --fmnist-start-step 400 --fid-examples 2000 \\
        --fmnist-test-examples 200 -k 50 --klettres-epochs 4 --klettres-start-step 153 --out /tmp/vaegan-smoke.jsonl
                                                       # a smoke run of about 3 minutes

Prints one JSON line per trained model and a summary line, and writes the same lines to
benchmarks/results/vaegan.jsonl (--out; rewritten after every model, so an interrupted run
keeps what it finished). Progress goes to stderr. Run directories go under
benchmarks/.runs/vaegan/ROW/{vaegan,plain,calibration} (ignored by git; --work), replaced on
every run.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fid_fmnist  # noqa: E402
from fresh_runs import Trained, fresh_run  # noqa: E402
from results_log import ResultsFile, add_run_options, eval_figures, logger, parse_run_args, r4  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
log = logger("vaegan")
RESULTS = ROOT / "benchmarks" / "results" / "vaegan.jsonl"
ROWS = ("fmnist", "klettres")
# (plain twin, VAE-GAN) recipes per row; the VAE-GAN's stand-in overrides while its recipe is missing.
RECIPES = {"fmnist": ("fashion-mnist-quick", "fashion-mnist-vaegan-quick"),
           "klettres": ("klettres-quick", "klettres-vaegan-quick")}
FALLBACK = {
    "fmnist": ["adversarial.enabled=true", "adversarial.start_step=540"],
    "klettres": ["adversarial.enabled=true", 'adversarial.discriminator="multiscale"', "adversarial.start_step=1020"],
}
ADVERSARIAL_FIGURES = ("disc_loss", "disc_real", "disc_fake", "gen_adversarial", "feature_matching")
DEFAULT_CALIBRATION_STEPS = 200
LOUD_DB = 30.0      # loud frames: within this many dB of the recording's loudest
VALLEY_BANDS = 3    # peak_contrast_db: the valleys are the minima of this many bands on either side


def rel(path: Path | str) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def recipe_path(name: str) -> Path:
    return Path(name) if name.endswith(".toml") or "/" in name else ROOT / "recipes" / f"{name}.toml"


# -- training --------------------------------------------------------------------------------------


def common_overrides(args: argparse.Namespace) -> list[str]:
    return [f"seed={args.seed}", f"train.threads={args.threads}", "train.tensorboard=false", "eval.at_end=false",
            'train.device="cpu"']


def recipe_differences(plain, vaegan) -> list[str]:
    """Keys (outside [adversarial] and the name) where the VAE-GAN recipe differs from its twin."""
    a, b = plain.to_dict(), vaegan.to_dict()
    out = []
    for section in sorted(set(a) | set(b)):
        if section in ("name", "adversarial"):
            continue
        x, y = a.get(section), b.get(section)
        if isinstance(x, dict) and isinstance(y, dict):
            out += [f"{section}.{k}: {x.get(k)!r} -> {y.get(k)!r}" for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k)]
        elif x != y:
            out.append(f"{section}: {x!r} -> {y!r}")
    return out


def rate_before_phase(t: Trained) -> tuple[float, list[int]] | None:
    """Steps per second of the VAE-GAN's whole epochs before its phase (the first left out when
    later ones exist), and which epochs; None when no whole epoch precedes it."""
    if t.adversarial_start is None:
        return None
    before = [e for e in t.epochs if e["last"] <= t.adversarial_start and e["last"] - e["first"] == t.steps_per_epoch]
    if len(before) > 1:
        before = before[1:]
    if not before:
        return None
    seconds = sum(e["seconds"] for e in before)
    return sum(e["last"] - e["first"] for e in before) / seconds, [e["epoch"] for e in before]


def adversarial_rate(t: Trained) -> float | None:
    """Steps per second of the VAE-GAN's epochs wholly inside its phase."""
    if t.adversarial_start is None:
        return None
    inside = [e for e in t.epochs if e["first"] >= t.adversarial_start]
    seconds = sum(e["seconds"] for e in inside)
    return sum(e["last"] - e["first"] for e in inside) / seconds if seconds else None


def train_pair(row: str, args: argparse.Namespace) -> tuple[dict, dict]:
    """The row's VAE-GAN, then its plain twin at the same training seconds; (vaegan, plain) info."""
    from vaezoo.plugin.recipes import load_recipe

    plain_name, vaegan_name = getattr(args, f"{row}_plain"), getattr(args, f"{row}_vaegan")
    plain_path, vaegan_path = recipe_path(plain_name), recipe_path(vaegan_name)
    budget: list[str] = []
    if getattr(args, f"{row}_epochs"):
        budget.append(f"train.epochs={getattr(args, f'{row}_epochs')}")
    if row == "fmnist" and args.fmnist_train_examples:
        budget.append(f"data.max_train_examples={args.fmnist_train_examples}")
    stage: list[str] = []
    if vaegan_path.exists():
        vaegan_source = rel(vaegan_path)
    else:
        log(f"{row}: {rel(vaegan_path)} does not exist yet: {rel(plain_path)} with {' '.join(FALLBACK[row])}")
        vaegan_path, stage = plain_path, list(FALLBACK[row])
        vaegan_source = f"{rel(plain_path)} + {' '.join(FALLBACK[row])}"
    start_step = getattr(args, f"{row}_start_step")
    if start_step >= 0:   # this step exactly: not deferred to the end of a KL warm-up
        stage += [f"adversarial.start_step={start_step}", "adversarial.after_kl_warmup=false"]
    vaegan_overrides = budget + stage
    vaegan_recipe = load_recipe(vaegan_path, common_overrides(args) + vaegan_overrides)
    if not vaegan_recipe.adversarial.enabled:
        raise SystemExit(f"{vaegan_source}: [adversarial] enabled is false")
    differences = recipe_differences(load_recipe(plain_path, []), load_recipe(vaegan_path, stage))

    v = fresh_run(f"{row}/vaegan", vaegan_recipe, args.work / row / "vaegan", log)
    if v.adversarial_start is None:
        log(f"{row}/vaegan: WARNING: the adversarial phase never began ({v.result.steps} steps, start step "
            f"{vaegan_recipe.adversarial.start_step}): lower --{row}-start-step or raise --{row}-epochs")
    target = v.train_seconds
    measured = None if args.calibration_steps else rate_before_phase(v)
    if measured is not None:
        rate, epochs_used = measured
        how = (f"plain steps/s from the VAE-GAN's epochs {epochs_used} before its phase (step "
               f"{v.adversarial_start}): {rate:.2f} steps/s")
        calibration = None
    else:
        steps = args.calibration_steps or DEFAULT_CALIBRATION_STEPS
        c = fresh_run(f"{row}/calibration", load_recipe(plain_path, common_overrides(args) + budget + [
            f"train.max_steps={steps}", "train.samples=0"]), args.work / row / "calibration", log)
        rate = c.result.steps / c.train_seconds
        how = f"plain steps/s from a calibration run of {c.result.steps} plain steps: {rate:.2f} steps/s"
        calibration = {"steps": c.result.steps, "train_seconds": round(c.train_seconds, 1),
                       "fit_seconds": round(c.fit_seconds, 1)}
    max_steps = max(1, round(target * rate))
    plain_recipe = load_recipe(plain_path, common_overrides(args) + budget)
    same_batches = (plain_recipe.to_dict().get("data") == vaegan_recipe.to_dict().get("data")
                    and plain_recipe.train.batch_size == vaegan_recipe.train.batch_size
                    and plain_recipe.train.grad_accum == vaegan_recipe.train.grad_accum)
    epochs = math.ceil(max_steps / v.steps_per_epoch) if same_batches else max_steps
    plain_overrides = ([o for o in budget if not o.startswith("train.epochs=")]
                       + [f"train.max_steps={max_steps}", f"train.epochs={max(epochs, 1)}"])
    log(f"{row}: the VAE-GAN trained {v.result.steps} steps in {target:.1f}s; {how}; the plain twin gets "
        f"{max_steps} steps")
    p = fresh_run(f"{row}/plain", load_recipe(plain_path, common_overrides(args) + plain_overrides), args.work / row / "plain",
                  log)
    log(f"{row}/plain: {p.result.steps} steps in {p.train_seconds:.1f}s ({p.train_seconds / max(target, 1e-9):.2f}x "
        "the VAE-GAN's seconds)")
    phase_rate = adversarial_rate(v)
    vaegan_info = {
        "model": "vaegan", "recipe": vaegan_source, "overrides": vaegan_overrides, "trained": v,
        "extra": {
            "adversarial": {k: getattr(vaegan_recipe.adversarial, k) for k in
                            ("discriminator", "loss", "adversarial_weight", "feature_matching_weight", "likelihood_weight",
                             "prior_samples", "freeze_encoder", "lr")},
            "adversarial_start": v.adversarial_start,
            "adversarial_steps": v.result.steps - v.adversarial_start if v.adversarial_start is not None else 0,
            "recipe_differences_from_plain": differences,
            "steps_per_second_before_phase": r4(measured[0]) if measured else None,
            "steps_per_second_in_phase": r4(phase_rate),
            **{f"last_{k}": r4(v.last_train_record[k]) for k in ADVERSARIAL_FIGURES if k in v.last_train_record},
        },
    }
    plain_info = {
        "model": "plain", "recipe": rel(plain_path), "overrides": plain_overrides, "trained": p,
        "extra": {"budget": {"target_seconds": round(target, 1), "how": how, "plain_steps_per_second": r4(rate),
                             "max_steps": max_steps, "train_seconds": round(p.train_seconds, 1),
                             "ratio": round(p.train_seconds / max(target, 1e-9), 3), "calibration": calibration}},
    }
    return vaegan_info, plain_info


def base_record(row: str, info: dict, run) -> dict:
    t: Trained = info["trained"]
    return {"row": row, "model": info["model"], "recipe": info["recipe"], "overrides": info["overrides"],
            "run_dir": rel(run.path), "epochs": run.recipe.train.epochs, "max_steps": run.recipe.train.max_steps,
            "steps": t.result.steps, "weights": run.weights, "weights_step": run.weights_step,
            "parameters": sum(p.numel() for p in run.vae.parameters()),
            "train_seconds": round(t.train_seconds, 1), "fit_seconds": round(t.fit_seconds, 1)}


def sample_files(t: Trained) -> dict:
    files = [Path(f) for f in t.result.files]
    return {"prior_samples_png": [rel(f) for f in files if f.name.startswith("prior") and f.suffix == ".png"],
            "reconstructions_png": [rel(f) for f in files if f.name.startswith("reconstructions") and f.suffix == ".png"]}


# -- Fashion-MNIST -------------------------------------------------------------------------------------


def fmnist_row(args: argparse.Namespace, emit) -> list[dict]:
    from vaezoo.train.evaluation import evaluate_split
    from vaezoo.train.runs import open_run

    net, meta = fid_fmnist.feature_network(args.classifier_epochs, args.seed, echo=log)
    reference, floor = fid_fmnist.references(net, args.fid_examples, args.seed)
    log(f"FID-FMNIST of {args.fid_examples} training images against the test images: {floor:.3f}")
    pair = train_pair("fmnist", args)
    records = []
    for info in pair:
        label = f"fmnist/{info['model']}"
        run = open_run(info["trained"].result.run_dir, device="cpu")
        log(f"{label}: test IW-NLL (k={args.k}, {args.fmnist_test_examples} images)")
        started = time.perf_counter()
        e = evaluate_split(run.modality, run.vae, "test", device=run.device, iw_samples=args.k,
                           max_examples=args.fmnist_test_examples, show_progress=False)
        eval_seconds = time.perf_counter() - started
        log(f"{label}: IW-NLL {e.iw_nll:.2f}; FID-FMNIST of {args.fid_examples} prior samples and reconstructions")
        started = time.perf_counter()
        fid_prior = fid_fmnist.fid(net, fid_fmnist.prior_samples(run.vae, args.fid_examples, args.seed), reference)
        fid_recon = fid_fmnist.fid(net, fid_fmnist.reconstructions(run, args.fid_examples), reference)
        log(f"{label}: fid_prior {fid_prior:.2f}, fid_recon {fid_recon:.2f}")
        record = {**base_record("fmnist", info, run), **eval_figures(e),
                  "fid_prior": round(fid_prior, 3), "fid_recon": round(fid_recon, 3), "fid_examples": args.fid_examples,
                  "fid_train_vs_test": round(floor, 3),
                  "fid_classifier_accuracy": float(meta["test_accuracy"]),
                  **sample_files(info["trained"]), **info["extra"],
                  "eval_seconds": round(eval_seconds, 1), "fid_seconds": round(time.perf_counter() - started, 1)}
        records.append(record)
        emit(record)
        del run
    return records


# -- klettres ------------------------------------------------------------------------------------------


def band_centres(modality) -> torch.Tensor:
    """Centre frequency (Hz) of every mel band: the peak of its triangular filter."""
    fb = modality.front_end.mel.mel_scale.fb                 # [n_freqs, n_mels]
    freqs = torch.linspace(0, modality.recipe.features.sample_rate / 2, fb.shape[0])
    return freqs[fb.argmax(0)]


@torch.no_grad()
def test_spectra(run, batch_size: int = 50) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-mel of every test clip and of its reconstruction ([N, M, T], natural log of mel
    power), the clips' real frames [N] and recordings [N] (the tiled test set's plan)."""
    from vaezoo.core.batches import to_device
    from vaezoo.core.data import split_batches

    originals, outputs, lengths = [], [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.recipe.seed)
        for batch in split_batches(run.modality, "test", batch_size):
            _, px = run.vae.reconstruct(to_device(batch, run.device))
            originals.append(run.modality.log_mel(batch["x"]))
            outputs.append(run.modality.log_mel(px.mean))
            lengths.append(batch["length"].cpu())
    dataset = run.modality.dataset("test")
    recordings = torch.tensor([f for f, _ in dataset.plan]) if hasattr(dataset, "plan") else torch.arange(len(dataset))
    if len(recordings) != sum(len(x) for x in originals):
        raise RuntimeError(f"{len(recordings)} test clips in the plan, {sum(len(x) for x in originals)} evaluated")
    return torch.cat(originals), torch.cat(outputs), torch.cat(lengths), recordings


def loud_frames(log_mel: torch.Tensor, lengths: torch.Tensor, recordings: torch.Tensor) -> torch.Tensor:
    """[N, T] mask: real frames whose energy is within LOUD_DB of the loudest frame of their recording."""
    from vaezoo_audio.features import DB_PER_NEPER

    energy = torch.logsumexp(log_mel, dim=1) * DB_PER_NEPER                          # [N, T] dB
    real = torch.arange(log_mel.shape[-1]).unsqueeze(0) < lengths.unsqueeze(1)
    energy = energy.masked_fill(~real, -math.inf)
    loudest = torch.full((int(recordings.max()) + 1,), -math.inf).scatter_reduce(
        0, recordings, energy.amax(1), reduce="amax")
    return real & (energy >= loudest[recordings].unsqueeze(1) - LOUD_DB)


def harmonic_figures(log_mel: torch.Tensor, frames: torch.Tensor, bands: torch.Tensor) -> dict:
    """spectral_flatness, peak_contrast_db and peaks_per_frame (module docstring) of ``log_mel``
    [N, M, T] over the ``frames`` [N, T] mask and the ``bands`` [M] mask."""
    from vaezoo_audio.features import DB_PER_NEPER

    x = log_mel[:, bands].transpose(1, 2)[frames].double()                           # [F, B] ln power
    m = x.shape[1]
    log_flatness = x.mean(1) - (torch.logsumexp(x, 1) - math.log(m))                  # ln(geometric / arithmetic)
    db = x * DB_PER_NEPER
    w = VALLEY_BANDS
    padded = torch.nn.functional.pad(db, (w, w), value=math.inf)                      # edges: no valley there
    windows = padded.unfold(1, 2 * w + 1, 1)                                          # [F, B, 2w + 1]
    left, right = windows[..., :w].amin(-1), windows[..., w + 1:].amin(-1)
    inner = torch.zeros_like(db, dtype=torch.bool)
    inner[:, 1:-1] = (db[:, 1:-1] > db[:, :-2]) & (db[:, 1:-1] >= db[:, 2:])
    height = db - torch.maximum(left, right)
    peaks = inner.sum(1)
    contrast = torch.where(inner, height, torch.zeros_like(height)).sum(1) / peaks.clamp_min(1)
    with_peaks = peaks > 0
    return {"spectral_flatness": r4(log_flatness.exp().mean().item()),
            "peak_contrast_db": r4(contrast[with_peaks].mean().item()) if with_peaks.any() else None,
            "peaks_per_frame": r4(peaks.double().mean().item())}


def write_wavs(run_dir: Path, files: list[Path], args: argparse.Namespace) -> list[str]:
    """``vaezoo reconstruct RUN FILES --out RUN/test-reconstructions``; the files it wrote (WAVs, a PNG)."""
    vaezoo = Path(sys.executable).parent / "vaezoo"
    out = run_dir / "test-reconstructions"
    shutil.rmtree(out, ignore_errors=True)
    done = subprocess.run([str(vaezoo), "reconstruct", str(run_dir), *map(str, files), "--out", str(out),
                           "--device", "cpu", "--seed", str(args.seed)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"vaezoo reconstruct {rel(run_dir)} failed (exit status {done.returncode})")
    return [rel(line.removeprefix("wrote ").strip()) for line in done.stdout.splitlines() if line.startswith("wrote ")]


def klettres_row(args: argparse.Namespace, emit) -> list[dict]:
    from vaezoo.train.evaluation import evaluate_split
    from vaezoo.train.runs import open_run

    pair = train_pair("klettres", args)
    records = []
    wav_sources: list[Path] | None = None
    for info in pair:
        label = f"klettres/{info['model']}"
        run = open_run(info["trained"].result.run_dir, device="cpu")
        log(f"{label}: test ELBO, IW-NLL (k={args.klettres_k}), mel L1 and LSD")
        started = time.perf_counter()
        e = evaluate_split(run.modality, run.vae, "test", device=run.device, iw_samples=args.klettres_k,
                           max_examples=0, show_progress=False)
        originals, outputs, lengths, recordings = test_spectra(run)
        frames = loud_frames(originals, lengths, recordings)
        bands = band_centres(run.modality) <= args.harmonic_max_hz
        ours, reference = harmonic_figures(outputs, frames, bands), harmonic_figures(originals, frames, bands)
        eval_seconds = time.perf_counter() - started
        test_files = run.modality.source.files["test"]   # type: ignore[attr-defined]  # the audio modality's
        if wav_sources is None:
            wav_sources = test_files[:args.wav_recordings]
        elif wav_sources != test_files[:args.wav_recordings]:
            log(f"{label}: WARNING: its test recordings differ from the other model's")
        log(f"{label}: mel L1 {e.extra.get('mel_l1_db', float('nan')):.2f} dB, LSD {e.extra.get('lsd_db', float('nan')):.2f} "
            f"dB, flatness {ours['spectral_flatness']} (originals {reference['spectral_flatness']}); WAVs")
        started = time.perf_counter()
        written = write_wavs(run.path, wav_sources, args)
        record = {**base_record("klettres", info, run), **eval_figures(e),
                  "test_recordings": len(test_files), "test_clips": len(originals),
                  "mel_l1_db": r4(e.extra.get("mel_l1_db")), "lsd_db": r4(e.extra.get("lsd_db")),
                  **ours, **{f"original_{k}": v for k, v in reference.items()},
                  "loud_frames": int(frames.sum()), "real_frames": int(lengths.sum()),
                  "harmonic_bands": int(bands.sum()), "harmonic_max_hz": args.harmonic_max_hz,
                  "wav_recordings": [rel(f) for f in wav_sources],
                  "wavs": [f for f in written if f.endswith(".wav")],
                  "wavs_png": [f for f in written if f.endswith(".png")],
                  **sample_files(info["trained"]), **info["extra"],
                  "eval_seconds": round(eval_seconds, 1), "wav_seconds": round(time.perf_counter() - started, 1)}
        records.append(record)
        emit(record)
        del run
    return records


# -- summary ---------------------------------------------------------------------------------------


def diff(a: dict, b: dict, key: str) -> float | None:
    return None if a.get(key) is None or b.get(key) is None else round(a[key] - b[key], 4)


def summarise(records: list[dict], extra: dict) -> dict:
    summary: dict = {"summary": True, **extra}
    for row in ROWS:
        models = {r["model"]: r for r in records if r["row"] == row}
        v, p = models.get("vaegan"), models.get("plain")
        if not (v and p):
            continue
        out = {"train_seconds": {"vaegan": v["train_seconds"], "plain": p["train_seconds"]},
               "steps": {"vaegan": v["steps"], "plain": p["steps"]},
               "budget_ratio": p["budget"]["ratio"], "budget_how": p["budget"]["how"],
               "adversarial_steps": v["adversarial_steps"]}
        if row == "fmnist":
            out["vaegan_minus_plain"] = {k: diff(v, p, k) for k in ("fid_prior", "fid_recon", "iw_nll", "elbo", "kl")}
        else:
            keys = ("mel_l1_db", "lsd_db", "iw_nll", "elbo", "spectral_flatness", "peak_contrast_db")
            out["vaegan_minus_plain"] = {k: diff(v, p, k) for k in keys}
            out["original"] = {k: v[f"original_{k}"] for k in ("spectral_flatness", "peak_contrast_db")}
            out["distance_to_original"] = {
                k: {m: None if r[k] is None else round(abs(r[k] - r[f"original_{k}"]), 4) for m, r in models.items()}
                for k in ("spectral_flatness", "peak_contrast_db")}
        summary[row] = out
    return summary


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of: {', '.join(ROWS)}")
    for row, (plain, vaegan) in RECIPES.items():
        p.add_argument(f"--{row}-plain", default=plain, help="the plain twin: a recipe name or .toml path")
        p.add_argument(f"--{row}-vaegan", default=vaegan, help="the VAE-GAN: a recipe name or .toml path")
        p.add_argument(f"--{row}-epochs", type=int, default=0, help="the VAE-GAN's train.epochs (0 = its recipe's)")
        p.add_argument(f"--{row}-start-step", type=int, default=-1,
                       help="the VAE-GAN's adversarial.start_step, with after_kl_warmup = false (-1 = its recipe's)")
    p.add_argument("--fmnist-train-examples", type=int, default=0, help="data.max_train_examples of both (0 = all 54,000)")
    p.add_argument("--fmnist-test-examples", type=int, default=1000, help="first N test images of the IW-NLL")
    p.add_argument("-k", type=int, default=200, help="importance samples of the Fashion-MNIST IW-NLL")
    p.add_argument("--fid-examples", type=int, default=10_000, help="samples, reconstructions and test images of FID-FMNIST")
    p.add_argument("--classifier-epochs", type=int, default=3, help="the FID-FMNIST classifier's (selects its cache file)")
    p.add_argument("--klettres-k", type=int, default=20, help="importance samples of the klettres IW-NLL (the recipe's)")
    p.add_argument("--harmonic-max-hz", type=float, default=2000.0, help="mel bands of the harmonic measures: centre <= this")
    p.add_argument("--wav-recordings", type=int, default=6, help="test recordings reconstructed to WAV per model")
    p.add_argument("--calibration-steps", type=int, default=0,
                   help="measure the plain model's speed by a calibration run of this many steps (0 = from the "
                        f"VAE-GAN's epochs before its phase when there is one, else {DEFAULT_CALIBRATION_STEPS} steps)")
    add_run_options(p, "vaegan", RESULTS)
    return parse_run_args(p, ROWS)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from vaezoo.core.progress import progress_bars

    results = ResultsFile(args.out, "vaegan.py", args.threads, args.seed,
                          budget="equal training seconds (metrics.jsonl timing records): the plain twin's "
                                 "train.max_steps = the VAE-GAN's seconds x the plain model's steps per second")
    with progress_bars(False):
        if "fmnist" in args.rows:
            fmnist_row(args, results.emit)
        if "klettres" in args.rows:
            klettres_row(args, results.emit)
    results.finish(summarise)


if __name__ == "__main__":
    main()
