"""What scripts read from the CLI: lines that are never wrapped in a pipe, and ``--json`` that parses.

These run ``uattn`` in a child process with its stdout a real pipe, as ``uattn ... | grep`` would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from universal_attention import AttentionResNet50, load_config, save_checkpoint
from universal_attention.data import dataset_names

from small import SMALL, SMALL_OVERRIDES

TINY = SMALL


def uattn(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``uattn ARGS`` with stdout and stderr piped and no COLUMNS hint."""
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    return subprocess.run(
        [sys.executable, "-m", "universal_attention.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config = load_config(
        preset="quickstart",
        overrides=[
            "data.image_size=32",
            *SMALL_OVERRIDES,
            "data.target=synthetic/colour",
            "transfer.batch_size=8",
            "transfer.max_test_images=8",
            "transfer.steps=1",
            "transfer.draws=1",
        ],
    )
    model = AttentionResNet50(config.model)
    model.add_head("synthetic/colour", 4)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "step-000003.safetensors", model, config, step=3)


def test_piped_data_list_keeps_every_name_and_path_on_one_line(tmp_path):
    root = tmp_path / "a-rather-long-folder-name-that-would-not-fit-in-eighty-columns" / "datasets"
    result = uattn("data", "list", "--data-root", root)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name in dataset_names():
        assert any(f" {name} " in line for line in lines), f"{name} is broken across lines:\n{result.stdout}"
    dogs = next(line for line in lines if " stanford_dogs " in line)
    assert f"{root}/stanford_dogs/" in dogs


def test_data_list_json_names_every_dataset(tmp_path):
    result = uattn("data", "list", "--data-root", tmp_path, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [entry["name"] for entry in document["datasets"]] == dataset_names()
    assert document["data_root"] == str(tmp_path.absolute())
    dogs = next(entry for entry in document["datasets"] if entry["name"] == "stanford_dogs")
    assert dogs["found"] is False and dogs["expected"].startswith(f"{tmp_path}/stanford_dogs/")


def test_info_json_describes_the_checkpoint(checkpoint):
    result = uattn("info", checkpoint, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["step"] == 3 and document["heads"] == {"synthetic/colour": 4}
    assert document["model"]["alignment_size"] == 8 and document["experiment"]["data"]["image_size"] == 32
    assert document["parameters"] > 4_000_000 and document["model"]["trunk"] == "resnet10"


@pytest.mark.slow
def test_transfer_json_is_the_results_document(checkpoint, tmp_path):
    result = uattn("transfer", "--ckpt", checkpoint, "--shots", "1", "--out", tmp_path / "t", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document == json.loads((tmp_path / "t" / "results.json").read_text())
    assert document["target"] == "synthetic/colour"


def test_evaluate_attention_json_is_the_report(checkpoint, tmp_path):
    result = uattn(
        "evaluate-attention",
        "--ckpt",
        checkpoint,
        "--limit",
        2,
        "--no-baselines",
        "--out",
        tmp_path,
        "--device",
        "cpu",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document == json.loads((tmp_path / "attention_report.json").read_text())
    assert document["images"] == 2 and "layer2.0" in document["starts"]["model"]["layers"]
