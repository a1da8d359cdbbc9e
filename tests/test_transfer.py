import json
import statistics

import pytest
import torch
from click.testing import CliRunner
from torch.utils.data import Dataset

from universal_attention import AttentionResNet50, TransferConfig, load_config, save_checkpoint
from universal_attention.cli import main
from universal_attention.data.synthetic import SyntheticTaskDataset
from universal_attention.errors import ConfigError, DatasetError
from universal_attention.runs.loggers import read_metrics
from universal_attention.transfer.finetune import (
    PROTOTYPE_SCALE,
    finetune,
    init_head,
    learning_rate_factor,
    set_batchnorm,
)
from universal_attention.transfer.protocol import accuracy_metrics, run_seed, select_shots, transfer_evaluate
from universal_attention.transfer.report import transfer_report
from universal_attention.transfer.results import TransferResult, TransferRun, summarise_cell

from fake_datasets import make_caltech101
from small import SMALL, SMALL_OVERRIDES

TINY = SMALL


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


def synthetic_pair(task="colour", with_masks=False):
    return (
        SyntheticTaskDataset(task, "train", image_size=32, length=24, with_masks=with_masks),
        SyntheticTaskDataset(task, "test", image_size=32, length=16, with_masks=with_masks),
    )


@pytest.mark.slow
def test_every_run_takes_exactly_the_step_budget_whatever_the_shots():
    config = TransferConfig(steps=5, batch_size=8, shots_per_class=(1, 4))
    result = transfer_evaluate("random", synthetic_pair(), config, model_config=TINY)
    assert [(run.shots, run.train_size, run.steps) for run in result.runs] == [(1, 4, 5), (4, 16, 5)]
    assert all(0 <= run.train_top1 <= 1 and len(run.train_loss) == 5 for run in result.runs)
    assert [cell.steps for cell in result.cells] == [5, 5]


@pytest.mark.slow
def test_without_steps_a_run_trains_full_epochs():
    config = TransferConfig(epochs=2, batch_size=8, shots_per_class=("all",))
    run = transfer_evaluate("random", synthetic_pair(), config, model_config=TINY).runs[0]
    assert (run.train_size, run.steps) == (24, 6)  # 2 epochs x 3 batches of 8


@pytest.mark.slow
def test_cells_report_the_sample_std_and_t_interval_over_seeds_and_draws():
    config = TransferConfig(steps=1, batch_size=8, seeds=2, draws=2, shots_per_class=(2,))
    result = transfer_evaluate("random", synthetic_pair(), config, model_config=TINY)
    assert [(run.seed, run.draw) for run in result.runs] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    values = [run.top1 for run in result.runs]
    cell = result.cell(2)
    half = 3.182446 * statistics.stdev(values) / 2  # t(0.975, 3 degrees of freedom) x s / sqrt(4)
    assert cell.runs == 4 and cell.top1 == pytest.approx(statistics.fmean(values))
    assert cell.top1_std == pytest.approx(statistics.stdev(values))
    assert cell.top1_ci == (pytest.approx(cell.top1 - half), pytest.approx(cell.top1 + half))
    assert all(0 <= run.top1 <= run.top5 <= 1 and run.test_size == 16 for run in result.runs)


@pytest.mark.slow
def test_a_run_s_shots_batches_and_head_depend_only_on_its_seed_and_draw():
    labels = torch.tensor(SyntheticTaskDataset("colour", "train", image_size=32, length=24).labels)
    classes = ["a", "b", "c", "d"]
    assert not torch.equal(
        select_shots(labels, classes, 2, run_seed(0, 0)), select_shots(labels, classes, 2, run_seed(0, 1))
    )
    config = TransferConfig(steps=2, batch_size=4, draws=2, shots_per_class=(1,), head_init="random")
    first = transfer_evaluate("random", synthetic_pair(), config, model_config=TINY)
    second = transfer_evaluate("random", synthetic_pair(), config, model_config=TINY)
    assert [run.train_loss for run in first.runs] == [run.train_loss for run in second.runs]
    assert first.runs[0].train_loss != first.runs[1].train_loss


@pytest.mark.slow
def test_frozen_batchnorm_keeps_the_start_statistics_while_weights_train():
    images, labels = ColourCast(8, 0).images, torch.tensor(ColourCast(8, 0).labels)
    for policy, keeps in (("frozen", True), ("train", False)):
        torch.manual_seed(0)
        model = AttentionResNet50(TINY, num_classes=3)
        before = model.backbone.bn1.running_mean.clone(), model.backbone.bn1.weight.detach().clone()
        finetune(
            model,
            "default",
            images,
            labels,
            None,
            TransferConfig(steps=2, batch_size=4, batchnorm=policy, lr=1e-2),
            "learned",
            torch.device("cpu"),
            torch.Generator().manual_seed(0),
        )
        assert torch.equal(model.backbone.bn1.running_mean, before[0]) is keeps
        assert not torch.equal(model.backbone.bn1.weight, before[1])


def test_set_batchnorm_frozen_puts_only_batchnorm_in_eval_mode():
    model = AttentionResNet50(TINY)
    set_batchnorm(model, "frozen")
    assert model.training and model.backbone.layer1[0].conv1.training
    assert not model.backbone.bn1.training and not model.backbone.layer4[0].bn2.training


def test_head_initialisations():
    head = torch.nn.Linear(3, 2)
    init_head(head, "zeros", torch.Generator())
    assert not head.weight.any() and not head.bias.any()
    init_head(head, "random", torch.Generator().manual_seed(1))
    first = head.weight.clone()
    init_head(head, "random", torch.Generator().manual_seed(1))
    assert torch.equal(head.weight, first) and float(head.weight.detach().abs().max()) <= 1 / 3**0.5
    features = torch.tensor([[2.0, 0, 0], [4.0, 0, 0], [0, 0, 3.0]])
    init_head(head, "prototypes", torch.Generator(), features, torch.tensor([0, 0, 1]))
    scale = PROTOTYPE_SCALE / 3.0  # mean feature length 3
    torch.testing.assert_close(head.weight, torch.tensor([[scale, 0, 0], [0, 0, scale]]))
    assert not head.bias.any()


def test_cosine_schedule_decays_the_learning_rate_to_zero():
    factors = [learning_rate_factor(step, 4, "cosine") for step in range(5)]
    assert factors == pytest.approx([1, 0.853553, 0.5, 0.146447, 0], abs=1e-6)
    assert learning_rate_factor(3, 4, "constant") == 1.0


@pytest.mark.slow
def test_finetuning_beats_chance_on_an_easy_task():
    result = transfer_evaluate(
        "random",
        (ColourCast(48, 0), ColourCast(30, 1)),
        TransferConfig(epochs=3, batch_size=8, lr=1e-3),
        model_config=TINY,
    )
    assert result.cell("all").top1 > 0.6  # chance is 1/3


def test_linear_probe_leaves_the_model_unchanged_and_fits_its_shots():
    model = AttentionResNet50(TINY)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    result = transfer_evaluate(model, (ColourCast(24, 0), ColourCast(12, 1)), TransferConfig(mode="linear"))
    assert result.mode == "linear" and model.head_classes == {}
    assert result.runs[0].train_top1 == 1.0 and result.runs[0].steps > 0  # L-BFGS iterations
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


@pytest.mark.slow
def test_finetune_leaves_the_passed_model_unchanged():
    model = AttentionResNet50(TINY)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    transfer_evaluate(model, (ColourCast(12, 0), ColourCast(6, 1)), TransferConfig(steps=1, batch_size=4))
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


@pytest.mark.slow
def test_controls_run_side_by_side_and_oracle_needs_masks(tmp_path):
    config = TransferConfig(steps=1, batch_size=8, shots_per_class=(1,), attention=("learned", "uniform", "oracle"))
    result = transfer_evaluate("random", synthetic_pair(with_masks=True), config, model_config=TINY)
    assert [cell.attention for cell in result.cells] == ["learned", "uniform", "oracle"]
    make_caltech101(tmp_path, classes=2, per_class=33)
    with pytest.raises(ConfigError, match="oracle attention needs object masks and caltech101 has none"):
        transfer_evaluate("random", "caltech101", config.updated(image_size=32), model_config=TINY, data_root=tmp_path)


def test_removing_the_object_needs_a_synthetic_target(tmp_path):
    make_caltech101(tmp_path, classes=2, per_class=33)
    with pytest.raises(ConfigError, match="caltech101 is not synthetic"):
        transfer_evaluate(
            "random", "caltech101", TransferConfig(remove_object=True), model_config=TINY, data_root=tmp_path
        )


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


@pytest.mark.slow
def test_caltech101_protocol_thirty_per_class(tmp_path):
    make_caltech101(tmp_path, classes=2, per_class=33)
    result = transfer_evaluate(
        "random",
        "caltech101",
        TransferConfig(steps=1, batch_size=16, image_size=32),
        model_config=TINY,
        data_root=tmp_path,
    )
    run = result.runs[0]
    assert (run.train_size, run.test_size) == (60, 6)
    assert result.num_classes == 2


def _result(start, top1s):
    """A TransferResult whose learned/uniform/oracle runs at 1 shot have the given top-1 per (seed, draw)."""
    runs = [
        TransferRun(
            attention=control,
            shots=1,
            seed=0,
            draw=draw,
            steps=1,
            train_top1=1.0,
            top1=value,
            top5=1.0,
            mean_per_class=value,
            train_loss=[],
            train_size=4,
            test_size=10,
            seconds=0.0,
        )
        for control, values in top1s.items()
        for draw, value in enumerate(values)
    ]
    cells = [summarise_cell(control, 1, [run for run in runs if run.attention == control]) for control in top1s]
    return TransferResult(
        start=start, target="t", mode="finetune", num_classes=4, runs=runs, cells=cells, wall_seconds=0.0
    )


def test_report_pairs_runs_and_gives_the_oracle_fraction():
    model = _result("model", {"learned": [0.6, 0.8], "uniform": [0.4, 0.6], "oracle": [0.8, 1.0]})
    random = _result("random", {"learned": [0.5, 0.5], "uniform": [0.5, 0.5], "oracle": [0.5, 0.5]})
    report = transfer_report([model, random], ["random"])
    learned = next(c for c in report["comparisons"] if c["attention"] == "learned")
    # Paired differences 0.1 and 0.3: mean 0.2, bootstrap interval [0.1, 0.3] (see test_stats).
    assert learned == {
        "start": "model",
        "baseline": "random",
        "attention": "learned",
        "shots": 1,
        "pairs": 2,
        "delta_top1": pytest.approx(0.2),
        "ci": [pytest.approx(0.1), pytest.approx(0.3)],
    }
    fraction = next(f for f in report["oracle_fraction"] if f["start"] == "model")
    assert fraction["fraction"] == pytest.approx(0.5) and fraction["ci"] == [pytest.approx(0.5)] * 2
    assert {(c["start"], c["attention"]) for c in report["cells"]} == {
        (start, control) for start in ("model", "random") for control in ("learned", "uniform", "oracle")
    }


@pytest.fixture
def checkpoint(tmp_path):
    config = load_config(
        preset="quickstart",
        overrides=[
            *SMALL_OVERRIDES,
            "data.image_size=32",
            "data.target=synthetic/colour",
            "transfer.steps=1",
            "transfer.batch_size=8",
            "transfer.max_test_images=8",
        ],
    )
    return save_checkpoint(tmp_path / "meta.safetensors", AttentionResNet50(config.model), config, step=3)


@pytest.mark.slow
def test_cli_runs_controls_draws_and_a_paired_baseline(checkpoint, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        [
            "transfer",
            "--ckpt",
            str(checkpoint),
            "--target",
            "synthetic/orientation",
            "--shots",
            "1,2",
            "--steps",
            "3",
            "--seeds",
            "2",
            "--draws",
            "2",
            "--attention",
            "learned,uniform,oracle",
            "--baseline",
            "random",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    document = json.loads((out / "results.json").read_text())
    assert document["target"] == "synthetic/orientation"
    assert sorted(document["results"]) == ["meta.safetensors", "random"]
    runs = [run for start in document["results"].values() for run in start["runs"]]
    assert len(runs) == 2 * 3 * 2 * 2 * 2  # starts x controls x shots x seeds x draws
    assert {run["steps"] for run in runs} == {3}
    for run in runs:
        assert {"steps", "train_top1", "top1", "attention", "shots", "seed", "draw"} <= set(run)
    assert len(document["cells"]) == 2 * 3 * 2
    assert all(
        set(cell) >= {"start", "attention", "shots", "top1", "top1_std", "top1_ci"} for cell in document["cells"]
    )
    assert len(document["comparisons"]) == 3 * 2
    assert all(
        set(c) >= {"start", "baseline", "attention", "shots", "delta_top1", "ci"} and c["pairs"] == 4
        for c in document["comparisons"]
    )
    assert {(f["start"], f["shots"]) for f in document["oracle_fraction"]} == {
        (start, shots) for start in ("meta.safetensors", "random") for shots in (1, 2)
    }
    assert "oracle fraction" in result.output and "vs random" in result.output
    assert any((out / "tb").iterdir())
    finals = [r for r in read_metrics(out) if r["tag"].endswith("/test_top1")]
    assert len(finals) == len(runs) and {r["step"] for r in finals} == {3}
    assert (out / ".uattn-run").is_file() and (out / "config.yaml").is_file()


def test_cli_transfer_refuses_a_folder_it_did_not_make_and_a_second_transfer(checkpoint, tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "results.json").write_text("{}")
    args = ["transfer", "--ckpt", str(checkpoint), "--shots", "1", "--steps", "1"]
    refused = CliRunner().invoke(main, [*args, "--out", str(theirs)])
    assert refused.exit_code == 2 and "no .uattn-run marker" in refused.output
    assert (theirs / "results.json").read_text() == "{}"
    ours = tmp_path / "ours"
    assert CliRunner().invoke(main, [*args, "--out", str(ours)]).exit_code == 0
    again = CliRunner().invoke(main, [*args, "--out", str(ours)])
    assert again.exit_code == 2 and "already holds a run" in again.output and "--resume" not in again.output
    assert CliRunner().invoke(main, [*args, "--out", str(ours), "--overwrite"]).exit_code == 0


def test_cli_remove_object_control_and_linear_mode(checkpoint, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "transfer",
            "--ckpt",
            str(checkpoint),
            "--shots",
            "2",
            "--mode",
            "linear",
            "--remove-object",
            "--out",
            str(tmp_path / "o"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        json.loads((tmp_path / "o" / "results.json").read_text())["results"]["meta.safetensors"]["config"][
            "remove_object"
        ]
        is True
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ckpt", "missing.safetensors"], "checkpoint missing.safetensors not found"),
        (["--ckpt", "random", "--target", "caltech101", "--data-root", "nowhere"], "caltech101"),
        (
            [
                "--ckpt",
                "random",
                "--preset",
                "quickstart",
                "--set",
                "data.image_size=32",
                "--target",
                "synthetic/colour",
                "--shots",
                "100000",
            ],
            "shots_per_class 100000 is more than class",
        ),
        (["--ckpt", "random", "--shots", "1,x"], "--shots '1,x'"),
        (["--ckpt", "random", "--steps", "0"], "--steps"),
        (["--ckpt", "random", "--draws", "0"], "--draws"),
        (["--ckpt", "random", "--attention", "learned,sideways"], "unknown attention control(s) sideways"),
        (["--ckpt", "random", "--attention", "learned,learned"], "each attention control may appear once"),
        (["--ckpt", "random", "--batchnorm", "melted"], "--batchnorm"),
        (["--ckpt", "random", "--target", "folder:.", "--attention", "oracle"], "oracle attention needs object masks"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    result = CliRunner().invoke(main, ["transfer", "--out", str(tmp_path / "o")] + args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output


def test_cli_oracle_on_a_target_without_masks_names_the_fix(fake_data_root, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "transfer",
            "--ckpt",
            "random",
            "--target",
            "caltech101",
            "--attention",
            "learned,oracle",
            "--data-root",
            str(fake_data_root),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: oracle attention needs object masks and caltech101 has none; use a target with masks "
        "(synthetic/<task>, oxford_pets, cub200) or drop oracle from transfer.attention"
    ]


def test_cli_refuses_a_checkpoint_of_another_kind(tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(1)}, str(other))
    result = CliRunner().invoke(main, ["transfer", "--ckpt", str(other), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "not a universal-attention checkpoint" in result.output
