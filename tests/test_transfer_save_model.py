"""``uattn transfer --save-model`` and ``transfer_evaluate(on_model=...)``: keeping what transfer learned."""

import json

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from universal_attention import AttentionResNet50, TransferConfig, load_checkpoint, load_config, save_checkpoint
from universal_attention.cli import main
from universal_attention.data.registry import get_dataset
from universal_attention.data.samples import fixed_subset
from universal_attention.data.synthetic import TASK_CLASSES, SyntheticTaskDataset
from universal_attention.errors import ConfigError
from universal_attention.transfer.linear_probe import fit_linear_probe
from universal_attention.transfer.protocol import (
    TARGET_HEAD,
    accuracy_metrics,
    load_items,
    model_shots_for,
    predict,
    probe_model,
    transfer_evaluate,
)
from universal_attention.transfer.run import model_file_name

from small import SMALL, SMALL_OVERRIDES

CPU = torch.device("cpu")
COLOURS = list(TASK_CLASSES["colour"])


def synthetic_pair():
    return (
        SyntheticTaskDataset("colour", "train", image_size=32, length=24),
        SyntheticTaskDataset("colour", "test", image_size=32, length=16),
    )


def all_test_items(pair):
    return load_items(pair[1], torch.arange(len(pair[1])), with_masks=False)


def top1(model, items, control="learned"):
    logits = predict(model, items, control, CPU)
    return accuracy_metrics(logits, items.labels, logits.shape[1])["top1"]


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    config = load_config(
        preset="quickstart",
        overrides=[
            *SMALL_OVERRIDES,
            "data.image_size=32",
            "data.target=synthetic/colour",
            "transfer.steps=2",
            "transfer.batch_size=8",
            "transfer.max_test_images=8",
        ],
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("start") / "meta.safetensors"
    return save_checkpoint(path, AttentionResNet50(config.model), config)


@pytest.fixture(scope="module")
def saved(start, tmp_path_factory):
    """One CLI transfer with --save-model: (its folder, its output)."""
    out = tmp_path_factory.mktemp("transfer") / "out"
    args = ["transfer", "--ckpt", str(start), "--shots", "1,2", "--seeds", "2", "--save-model", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_cli_saves_the_model_of_the_last_seed_at_the_largest_shots(saved):
    out, output = saved
    path = out / "models" / "meta.safetensors"
    assert f"model of meta.safetensors: {path}" in output
    report = json.loads((out / "results.json").read_text())
    assert report["models"] == {"meta.safetensors": "models/meta.safetensors"}
    checkpoint = load_checkpoint(path)
    assert checkpoint.model.class_names[TARGET_HEAD] == COLOURS
    assert checkpoint.experiment is not None and checkpoint.experiment.data.image_size == 32
    assert checkpoint.experiment.model == checkpoint.config
    run = next(
        run
        for run in report["results"]["meta.safetensors"]["runs"]
        if (run["shots"], run["seed"], run["draw"]) == (2, 1, 1)  # the quickstart's 2 draws
    )
    assert checkpoint.metadata["transfer"] == {
        "target": "synthetic/colour",
        "start": "meta.safetensors",
        "shots": 2,
        "seed": 1,
        "draw": 1,
        "attention": "learned",
        "top1": run["top1"],
        "mode": "finetune",
    }
    # rebuilt from the file, the model scores the transfer's test images as the run did
    test = get_dataset("synthetic/colour", "test", image_size=32)
    items = load_items(test, fixed_subset(len(test), 8), with_masks=False)
    logits = predict(checkpoint.model, items, "learned", CPU)
    assert accuracy_metrics(logits, items.labels, len(COLOURS))["top1"] == pytest.approx(run["top1"])


def test_on_model_hands_over_the_finetuned_model_of_one_run(tmp_path):
    pair, kept = synthetic_pair(), []
    config = TransferConfig(
        steps=2, batch_size=8, shots_per_class=(1, 2), seeds=2, draws=2, attention=("uniform", "learned")
    )
    result = transfer_evaluate(
        "random", pair, config, model_config=SMALL, on_model=lambda *handed: kept.append(handed), model_shots=1
    )
    assert len(kept) == 1 and len(result.runs) == 16
    label, run, model = kept[0]
    assert (label, run.attention, run.shots, run.seed, run.draw) == ("random", "learned", 1, 1, 1)
    assert model.class_names[TARGET_HEAD] == COLOURS
    items = all_test_items(pair)
    assert top1(model, items) == pytest.approx(run.top1)
    reloaded = load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", model)).model
    torch.testing.assert_close(
        predict(reloaded, items, "learned", CPU), predict(model, items, "learned", CPU), atol=1e-6, rtol=0
    )


def test_linear_mode_folds_the_standardisation_into_the_head():
    pair = synthetic_pair()
    torch.manual_seed(0)
    start = AttentionResNet50(SMALL)
    train, test = load_items(pair[0], torch.arange(len(pair[0])), False), all_test_items(pair)
    probe = fit_linear_probe(predict(start, train, "learned", CPU, head=None), train.labels, len(COLOURS))
    folded = probe_model(start, probe, COLOURS)
    assert start.head_classes == {} and folded.class_names[TARGET_HEAD] == COLOURS
    for items in (train, test):
        expected = probe.logits(predict(start, items, "learned", CPU, head=None))
        torch.testing.assert_close(predict(folded, items, "learned", CPU), expected, atol=1e-4, rtol=1e-4)
    kept = []
    config = TransferConfig(mode="linear", shots_per_class=(2, "all"))
    result = transfer_evaluate(start, pair, config, on_model=lambda *handed: kept.append(handed))
    ((_, run, model),) = kept
    assert run.shots == 2 and result.mode == "linear" and top1(model, test) == pytest.approx(run.top1)


def test_model_shots_default_and_refusal():
    assert model_shots_for((1, 5, "all")) == 5
    assert model_shots_for(("all",)) == "all"
    assert model_shots_for((1, 5, "all"), "all") == "all"
    with pytest.raises(ConfigError, match="model shots 3 is not a shots setting of this transfer; use one of 1, 5, a"):
        model_shots_for((1, 5, "all"), 3)
    assert model_file_name("meta.safetensors") == "meta.safetensors"
    assert model_file_name("../run 1/x", {"run_1_x.safetensors"}) == "run_1_x-2.safetensors"


def test_saved_model_works_as_ckpt_for_visualize_evaluate_attention_and_transfer(saved, tmp_path):
    path = saved[0] / "models" / "meta.safetensors"
    image = tmp_path / "photo.png"
    picture = SyntheticTaskDataset("colour", "test", image_size=32, length=1)[0][0]
    Image.fromarray(picture.permute(1, 2, 0).numpy()).save(image)
    result = CliRunner().invoke(main, ["visualize", str(image), "--ckpt", str(path), "-o", str(tmp_path / "a.png")])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.strip().startswith("photo.png:"))
    assert any(colour in line for colour in COLOURS), result.output
    attention = CliRunner().invoke(
        main,
        ["evaluate-attention", "--ckpt", str(path), "--limit", "3", "--no-baselines", "--out", str(tmp_path / "e")],
    )
    assert attention.exit_code == 0, attention.output
    assert "attention on synthetic/colour objects" in attention.output
    again = CliRunner().invoke(
        main, ["transfer", "--ckpt", str(path), "--shots", "1", "--steps", "1", "--out", str(tmp_path / "t")]
    )
    assert again.exit_code == 0, again.output
    report = json.loads((tmp_path / "t" / "results.json").read_text())
    assert report["target"] == "synthetic/colour" and list(report["results"]) == ["meta.safetensors"]


def test_overwrite_removes_the_saved_models(start, tmp_path):
    args = ["transfer", "--ckpt", str(start), "--shots", "1", "--steps", "1", "--out", str(tmp_path / "o")]
    assert CliRunner().invoke(main, [*args, "--save-model", "--mode", "linear"]).exit_code == 0
    assert load_checkpoint(tmp_path / "o" / "models" / "meta.safetensors").metadata["transfer"]["mode"] == "linear"
    assert CliRunner().invoke(main, [*args, "--overwrite"]).exit_code == 0
    assert not (tmp_path / "o" / "models").exists()
    assert "models" not in json.loads((tmp_path / "o" / "results.json").read_text())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--save-model", "--model-shots", "x"], "--model-shots 'x'"),
        (["--save-model", "--model-shots", "0"], "--model-shots '0'"),
        (
            ["--save-model", "--shots", "1,2", "--model-shots", "3"],
            "model shots 3 is not a shots setting of this transfer; use one of 1, 2",
        ),
        (["--model-shots", "1"], "add --save-model"),
    ],
)
def test_cli_bad_model_shots_is_one_line(args, message, tmp_path):
    result = CliRunner().invoke(main, ["transfer", "--ckpt", "random", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert not (tmp_path / "o").exists()


def test_a_kept_model_predicts_with_its_target_head_beside_its_source_heads():
    from universal_attention.analysis.files import pick_head

    model = AttentionResNet50(SMALL)
    model.add_head("synthetic/size", 4)
    assert pick_head(model, None) == "synthetic/size"  # the only head
    model.add_head("synthetic/colour", 4)
    assert pick_head(model, None) is None  # two source heads: ambiguous
    model.add_head(TARGET_HEAD, 4, COLOURS)
    assert pick_head(model, None) == TARGET_HEAD
    assert pick_head(model, "synthetic/size") == "synthetic/size"
