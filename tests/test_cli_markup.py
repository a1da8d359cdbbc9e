"""Printed text is shown as it is: brackets in paths, names and hints are never read as rich markup."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from universal_attention import load_config, tune
from universal_attention.cli import main
from universal_attention.errors import ConfigError

NAMES = ["[bold]x", "a[/]b", "[red]"]


def run(*args: str):
    return CliRunner().invoke(main, [*map(str, args)], env={"COLUMNS": "300"})


@pytest.mark.parametrize("name", NAMES)
def test_an_error_naming_a_path_with_brackets_prints_it_whole_on_one_line(tmp_path, name):
    missing = tmp_path / f"{name}.safetensors"
    result = run("info", missing)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0]


@pytest.mark.parametrize("name", NAMES)
def test_tables_show_a_dataset_folder_with_brackets_as_it_is(tmp_path, name):
    folder = tmp_path / name / "cat"
    folder.mkdir(parents=True)
    (folder / "odd.jpg").write_text("not an image")
    result = run("data", "verify", f"folder:{tmp_path / name}")
    assert result.exit_code == 2
    assert str(tmp_path / name) in result.output


def test_a_verify_table_shows_names_with_brackets(tmp_path):
    from PIL import Image

    root = tmp_path / "[bold]set"
    for label in ("[b]cat", "dog[/]"):
        (root / label).mkdir(parents=True)
        Image.new("RGB", (8, 8), (200, 10, 10)).save(root / label / "one.jpg")
        (root / label / "[x].jpg").write_text("not an image")
    result = run("data", "verify", f"folder:{root}")
    assert result.exit_code == 0, result.output
    assert "[b]cat/[x].jpg" in result.output and "dog[/]/[x].jpg" in result.output
    assert f"folder:{root} (train)" in result.output


def test_install_hints_keep_their_brackets(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "lightgbm", None)
    result = run("tune", "--preset", "quickstart", "--algo", "atpe")
    assert result.exit_code == 2
    assert 'pip install "universal-attention[atpe]"' in result.output
    config = load_config(preset="quickstart")
    with pytest.raises(ConfigError, match=r"universal-attention\[atpe\]"):
        tune(config, config.tune.updated(algo="atpe"))
