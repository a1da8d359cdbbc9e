"""``uattn data list|verify|show|prepare`` through click's CliRunner."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from PIL import Image

from universal_attention.cli import main


def run(*args: str):
    return CliRunner().invoke(main, ["data", *map(str, args)], env={"COLUMNS": "300"})


def row(output: str, name: str) -> str:
    return next(line for line in output.splitlines() if f" {name} " in line)


def test_list_shows_found_datasets_with_images_per_split(fake_data_root):
    result = run("list", "--data-root", fake_data_root)
    assert result.exit_code == 0, result.output
    assert "found" in row(result.output, "caltech101") and "train 90, test 15" in row(result.output, "caltech101")
    assert "found" in row(result.output, "synthetic/shape")


def test_list_shows_missing_datasets_and_where_they_are_expected(tmp_path):
    result = run("list", "--data-root", tmp_path)
    assert result.exit_code == 0, result.output
    line = row(result.output, "stanford_dogs")
    assert "missing" in line and f"{tmp_path}/stanford_dogs/" in line


def test_verify_reports_odd_files_and_exits_0_while_usable(odd_folder):
    result = run("verify", f"folder:{odd_folder}")
    assert result.exit_code == 0, result.output
    assert "11 images, 7 odd but converted, 2 unreadable (skipped)" in result.output
    assert "text.jpg" in result.output and "not an image" in result.output


def test_verify_a_clean_dataset_checks_every_split(fake_data_root):
    result = run("verify", "oxford_pets", "--data-root", fake_data_root)
    assert result.exit_code == 0, result.output
    assert "oxford_pets (train): 9 images, 0 odd but converted, 0 unreadable" in result.output
    assert "oxford_pets (test): 6 images" in result.output


def test_verify_a_missing_dataset_is_one_red_line_and_exit_2(tmp_path):
    result = run("verify", "beans", "--data-root", tmp_path)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: beans not found: expected {tmp_path}/beans/{{train,validation,test}}/<class>/*.jpg; unpack the iBean "
        "release's train.zip, validation.zip and test.zip there, or pass --data-root / set UATTN_DATA_ROOT"
    ]


def test_verify_exits_2_when_no_file_is_readable(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_text("not an image")
    result = run("verify", f"folder:{tmp_path}")
    assert result.exit_code == 2
    assert "none of its 1 files is readable" in result.output


def test_show_writes_a_png_grid(fake_data_root, tmp_path):
    output = tmp_path / "grid.png"
    result = run("show", "oxford_pets", "-n", 4, "-o", output, "--data-root", fake_data_root, "--image-size", 32)
    assert result.exit_code == 0, result.output
    assert Image.open(output).size == (64, 2 * (32 + 14))


def test_prepare_builds_the_cache_once(fake_data_root, tmp_path):
    (tmp_path / "beans").symlink_to(fake_data_root / "beans")
    first = run("prepare", "beans", "--image-size", 16, "--split", "test", "--data-root", tmp_path)
    assert first.exit_code == 0, first.output
    assert "beans (test): 9 images at 16 px, built" in first.output
    assert (tmp_path / ".cache" / "beans-test-16.safetensors").is_file()
    again = run("prepare", "beans", "--image-size", 16, "--split", "test", "--data-root", tmp_path)
    assert "up to date" in again.output


@pytest.mark.parametrize("command", ["list", "verify", "show", "prepare"])
def test_every_command_has_help(command):
    assert run(command, "--help").exit_code == 0
