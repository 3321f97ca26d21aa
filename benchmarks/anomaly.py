"""Anomaly detection on Fashion-MNIST: one class held out of training, scored on the test set.

For each held-out class c: train the MLP VAE of recipes/fashion-mnist-mlp.toml on the
training images of the nine other classes (a small budget: a few epochs, optionally a
subsample), score all 10,000 test images with `vaezoo.analysis.scoring.anomaly_scores` (-ELBO, and
importance-weighted -log p(x) with k samples), and report the ROC AUC of telling class c
(anomalous) from the nine others (normal). AUC 0.5 is chance; below 0.5 means the held-out
class looks *more* likely than the training classes (known for VAE likelihoods: simple,
low-variance images such as trousers or sandals score high whatever was trained on).

The nine-class training data is written as MNIST-format files into a temporary folder, so
the image plugin reads it like any other IDX folder (no plugin change needed).

    nice .venv/bin/python benchmarks/anomaly.py                 # all ten classes: 3 epochs on 30,000
                                                                # images, k = 50; 19 minutes on 2 busy cores
    .venv/bin/python benchmarks/anomaly.py --classes 0 8 --epochs 1

Prints one JSON line per held-out class and a summary line; writes the same lines to
benchmarks/results/anomaly.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vaezoo.core.files import write_text
from vaezoo.core.data import batches_in, split_batches
from vaezoo.plugin.recipes import load_recipe
from vaezoo.train.runs import open_run
from vaezoo.analysis.scoring import anomaly_scores, roc_auc
from vaezoo.train.trainer import Trainer
from vaezoo_image.data import find_idx, read_idx

ROOT = Path(__file__).resolve().parent.parent
DATA = Path("/usr/share/datasets/fashion-mnist")
RESULTS = ROOT / "benchmarks" / "results" / "anomaly.jsonl"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def write_idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed IDX file of unsigned bytes (magic 00 00 08 ndim, big-endian sizes, data)."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    with path.open("wb") as f:
        f.write(header)
        f.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def nine_class_folder(folder: Path, held_out: int, images: np.ndarray, labels: np.ndarray) -> None:
    """train-* without class ``held_out``; t10k-* linked unchanged (the test set keeps every class)."""
    keep = labels != held_out
    write_idx(folder / "train-images-idx3-ubyte", images[keep])
    write_idx(folder / "train-labels-idx1-ubyte", labels[keep])
    for kind in ("images-idx3", "labels-idx1"):
        source = find_idx(DATA, "t10k", kind)
        (folder / source.name).symlink_to(source)


def run_class(held_out: int, args, images: np.ndarray, labels: np.ndarray, test_labels: torch.Tensor, work: Path) -> dict:
    folder = work / f"data-{held_out}"
    folder.mkdir()
    nine_class_folder(folder, held_out, images, labels)
    overrides = [
        f"data.path={folder}", f"train.epochs={args.epochs}", f"data.max_train_examples={args.max_train}",
        "train.samples=0", "train.tensorboard=false",
        "train.val_max_examples=2000", "eval.at_end=false", f"train.threads={args.threads}", f"seed={args.seed}",
        f"name=anomaly-{held_out}",
    ]
    recipe = load_recipe(ROOT / "recipes" / "fashion-mnist-mlp.toml", overrides)
    run_dir = work / f"run-{held_out}"
    started = time.perf_counter()
    Trainer(recipe, run_dir, progress_bar=not args.no_progress, echo=lambda msg: print(msg, file=sys.stderr)).fit()
    train_seconds = time.perf_counter() - started

    run = open_run(run_dir, device="cpu")
    anomalous = test_labels == held_out
    record = {"held_out": held_out, "class": CLASSES[held_out], "train_examples": len(run.modality.dataset("train")),
              "epochs": args.epochs, "test_examples": len(anomalous), "anomalous": int(anomalous.sum()),
              "train_seconds": round(train_seconds, 1)}
    started = time.perf_counter()
    for k, key in ((0, "auc_elbo"), (args.k, "auc_iw")):
        batches = split_batches(run.modality, "test", args.batch_size)
        scores = anomaly_scores(run.vae, batches, run.device, k=k, chunk_size=args.k, seed=args.seed,
                                total=batches_in(run.modality, "test", args.batch_size))
        record[key] = round(roc_auc(scores, anomalous), 4)
    record["iw_samples"] = args.k
    record["score_seconds"] = round(time.perf_counter() - started, 1)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, nargs="+", default=list(range(10)), help="held-out classes (0-9)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-train", type=int, default=30000,
                        help="train on a seeded subsample of this size of the ~48,600 nine-class images (0 = all)")
    parser.add_argument("-k", type=int, default=50, help="importance samples of the IW score")
    parser.add_argument("--batch-size", type=int, default=500, help="test images scored at once")
    # One thread: on a shared machine two intra-op threads wait on each other (7x slower here).
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    images = read_idx(find_idx(DATA, "train", "images-idx3"))
    labels = read_idx(find_idx(DATA, "train", "labels-idx1"))
    test_labels = torch.from_numpy(read_idx(find_idx(DATA, "t10k", "labels-idx1")).astype(np.int64))
    lines = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vaezoo-anomaly-") as work:
        for held_out in args.classes:
            record = run_class(held_out, args, images, labels, test_labels, Path(work))
            print(json.dumps(record), flush=True)
            lines.append(json.dumps(record))
            write_text(args.out, "\n".join(lines) + "\n")   # partial results survive an interrupted run
    records = [json.loads(line) for line in lines]
    summary = {"summary": True, "classes": len(records), "epochs": args.epochs, "iw_samples": args.k,
               "mean_auc_elbo": round(float(np.mean([r["auc_elbo"] for r in records])), 4),
               "mean_auc_iw": round(float(np.mean([r["auc_iw"] for r in records])), 4),
               "total_seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(summary), flush=True)
    lines.append(json.dumps(summary))
    write_text(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
