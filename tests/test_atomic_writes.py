"""Every file the library, the benchmarks and the examples write is written atomically, into folders that are
themselves durable: a write that fails at the rename leaves the old file whole and no temporary."""

import errno
import importlib.util
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from universal_attention import load_config
from universal_attention.cli import main
from universal_attention.config import save_config

from faults import temporaries

ROOT = Path(__file__).resolve().parents[1]
OLD = b"the previous version\n"


def load_script(relative):
    spec = importlib.util.spec_from_file_location(Path(relative).stem, ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def failing_rename(monkeypatch):
    """Every rename fails, as on a full or dying disk: the last step of an atomic write."""

    def rename(*args, **kwargs):
        raise OSError(errno.EIO, "injected failure at replace")

    monkeypatch.setattr(os, "replace", rename)


def test_data_show_replaces_its_picture_atomically(tmp_path, failing_rename):
    output = tmp_path / "grid.png"
    output.write_bytes(OLD)
    result = CliRunner().invoke(
        main, ["data", "show", "synthetic/colour", "-n", "2", "--image-size", "32", "-o", str(output)]
    )
    assert result.exit_code != 0
    assert output.read_bytes() == OLD and temporaries(tmp_path) == []


def test_benchmarks_replace_their_report_atomically(tmp_path, failing_rename, monkeypatch):
    run_all = load_script("benchmarks/run_all.py")
    monkeypatch.setattr(run_all, "run", lambda script, arguments: {"attention_vs_resnet50": 1.05})
    monkeypatch.setattr(sys, "argv", ["run_all.py", "--out", str(tmp_path / "benchmarks.md")])
    (tmp_path / "benchmarks.md").write_bytes(OLD)
    with pytest.raises(OSError, match="injected failure"):
        run_all.main()
    assert (tmp_path / "benchmarks.md").read_bytes() == OLD and temporaries(tmp_path) == []


def test_the_study_replaces_its_plot_atomically(tmp_path, failing_rename):
    study = load_script("examples/study_synthetic.py")
    cells = [
        {"start": start, "attention": "learned", "shots": shots, "top1": 0.5, "top1_ci": [0.4, 0.6]}
        for start in study.STARTS
        for shots in (1, 5)
    ]
    (tmp_path / "plot.png").write_bytes(OLD)
    with pytest.raises(OSError, match="injected failure"):
        study.plot({"synthetic/hue": {"cells": cells}}, [1, 5], 0.25, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes() == OLD and temporaries(tmp_path) == []


def test_new_folders_are_fsynced_into_their_parents(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(descriptor):
        synced.append(Path(os.readlink(f"/proc/self/fd/{descriptor}")))
        return real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    save_config(load_config(), tmp_path / "new" / "deeper" / "config.yaml")
    assert {tmp_path, tmp_path / "new", tmp_path / "new" / "deeper"} <= set(synced)
