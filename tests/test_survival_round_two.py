"""Hostile input and faults, round two: foreign folders and checkpoints are never adopted, a full or read-only disk
ends in one line that names the path and what was kept (a finished result is still shown and saved elsewhere),
elongated images are skipped, and weights that loading would change are refused."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from universal_attention import (
    AttentionResNet50,
    CheckpointError,
    ImageError,
    UnsavedResultError,
    WriteError,
    atomic,
    get_dataset,
    load_checkpoint,
    load_config,
    meta_train,
    save_checkpoint,
)
from universal_attention.cli import main
from universal_attention.data.images import MAX_ASPECT_RATIO, read_image, resize_and_crop
from universal_attention.runs.checkpoint import DIGEST, tensors_digest

from faults import rewrite_checkpoint
from small import SMALL, SMALL_OVERRIDES

pytestmark = pytest.mark.usefixtures("single_thread")
RUN = [
    *SMALL_OVERRIDES,
    "data.image_size=32",
    "data.sources=[synthetic/colour, synthetic/size]",
    "sampler.batch_size=4",
    "reptile.inner_steps=1",
    "train.max_steps=2",
    "train.eval_every=0",
    "train.checkpoint_every=1",
    "train.keep_last=10",
    "train.image_log_every=0",
    "train.final_comparison=false",
    "train.source_images=4",
    "transfer.steps=1",
    "transfer.draws=1",
    "transfer.batch_size=4",
    "transfer.shots_per_class=[2]",
    "transfer.max_test_images=8",
]


def quiet(text):
    return None


def meta_args(out, *extra):
    args = ["meta-train", "--preset", "quickstart", "--out", str(out)]
    for override in RUN:
        args += ["--set", override]
    return args + list(extra)


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: what "untouched" is checked against."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A two-step run (checkpoints at steps 1 and 2), copied by each test that changes it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    meta_train(load_config(preset="quickstart", overrides=RUN), out, on_message=quiet)
    torch.set_num_threads(threads)
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    shutil.copytree(finished_run, tmp_path / "run")
    return tmp_path / "run"


def fail_writes_to(monkeypatch, fragment: str, code: int = errno.ENOSPC) -> None:
    """Make every atomic write whose target's name holds ``fragment`` fail as a full (or read-only) disk would."""
    real = atomic._write_all

    def failing(name, data):
        if fragment in Path(name).name:
            raise OSError(code, os.strerror(code), name)
        return real(name, data)

    monkeypatch.setattr(atomic, "_write_all", failing)


# Foreign folders are refused, never adopted: a copied trials.json or an unmarked run proves nothing.


@pytest.mark.slow
def test_tune_refuses_a_folder_holding_a_copied_trials_json_beside_the_users_own_files(tmp_path, run_copy):
    folder = tmp_path / "mine"
    (folder / "hparams").mkdir(parents=True)
    (folder / "hparams" / "notes.txt").write_text("mine\n")
    (folder / "best.yaml").write_text("mine: true\n")
    (folder / "trials.json").write_text(json.dumps({"format": "universal-attention-trials", "version": 1}))
    before = snapshot(folder)
    space = tmp_path / "space.yaml"
    space.write_text("model.alignment_size: {type: quniform, low: 4, high: 8}\n")
    args = ["tune", "--preset", "quickstart", "--space", str(space), "--max-evals", "1", "--out", str(folder)]
    for override in RUN:
        args += ["--set", override]
    line = one_line_error(CliRunner().invoke(main, args))
    assert "no .uattn-run marker" in line and 'echo \'{"kind": "search"}\'' in line
    assert snapshot(folder) == before


@pytest.mark.slow
def test_a_run_folder_without_its_marker_is_not_resumed(run_copy):
    (run_copy / ".uattn-run").unlink()  # as a run of version 0.1, or someone's copy of a run's files
    before = snapshot(run_copy)
    line = one_line_error(CliRunner().invoke(main, ["meta-train", "--out", str(run_copy), "--resume"]))
    assert "no .uattn-run marker" in line and 'echo \'{"kind": "run"}\'' in line
    assert snapshot(run_copy) == before
    (run_copy / ".uattn-run").write_text('{"kind": "run"}\n')  # marked by hand, as the line says
    result = CliRunner().invoke(main, ["meta-train", "--out", str(run_copy), "--resume"])
    assert result.exit_code == 0, result.output


def test_evaluate_attention_writes_only_into_a_folder_of_its_own(tmp_path):
    checkpoint = save_checkpoint(tmp_path / "model.safetensors", AttentionResNet50(SMALL))
    args = ["evaluate-attention", "--ckpt", str(checkpoint), "--dataset", "synthetic/colour", "--limit", "2"]
    args += ["--image-size", "32", "--no-baselines"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "attention_report.json").write_text("someone else's\n")
    assert "no .uattn-run marker" in one_line_error(CliRunner().invoke(main, [*args, "--out", str(foreign)]))
    assert snapshot(foreign) == {"attention_report.json": b"someone else's\n"}
    ours = tmp_path / "ours"
    assert CliRunner().invoke(main, [*args, "--out", str(ours)]).exit_code == 0
    assert json.loads((ours / ".uattn-run").read_text())["kind"] == "attention"
    first = (ours / "attention_report.json").read_bytes()
    assert "--overwrite" in one_line_error(CliRunner().invoke(main, [*args, "--out", str(ours)]))
    assert (ours / "attention_report.json").read_bytes() == first
    assert CliRunner().invoke(main, [*args, "--out", str(ours), "--overwrite"]).exit_code == 0
    run = tmp_path / "run"
    run.mkdir()
    (run / ".uattn-run").write_text('{"kind": "run"}\n')
    assert "run folder" in one_line_error(CliRunner().invoke(main, [*args, "--out", str(run)]))


# A run continues only from its own checkpoints, and only from resume state that validates.


@pytest.mark.slow
def test_resume_refuses_another_runs_checkpoint_and_names_the_differences(run_copy, tmp_path):
    other = tmp_path / "other"
    meta_train(
        load_config(preset="quickstart", overrides=[*RUN, "train.seed=7", "name=other"]), other, on_message=quiet
    )
    planted = run_copy / "checkpoints" / "step-000009.safetensors"
    shutil.copy(other / "checkpoints" / "step-000002.safetensors", planted)
    before = snapshot(run_copy)
    line = one_line_error(CliRunner().invoke(main, ["meta-train", "--out", str(run_copy), "--resume"]))
    assert "step-000009.safetensors is not a checkpoint of this run" in line
    assert "name" in line and "train.seed" in line
    assert snapshot(run_copy) == before


@pytest.mark.parametrize(
    ("key", "crafted"),
    [
        ("rng.rank0.torch", lambda value: value.float()),  # a generator state of the wrong dtype
        ("sampler.tasks_sampled", lambda value: torch.zeros(3, dtype=torch.int64)),  # a counter of the wrong shape
        ("sampler.rank0.generator", lambda value: value[:10]),  # a truncated generator state
        ("reptile.step", lambda value: torch.tensor(1.5)),
    ],
)
@pytest.mark.slow
def test_a_newest_checkpoint_whose_resume_state_does_not_validate_is_skipped(run_copy, key, crafted):
    older = load_checkpoint(run_copy / "checkpoints" / "step-000001.safetensors")
    state = dict(older.state)
    state[key] = crafted(state[key])
    save_checkpoint(  # written by the library itself, so its digest is right: only the resume state is wrong
        run_copy / "checkpoints" / "step-000003.safetensors",
        older.model,
        older.experiment,
        step=3,
        extra={},
        state=state,
    )
    messages = []
    result = meta_train(older.experiment, run_copy, resume=True, on_message=messages.append)
    assert any("skipped step-000003.safetensors" in m and "resume state does not validate" in m for m in messages)
    assert any(key in m for m in messages)
    assert result.steps == 2  # resumed from the newest checkpoint that validates: the run was already done there


# Writes that fail end in one line naming the path and what was kept; a finished result is still shown.


@pytest.mark.slow
def test_a_full_disk_at_results_json_still_prints_and_saves_the_comparison_elsewhere(tmp_path, monkeypatch):
    fail_writes_to(monkeypatch, "results.json.tmp")
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main, meta_args(out, "--set", "train.final_comparison=true", "--set", "train.max_steps=1")
    )
    line = one_line_error(result)
    assert f"cannot write {out / 'results.json'} (No space left on device)" in line
    assert "the checkpoints in" in line and "are kept" in line
    assert "meta-trained" in result.output and "random init" in result.output  # the comparison table
    fallback = Path(line.split("the result is saved to ")[1].split(" instead")[0])
    saved = json.loads(fallback.read_text())
    fallback.unlink()
    assert "meta_trained" in saved and "sources" in saved
    assert not (out / "results.json").exists() and load_checkpoint(out).step == 1


@pytest.mark.slow
def test_a_full_disk_at_a_checkpoint_keeps_the_newest_one_and_the_run_resumes(tmp_path, monkeypatch):
    fail_writes_to(monkeypatch, "step-000002")
    out = tmp_path / "run"
    line = one_line_error(CliRunner().invoke(main, meta_args(out)))
    assert f"cannot write {out / 'checkpoints' / 'step-000002.safetensors'} (No space left on device)" in line
    assert "step-000001.safetensors, is kept" in line and "--resume" in line
    assert not [name for name in os.listdir(out / "checkpoints") if ".tmp" in name]
    monkeypatch.undo()
    assert CliRunner().invoke(main, ["meta-train", "--out", str(out), "--resume"]).exit_code == 0
    assert load_checkpoint(out).step == 2


@pytest.mark.slow
def test_a_read_only_transfer_folder_still_prints_the_result_it_could_not_save(run_copy, tmp_path, monkeypatch):
    fail_writes_to(monkeypatch, "results.json.tmp", errno.EROFS)

    real_mkstemp = tempfile.mkstemp

    def no_other_place(*args, **kwargs):  # the temporary folder refuses too; writes beside their target do not
        if kwargs.get("dir") is None:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", no_other_place)
    args = ["transfer", "--ckpt", str(run_copy), "--out", str(tmp_path / "transfer")]
    for override in ("transfer.steps=1", "transfer.draws=1", "transfer.shots_per_class=[2]"):
        args += ["--set", override]
    args += ["--set", "transfer.max_test_images=8", "--set", "transfer.batch_size=4"]
    result = CliRunner().invoke(main, args)
    line = one_line_error(result)
    assert "results.json (Read-only file system)" in line and "no other place could take the result" in line
    assert "top-1" in result.output  # the results table was printed before the line


def test_a_forbidden_folder_is_one_line_naming_it(tmp_path):
    forbidden = Path("/sys/uattn-test-run")
    try:
        tempfile.mkstemp(dir="/sys")
    except OSError:
        pass
    else:  # pragma: no cover - a machine whose /sys takes files
        pytest.skip("/sys accepts new files here")
    line = one_line_error(CliRunner().invoke(main, meta_args(forbidden)))
    assert f"cannot write {forbidden}" in line and "nothing was written there" in line


def test_write_errors_are_os_errors_and_name_the_path(tmp_path, monkeypatch):
    fail_writes_to(monkeypatch, ".target", errno.EACCES)  # the temporaries beside it, not the fallback
    with pytest.raises(WriteError) as refused:
        atomic.atomic_write_bytes(tmp_path / "target", b"x")
    assert isinstance(refused.value, OSError) and str(tmp_path / "target") in str(refused.value)
    assert os.listdir(tmp_path) == []  # no temporary left behind
    with pytest.raises(UnsavedResultError) as unsaved:
        atomic.write_result(tmp_path / "target.json", b"{}", {"top1": 0.5}, "nothing else was lost")
    assert unsaved.value.result == {"top1": 0.5} and Path(unsaved.value.fallback).read_bytes() == b"{}"
    Path(unsaved.value.fallback).unlink()


# Images are checked on their output size too: an elongated strip is refused, and skipped and counted in datasets.


def test_an_elongated_image_is_refused_before_it_is_resized(tmp_path):
    strip = tmp_path / "strip.png"
    Image.new("RGB", (1, 4000)).save(strip)
    image, note = read_image(strip)
    assert image is None and "too elongated" in note and f"{MAX_ASPECT_RATIO}:1" in note
    with pytest.raises(ImageError, match="too elongated"):
        resize_and_crop(torch.zeros(3, 2, 2000, dtype=torch.uint8), 64)
    assert resize_and_crop(torch.zeros(3, 10, 300, dtype=torch.uint8), 16).shape == (3, 16, 16)


def test_a_folder_dataset_skips_and_counts_an_elongated_image(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for index in range(2):
            Image.new("RGB", (40, 30), (index * 100, 50, 50)).save(tmp_path / name / f"{index}.png")
    Image.new("RGB", (1, 100_000)).save(tmp_path / "cat" / "strip.png")
    dataset = get_dataset(f"folder:{tmp_path}", "train", image_size=32)
    with pytest.warns(UserWarning, match="skipped unreadable .*strip.png"):
        items = [dataset[index] for index in range(len(dataset))]
    assert all(image.shape == (3, 32, 32) for image, _ in items)
    assert dataset.skipped == 1


# Weights that loading would change are refused.


def test_complex_weights_are_refused_not_loaded_without_their_imaginary_part(tmp_path):
    source = save_checkpoint(tmp_path / "model.safetensors", AttentionResNet50(SMALL))
    loaded = load_checkpoint(source)
    name = "backbone.conv1.weight"
    weights = {key: value for key, value in loaded.model.state_dict().items()}
    complex_weight = torch.complex(weights[name], torch.ones_like(weights[name]))
    tensors = {**weights, name: complex_weight}
    crafted = rewrite_checkpoint(
        source, tmp_path / "complex.safetensors", tensors={name: complex_weight}, **{DIGEST: tensors_digest(tensors)}
    )
    with pytest.raises(CheckpointError, match=f"holds {name} as torch.complex64"):
        load_checkpoint(crafted)
    line = one_line_error(CliRunner().invoke(main, ["info", str(crafted)]))
    assert "complex64" in line


# A class folder whose name holds a newline is a name like any other.


def test_a_class_folder_name_with_a_newline_is_shown_escaped_not_a_traceback(tmp_path):
    for name in ("two\nlines", "plain"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for index in range(2):
            Image.new("RGB", (40, 30), (index * 100, 50, 50)).save(tmp_path / "data" / name / f"{index}.png")
    dataset = get_dataset(f"folder:{tmp_path / 'data'}", "train", image_size=32)
    assert "two\nlines" in dataset.classes
    out = tmp_path / "sheet.png"
    result = CliRunner().invoke(main, ["data", "show", f"folder:{tmp_path / 'data'}", "-o", str(out), "-n", "4"])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size[0] > 0
    verify = CliRunner().invoke(main, ["data", "verify", f"folder:{tmp_path / 'data'}"])
    assert verify.exit_code == 0, verify.output


@pytest.mark.slow
def test_a_meta_trained_checkpoint_carries_its_sources_class_names(finished_run):
    from universal_attention.data.synthetic import TASK_CLASSES

    names = load_checkpoint(finished_run).model.class_names
    assert names == {f"synthetic/{task}": list(TASK_CLASSES[task]) for task in ("colour", "size")}
