"""Kill at every write step: a write that fails or is killed at any step leaves the old file or the whole new one,
no temporary, and nothing earlier lost."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from click.testing import CliRunner

from universal_attention import AttentionResNet50, load_checkpoint, save_checkpoint
from universal_attention.atomic import atomic_write_bytes
from universal_attention.cli import main
from universal_attention.data.cache import build_cache
from universal_attention.runs.checkpoint import read_metadata

from faults import fail_every_step, temporaries
from small import SMALL, SMALL_OVERRIDES

pytestmark = pytest.mark.usefixtures("single_thread")
EVERY_STEP = {"open", "write", "fsync", "replace"}
RUN = [
    *SMALL_OVERRIDES,
    "data.image_size=32",
    "data.sources=[synthetic/colour, synthetic/size]",
    "sampler.batch_size=4",
    "reptile.inner_steps=1",
    "train.max_steps=2",
    "train.eval_every=0",
    "train.checkpoint_every=1",
    "train.image_log_every=0",
    "train.final_comparison=false",
]
# Runs the CLI and dies by SIGKILL in the middle of writing step 2's checkpoint: its temporary holds every byte
# but was never renamed. Nothing in the process gets to clean up.
KILLED_INSIDE_A_WRITE = textwrap.dedent("""
    import os, signal, sys
    real_fsync = os.fsync

    def fsync(descriptor):
        if os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}")).startswith(".step-000002.safetensors.tmp"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_fsync(descriptor)

    os.fsync = fsync
    from universal_attention.cli import main
    main(sys.argv[1:])
""")


class Images:
    """A tiny in-memory dataset whose fingerprint says which version of its files it holds."""

    classes = ["a", "b"]

    def __init__(self, version: str) -> None:
        self.version = version
        self.images = torch.full((4, 3, 8, 8), len(version), dtype=torch.uint8)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index):
        return self.images[index], index % 2

    def fingerprint(self) -> str:
        return self.version


def test_every_step_of_a_checkpoint_write_can_fail_and_a_whole_checkpoint_stays(tmp_path):
    torch.manual_seed(0)
    model = AttentionResNet50(SMALL, num_classes=2)
    path = save_checkpoint(tmp_path / "step-000001.safetensors", model, step=1)

    def check():
        assert temporaries(tmp_path) == []
        assert read_metadata(path)["step"] in ("1", "2")

    failed = fail_every_step(lambda: save_checkpoint(path, model, step=2), check)
    assert set(failed) >= EVERY_STEP
    assert load_checkpoint(path).step == 2


@pytest.mark.parametrize("name", ["trials.json", "results.json", "config.yaml"])
def test_every_step_of_a_json_or_yaml_write_can_fail(tmp_path, name):
    path = tmp_path / name
    atomic_write_bytes(path, b'{"trials": [1]}')

    def check():
        assert temporaries(tmp_path) == []
        assert json.loads(path.read_text()) in ({"trials": [1]}, {"trials": [1, 2]})

    assert set(fail_every_step(lambda: atomic_write_bytes(path, b'{"trials": [1, 2]}'), check)) >= EVERY_STEP
    assert json.loads(path.read_text()) == {"trials": [1, 2]}


def test_every_step_of_a_cache_build_can_fail_and_the_next_build_is_whole(tmp_path):
    build_cache(Images("v1"), tmp_path, "tiny", 8)

    def check():
        assert temporaries(tmp_path) == []
        assert len(build_cache(Images("v1"), tmp_path, "tiny", 8)) == 4  # whole: read back, or rebuilt if v22 landed

    failed = fail_every_step(lambda: build_cache(Images("v22"), tmp_path, "tiny", 8), check)
    assert {"open", "fsync", "replace"} <= set(failed)  # safetensors writes the bytes itself
    rebuilt = build_cache(Images("v22"), tmp_path, "tiny", 8)
    assert rebuilt.fingerprint() == "v22" and int(rebuilt.images[0, 0, 0, 0]) == 3


@pytest.mark.slow
def test_a_run_killed_inside_a_checkpoint_write_resumes_and_leaves_no_temporary(tmp_path):
    out = tmp_path / "run"
    args = ["meta-train", "--preset", "quickstart", "--out", str(out)]
    for override in RUN:
        args += ["--set", override]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_INSIDE_A_WRITE, *args],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert [path.name for path in (out / "checkpoints").glob("step-*")] == ["step-000001.safetensors"]
    assert len(temporaries(out)) == 1  # the killed write's temporary
    (out / "checkpoints" / ".notes.tmp").write_text("not ours\n")
    result = CliRunner().invoke(main, ["meta-train", "--out", str(out), "--resume"])
    assert result.exit_code == 0, result.output
    assert temporaries(out) == ["checkpoints/.notes.tmp"]
    assert load_checkpoint(out).step == 2
