"""Hostile configs: non-finite numbers, binary files and names that are paths are one-line errors."""

import pytest
from click.testing import CliRunner

from universal_attention import load_config
from universal_attention.cli import main
from universal_attention.errors import ConfigError

BINARY = bytes(range(256)) * 4


@pytest.mark.parametrize(
    "override",
    [
        "reptile.inner_lr=inf",
        "reptile.outer_lr=.inf",
        "transfer.lr=nan",
        "reptile.outer_beta1=nan",
        "transfer.head_lr=-inf",
    ],
)
def test_non_finite_numbers_are_refused(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^{key}: Input should be a finite number"):
        load_config(overrides=[override])


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".", "/abs", "", "x\0y", "-rf"])
def test_a_name_must_be_a_plain_folder_name(name):
    with pytest.raises(ConfigError, match="^name: .*plain folder name"):
        load_config(overrides=[f"name={name!r}"])


@pytest.mark.parametrize("name", ["paper", "quickstart-best", "run_2.v3"])
def test_plain_names_are_fine(name):
    assert load_config(overrides=[f"name={name}"]).name == name


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_binary_config_file_is_one_line(tmp_path, suffix):
    path = tmp_path / f"config{suffix}"
    path.write_bytes(BINARY)
    result = CliRunner().invoke(main, ["config", "show", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"error: config file {path} is not a text file (YAML or JSON)"]


def test_a_binary_space_file_is_one_line(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_bytes(BINARY)
    result = CliRunner().invoke(main, ["tune", "--space", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"error: space file {path} is not a text file (YAML or JSON)"]
    assert not (tmp_path / "out").exists()
