import json

import pytest
import torch
from click.testing import CliRunner
from torch.utils.data import Dataset

from fake_datasets import make_caltech101
from universal_attention import AttentionResNet50, ModelConfig, TransferConfig, load_config, save_checkpoint
from universal_attention.cli import main
from universal_attention.data.synthetic import SyntheticTaskDataset
from universal_attention.errors import DatasetError
from universal_attention.transfer import accuracy_metrics, select_shots, transfer_evaluate

TINY = ModelConfig(alignment_size=8, query_size=8)


class ColourCast(Dataset):
    """An easy task: the class is which colour channel is bright."""

    classes = ["red", "green", "blue"]

    def __init__(self, count: int, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.labels = [index % 3 for index in range(count)]
        self.images = torch.randint(0, 60, (count, 3, 32, 32), dtype=torch.uint8, generator=generator)
        for index, label in enumerate(self.labels):
            self.images[index, label] += 180

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]


def synthetic_pair(task="colour"):
    return (SyntheticTaskDataset(task, "train", image_size=32, length=24),
            SyntheticTaskDataset(task, "test", image_size=32, length=16))


def test_metrics_are_in_range_and_consistent():
    result = transfer_evaluate("random", synthetic_pair(), TransferConfig(epochs=1, batch_size=8, seeds=2,
                                                                          shots_per_class=(2, "all")),
                               model_config=TINY)
    assert [entry.shots for entry in result.shots] == [2, "all"]
    for entry in result.shots:
        assert len(entry.runs) == 2
        for run in entry.runs:
            assert 0 <= run.top1 <= run.top5 <= 1
            assert 0 <= run.mean_per_class <= 1
            assert len(run.train_loss) == len(run.test_top1) == 1
            assert run.test_size == 16
    assert [run.train_size for run in result.summary(2).runs] == [8, 8]  # 2 shots x 4 classes
    assert result.summary("all").runs[0].train_size == 24


def test_finetuning_beats_chance_on_an_easy_task():
    result = transfer_evaluate("random", (ColourCast(48, 0), ColourCast(30, 1)),
                               TransferConfig(epochs=3, batch_size=8, lr=1e-3), model_config=TINY)
    assert result.shots[0].top1 > 0.6  # chance is 1/3


def test_linear_probe_trains_only_a_head_and_leaves_the_model_unchanged():
    model = AttentionResNet50(TINY)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    result = transfer_evaluate(model, (ColourCast(24, 0), ColourCast(12, 1)),
                               TransferConfig(mode="linear", epochs=2, batch_size=8, lr=1e-2))
    assert result.mode == "linear"
    assert model.head_classes == {}
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_finetune_leaves_the_passed_model_unchanged():
    model = AttentionResNet50(TINY)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    transfer_evaluate(model, (ColourCast(12, 0), ColourCast(6, 1)), TransferConfig(epochs=1, batch_size=4))
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_fixed_seed_is_deterministic_on_cpu():
    config = TransferConfig(epochs=1, batch_size=4, shots_per_class=(1,))
    first = transfer_evaluate("random", (ColourCast(12, 0), ColourCast(6, 1)), config, model_config=TINY)
    second = transfer_evaluate("random", (ColourCast(12, 0), ColourCast(6, 1)), config, model_config=TINY)
    assert first.shots[0].runs[0].train_loss == second.shots[0].runs[0].train_loss
    assert first.shots[0].top1 == second.shots[0].top1


def test_select_shots_takes_k_per_class_reproducibly():
    labels = torch.tensor([0, 1, 2] * 10)
    chosen = select_shots(labels, ["a", "b", "c"], 4, seed=3)
    assert torch.bincount(labels[chosen]).tolist() == [4, 4, 4]
    assert torch.equal(chosen, select_shots(labels, ["a", "b", "c"], 4, seed=3))
    assert not torch.equal(chosen, select_shots(labels, ["a", "b", "c"], 4, seed=4))
    with pytest.raises(DatasetError, match="shots_per_class 11 is more than class 'a' has \\(10 training images\\)"):
        select_shots(labels, ["a", "b", "c"], 11, seed=0)


def test_accuracy_metrics_on_known_logits():
    logits = torch.tensor([[3.0, 2, 1, 0, -1, -2], [0, 3, 2, 1, -1, -2], [0, 1, 2, 3, 4, 5]])
    metrics = accuracy_metrics(logits, torch.tensor([0, 2, 0]), 6)
    assert metrics["top1"] == pytest.approx(1 / 3)
    assert metrics["top5"] == pytest.approx(2 / 3)
    assert metrics["mean_per_class"] == pytest.approx((0.5 + 0.0) / 2)


def test_caltech101_protocol_thirty_per_class(tmp_path):
    make_caltech101(tmp_path, classes=2, per_class=33)
    result = transfer_evaluate("random", "caltech101", TransferConfig(epochs=1, batch_size=16),
                               model_config=TINY, image_size=32, data_root=tmp_path)
    run = result.shots[0].runs[0]
    assert (run.train_size, run.test_size) == (60, 6)
    assert result.num_classes == 2


@pytest.fixture
def checkpoint(tmp_path):
    config = load_config(preset="quickstart", overrides=["model.alignment_size=8", "model.query_size=8",
                                                         "data.image_size=32", "data.target=synthetic/colour",
                                                         "transfer.epochs=1", "transfer.batch_size=8",
                                                         "transfer.max_test_images=8"])
    return save_checkpoint(tmp_path / "meta.safetensors", AttentionResNet50(config.model), config, step=3)


def test_cli_writes_results_with_baseline_rows(checkpoint, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["transfer", "--ckpt", str(checkpoint), "--baseline", "random",
                                       "--shots", "1,2", "--seeds", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads((out / "results.json").read_text())
    assert document["target"] == "synthetic/colour"
    assert sorted(document["results"]) == ["meta.safetensors", "random"]
    for start in document["results"].values():
        assert [entry["shots"] for entry in start["shots"]] == [1, 2]
        assert all(len(entry["runs"]) == 2 for entry in start["shots"])
    assert "random" in result.output and "meta.safetensors" in result.output
    assert any((out / "tb").iterdir())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ckpt", "missing.safetensors"], "checkpoint missing.safetensors not found"),
        (["--ckpt", "random", "--target", "caltech101", "--data-root", "nowhere"], "caltech101"),
        (["--ckpt", "random", "--preset", "quickstart", "--set", "data.image_size=32", "--target",
          "synthetic/colour", "--shots", "100000"], "shots_per_class 100000 is more than class"),
        (["--ckpt", "random", "--shots", "1,x"], "--shots '1,x'"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    result = CliRunner().invoke(main, ["transfer", "--out", str(tmp_path / "o")] + args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output


def test_cli_refuses_a_checkpoint_of_another_kind(tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(1)}, str(other))
    result = CliRunner().invoke(main, ["transfer", "--ckpt", str(other), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "not a universal-attention checkpoint" in result.output
