"""Distributed training beyond one process (torchrun, gloo on the CPU, 127.0.0.1).

- every training example is read once per epoch across the ranks;
- 2 processes of 8 examples give the losses of 1 process of 16 (the same global batch);
- validation and evaluation are shared out over the ranks with the figures of one process;
- two "nodes" (two torchrun agents meeting at a c10d rendezvous) train, one is killed, both
  resume, and the run equals the uninterrupted one bit for bit;
- data-loading workers persist across epochs and a run with them resumes exactly.

The runs use scale_modality.SharpTiny (an all-but-deterministic posterior, so runs whose
ranks draw different noise can be compared to float tolerance).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from scale_modality import Record, read_record
from test_crash_safety import fingerprint
from tiny_modality import TINY_RECIPE
from vaezoo.core.data import EpochBatchSampler
from vaezoo.plugin.recipes import load_recipe
from vaezoo.train.checkpoints import latest_weights
from vaezoo.train.distributed import DistContext
from vaezoo.train.evaluation import ShardedEvaluation, evaluate_split
from vaezoo.train.loading import EpochLoader
from vaezoo.train.runs import build_modality, build_vae, open_run
from vaezoo.train.trainer import Trainer

DRIVER = Path(__file__).resolve().parent / "scale_modality.py"
# 128 examples, 3 epochs of 8 steps of 16 examples (2 x 8 on two ranks); the validation and
# test splits (32 examples) in 7 evaluation batches of 5, so the ranks' shares are uneven.
SCALE_RECIPE = (TINY_RECIPE.replace("tiny_modality:TinyVectors", "scale_modality:SharpTiny")
                .replace("log_every = 1", "log_every = 1\nthreads = 1")
                .replace("iw_samples = 20", "iw_samples = 20\nbatch_size = 5"))
STEPS_PER_EPOCH, EXAMPLES = 8, 128


def write_recipe(folder: Path, batch_size: int, text: str = SCALE_RECIPE) -> Path:
    path = folder / f"recipe-{batch_size}.toml"
    path.write_text(text.replace("batch_size = 16", f"batch_size = {batch_size}"))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(launch: list[str], out: Path, *vaezoo_args, kill: str = "") -> subprocess.CompletedProcess:
    """``vaezoo train ...`` under torchrun with ``launch`` options, through the recording driver."""
    out.mkdir(exist_ok=True)
    env = dict(os.environ, VAEZOO_TEST_KILL=kill) if kill else None
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", *launch, str(DRIVER), str(out), "train",
                           *map(str, vaezoo_args), "--no-progress"], capture_output=True, text=True, timeout=300, env=env)


def two_nodes(out: Path, *vaezoo_args, kill: str = "") -> list[subprocess.CompletedProcess]:
    """Two torchrun agents of one process each, as two machines would start them, meeting at
    a c10d rendezvous on 127.0.0.1."""
    launch = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
              f"127.0.0.1:{free_port()}", "--rdzv-id", f"scale-{os.getpid()}-{out.name}", "--local-addr", "127.0.0.1"]
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda _: torchrun(launch, out, *vaezoo_args, kill=kill), range(2)))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> tuple[Path, Path]:
    """SharpTiny trained by two processes of 8 examples a step: (run directory, records)."""
    root = tmp_path_factory.mktemp("two-ranks")
    proc = torchrun(["--standalone", "--nproc-per-node", "2"], root / "out", write_recipe(root, 8),
                    "--run-dir", root / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "run", root / "out"


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory) -> tuple[Path, Path]:
    """The same in one process of 16 examples a step."""
    root = tmp_path_factory.mktemp("one-rank")
    (root / "out").mkdir()
    Trainer(load_recipe(write_recipe(root, 16)), root / "run", progress_bar=False, echo=lambda m: None,
            hooks=[Record(str(root / "out"))]).fit()
    return root / "run", root / "out"


def records(run: Path, split: str) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["split"] == split]


def test_every_training_example_is_read_once_per_epoch_across_ranks(two_ranks):
    _, out = two_ranks
    ranks = [read_record(out, r) for r in (0, 1)]
    assert [len(lines) for lines in ranks] == [3 * STEPS_PER_EPOCH] * 2
    for epoch in range(3):
        read = []
        for lines in ranks:
            before = lines[epoch * STEPS_PER_EPOCH - 1]["seen"] if epoch else []
            after = lines[(epoch + 1) * STEPS_PER_EPOCH - 1]["seen"]
            assert after[: len(before)] == before
            read.append(after[len(before):])
        assert [len(r) for r in read] == [EXAMPLES // 2] * 2
        assert sorted(read[0] + read[1]) == list(range(EXAMPLES))   # each once: none twice, none left out


@pytest.mark.parametrize("n, world, batch", [(127, 2, 8), (125, 3, 6), (64, 4, 4)])
def test_ranks_shares_cover_the_epoch_and_pad_only_to_even_them_out(n, world, batch):
    """The trainer's shares (EpochBatchSampler by rank): all examples, the padding the only repeats."""
    read = [i for rank in range(world) for b in EpochBatchSampler(n, batch, shuffle=True, seed=3, epoch=1, rank=rank,
                                                                    world_size=world, drop_last=True) for i in b]
    padded = -(-n // world) * world
    assert len(read) == padded and set(read) == set(range(n))
    assert len(read) - len(set(read)) == padded - n


def test_two_processes_give_the_losses_of_one_with_the_same_global_batch(one_rank, two_ranks):
    (run1, out1), (run2, out2) = one_rank, two_ranks
    one = read_record(out1, 0)
    rank0, rank1 = read_record(out2, 0), read_record(out2, 1)
    assert [r["digest"] for r in rank0] == [r["digest"] for r in rank1]   # the ranks stay in step
    # Every rank's step record holds the global batch's figures (the mean of the ranks' halves).
    assert [a["loss"] for a in rank0] == [b["loss"] for b in rank1]
    assert [a["loss"] for a in rank0] == pytest.approx([r["loss"] for r in one], rel=1e-5)
    for field in ("loss", "reconstruction", "kl", "elbo", "grad_norm"):
        assert [r[field] for r in records(run2, "train")] == pytest.approx([r[field] for r in records(run1, "train")],
                                                                         rel=1e-5)
    for field in ("loss", "kl", "active_units", "mutual_information"):
        assert [r[field] for r in records(run2, "validation")] == pytest.approx(
            [r[field] for r in records(run1, "validation")], rel=1e-5)
    evals = [json.loads((run / "eval.json").read_text()) for run in (run1, run2)]
    for field in ("elbo", "kl", "iw_nll", "active_units", "kl_per_dim"):
        assert evals[1][field] == pytest.approx(evals[0][field], rel=1e-5)


def test_sharded_evaluation_equals_one_process_exactly(two_ranks):
    """eval.json and the last validation of the two-process run, computed again here by one."""
    run, _ = two_ranks
    best = open_run(run, weights="best")
    alone = evaluate_split(best.modality, best.vae, "test", device="cpu", show_progress=False).as_dict()
    assert json.loads((run / "eval.json").read_text()) == {"split": "test", "step": 24, "weights": "best",
                                                           "weights_step": best.weights_step, **alone}
    last = open_run(run, weights="last")
    check = ShardedEvaluation(last.modality.dataset("validation"), last.modality.collate, 5, None, DistContext())
    validation = check.run(last.vae, iw_samples=0, device="cpu", seed=last.recipe.seed)
    assert records(run, "validation")[-1] == {"split": "validation", "step": 24, "epoch": 2, "loss": -validation.elbo,
                                              "elbo": validation.elbo, "reconstruction": validation.reconstruction,
                                              "kl": validation.kl, "active_units": validation.active_units,
                                              "mutual_information": validation.mutual_information}


def test_vaezoo_eval_under_torchrun_equals_one_process(two_ranks, tmp_path):
    """`vaezoo eval` started by torchrun: two processes share the 20 examples (7 batches of 3,
    4 and 3 per rank); rank 0 alone prints and writes, the figures of one process exactly."""
    from click.testing import CliRunner

    from vaezoo.cli import main

    run, _ = two_ranks
    args = ["eval", str(run), "-k", "5", "--batch-size", "3", "--max-examples", "20", "--no-progress", "--json"]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "vaezoo.cli", *args, str(tmp_path / "two.json")], capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("IW-NLL (k=5)") == 1 and two.stdout.count("wrote") == 1
    one = CliRunner().invoke(main, [*args, str(tmp_path / "one.json")])
    assert one.exit_code == 0, one.output
    figures = [json.loads((tmp_path / f"{name}.json").read_text()) for name in ("one", "two")]
    assert figures[0]["n_examples"] == 20 and figures[1] == figures[0]


@pytest.mark.parametrize("world", [2, 3, 8])
def test_evaluation_shares_combine_to_the_one_process_figures(tiny_recipe, tmp_path, monkeypatch, world):
    """Any number of ranks (8: more than the 5 blocks, so some have none) gives the figures of
    one, bit for bit: each rank's share computed here in turn, then combined as every rank would.
    The aggregate posterior of the mutual information is cut inside a block (at 12 examples)."""
    from vaezoo.core import estimators
    from vaezoo.train import evaluation

    monkeypatch.setattr(evaluation, "MI_MAX_EXAMPLES", 12)
    monkeypatch.setattr(estimators, "MI_MAX_EXAMPLES", 12)
    modality = build_modality(load_recipe(tiny_recipe), tmp_path)
    torch.manual_seed(0)
    vae = build_vae(modality)
    data = modality.dataset("validation")   # 32 examples, the first 23 in blocks of 5, 5, 5, 5, 3

    def shares(world: int):
        return [ShardedEvaluation(data, modality.collate, 5, 23, DistContext(rank, world)) for rank in range(world)]

    def figures(world: int):
        parts = [share.local(vae, iw_samples=7, device="cpu", seed=3) for share in shares(world)]
        rows, posteriors = map(list, zip(*parts))
        return shares(world)[0].combine(rows, posteriors, iw_samples=7, seed=3).as_dict()

    alone = ShardedEvaluation(data, modality.collate, 5, 23, DistContext()).run(vae, iw_samples=7, device="cpu", seed=3)
    assert figures(world) == alone.as_dict()
    assert [len(share.mine) for share in shares(world)] == [len(range(r, 5, world)) for r in range(world)]
    # The core's one-process evaluation of the same blocks gives the same figures, bit for bit.
    core = estimators.evaluate(vae, [modality.collate([data[i] for i in range(s, min(s + 5, 23))]) for s in range(0, 23, 5)],
                               iw_samples=7, seed=3)
    assert core.as_dict() == alone.as_dict()
    # The figures without random draws, against the posteriors of all 23 examples at once.
    q = vae.encode(modality.collate([data[i] for i in range(23)]))
    assert (alone.n_examples, alone.mutual_information_examples) == (23, 12)
    assert alone.kl == pytest.approx(q.kl().mean().item(), rel=1e-6)
    assert alone.kl_per_dim == pytest.approx(q.kl_per_dim().mean(0).tolist(), rel=1e-6)
    assert alone.active_units == int((q.mean.detach().double().var(0) > 0.01).sum())


def test_two_nodes_killed_and_resumed_equal_the_uninterrupted_run(two_ranks, tmp_path):
    """Two torchrun agents on 127.0.0.1, one process each, as on two machines: rank 1 is killed
    after step 10 (the last checkpoint is step 8's), both resume, and the run is the
    uninterrupted two-process run's, bit for bit (metrics, weights, RNG state, eval.json)."""
    reference, reference_out = two_ranks
    run, out = tmp_path / "run", tmp_path / "out"
    killed = two_nodes(out, write_recipe(tmp_path, 8), "--run-dir", run, kill="1:10")
    assert all(proc.returncode != 0 for proc in killed)
    assert any("SIGKILL" in proc.stderr for proc in killed)
    resumed = two_nodes(out, "--resume", run)
    assert [proc.returncode for proc in resumed] == [0, 0], [proc.stderr[-3000:] for proc in resumed]
    assert sum(f"resuming {run} at step 8" in proc.stderr for proc in resumed) == 1   # rank 0 speaks
    assert fingerprint(run) == fingerprint(reference)
    for rank in (0, 1):
        assert read_record(out, rank)[-1]["digest"] == read_record(reference_out, rank)[-1]["digest"]


def test_persistent_workers_resume_exactly(tmp_path):
    """Training batches from 2 worker processes, examples noised as they are read (a random
    crop's kind of draw): stopped mid-epoch and resumed, the run equals the uninterrupted one."""
    noisy = TINY_RECIPE.replace("tiny_modality:TinyVectors", "scale_modality:NoisyTiny")
    recipe = load_recipe(write_recipe(tmp_path, 16, noisy), ["train.num_workers=2"])

    def stop_at_10(trainer, record):
        if record["step"] == 10:   # epoch 2, batch 2
            trainer.request_stop()

    Trainer(recipe, tmp_path / "whole", progress_bar=False, echo=lambda m: None).fit()
    assert Trainer(recipe, tmp_path / "cut", progress_bar=False, echo=lambda m: None, on_step=stop_at_10).fit().interrupted
    assert int(latest_weights(tmp_path / "cut").parent.name.rsplit("-", 1)[1]) == 10
    Trainer(load_recipe(tmp_path / "cut" / "recipe.toml"), tmp_path / "cut", resume=True, progress_bar=False,
            echo=lambda m: None).fit()
    assert fingerprint(tmp_path / "cut") == fingerprint(tmp_path / "whole")


class PidPoints(torch.utils.data.Dataset):
    """Example i: (i, the reading process's id, a random draw)."""

    def __len__(self) -> int:
        return 30

    def __getitem__(self, i):
        return torch.tensor([float(i), float(os.getpid()), torch.rand(()).item()])


def test_epoch_loader_keeps_its_workers_and_starts_mid_epoch():
    def sampler(epoch: int, start: int) -> EpochBatchSampler:
        return EpochBatchSampler(30, 4, shuffle=True, seed=5, epoch=epoch, start=start)

    def read(loader: EpochLoader, epoch: int, start: int = 0) -> torch.Tensor:
        return torch.stack(list(loader.epoch(epoch, start)))

    loader = EpochLoader(PidPoints(), torch.stack, sampler, seed=5, rank=0, num_workers=2)
    epochs = [read(loader, e) for e in range(3)]
    for e, batches in enumerate(epochs):
        assert batches[:, :, 0].long().tolist() == list(sampler(e, 0))   # the trainer's batches, in its order
    workers = {int(p) for p in torch.cat(epochs)[:, :, 1].flatten().tolist()}
    assert len(workers) == 2 and os.getpid() not in workers             # the same two processes every epoch
    assert not torch.equal(epochs[1][:, :, 2], epochs[2][:, :, 2])
    again = EpochLoader(PidPoints(), torch.stack, sampler, seed=5, rank=0, num_workers=2)
    assert torch.equal(read(again, 1, start=3)[:, :, [0, 2]], epochs[1][3:, :, [0, 2]])   # a resume's draws too
