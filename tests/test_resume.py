"""Runs that survive: kill -9 and resume, damaged newest checkpoint, config mismatch, non-finite loss."""

import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from universal_attention import TrainingError, load_config, meta_train
from universal_attention.cli import main
from universal_attention.meta.reptile import Reptile

from small import SMALL_OVERRIDES

RUN = [
    *SMALL_OVERRIDES,
    "data.image_size=32",
    "data.sources=[synthetic/colour, synthetic/size]",
    "sampler.batch_size=4",
    "reptile.inner_steps=2",
    "train.max_steps=6",
    "train.eval_every=0",
    "train.checkpoint_every=1",
    "train.keep_last=10",
    "train.image_log_every=0",
    "train.final_comparison=false",
]


def quiet(text):
    return None


def cli_args(out, *extra):
    args = ["meta-train", "--preset", "quickstart", "--out", str(out)]
    for override in RUN:
        args += ["--set", override]
    return args + list(extra)


def assert_same_tensors(first, second):
    one, two = load_file(str(first)), load_file(str(second))
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(one[name], two[name], rtol=0, atol=0, equal_nan=True, msg=name)


@pytest.mark.slow
def test_run_killed_with_sigkill_resumes_to_identical_tensors(tmp_path):
    straight = meta_train(load_config(preset="quickstart", overrides=RUN), tmp_path / "straight", on_message=quiet)
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "universal_attention.cli", *cli_args(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while not (killed / "checkpoints" / "step-000002.safetensors").exists():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint appeared in time"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "checkpoints" / "step-000006.safetensors").exists()
    result = CliRunner().invoke(main, ["meta-train", "--out", str(killed), "--resume"])
    assert result.exit_code == 0, result.output
    assert_same_tensors(straight.final_checkpoint, killed / "checkpoints" / "step-000006.safetensors")


@pytest.mark.slow
def test_truncated_newest_checkpoint_is_skipped_and_the_one_before_is_used(tmp_path):
    config = load_config(preset="quickstart", overrides=RUN + ["train.max_steps=2"])
    meta_train(config, tmp_path / "run", on_message=quiet)
    newest = tmp_path / "run" / "checkpoints" / "step-000002.safetensors"
    original = tmp_path / "original.safetensors"
    original.write_bytes(newest.read_bytes())
    newest.write_bytes(original.read_bytes()[:1000])
    messages = []
    meta_train(config, tmp_path / "run", resume=True, on_message=messages.append)
    assert any("skipped step-000002.safetensors" in message for message in messages)
    assert_same_tensors(original, newest)  # step 2 was run again from step 1, to the same tensors


@pytest.mark.slow
def test_resume_with_a_different_config_names_the_keys(tmp_path):
    CliRunner().invoke(main, cli_args(tmp_path / "run", "--set", "train.max_steps=1"))
    result = CliRunner().invoke(
        main, cli_args(tmp_path / "run", "--set", "train.max_steps=1", "--set", "reptile.inner_steps=3", "--resume")
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: cannot resume {tmp_path / 'run'}: the config differs in reptile.inner_steps; resume with the run's "
        "own config (only reptile.inner_lr and reptile.outer_lr may change) or start a new run"
    ]


@pytest.mark.slow
def test_existing_run_without_resume_is_refused(tmp_path):
    CliRunner().invoke(main, cli_args(tmp_path / "run", "--set", "train.max_steps=1"))
    result = CliRunner().invoke(main, cli_args(tmp_path / "run", "--set", "train.max_steps=1"))
    assert result.exit_code == 2
    assert "already holds a run; continue it with --resume" in result.output


@pytest.mark.slow
def test_non_finite_loss_stops_and_leaves_the_last_good_checkpoint_newest(tmp_path, monkeypatch):
    calls = {"count": 0}
    original_adapt = Reptile.adapt

    def adapt_that_diverges(self, task, steps=None):
        calls["count"] += 1
        metrics = original_adapt(self, task, steps)
        return {**metrics, "loss": math.nan} if calls["count"] == 3 else metrics

    monkeypatch.setattr(Reptile, "adapt", adapt_that_diverges)
    with pytest.raises(TrainingError, match="non-finite loss at step 3"):
        meta_train(load_config(preset="quickstart", overrides=RUN), tmp_path / "run", on_message=quiet)
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["step-000001.safetensors", "step-000002.safetensors"]


@pytest.mark.slow
def test_sigterm_saves_before_exiting(tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "universal_attention.cli",
            *cli_args(out, "--set", "train.checkpoint_every=100", "--set", "train.max_steps=200"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not list((out / "tb").glob("events*")) if (out / "tb").exists() else True:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    time.sleep(2)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    saved = list((out / "checkpoints").glob("step-*.safetensors"))
    assert len(saved) == 1, output
    assert "stopped at step" in output and "--resume" in output
