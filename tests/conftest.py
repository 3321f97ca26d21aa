import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
# Subprocesses (torchrun, the CLI) find the tiny modality the same way.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))


TINY_RECIPE = """\
modality = "tiny_modality:TinyVectors"
name = "tiny"
seed = 3

[latent]
dim = 2

[data]
n = 128
dim = 6

[model]
hidden = 16

[objective]
kl_schedule = "linear"
kl_warmup_steps = 10

[train]
epochs = 3
batch_size = 16
lr = 0.01
log_every = 1
samples = 5
tensorboard = false

[eval]
iw_samples = 20
"""


@pytest.fixture
def tiny_recipe(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_RECIPE)
    return path
