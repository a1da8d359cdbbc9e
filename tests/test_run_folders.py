"""Run and search folders are ours alone: a marker written first, nothing deleted without it, one writer at a time,
and folder names from configs and trial files stay where they belong."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from universal_attention import load_checkpoint
from universal_attention.cli import main

from small import SMALL_OVERRIDES

RUN = [
    *SMALL_OVERRIDES,
    "data.image_size=32",
    "data.sources=[synthetic/colour, synthetic/size]",
    "sampler.batch_size=4",
    "reptile.inner_steps=1",
    "train.max_steps=1",
    "train.eval_every=0",
    "train.checkpoint_every=1",
    "train.image_log_every=0",
    "train.final_comparison=false",
    "transfer.steps=1",
    "transfer.draws=1",
    "transfer.batch_size=4",
    "transfer.shots_per_class=[2]",
    "transfer.max_test_images=8",
]
pytestmark = pytest.mark.usefixtures("single_thread")
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
SPACE = {"model.alignment_size": {"type": "quniform", "low": 4, "high": 8}}


def meta_args(out, *extra):
    args = ["meta-train", "--preset", "quickstart"] + (["--out", str(out)] if out is not None else [])
    for override in RUN:
        args += ["--set", override]
    return args + list(extra)


def tune_args(out, space_file, *extra):
    args = [
        "tune",
        "--preset",
        "quickstart",
        "--space",
        str(space_file),
        "--steps-per-trial",
        "1",
        "--max-evals",
        "1",
        *extra,
    ] + (["--out", str(out)] if out is not None else [])
    for override in RUN:
        args += ["--set", override]
    return args


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize("planted", ["config.yaml", "checkpoints/model.ckpt", "tb/events", "results.json"])
def test_overwrite_never_deletes_in_a_folder_uattn_did_not_make(tmp_path, planted):
    project = tmp_path / "project"
    (project / planted).parent.mkdir(parents=True, exist_ok=True)
    (project / planted).write_text("someone else's\n")
    line = one_line_error(CliRunner().invoke(main, meta_args(project, "--overwrite")))
    assert "no .uattn-run marker" in line and "choose another --out" in line
    assert (project / planted).read_text() == "someone else's\n"
    assert sorted(path.name for path in project.iterdir()) == [Path(planted).parts[0]]


def test_out_dot_overwrite_in_another_project_keeps_its_checkpoints(tmp_path, monkeypatch):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "weights.pt").write_text("precious\n")
    monkeypatch.chdir(tmp_path)
    one_line_error(CliRunner().invoke(main, meta_args(".", "--overwrite")))
    assert (tmp_path / "checkpoints" / "weights.pt").read_text() == "precious\n"


@pytest.mark.slow
def test_a_run_folder_carries_its_marker_and_overwrite_replaces_only_our_run(tmp_path):
    out = tmp_path / "run"
    assert CliRunner().invoke(main, meta_args(out)).exit_code == 0
    marker = json.loads((out / ".uattn-run").read_text())
    assert marker["kind"] == "run" and marker["library_version"] and marker["created"]
    (out / "notes.txt").write_text("mine\n")
    result = CliRunner().invoke(main, meta_args(out, "--overwrite"))
    assert result.exit_code == 0, result.output
    assert (out / "notes.txt").read_text() == "mine\n"
    assert load_checkpoint(out).step == 1


def test_a_config_name_that_leaves_runs_is_refused(tmp_path, monkeypatch):
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    line = one_line_error(CliRunner().invoke(main, meta_args(None, "--set", "name=../../../escaped")))
    assert line.startswith("error: name:") and "plain folder name" in line
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "a" / "b" / "runs").exists()


@pytest.mark.slow
def test_an_unknown_dataset_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    line = one_line_error(CliRunner().invoke(main, meta_args(out, "--set", "data.sources=[synthetic/colour, nope]")))
    assert "unknown dataset 'nope'" in line
    assert not out.exists()
    line = one_line_error(CliRunner().invoke(main, meta_args(out, "--set", "data.target=synthetic/nope")))
    assert "synthetic/nope" in line and not out.exists()
    assert CliRunner().invoke(main, meta_args(out)).exit_code == 0  # the corrected run is not "already there"


@pytest.mark.slow
def test_tune_refuses_an_unknown_dataset_before_anything_is_written(tmp_path, search):
    out = tmp_path / "search"
    line = one_line_error(CliRunner().invoke(main, tune_args(out, search[1], "--set", "data.target=nope")))
    assert "unknown dataset 'nope'" in line and not out.exists()


@pytest.mark.slow
def test_a_second_meta_train_on_the_same_out_is_refused_and_nothing_is_lost(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "universal_attention.cli", *meta_args(out, "--set", "train.max_steps=400")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ONE_THREAD,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoints" / "step-000001.safetensors").exists():
            assert first.poll() is None, first.communicate()[0]
            assert time.monotonic() < deadline, "the first run wrote no checkpoint in time"
            time.sleep(0.05)
        for args in (meta_args(out, "--overwrite"), ["meta-train", "--out", str(out), "--resume"]):
            line = one_line_error(CliRunner().invoke(main, args))
            assert "in use by another uattn process" in line
    finally:
        first.send_signal(signal.SIGTERM)
        output, _ = first.communicate(timeout=120)
    assert first.returncode == 0, output
    steps = [load_checkpoint(path).step for path in (out / "checkpoints").glob("step-*.safetensors")]
    assert steps and min(steps) >= 1 and yaml.safe_load((out / "config.yaml").read_text())["train"]["max_steps"] == 400


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """A finished one-trial search, copied for each test that changes it."""
    root = tmp_path_factory.mktemp("search")
    space = root / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    result = CliRunner().invoke(main, tune_args(root / "search", space))
    torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return root / "search", space


@pytest.fixture
def search_copy(search, tmp_path):
    folder, space = search
    shutil.copytree(folder, tmp_path / "search")
    return tmp_path / "search", space


@pytest.mark.slow
def test_a_rerun_removes_only_interrupted_trials_of_its_own(search_copy):
    out, space = search_copy
    finished = out / "trial-005"  # finished, but killed before trials.json listed it
    shutil.copytree(out / "trial-000", finished)
    interrupted = out / "trial-006"  # a trial of ours that never finished
    interrupted.mkdir()
    shutil.copy(out / "trial-000" / ".uattn-run", interrupted)
    (interrupted / "config.yaml").write_text("name: interrupted\n")
    foreign = out / "trial-007"  # not ours: no marker
    foreign.mkdir()
    (foreign / "notes.txt").write_text("someone else's\n")
    result = CliRunner().invoke(main, tune_args(out, space))
    assert result.exit_code == 0, result.output
    assert not interrupted.exists() and "removed trial-006" in result.output
    assert (finished / "results.json").is_file() and (foreign / "notes.txt").read_text() == "someone else's\n"
    assert (out / "trial-000" / "results.json").is_file()


@pytest.mark.slow
def test_a_search_without_trials_json_keeps_its_finished_trials(search_copy):
    out, space = search_copy
    (out / "trials.json").unlink()
    result = CliRunner().invoke(main, tune_args(out, space))
    assert result.exit_code == 0, result.output
    assert (out / "trial-000" / "results.json").is_file()


@pytest.mark.slow
def test_tune_refuses_a_folder_holding_someone_elses_trials_and_hparams(tmp_path, search):
    other = tmp_path / "other"
    for name in ("trial-000/notes.txt", "hparams/keep.txt"):
        (other / name).parent.mkdir(parents=True)
        (other / name).write_text("someone else's\n")
    line = one_line_error(CliRunner().invoke(main, tune_args(other, search[1])))
    assert "no .uattn-run marker" in line
    assert (other / "trial-000" / "notes.txt").is_file() and (other / "hparams" / "keep.txt").is_file()


@pytest.mark.slow
def test_meta_train_and_tune_refuse_each_others_folders(search_copy, tmp_path):
    out, space = search_copy
    line = one_line_error(CliRunner().invoke(main, meta_args(out, "--overwrite")))
    assert "search folder" in line
    run = tmp_path / "run"
    assert CliRunner().invoke(main, meta_args(run)).exit_code == 0
    assert "run folder" in one_line_error(CliRunner().invoke(main, tune_args(run, space)))


@pytest.mark.slow
def test_a_tune_config_name_that_leaves_runs_is_refused(tmp_path, monkeypatch, search):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(CliRunner().invoke(main, tune_args(None, search[1], "--set", "name=../escaped")))
    assert line.startswith("error: name:")
    assert not (tmp_path.parent / "tune-escaped").exists() and not (tmp_path / "runs").exists()


def _edit_trials(out, edit):
    document = json.loads((out / "trials.json").read_text())
    edit(document)
    (out / "trials.json").write_text(json.dumps(document))


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["trials"][0].pop("result"),
        lambda d: d["trials"][0].pop("tid"),
        lambda d: d["trials"][0]["result"].pop("status"),
        lambda d: d["search"].pop("space"),
        lambda d: d["trials"].append("not a trial"),
    ],
    ids=["no-result", "no-tid", "no-status", "no-space", "not-a-mapping"],
)
@pytest.mark.slow
def test_trials_json_with_a_missing_key_is_one_line(search_copy, edit):
    out, space = search_copy
    _edit_trials(out, edit)
    line = one_line_error(CliRunner().invoke(main, tune_args(out, space)))
    assert "trials.json" in line
    assert (out / "trial-000" / "results.json").is_file()


@pytest.mark.parametrize(
    ("key", "value"),
    [("top1", float("nan")), ("top1", float("inf")), ("top1", "0.9"), ("loss", None), ("seconds", "1")],
)
@pytest.mark.slow
def test_a_score_that_is_not_a_finite_number_is_refused_not_ranked(search_copy, key, value):
    out, space = search_copy
    ok = next(
        i
        for i, t in enumerate(json.loads((out / "trials.json").read_text())["trials"])
        if t["result"]["status"] == "ok"
    )
    _edit_trials(out, lambda d: d["trials"][ok]["result"].update({key: value}))
    line = one_line_error(CliRunner().invoke(main, tune_args(out, space)))
    assert "trials.json" in line and f"its '{key}'" in line and "is not a finite number" in line
    assert (out / "trial-000" / "results.json").is_file()  # nothing finished is lost


@pytest.mark.parametrize("trial", ["../../victim", "/tmp", "trial-000/../../x", "", 7])
@pytest.mark.slow
def test_a_trial_field_outside_the_search_folder_is_refused(search_copy, trial):
    out, space = search_copy
    _edit_trials(out, lambda d: d["trials"][0]["result"].update(trial=trial))
    line = one_line_error(CliRunner().invoke(main, tune_args(out, space)))
    assert "trials.json" in line and "trial" in line


@pytest.mark.slow
def test_a_second_tune_on_the_same_out_is_refused_and_trials_json_is_kept(search_copy):
    out, space = search_copy
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            "handle = open(sys.argv[1])\nfcntl.flock(handle, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\ntime.sleep(120)\n",
            str(out / ".uattn-run"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = (out / "trials.json").read_bytes()
        line = one_line_error(CliRunner().invoke(main, tune_args(out, space, "--max-evals", "2")))
    finally:
        holder.kill()
        holder.wait()
    assert "in use by another uattn process" in line
    assert (out / "trials.json").read_bytes() == before and (out / "trial-000" / "results.json").is_file()
