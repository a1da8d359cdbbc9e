"""Two processes under torchrun (gloo, CPU) give the same meta weights as one process with both tasks.

The outer step is plain SGD here: Adam divides by the gradient's own size, so for weights whose Reptile update
is at rounding-noise level it turns the last bits of a summation order into full steps.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import load_file

from small import SMALL_OVERRIDES

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
WORKER = str(Path(__file__).with_name("distributed_worker.py"))
pytestmark = pytest.mark.slow  # every test meta-trains the full ResNet50 in several processes


def test_two_processes_equal_one_process_with_meta_batch_two(tmp_path):
    single, ranks = tmp_path / "single.safetensors", tmp_path / "ranks.safetensors"
    single_thread = {**os.environ, "OMP_NUM_THREADS": "1"}  # as torchrun sets for each process
    subprocess.run([sys.executable, WORKER, "single", str(single)], check=True, timeout=300, env=single_thread)
    done = subprocess.run(TORCHRUN + [WORKER, "ranks", str(ranks)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    one, two = load_file(str(single)), load_file(str(ranks))
    compared = 0
    for name, value in one.items():
        if value.is_floating_point():
            assert (value - two[name]).abs().max() <= 1e-5, name
            compared += 1
    assert compared >= 80  # every weight and batch-norm statistic of the small model
    assert {"heads.a.weight", "heads.b.weight"} <= one.keys()


def test_meta_train_cli_under_torchrun_writes_once_from_rank_zero(tmp_path):
    out = tmp_path / "run"
    overrides = [
        *SMALL_OVERRIDES,
        "data.image_size=32",
        "sampler.batch_size=4",
        "reptile.inner_steps=1",
        "train.max_steps=2",
        "train.checkpoint_every=1",
        "train.eval_every=0",
        "train.image_log_every=0",
        "train.final_comparison=false",
    ]
    args = ["-m", "universal_attention.cli", "meta-train", "--preset", "quickstart", "--out", str(out)]
    for override in overrides:
        args += ["--set", override]
    done = subprocess.run(TORCHRUN + args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list((out / "tb").glob("events*"))) == 1
    with safe_open(str(out / "checkpoints" / "step-000002.safetensors"), framework="pt") as handle:
        keys = set(handle.keys())
    assert {"state/sampler.rank0.generator", "state/sampler.rank1.generator"} <= keys
    assert {"state/rng.rank0.torch", "state/rng.rank1.torch"} <= keys
