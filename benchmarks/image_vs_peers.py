"""Side-by-side: vaezoo's trainer vs a bare PyTorch loop vs pythae 0.1.2 on Fashion-MNIST.

Row "mlp": the same MLP VAE (encoder 784-512-16, decoder 16-512-784, Bernoulli on [0, 1]
intensities, Adam 1e-3, batch 100), the same 54,000 training images (vaezoo's train split
of recipes/fashion-mnist-mlp.toml), the same epochs and seed, for
  (a) vaezoo's Trainer driven by the recipe,
  (b) a bare PyTorch loop written below (with torch's default Adam; again with the fused
      Adam kernel that vaezoo uses by default: the ratio to that one is the trainer's overhead;
      and once more keeping the images as bytes like vaezoo's image plugin, which leaves the
      storage format out of that overhead),
  (c) pythae 0.1.2's VAE + BaseTrainer, in its own virtual environment.
Row "conv": vaezoo's conv recipe against pythae's own MNIST benchmark nets
(pythae.models.nn.benchmarks.mnist) at the same epoch budget.

Every model is scored by one estimator written here: importance-weighted -log p(x) with
k posterior samples on the first N test images (logsumexp of log weights). Time per epoch
counts training steps only (no validation, no saving).

    make bench-image                        # sets up benchmarks/.venv-peers (pythae) and runs this
    .venv/bin/python benchmarks/image_vs_peers.py --epochs 3 --rows mlp
    .venv/bin/python benchmarks/image_vs_peers.py --rows mlp --epochs 1 --repeats 8 --k 20   # trainer overhead

Every system runs every round in a process of its own, the rounds taking turns. Prints one
JSON line per system and row (its epochs' spread: min, median, max, each round's fastest),
then a JSON line of ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PEERS = ROOT / "benchmarks" / ".venv-peers" / "bin" / "python"


# -- the shared estimator --------------------------------------------------------------------


@torch.no_grad()
def iw_nll(encode, log_px, x: torch.Tensor, k: int, batch_size: int = 100, seed: int = 0) -> float:
    """Mean of -log p(x) ~ -(logsumexp_i log w_i - log k); ``encode(x) -> (mu, logvar)``,
    ``log_px(z [M, D], x [M, ...]) -> [M]``."""
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        mu, logvar = encode(xb)
        std = torch.exp(0.5 * logvar)
        eps = torch.randn((k,) + mu.shape, generator=g)
        z = mu + std * eps                                            # [k, B, D]
        lpx = log_px(z.reshape(-1, mu.shape[-1]), xb.repeat(k, *([1] * (xb.dim() - 1)))).view(k, -1)
        lpz = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)
        lqz = -0.5 * (eps**2 + logvar + math.log(2 * math.pi)).sum(-1)
        total += (torch.logsumexp(lpx + lpz - lqz, 0) - math.log(k)).sum().item()
    return -total / len(x)


def bernoulli_logits_log_px(logits_fn):
    return lambda z, x: -F.binary_cross_entropy_with_logits(logits_fn(z).reshape(len(x), -1), x.reshape(len(x), -1), reduction="none").sum(-1)


# -- (b) a bare PyTorch loop -----------------------------------------------------------------


class BareMLP(nn.Module):
    def __init__(self, latent: int = 16, hidden: int = 512):
        super().__init__()
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, 784))

    def encode(self, x):
        mu, logvar = self.enc(x).chunk(2, -1)
        return mu, logvar


def run_bare(train: torch.Tensor, test: torch.Tensor, epochs: int, k: int, seed: int, fused: bool = False,
             uint8: bool = False) -> dict:
    """The loop most people write; ``fused`` gives it the Adam kernel vaezoo uses by default,
    so that the ratio against it is the trainer's own overhead. ``uint8`` keeps the images as
    vaezoo's image plugin does (a byte per pixel, scaled to [0, 1] per batch) instead of a
    float tensor four times the size made before the clock starts: the ratio against that
    one leaves the storage format out of the trainer's overhead."""
    torch.manual_seed(seed)
    model = BareMLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
    flat = train.reshape(len(train), -1)
    if uint8:
        flat = (flat * 255).round().to(torch.uint8)
    epoch_seconds = []
    for epoch in range(epochs):
        perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        tick = time.perf_counter()
        for start in range(0, len(train) - 99, 100):
            x = flat[perm[start : start + 100]]
            if uint8:
                x = x.float().div_(255.0)
            mu, logvar = model.encode(x)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            rec = F.binary_cross_entropy_with_logits(model.dec(z), x, reduction="none").sum(-1)
            kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)
            loss = (rec + kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        epoch_seconds.append(time.perf_counter() - tick)
    model.eval()
    nll = iw_nll(lambda x: model.encode(x), bernoulli_logits_log_px(model.dec), test, k)
    name = ("bare-pytorch-fused-adam" if fused else "bare-pytorch") + ("-uint8" if uint8 else "")
    return {"system": name, "row": "mlp", "epochs": epochs, "seconds_per_epoch": float(np.median(epoch_seconds)),
            "epoch_seconds": epoch_seconds, "test_iw_nll": nll}


# -- (a) vaezoo --------------------------------------------------------------------------------


def vaezoo_recipe(name: str, overrides: list[str]):
    from vaezoo.plugin.recipes import load_recipe

    return load_recipe(ROOT / "recipes" / f"{name}.toml", overrides)


def load_split_tensors(recipe_name: str, train_examples: int, test_examples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact training images vaezoo trains on, and the first test images, as tensors."""
    from vaezoo.train.runs import build_modality

    recipe = vaezoo_recipe(recipe_name, [f"data.max_train_examples={train_examples}"] if train_examples else [])
    modality = build_modality(recipe, None)

    def materialise(split, limit=None):
        ds = modality.dataset(split)
        n = len(ds) if limit is None else min(limit, len(ds))
        return modality.collate([ds[i] for i in range(n)])["x"].float()

    return materialise("train"), materialise("test", test_examples)


# A short budget ends inside the conv recipe's KL and LR warm-ups; pythae trains at beta = 1 and a
# constant learning rate, so the conv row does too.
SHORT_BUDGET = ['objective.kl_schedule="constant"', 'train.lr_schedule="constant"', "train.warmup_steps=0"]


def run_vaezoo(recipe_name: str, row: str, test: torch.Tensor, epochs: int, k: int, train_examples: int) -> dict:
    from vaezoo.train.trainer import Trainer

    overrides = [f"train.epochs={epochs}", "eval.at_end=false", "train.samples=0", "train.tensorboard=false",
                 "train.val_max_examples=1000", "train.threads=0", "train.early_stopping_patience=0"]
    if row == "conv":
        overrides += SHORT_BUDGET
    if train_examples:
        overrides.append(f"data.max_train_examples={train_examples}")
    recipe = vaezoo_recipe(recipe_name, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        trainer = Trainer(recipe, run, progress_bar=False, echo=lambda m: None)
        trainer.fit()
        timing = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        seconds = [r["train_seconds"] for r in timing if r["split"] == "timing"]
        vae = trainer.vae
        vae.eval()
        nll = iw_nll(lambda x: (lambda q: (q.mean, q.logvar))(vae.encode({"x": x})),
                     lambda z, x: vae.decode(z).log_prob(x), test, k)
    return {"system": "vaezoo", "row": row, "recipe": recipe_name, "epochs": epochs,
            "seconds_per_epoch": float(np.median(seconds)), "epoch_seconds": seconds, "test_iw_nll": nll}


# -- (c) pythae, in its own environment -------------------------------------------------------


def pythae_worker(data_dir: Path, row: str, epochs: int, k: int, seed: int) -> dict:
    """Runs under the peers venv: pythae + torch only."""
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.data.datasets import BaseDataset
    from pythae.trainers import BaseTrainer, BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback

    train = torch.from_numpy(np.load(data_dir / "train.npy", allow_pickle=False))
    test = torch.from_numpy(np.load(data_dir / "test.npy", allow_pickle=False))
    config = VAEConfig(input_dim=(1, 28, 28), latent_dim=16, reconstruction_loss="bce")
    torch.manual_seed(seed)
    if row == "mlp":
        class Encoder(BaseEncoder):
            def __init__(self):
                super().__init__()
                self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU())
                self.mu, self.logvar = nn.Linear(512, 16), nn.Linear(512, 16)

            def forward(self, x):
                h = self.net(x)
                return ModelOutput(embedding=self.mu(h), log_covariance=self.logvar(h))

        class Decoder(BaseDecoder):
            def __init__(self):
                super().__init__()
                self.net = nn.Sequential(nn.Linear(16, 512), nn.ReLU(), nn.Linear(512, 784), nn.Sigmoid())

            def forward(self, z):
                return ModelOutput(reconstruction=self.net(z).reshape(-1, 1, 28, 28))

        encoder, decoder = Encoder(), Decoder()
    else:
        from pythae.models.nn.benchmarks.mnist import Decoder_Conv_AE_MNIST, Encoder_Conv_VAE_MNIST

        encoder, decoder = Encoder_Conv_VAE_MNIST(config), Decoder_Conv_AE_MNIST(config)
    model = VAE(config, encoder=encoder, decoder=decoder)

    class EpochTimer(TrainingCallback):
        def __init__(self):
            self.seconds, self._tick = [], None

        def on_epoch_begin(self, training_config, **kwargs):
            self._tick = time.perf_counter()

        def on_epoch_end(self, training_config, **kwargs):
            self.seconds.append(time.perf_counter() - self._tick)

    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = BaseTrainerConfig(output_dir=tmp, num_epochs=epochs, learning_rate=1e-3, per_device_train_batch_size=100,
                                optimizer_cls="Adam", no_cuda=True, seed=seed)
        trainer = BaseTrainer(model, BaseDataset(train, torch.zeros(len(train))), None, cfg, callbacks=[timer])
        trainer.train()
    model.eval()

    def log_px(z, x):
        probs = model.decoder(z)["reconstruction"].reshape(len(x), -1)
        return -F.binary_cross_entropy(probs, x.reshape(len(x), -1), reduction="none").sum(-1)

    def encode(x):
        out = model.encoder(x)
        return out.embedding, out.log_covariance

    nll = iw_nll(encode, log_px, test, k)
    return {"system": "pythae-0.1.2", "row": row, "epochs": epochs, "seconds_per_epoch": float(np.median(timer.seconds)),
            "epoch_seconds": timer.seconds, "test_iw_nll": nll}


def run_pythae(peers_python: Path, train: torch.Tensor, test: torch.Tensor, row: str, epochs: int, k: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "train.npy", train.numpy(), allow_pickle=False)
        np.save(Path(tmp) / "test.npy", test.numpy(), allow_pickle=False)
        proc = subprocess.run(
            [str(peers_python), __file__, "--worker", row, "--data", tmp, "--epochs", str(epochs), "--k", str(k), "--seed", str(seed)],
            capture_output=True, text=True,
        )
    if proc.returncode != 0:
        return {"system": "pythae-0.1.2", "row": row, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- one system per process ------------------------------------------------------------------------


def run_system(system: str, data_dir: Path, epochs: int, k: int, seed: int, train_examples: int) -> dict:
    test = torch.from_numpy(np.load(data_dir / "test.npy", allow_pickle=False))
    if system.startswith("vaezoo:"):
        _, row, recipe = system.split(":")
        return run_vaezoo(recipe, row, test, epochs, k, train_examples)
    train = torch.from_numpy(np.load(data_dir / "train.npy", allow_pickle=False))
    return run_bare(train, test, epochs, k, seed, fused=system.startswith("bare-fused"), uint8=system.endswith("-uint8"))


def run_in_process(system: str, data_dir: Path, epochs: int, k: int, args, train_examples: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--system", system, "--data", str(data_dir), "--epochs", str(epochs),
                           "--k", str(k), "--seed", str(args.seed), "--threads", str(args.threads),
                           "--train-examples", str(train_examples)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{system} failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- driver ----------------------------------------------------------------------------------------


def merge_rounds(rounds: list[dict]) -> dict:
    """One row from repeated runs: every epoch's time pooled, with its spread (min, median,
    max) and each round's fastest epoch; the NLL is the same each round."""
    seconds = [t for r in rounds for t in r["epoch_seconds"]]
    merged = dict(rounds[-1])
    merged.update(rounds=len(rounds), epoch_seconds=seconds, seconds_per_epoch=float(np.median(seconds)),
                  fastest_epoch_seconds=float(min(seconds)), lower_quartile_epoch_seconds=float(np.quantile(seconds, 0.25)),
                  slowest_epoch_seconds=float(max(seconds)),
                  fastest_epoch_per_round=[float(min(r["epoch_seconds"])) for r in rounds])
    return merged


def overhead(vz: dict, other: dict) -> dict:
    """vaezoo's time over a peer's, several ways, because this machine's speed drifts by
    +-10% over minutes: on the fastest epoch of all rounds (one lucky epoch on either side
    decides it), on the lower quartiles and the medians of all epochs, and per round (the
    systems take turns, so a round's two figures saw the same load; the median of those
    paired ratios is the figure a single noisy epoch cannot move)."""
    per_round = [round(a / b, 3) for a, b in zip(vz["fastest_epoch_per_round"], other["fastest_epoch_per_round"])]
    return {"fastest": round(vz["fastest_epoch_seconds"] / other["fastest_epoch_seconds"], 3),
            "lower_quartile": round(vz["lower_quartile_epoch_seconds"] / other["lower_quartile_epoch_seconds"], 3),
            "median": round(vz["seconds_per_epoch"] / other["seconds_per_epoch"], 3),
            "paired_rounds": per_round, "paired_median": round(float(np.median(per_round)), 3),
            "paired_worst": max(per_round)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default="mlp,conv", help="comma-separated: mlp, conv")
    p.add_argument("--epochs", type=int, default=5, help="epochs of the mlp row")
    p.add_argument("--conv-epochs", type=int, default=1, help="epochs of the conv row")
    p.add_argument("--conv-train-examples", type=int, default=10000, help="training images of the conv row (0 = all 54,000)")
    p.add_argument("--repeats", type=int, default=3, help="rounds of vaezoo and the bare loop, taken in turns (mlp row)")
    p.add_argument("--k", type=int, default=200, help="importance samples (mlp row)")
    p.add_argument("--conv-k", type=int, default=50, help="importance samples (conv row: pythae's nets are large)")
    p.add_argument("--conv-test-examples", type=int, default=500)
    p.add_argument("--test-examples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peers-python", type=Path, default=DEFAULT_PEERS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--system", help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--train-examples", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    if args.worker:  # inside the peers environment
        print(json.dumps(pythae_worker(args.data, args.worker, args.epochs, args.k, args.seed)))
        return
    if args.system:  # one system, one round, in a process of its own
        print(json.dumps(run_system(args.system, args.data, args.epochs, args.k, args.seed, args.train_examples)))
        return

    have_peers = args.peers_python.exists()
    if not have_peers:
        print(f"note: {args.peers_python} not found; pythae rows skipped (make bench-image sets it up)", file=sys.stderr)
    results = []
    for row in args.rows.split(","):
        recipe, epochs, n_train, k, n_test = {
            "mlp": ("fashion-mnist-mlp", args.epochs, 0, args.k, args.test_examples),
            "conv": ("fashion-mnist-conv", args.conv_epochs, args.conv_train_examples, args.conv_k, args.conv_test_examples),
        }[row]
        print(f"[{row}] loading data", file=sys.stderr)
        train, test = load_split_tensors(recipe, n_train, n_test)
        rows = []
        # vaezoo and the bare loop take turns, so a burst of load elsewhere hits both alike;
        # each system's figure is the median over all its epochs.
        # Each system runs each round in a fresh process, so none pays for another's heap
        # (the garbage collector's full passes grow with it) or inherits its caches.
        with tempfile.TemporaryDirectory() as data_dir:
            np.save(Path(data_dir) / "train.npy", train.numpy(), allow_pickle=False)
            np.save(Path(data_dir) / "test.npy", test.numpy(), allow_pickle=False)
            systems = [f"vaezoo:{row}:{recipe}"] + (["bare", "bare-fused", "bare-fused-uint8"] if row == "mlp" else [])
            for repeat in range(args.repeats if row == "mlp" else 1):
                for system in systems:
                    print(f"[{row}] {system.split(':')[0]}: {epochs} epochs on {len(train)} images (round {repeat + 1})",
                          file=sys.stderr)
                    rows.append(run_in_process(system, Path(data_dir), epochs, k, args, n_train))
        rows = [merge_rounds([r for r in rows if r["system"] == system]) for system in dict.fromkeys(r["system"] for r in rows)]
        for r in rows:
            print(json.dumps(r), flush=True)
        if have_peers:
            print(f"[{row}] pythae", file=sys.stderr)
            peer = run_pythae(args.peers_python, train, test, row, epochs, k, args.seed)
            rows.append(merge_rounds([peer]) if "epoch_seconds" in peer else peer)
            print(json.dumps(rows[-1]), flush=True)
        results += rows

    by = {(r["system"], r["row"]): r for r in results if "seconds_per_epoch" in r}
    ratios = {}
    for row in ("mlp", "conv"):
        vz = by.get(("vaezoo", row))
        for peer in ("bare-pytorch", "bare-pytorch-fused-adam", "bare-pytorch-fused-adam-uint8", "pythae-0.1.2"):
            other = by.get((peer, row))
            if vz and other:
                ratios[f"{row}: vaezoo/{peer} time per epoch"] = overhead(vz, other)
                ratios[f"{row}: vaezoo-{peer} test IW-NLL (nats)"] = round(vz["test_iw_nll"] - other["test_iw_nll"], 3)
    print(json.dumps({"ratios": ratios, "k": {"mlp": args.k, "conv": args.conv_k},
                      "test_examples": {"mlp": args.test_examples, "conv": args.conv_test_examples}, "threads": args.threads}))


if __name__ == "__main__":
    main()
