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


def test_two_process_ddp_trains_in_sync_and_writes_once(tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE)
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(script), str(recipe), str(run), str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    digest0, steps0 = (tmp_path / "rank0.txt").read_text().split()
    digest1, steps1 = (tmp_path / "rank1.txt").read_text().split()
    assert digest0 == digest1                   # gradients were averaged: identical weights on both ranks
    assert steps0 == steps1 == "12"             # 128 examples / 2 ranks / 16 per batch = 4 steps x 3 epochs
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in lines if r["split"] == "train"]
    assert steps == list(range(1, 13))          # written once, not once per rank
    assert sum(r["split"] == "validation" for r in lines) == 3
    assert latest_weights(run) is not None and (run / "eval.json").exists()
    assert proc.stderr.count("trained 12 steps") == 1


def test_two_process_ddp_with_the_adversarial_stage(tmp_path):
    """The VAE under DDP and the discriminator's gradients averaged by hand: both stay equal
    on the two ranks, and the discriminator's numbers are logged once."""
    recipe = tmp_path / "gan.toml"
    recipe.write_text(TINY_GAN_RECIPE.replace("start_step = 4", "start_step = 2"))
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(script), str(recipe), str(run), str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    digest0, steps0 = (tmp_path / "rank0.txt").read_text().split()
    digest1, steps1 = (tmp_path / "rank1.txt").read_text().split()
    assert digest0 == digest1 and steps0 == steps1 == "12"
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "disc_loss" in r] == list(range(3, 13))
