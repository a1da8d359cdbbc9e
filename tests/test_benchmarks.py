"""The benchmark scripts run and report what their docstrings promise (at tiny sizes: figures are not checked)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_atomic_writes import load_script
from test_meta_train import TINY

from small import SMALL_OVERRIDES, SMALL_TRUNK

ROOT = Path(__file__).resolve().parents[1]
SMALL_ARGUMENTS = [argument for override in SMALL_OVERRIDES for argument in ("--set", override)]
TINY_ARGUMENTS = [argument for override in TINY for argument in ("--set", override)]  # the small model too


def last_json(script: str, *arguments: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *arguments], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_model_overhead_reports_the_gap_above_the_flop_floor_at_each_size():
    result = last_json("model_overhead.py", "--image-sizes", "32,48", "--batch", "2", "--repeats", "2")
    for suffix in ("", "_48"):
        gap = result[f"attention_vs_resnet50{suffix}"] - result[f"attention_flops_vs_resnet50{suffix}"]
        assert result[f"attention_above_flops{suffix}"] == pytest.approx(gap, abs=0.002)
        low, high = result[f"attention_above_flops_ci{suffix}"]
        assert low <= high
    assert result["attention_flops_vs_resnet50"] > 1


@pytest.mark.slow
def test_reptile_overhead_pairs_each_meta_step_with_plain_steps_of_its_repeat():
    result = last_json("reptile_overhead.py", "--image-size", "32", "--batch", "2", "--repeats", "3")
    low, high = result["reptile_vs_plain_ci"]
    assert low <= result["reptile_vs_plain_paired_mean"] <= high
    assert result["reptile_vs_plain"] == pytest.approx(result["reptile_s"] / result["plain_s"], rel=0.01)
    assert result["repeats"] == 3


@pytest.mark.slow
def test_meta_train_speed_compares_meta_training_with_the_models_own_training():
    tiny = [
        *SMALL_OVERRIDES,
        "data.image_size=32",
        "sampler.batch_size=4",
        "reptile.inner_steps=1",
        "train.eval_steps=1",
        "train.eval_test_images=8",
    ]
    arguments = [argument for override in tiny for argument in ("--set", override)]
    result = last_json(
        "meta_train_speed.py", "--steps", "2", "--plain-every", "1", "--plain-burst", "2", "--threads", "1", *arguments
    )
    assert result["threads"] == 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert result["prefetch"] == (cores > 1)  # auto: one thread trains, so any second core is free for reading
    assert result["meta_train_vs_model"] == pytest.approx(
        result["meta_train_img_per_s"] / result["model_train_img_per_s"], rel=0.02
    )
    assert 0 < result["outside_meta_steps_share"] < 1 and result["target_check_seconds"] > 0
    assert result["target_checks_share"] == 0  # two steps hold no periodic check
    assert result["meta_train_vs_model_images_kept"] > 0 and result["meta_steps_vs_model_images_kept"] > 0
    assert result["trunk"] == SMALL_TRUNK
    assert result["plain_bursts"] == 4  # one burst after each meta-step of both runs
    low, high = result["model_train_img_per_s_spread"]
    assert low <= result["model_train_img_per_s"] <= high


@pytest.mark.slow
def test_prefetch_pairs_runs_with_and_without_the_reading_thread():
    tiny = [*SMALL_OVERRIDES, "data.image_size=32", "sampler.batch_size=4", "reptile.inner_steps=1"]
    arguments = [argument for override in tiny for argument in ("--set", override)]
    result = last_json("prefetch.py", "--steps", "2", "--pairs", "2", *arguments)
    assert len(result["prefetch_on_seconds"]) == len(result["prefetch_off_seconds"]) == 2
    low, high = result["prefetch_minus_off_ci"]
    assert low <= result["prefetch_minus_off_seconds"] <= high
    if result["prefetch_threads"] > 1:  # the same pairs again with a core left free
        assert result["prefetch_threads_free_core"] == result["prefetch_threads"] - 1


def test_the_scaling_grid_varies_one_factor_at_a_time_around_the_paper_s_point():
    grid = load_script("benchmarks/scaling.py").grid
    points = grid([32, 48, 128], [1, 2], [1, 4], (128, 1, 4))
    assert points == [(128, 1, 4), (32, 1, 4), (48, 1, 4), (128, 2, 4), (128, 1, 1)]  # the base first, no repeats


@pytest.mark.slow
def test_scaling_measures_each_point_in_its_own_process_and_writes_table_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    result = last_json(
        "scaling.py",
        *("--sizes", "32", "--meta-batches", "1", "--taps", "4", "--steps", "2", "--batch", "2"),
        *("--trunk", SMALL_TRUNK, "--plot", str(tmp_path / "curve.png")),
    )
    points = [(point["image_size"], point["meta_batch"], point["taps"]) for point in result["points"]]
    assert points == [(128, 1, 4), (32, 1, 4)]  # the paper preset's point comes first
    assert all(point["seconds_per_step"] > 0 and point["peak_memory_mb"] > 0 for point in result["points"])
    assert result["points"][1]["images_per_step"] == result["points"][0]["images_per_step"]
    assert result["paper_seconds_per_1000_steps"] == pytest.approx(result["points"][0]["ms_per_image"] * 320, rel=1e-3)
    assert result["table"].count("\n") == 2 + len(points)
    assert (tmp_path / "curve.png").read_bytes().startswith(b"\x89PNG")
    assert result["trunk"] == SMALL_TRUNK


def test_run_all_marks_targets_and_adds_the_cost_curve(tmp_path, monkeypatch):
    run_all = load_script("benchmarks/run_all.py")
    scaling = {
        "paper_seconds_per_1000_steps": 1234.5,
        "table": "| image size |\n|---|\n| 128 |\n",
        "plotted": True,
        "steps": 2,
        "batch": 8,
        "device": "cpu",
    }
    figures = {"scaling.py": scaling, "model_overhead.py": {"attention_above_flops": 0.02}}
    monkeypatch.setattr(run_all, "run", lambda script, arguments: figures.get(script, {}))
    monkeypatch.setattr(sys, "argv", ["run_all.py", "--out", str(tmp_path / "benchmarks.md")])
    run_all.main()
    report = (tmp_path / "benchmarks.md").read_text()
    assert "| attention_above_flops | 0.02 | <= 0.01 | no |" in report
    assert "**1234.5 s**" in report and "| 128 |" in report and "(benchmarks-scaling.png)" in report


def test_cli_startup_reports_medians_and_the_cost_beyond_the_interpreter(monkeypatch, capsys):
    script = load_script("benchmarks/cli_startup.py")
    seconds = {"pass": 0.02, "--help": 0.3, "--version": 0.25, "import torch": 2.0}
    ran = []

    def fake_wall_seconds(command):
        ran.append(command)
        return next(value for key, value in seconds.items() if key in " ".join(command))

    monkeypatch.setattr(script, "wall_seconds", fake_wall_seconds)
    monkeypatch.setattr(sys, "argv", ["cli_startup.py", "--repeats", "3"])
    script.main()
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures == {
        "python_seconds": 0.02,
        "cli_help_seconds": 0.3,
        "cli_version_seconds": 0.25,
        "torch_import_seconds": 2.0,
        "cli_help_over_python_seconds": 0.28,
    }
    assert len(ran) == 4 * (1 + 3)  # one warm-up run each, then three interleaved rounds


def test_target_check_ranks_ties_by_their_mean_rank_and_correlates_ranks():
    script = load_script("benchmarks/target_check.py")
    assert script.ranks([0.3, 0.1, 0.3, 0.2]) == [3.5, 1.0, 3.5, 2.0]
    assert script.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert script.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert script.spearman([1, 1, 1], [1, 2, 3]) != script.spearman([1, 1, 1], [1, 2, 3])  # nan: no ranking


@pytest.mark.slow
def test_target_check_scores_every_checkpoint_with_each_kind_of_check():
    result = last_json("target_check.py", "--steps", "2", "--every", "1", *TINY_ARGUMENTS)
    assert result["starts"] == ["random_init", "step-000001", "step-000002"]
    assert set(result["top1"]) == {"finetune", "linear", "finetune_reseeded"}
    assert all(len(values) == 3 and all(0 <= v <= 1 for v in values) for values in result["top1"].values())
    linear, finetune = result["linear_check_seconds"], result["finetune_check_seconds"]
    rounding = 0.0005 * (1 / linear + 1 / finetune) * linear / finetune  # the seconds are rounded to 1 ms
    assert result["linear_vs_finetune_seconds"] == pytest.approx(linear / finetune, abs=rounding + 0.001)
    assert result["trunk"] == SMALL_TRUNK


@pytest.mark.slow
def test_quickstart_benchmark_times_the_command_and_its_stages():
    result = last_json("quickstart.py", *TINY_ARGUMENTS, "--set", "train.max_steps=2", "--set", "train.eval_every=0")
    stages = [key for key in result if key.startswith("quickstart_stage_")]
    assert "quickstart_stage_meta_train_seconds" in stages and "quickstart_stage_other_seconds" in stages
    assert sum(result[key] for key in stages) == pytest.approx(result["quickstart_seconds"], abs=0.5)
    assert 0 <= result["target_top1"] <= 1
