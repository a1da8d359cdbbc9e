"""examples/study_synthetic.py: the study with its controls, run end to end at a tiny size."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from universal_attention import load_config

from small import SMALL_OVERRIDES, SMALL_TAPS

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "study_synthetic.py"
STARTS = ("reptile", "reptile_reset", "joint", "supervised", "reptile_replicate", "random")
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
    "--chart-format",
    "svg",
    *(argument for override in SMALL_OVERRIDES for argument in ("--set", override)),
    "--set",
    "data.image_size=32",
    "--set",
    "sampler.batch_size=4",
    "--set",
    "reptile.inner_steps=2",
    "--set",
    "train.report=false",  # the study's start points are scratch runs: their reports are tested in test_reports
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
    assert set(layers) == {*SMALL_TAPS, "combined"}
    assert all(set(layers[name]) == {"relative_to_area", "frame_share", "pointing_game"} for name in layers)


@pytest.mark.slow
def test_every_trained_start_point_reports_its_held_out_sources_and_padding_is_compared_by_seed(study):
    _, report = study
    trained = [s for s in STARTS if s != "random"]
    assert set(report["sources_summary"]) == set(trained)
    for start in trained:
        assert len(report["sources"][start]) == 2  # one check per seed
        assert set(report["sources_summary"][start]) == {"synthetic/colour", "synthetic/texture", "synthetic/size"}
        for entry in report["sources_summary"][start].values():
            mean, _, _ = entry["top1"]
            assert 0.0 <= mean <= 1.0 and set(entry["relative_to_area"]) >= set(SMALL_TAPS)
    for layer, entry in report["padding"].items():
        zeros = [seed[layer]["frame_share"] for seed in report["attention"]["reptile"]]
        replicate = [seed[layer]["frame_share"] for seed in report["attention"]["reptile_replicate"]]
        assert entry["delta"] == pytest.approx(sum(b - a for a, b in zip(zeros, replicate)) / 2)


@pytest.mark.slow
def test_study_writes_its_tables_and_its_chart_in_the_format_asked_for(study):
    out, _ = study
    tables = (out / "summary.md").read_text()
    assert "reptile - joint" in tables and "Object-removed control" in tables and "oracle fraction" in tables
    assert "supervised - random" in tables and "replicate padding" in tables and "Held-out source images" in tables
    assert (out / "accuracy_vs_shots.svg").read_bytes().startswith(b"<?xml")
    assert not (out / "accuracy_vs_shots.png").exists()


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
    random = module.build_start("random", config, 3, tmp_path)[0].backbone.conv1.weight
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


def fake_interval(row: int) -> tuple[float, float]:
    """The 95 % interval of the ``row``-th start point's cells in :func:`fake_reports` (its top-1 is low + 0.1)."""
    return 0.2 + 0.1 * row, 0.35 + 0.1 * row


def fake_reports(shots):
    """Two targets' probe reports: for every start and shots, a learned-attention cell with its 95 % interval."""
    cells = [
        {
            "start": start,
            "attention": "learned",
            "shots": n,
            "top1": fake_interval(row)[0] + 0.1,
            "top1_ci": list(fake_interval(row)),
        }
        for row, start in enumerate(STARTS)
        for n in shots
    ]
    return {"synthetic/orientation": {"cells": cells}, "synthetic/hue": {"cells": cells}}


def test_the_chart_has_a_panel_per_target_error_bars_of_the_intervals_and_a_legend():
    pytest.importorskip("matplotlib")
    figure = load_study_module().chart(fake_reports([1, 5, 20]), [1, 5, 20], 0.25)
    assert [panel.get_title() for panel in figure.axes] == ["synthetic/orientation", "synthetic/hue"]
    assert sorted(text.get_text() for text in figure.legends[0].get_texts()) == sorted([*STARTS, "chance"])
    bars = figure.axes[0].containers
    assert len(bars) == len(STARTS) and all(bar.has_yerr for bar in bars)
    for row, bar in enumerate(bars):
        (vertical,) = bar.lines[2]
        ends = [float(y) for segment in vertical.get_segments() for y in segment[:, 1]]
        assert ends == pytest.approx(list(fake_interval(row)) * 3)  # at each shots, the cell's 95 % interval


@pytest.mark.parametrize(("chart_format", "magic"), [("png", b"\x89PNG"), ("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_the_chart_is_written_in_the_format_asked_for(tmp_path, chart_format, magic):
    pytest.importorskip("matplotlib")
    path = tmp_path / f"accuracy_vs_shots.{chart_format}"
    load_study_module().plot(fake_reports([1, 2]), [1, 2], 0.25, path, chart_format)
    assert path.read_bytes().startswith(magic)


def test_without_matplotlib_the_study_stops_with_one_line_naming_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # its import fails, as when it is not installed
    with pytest.raises(SystemExit) as stopped:
        load_study_module().figure_class()
    assert stopped.value.code == 2
    message = capsys.readouterr().err.strip()
    assert message == 'error: the report\'s figures need matplotlib: pip install "universal-attention[report]"'
