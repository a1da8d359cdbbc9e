"""examples/study_synthetic.py: the Reptile vs joint vs random study, run end to end at a tiny size."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from universal_attention import AttentionResNet50, load_config

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "study_synthetic.py"
TINY = ["--seeds", "2", "--steps", "1", "--shots", "1,2", "--set", "data.image_size=32",
        "--set", "transfer.steps=1", "--set", "transfer.max_test_images=8", "--set", "sampler.batch_size=4",
        "--set", "reptile.inner_steps=2"]


def load_study_module():
    spec = importlib.util.spec_from_file_location("study_synthetic", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("study")
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *TINY],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return out, json.loads((out / "study.json").read_text())


def test_study_reports_every_start_mode_and_shots_with_mean_and_std(study):
    _, report = study
    for start in ("reptile", "joint", "random"):
        assert len(report["runs"][start]) == 2
        for mode in ("finetune", "linear"):
            for shots in ("1", "2"):
                mean, std = report["summary"][start][mode][shots]
                values = [run[mode][shots] for run in report["runs"][start]]
                assert mean == pytest.approx(sum(values) / 2)
                assert 0.0 <= std <= 0.5


def test_reptile_and_joint_train_on_the_same_number_of_source_images(study):
    _, report = study
    assert report["source_images"] == {"reptile": 1 * 2 * 4, "joint": 1 * 2 * 4, "random": 0}


def test_study_measures_attention_per_tap_and_combined(study):
    _, report = study
    layers = report["summary"]["reptile"]["attention"]
    assert set(layers) == {"layer1.1", "layer2.2", "layer3.4", "layer4", "combined"}
    assert all(len(layers[name]["pointing_game"]) == 2 for name in layers)


def test_study_writes_tables_of_every_start_and_mode(study):
    out, _ = study
    tables = (out / "summary.md").read_text()
    for start in ("reptile", "joint", "random"):
        assert f"| {start} | finetune |" in tables and f"| {start} | linear |" in tables
        assert f"| {start} | pointing_game |" in tables


def test_study_writes_the_plot_and_the_overlay_grid(study):
    out, _ = study
    for name in ("accuracy_vs_shots.png", "attention_grid.png"):
        with Image.open(out / name) as picture:
            assert picture.width > 100 and picture.height > 100


def test_joint_and_random_start_from_the_same_initial_weights(monkeypatch):
    module = load_study_module()
    initial = []

    def recording_model(*args, **kwargs):
        model = AttentionResNet50(*args, **kwargs)
        initial.append({name: value.clone() for name, value in model.backbone.state_dict().items()})
        return model

    monkeypatch.setattr(module, "AttentionResNet50", recording_model)
    config = load_config(preset="quickstart", overrides=["train.max_steps=1", "reptile.inner_steps=1",
                                                         "sampler.batch_size=2", "data.image_size=32"])
    module.joint_start(config, seed=3)
    module.random_start(config, seed=3)
    joint, random = initial
    assert all(torch.equal(joint[name], random[name]) for name in random)


def test_a_bad_override_is_one_line_and_exit_code_2(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), "--set", "reptile.inner_stpes=2"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "inner_stpes" in result.stderr and "Traceback" not in result.stderr
