"""Crafted and damaged checkpoints: one-line errors, bounded sizes, a content digest, finite weights only, steps
ordered as numbers, temporaries that a symlink cannot redirect, and paths that a checkpoint cannot choose."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from universal_attention import AttentionResNet50, load_checkpoint, load_config, save_checkpoint
from universal_attention.cli import main
from universal_attention.config import save_config
from universal_attention.distributed import DistributedInfo
from universal_attention.errors import CheckpointError
from universal_attention.meta.reptile import Reptile
from universal_attention.meta.training import _Run, meta_train, resume_step
from universal_attention.runs.checkpoint import checkpoint_name, resolve_checkpoint
from universal_attention.runs.folder import readable_checkpoints

from fake_datasets import make_beans
from faults import rewrite_checkpoint
from small import SMALL, SMALL_OVERRIDES

pytestmark = pytest.mark.usefixtures("single_thread")
RUN = [
    *SMALL_OVERRIDES,
    "data.image_size=32",
    "data.sources=[synthetic/colour, synthetic/size]",
    "sampler.batch_size=4",
    "reptile.inner_steps=1",
    "train.max_steps=3",
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
# Each crafted file is read by `uattn info` in a process limited to 8 GB of address space: a size taken on trust
# from the metadata (10^6 classes x 3840 features, an alignment layer of 10^6) cannot be allocated there.
UNDER_A_MEMORY_LIMIT = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
from click.testing import CliRunner
from universal_attention.cli import main
results = [CliRunner().invoke(main, ["info", path]) for path in sys.argv[1:]]
print(json.dumps([[result.exit_code, result.output] for result in results]))
"""


def quiet(text):
    return None


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = AttentionResNet50(SMALL)
    model.add_head("synthetic/colour", 4)
    folder = tmp_path_factory.mktemp("checkpoint")
    return save_checkpoint(
        folder / "step-000007.safetensors",
        model,
        load_config(preset="quickstart", overrides=RUN),
        step=7,
        state={"rng": torch.arange(3, dtype=torch.uint8)},
    )


def model_config(**changes):
    return json.dumps({**SMALL.model_dump(mode="json"), **changes})


CRAFTED = {
    "heads-of-1e11-classes": {"heads": {"synthetic/colour": 10**11}},
    "heads-of-1e6-classes": {"heads": {"synthetic/colour": 10**6}},
    "heads-negative": {"heads": {"synthetic/colour": -4}},
    "heads-true": {"heads": {"synthetic/colour": True}},
    "heads-a-list": {"heads": [4]},
    "heads-not-json": {"heads": "{synthetic/colour: 4"},
    "alignment-1e9": {"model_config": model_config(alignment_size=10**9)},
    "alignment-1e6": {"model_config": model_config(alignment_size=10**6)},
    "query-1e9": {"model_config": model_config(query_size=10**9)},
    "model-config-damaged": {"model_config": '{"alignment_size": 8,'},
    "step-not-a-number": {"step": "seven"},
    "step-negative": {"step": "-3"},
    "format-version-not-a-number": {"format_version": "one"},
    "experiment-config-damaged": {"experiment_config": '{"name": 3'},
    "experiment-config-invalid": {"experiment_config": json.dumps({"reptile": {"inner_lr": -1}})},
}


def crafted(checkpoint, tmp_path, name):
    return rewrite_checkpoint(checkpoint, tmp_path / f"{name}.safetensors", **CRAFTED[name])


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize("name", [name for name in CRAFTED if "1e6" not in name])
def test_crafted_metadata_is_a_one_line_error(checkpoint, tmp_path, name):
    path = crafted(checkpoint, tmp_path, name)
    line = one_line_error(CliRunner().invoke(main, ["info", str(path)]))
    assert path.name in line
    if name.startswith("experiment"):
        line = one_line_error(CliRunner().invoke(main, ["transfer", "--ckpt", str(path), "--out", str(tmp_path / "t")]))
        assert path.name in line and "run config" in line


def test_the_whole_crafted_corpus_is_refused_under_a_memory_limit(checkpoint, tmp_path):
    paths = [str(crafted(checkpoint, tmp_path, name)) for name in CRAFTED]
    done = subprocess.run(
        [sys.executable, "-c", UNDER_A_MEMORY_LIMIT, *paths],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for path, (code, output) in zip(paths, json.loads(done.stdout)):
        assert code == 2 and len(output.strip().splitlines()) == 1 and Path(path).name in output, (path, output)


def test_a_flipped_bit_inside_a_tensor_is_caught(checkpoint, tmp_path):
    damaged = tmp_path / "flipped.safetensors"
    data = bytearray(checkpoint.read_bytes())
    data[-1000] ^= 0x10
    damaged.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="flipped.safetensors failed its content check"):
        load_checkpoint(damaged)
    line = one_line_error(CliRunner().invoke(main, ["info", "--verify", str(damaged)]))
    assert "content check" in line


def test_info_verify_reports_the_digest(checkpoint, tmp_path):
    result = CliRunner().invoke(main, ["info", "--verify", str(checkpoint)])
    assert result.exit_code == 0, result.output
    assert "SHA-256 of" in result.output and "matches" in result.output
    old = rewrite_checkpoint(checkpoint, tmp_path / "old.safetensors", drop=("tensors_sha256",))
    assert load_checkpoint(old).step == 7  # written before digests: still loads
    result = CliRunner().invoke(main, ["info", "--verify", "--json", str(old)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["verified"] is False


def test_a_model_with_non_finite_weights_is_never_saved(tmp_path):
    model = AttentionResNet50(SMALL)
    with torch.no_grad():
        model.backbone.conv1.weight[0, 0, 0, 0] = math.inf
    with pytest.raises(CheckpointError, match="non-finite"):
        save_checkpoint(tmp_path / "bad.safetensors", model)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_non_finite_weights_after_a_finite_loss_stop_the_run_and_the_advice_works(tmp_path, monkeypatch):
    real_meta_step = Reptile.meta_step

    def diverging(self, tasks):
        metrics = real_meta_step(self, tasks)
        if self.step == 2:  # the loss was finite, the outer update was not
            with torch.no_grad():
                next(self.model.parameters()).fill_(math.nan)
        return metrics

    out = tmp_path / "run"
    args = ["meta-train", "--preset", "quickstart", "--out", str(out)]
    for override in RUN:
        args += ["--set", override]
    with monkeypatch.context() as patch:
        patch.setattr(Reptile, "meta_step", diverging)
        result = CliRunner().invoke(main, args)
    line = one_line_error(result)
    assert "non-finite weights at step 2" in line and "--resume --set reptile.inner_lr=0.0005" in line
    assert sorted(path.name for path in (out / "checkpoints").iterdir()) == ["step-000001.safetensors"]
    advice = line[line.index("uattn meta-train") :].split(" (")[0].split()
    result = CliRunner().invoke(main, advice[1:])  # the advice, as given
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out).step == 3
    assert load_config(config_file=out / "config.yaml").reptile.inner_lr == 0.0005


@pytest.mark.slow
def test_resume_never_picks_a_checkpoint_with_non_finite_weights(tmp_path):
    config = load_config(preset="quickstart", overrides=RUN + ["train.max_steps=2"])
    meta_train(config, tmp_path / "run", on_message=quiet)
    newest = tmp_path / "run" / "checkpoints" / "step-000002.safetensors"
    poisoned = {"backbone.conv1.weight": torch.full_like(load_checkpoint(newest).model.backbone.conv1.weight, math.nan)}
    rewrite_checkpoint(newest, newest, drop=("tensors_sha256",), tensors=poisoned)  # as a version without digests
    with pytest.raises(CheckpointError, match="non-finite"):
        load_checkpoint(newest)
    messages = []
    assert resume_step(_Run(config, tmp_path / "run", DistributedInfo()), messages.append) == 1
    assert any("skipped step-000002.safetensors" in message for message in messages)


@pytest.mark.slow
def test_checkpoints_are_ordered_by_step_number_past_a_million(tmp_path):
    config = load_config(preset="quickstart", overrides=RUN + ["train.max_steps=1000001", "train.keep_last=2"])
    out = tmp_path / "run"
    save_config(config, out / "config.yaml")
    (out / ".uattn-run").write_text('{"kind": "run"}\n')  # a run folder made by hand is marked by hand
    run = _Run(config, out, DistributedInfo())
    save_checkpoint(out / "checkpoints" / checkpoint_name(999_999), run.model, config, step=999_999, state=run.state())
    result = meta_train(config, out, resume=True, on_message=quiet)
    assert result.steps == 1_000_001
    names = sorted(path.name for path in (out / "checkpoints").glob("step-*"))
    assert names == ["step-1000000.safetensors", "step-1000001.safetensors"]
    assert readable_checkpoints(out / "checkpoints")[0].name == "step-1000001.safetensors"
    assert resolve_checkpoint(out).name == "step-1000001.safetensors"


def test_a_symlink_planted_at_a_temporary_name_is_not_followed(checkpoint, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    target = tmp_path / "run" / "step-000001.safetensors"
    target.parent.mkdir()
    for name in (f".{target.name}.tmp-{os.getpid()}", f".{target.name}.tmp"):
        (target.parent / name).symlink_to(victim)
    save_checkpoint(target, load_checkpoint(checkpoint).model, step=1)
    assert victim.read_text() == "precious\n"
    assert load_checkpoint(target).step == 1


def test_a_checkpoint_does_not_choose_the_data_root_of_transfer(checkpoint, tmp_path, monkeypatch):
    theirs = tmp_path / "theirs"
    make_beans(theirs)
    config = load_config(preset="quickstart", overrides=RUN + [f"data.data_root={theirs}", "data.target=beans"])
    planted = rewrite_checkpoint(
        checkpoint, tmp_path / "planted.safetensors", experiment_config=config.model_dump_json()
    )
    mine = tmp_path / "mine"
    mine.mkdir()
    monkeypatch.setenv("UATTN_DATA_ROOT", str(mine))
    line = one_line_error(CliRunner().invoke(main, ["transfer", "--ckpt", str(planted), "--out", str(tmp_path / "t")]))
    assert f"beans not found: expected {mine / 'beans'}" in line


def test_a_fifo_named_like_a_checkpoint_is_refused_without_blocking(tmp_path):
    import os

    from click.testing import CliRunner

    from universal_attention.cli import main

    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    result = CliRunner().invoke(main, ["info", str(fifo)])
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == f"error: checkpoint {fifo} is not a regular file; give a .safetensors file or a run folder"
    )
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "step-000009.safetensors")  # the newest by name, and not a file
    result = CliRunner().invoke(main, ["info", str(tmp_path / "run")])
    assert result.exit_code == 2 and "no checkpoint in" in result.output
