"""Two-process DistributedDataParallel on CPU (gloo): ranks stay in sync, rank 0 alone writes."""

import json
import subprocess
import sys
import textwrap

from tiny_modality import TINY_GAN_RECIPE, TINY_RECIPE
from vaezoo.train.checkpoints import latest_weights

SCRIPT = textwrap.dedent(
    """
    import hashlib, os, sys
    from vaezoo.plugin.recipes import load_recipe
    from vaezoo.train.trainer import Trainer

    recipe_path, run_dir, out_dir = sys.argv[1:4]
    digests = []

    def weights_digest(trainer, record):
        # Each rank records a digest of its weights after every step, beside the run directory.
        h = hashlib.sha256()
        tensors = dict(trainer.vae.state_dict())
        for hook in trainer.hooks:   # the adversarial stage's discriminator, when there is one
            if hook.name == "adversarial":
                tensors.update({"discriminator." + k: v for k, v in hook.discriminator.state_dict().items()})
        for name, tensor in sorted(tensors.items()):
            h.update(name.encode())
            h.update(tensor.numpy().tobytes())
        digests.append(h.hexdigest())

    result = Trainer(load_recipe(recipe_path), run_dir, progress_bar=False, on_step=weights_digest).fit()
    with open(os.path.join(out_dir, f"rank{os.environ['RANK']}.txt"), "w") as f:
        f.write(f"{digests[-1]} {result.steps}")
    """
)


def train_on_two_ranks(tmp_path, recipe_text: str):
    """Train ``recipe_text`` under torchrun with two CPU processes; returns the finished
    process, each rank's (weights digest, steps) and the run's metrics records."""
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(recipe_text)
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(script), str(recipe), str(run), str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [tuple((tmp_path / f"rank{r}.txt").read_text().split()) for r in (0, 1)]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return proc, ranks, records


def test_two_process_ddp_trains_in_sync_and_writes_once(tmp_path):
    proc, ranks, lines = train_on_two_ranks(tmp_path, TINY_RECIPE)
    assert ranks[0][0] == ranks[1][0]           # gradients were averaged: identical weights on both ranks
    assert ranks[0][1] == ranks[1][1] == "12"   # 128 examples / 2 ranks / 16 per batch = 4 steps x 3 epochs
    steps = [r["step"] for r in lines if r["split"] == "train"]
    assert steps == list(range(1, 13))          # written once, not once per rank
    assert sum(r["split"] == "validation" for r in lines) == 3
    run = tmp_path / "run"
    assert latest_weights(run) is not None and (run / "eval.json").exists()
    assert proc.stderr.count("trained 12 steps") == 1


def test_two_process_ddp_with_the_adversarial_stage(tmp_path):
    """The VAE under DDP and the discriminator's gradients averaged by hand: both stay equal
    on the two ranks (the digest covers the discriminator), and its numbers are logged once."""
    _, ranks, lines = train_on_two_ranks(tmp_path, TINY_GAN_RECIPE.replace("start_step = 4", "start_step = 2"))
    assert ranks[0] == ranks[1] and ranks[0][1] == "12"
    assert [r["step"] for r in lines if "disc_loss" in r] == list(range(3, 13))
