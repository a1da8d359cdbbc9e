import json

import pytest
import torch
import yaml
from click.testing import CliRunner

from universal_attention import AttentionResNet50, load_checkpoint, load_config, meta_train
from universal_attention.cli import main
from universal_attention.runs.loggers import read_metrics

from small import SMALL_OVERRIDES, SMALL_TAPS

pytestmark = pytest.mark.slow  # every test meta-trains the small model (one tiny run, shared)
TINY = [
    *SMALL_OVERRIDES,
    "data.image_size=32",
    "data.sources=[synthetic/colour, synthetic/size]",
    "sampler.batch_size=4",
    "reptile.inner_steps=1",
    "train.max_steps=3",
    "train.eval_every=2",
    "train.eval_steps=1",
    "train.checkpoint_every=1",
    "train.keep_last=2",
    "train.image_log_every=2",
    "train.eval_test_images=8",
    "transfer.steps=1",
    "transfer.draws=1",
    "transfer.batch_size=4",
    "transfer.shots_per_class=[2]",
    "transfer.max_test_images=8",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    args = ["meta-train", "--preset", "quickstart", "--out", str(out), "--compare", "random,joint"]
    for override in TINY:
        args += ["--set", override]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_writes_the_resolved_config_first(run):
    out, _ = run
    saved = load_config(config_file=out / "config.yaml")
    assert saved == load_config(preset="quickstart", overrides=[*TINY, "train.compare=[random, joint]"])
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["max_steps"] == 3


def test_keeps_the_last_checkpoints_and_the_best(run):
    out, _ = run
    names = sorted(path.name for path in (out / "checkpoints").iterdir())
    assert names == ["best.safetensors", "step-000002.safetensors", "step-000003.safetensors"]
    final = load_checkpoint(out / "checkpoints" / "step-000003.safetensors")
    assert final.step == 3
    assert set(final.model.head_classes) == {"synthetic/colour", "synthetic/size"}
    assert {"reptile.step", "sampler.rank0.generator", "rng.torch"} <= set(final.state)
    assert load_checkpoint(out / "checkpoints" / "best.safetensors").step == 2


def test_writes_tensorboard_events(run):
    out, _ = run
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tb"), size_guidance={"images": 0, "histograms": 0}).Reload()
    tags = events.Tags()
    assert {"meta/loss", "meta/images_per_s", "meta/outer_lr", "target/top1"} <= set(tags["scalars"])
    assert any(tag.startswith("meta/accuracy/synthetic/") for tag in tags["scalars"])
    assert "attention/watched" in tags["images"]
    assert any(tag.startswith("attention_entropy/") for tag in tags["histograms"])


def test_writes_metrics_jsonl_that_reads_back_without_tensorboard(run):
    out, _ = run
    scalars = read_metrics(out)
    tags = {record["tag"] for record in scalars}
    assert {"meta/loss", "meta/images_per_s", "target/top1"} <= tags
    assert all(set(record) == {"kind", "step", "tag", "value", "wall_time"} for record in scalars)
    assert sorted({record["step"] for record in scalars if record["tag"] == "meta/loss"}) == [1]  # and every log_every
    images = read_metrics(out, kind="image")
    assert images and all((out / record["file"]).is_file() for record in images)


def test_results_compare_meta_trained_with_random_init_and_joint_training(run):
    out, output = run
    results = json.loads((out / "results.json").read_text())
    for key in ("meta_trained", "random_init", "joint"):
        assert 0 <= results[key]["top1"] <= 1
        assert 0 <= results[key]["attention_in_mask"] <= 1
        assert len(results[key]["top1_ci"]) == 2 and set(results[key]["attention"]["relative_to_area"]) == set(
            SMALL_TAPS
        )
    assert [(c["start"], c["baseline"]) for c in results["comparisons"]] == [
        ("meta_trained", "random_init"),
        ("meta_trained", "joint"),
    ]
    joint = load_config(config_file=out / "compare" / "joint" / "config.yaml")
    assert joint.reptile.algorithm == "joint" and joint.train.max_steps == 3
    assert "meta-trained" in output and "random init" in output and "joint training" in output
    assert set(results["stage_seconds"]) == {"meta_train", "baselines", "transfer", "attention"}
    assert all(value > 0 for value in results["stage_seconds"].values()) and "stage seconds:" in output


def test_final_checkpoint_transfers_from_the_cli(run, tmp_path):
    out, _ = run
    result = CliRunner().invoke(main, ["transfer", "--ckpt", str(out), "--out", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "t" / "results.json").read_text())["target"] == "synthetic/orientation"


def test_refuses_to_run_into_an_existing_run(run):
    out, _ = run
    result = CliRunner().invoke(main, ["meta-train", "--preset", "quickstart", "--out", str(out), "--max-steps", "1"])
    assert result.exit_code == 2
    assert "already holds a run" in result.output and "--overwrite" in result.output


def test_api_run_reports_throughput(tmp_path):
    config = load_config(
        preset="quickstart", overrides=TINY + ["train.max_steps=1", "train.eval_every=0", "train.image_log_every=0"]
    )
    result = meta_train(config, tmp_path / "api", on_message=lambda text: None)
    assert result.steps == 1
    assert result.images_per_second > 0
    assert result.final_checkpoint.name == "step-000001.safetensors"


def test_periodic_target_checks_read_the_target_through_the_cache(tmp_path, monkeypatch):
    from universal_attention.data import images

    from fake_datasets import make_caltech101

    root = make_caltech101(tmp_path / "data").parent
    decoded = []
    decode = images._decode
    monkeypatch.setattr(images, "_decode", lambda *args, **kwargs: decoded.append(1) or decode(*args, **kwargs))
    config = load_config(
        preset="quickstart",
        overrides=TINY
        + ["data.target=caltech101", f"data.data_root={root}", "data.cache=true", "train.eval_every=1"]
        + ["train.image_log_every=0", "train.final_comparison=false"],
    )
    decodes_after_step = []
    meta_train(
        config,
        tmp_path / "run",
        on_message=lambda text: None,
        on_step=lambda step, metrics: decodes_after_step.append(len(decoded)),
    )
    assert len(decodes_after_step) == 3
    assert decodes_after_step[0] > 0  # the first check builds the target's cache
    assert decodes_after_step[2] == decodes_after_step[0]  # later checks decode nothing


def test_the_run_writes_its_config_and_final_figures_as_hparams_for_comparing_runs(run):
    out, _ = run
    (entry,) = read_metrics(out, kind="hparams")
    assert entry["params"]["reptile.inner_steps"] == 1 and entry["params"]["model.trunk"] == "resnet10"
    assert entry["params"]["data.sources"] == '["synthetic/colour", "synthetic/size"]'
    results = json.loads((out / "results.json").read_text())
    assert entry["metrics"]["final/meta_trained/top1"] == pytest.approx(results["meta_trained"]["top1"])
    assert {"final/random_init/top1", "final/joint/top1", "final/sources/synthetic/colour/top1"} <= set(
        entry["metrics"]
    )


@pytest.mark.parametrize("mode", ["finetune", "linear"])
def test_the_periodic_check_runs_as_train_eval_mode_says(mode):
    from universal_attention.meta.comparison import quick_transfer

    config = load_config(preset="quickstart", overrides=[*TINY, f"train.eval_mode={mode}"])
    result = quick_transfer(AttentionResNet50(config.model), config, torch.device("cpu"))
    assert result.mode == mode and len(result.runs) == 1
    assert (result.runs[0].train_loss == []) == (mode == "linear")  # the probe trains no weights
