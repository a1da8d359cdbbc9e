"""examples/study_synthetic.py: the study with its controls, run end to end at a tiny size."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from universal_attention import load_config

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "study_synthetic.py"
STARTS = ("reptile", "reptile_reset", "joint", "random")
TINY = [
    "--seeds",
    "2",
    "--draws",
    "2",
    "--steps",
    "1",
    "--shots",
    "1,2",
    "--targets",
    "orientation,hue",
    "--test-images",
    "8",
    "--attention-images",
    "4",
    "--finetune-steps",
    "1",
    "--finetune-shots",
    "2",
    "--set",
    "data.image_size=32",
    "--set",
    "sampler.batch_size=4",
    "--set",
    "reptile.inner_steps=2",
]


def load_study_module():
    spec = importlib.util.spec_from_file_location("study_synthetic", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("study")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), *TINY], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    return out, json.loads((out / "study.json").read_text())


@pytest.mark.slow
def test_every_start_target_control_and_shots_has_a_cell_over_seeds_and_draws(study):
    _, report = study
    for target in ("synthetic/orientation", "synthetic/hue"):
        cells = report["probe"][target]["cells"]
        assert {(c["start"], c["attention"], c["shots"]) for c in cells} == {
            (s, a, n) for s in STARTS for a in ("learned", "uniform", "oracle") for n in (1, 2)
        }
        assert all(c["runs"] == 4 for c in cells)  # 2 seeds x 2 draws


@pytest.mark.slow
def test_start_points_are_compared_run_for_run_with_joint_and_random(study):
    _, report = study
    comparisons = report["probe"]["synthetic/orientation"]["comparisons"]
    pairs = {(c["start"], c["baseline"]) for c in comparisons}
    assert ("reptile", "joint") in pairs and ("reptile_reset", "random") in pairs
    assert all(c["pairs"] == 4 for c in comparisons)
    assert report["headline"]["reptile_vs_joint"]["synthetic/hue"]


@pytest.mark.slow
def test_the_oracle_fraction_and_the_controls_are_reported(study):
    _, report = study
    fractions = report["probe"]["synthetic/orientation"]["oracle_fraction"]
    assert {(f["start"], f["shots"]) for f in fractions} == {(s, n) for s in STARTS for n in (1, 2)}
    assert set(report["object_removed"]) == set(STARTS)
    assert report["finetune"]["cells"][0]["steps"] == 1


@pytest.mark.slow
def test_attention_is_measured_per_tap_with_the_frame_share(study):
    _, report = study
    layers = report["attention_summary"]["reptile"]
    assert set(layers) == {*load_config(preset="quickstart").model.taps, "combined"}
    assert all(set(layers[name]) == {"relative_to_area", "frame_share", "pointing_game"} for name in layers)


@pytest.mark.slow
def test_study_writes_its_tables_and_plot(study):
    out, _ = study
    tables = (out / "summary.md").read_text()
    assert "reptile - joint" in tables and "Object-removed control" in tables and "oracle fraction" in tables
    with Image.open(out / "accuracy_vs_shots.png") as picture:
        assert picture.width > 300 and picture.height > 100


@pytest.mark.slow
def test_every_start_point_of_a_seed_begins_from_the_same_weights(tmp_path):
    module = load_study_module()
    initial = []
    original = module.meta_train

    def recording_meta_train(config, out, **kwargs):
        torch.manual_seed(config.train.seed)
        initial.append(module.AttentionResNet50(config.model).backbone.conv1.weight.clone())
        return original(config, out, **kwargs)

    module.meta_train = recording_meta_train
    config = load_config(
        preset="quickstart",
        overrides=[
            "train.max_steps=1",
            "reptile.inner_steps=1",
            "sampler.batch_size=2",
            "data.image_size=32",
            "train.eval_every=0",
            "train.image_log_every=0",
            "train.final_comparison=false",
        ],
    )
    random = module.build_start("random", config, 3, tmp_path).backbone.conv1.weight
    module.build_start("joint", config, 3, tmp_path)
    assert torch.equal(initial[0], random)


def test_a_bad_override_is_one_line_and_exit_code_2(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--set", "reptile.inner_stpes=2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "inner_stpes" in result.stderr and "Traceback" not in result.stderr
