"""Small inputs cannot ask for unbounded memory or time: config and space files, overrides, size options."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from universal_attention import load_config
from universal_attention.cli import main
from universal_attention.config import MAX_CONFIG_BYTES
from universal_attention.errors import ConfigError

LAUGHS = "\n".join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]"
        for i in range(9)
    ]
    + ["name: *j"]
)


def one_line(*args: str) -> str:
    result = CliRunner().invoke(main, [*map(str, args)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_a_billion_laughs_config_is_refused_at_its_first_alias(tmp_path):
    assert len(LAUGHS) < 600
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS)
    assert "aliases (*name) are not allowed" in one_line("config", "show", "--config", path)
    space = tmp_path / "space.yaml"
    space.write_text("x: &x {type: uniform, low: 0, high: 1}\nreptile.inner_lr: *x\n")
    assert "aliases (*name) are not allowed" in one_line("tune", "--space", space, "--out", tmp_path / "out")


def test_an_alias_in_an_override_is_not_expanded():
    with pytest.raises(ConfigError, match="name: must be a plain folder name"):
        load_config(overrides=["name=[&a [x, x], *a, *a]"])  # read as the plain string it is


def test_a_config_file_larger_than_the_cap_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("name: x\n" + "#" * (MAX_CONFIG_BYTES + 1))
    assert "more than a config can be" in one_line("config", "show", "--config", path)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_deep_nesting_is_one_line(tmp_path, suffix):
    path = tmp_path / f"deep{suffix}"
    path.write_text("[" * 100_000 + "]" * 100_000)
    line = one_line("config", "show", "--config", path)
    assert "nests too deeply" in line or "is not valid" in line


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.alignment_size=1000000000", "model.alignment_size: Input should be less than or equal to 16384"),
        ("model.query_size=1000000000", "model.query_size: Input should be less than or equal to 16384"),
        ("sampler.batch_size=10000000", "sampler.batch_size: Input should be less than or equal to 4096"),
        ("transfer.batch_size=10000000", "transfer.batch_size: Input should be less than or equal to 4096"),
        ("sampler.n_way=1000000", "sampler.n_way: Input should be less than or equal to 10000"),
        ("reptile.meta_batch_size=100000", "reptile.meta_batch_size: Input should be less than or equal to 4096"),
    ],
)
def test_size_like_fields_have_a_range_that_fits_memory(override, message):
    assert one_line("config", "show", "--set", override).startswith(f"error: {message}")


@pytest.mark.parametrize(
    "args",
    [
        ["data", "show", "synthetic/colour", "-n", "-1"],
        ["data", "show", "synthetic/colour", "--image-size", "100000"],
        ["data", "prepare", "synthetic/colour", "--image-size", "100000"],
    ],
)
def test_size_options_of_data_commands_have_a_range(tmp_path, args):
    result = CliRunner().invoke(main, [*args, *(["-o", str(tmp_path / "g.png")] if args[1] == "show" else [])])
    assert result.exit_code == 2 and "is not in the range" in result.output


@pytest.mark.parametrize("key", ["sampler.seed", "transfer.seed", "tune.seed", "train.seed"])
@pytest.mark.parametrize("value", ["-1", str(2**64)])
def test_seeds_outside_what_the_generators_take_are_one_line(key, value):
    assert one_line("config", "show", "--set", f"{key}={value}").startswith(f"error: {key}: Input should be")


@pytest.mark.parametrize("variable", ["RANK", "WORLD_SIZE", "LOCAL_RANK"])
def test_a_torchrun_variable_that_is_not_a_whole_number_is_one_line(tmp_path, variable, monkeypatch):
    from universal_attention import distributed

    monkeypatch.setenv(variable, "abc")
    if variable == "RANK":
        result = CliRunner().invoke(main, ["meta-train", "--preset", "quickstart", "--out", str(tmp_path / "run")])
        assert result.exit_code == 2
        assert result.output.strip().splitlines() == [
            "error: environment variable RANK is 'abc', not a whole number; "
            "torchrun sets it (unset it to run one process)"
        ]
        assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match=f"environment variable {variable} is 'abc'"):
        distributed.launch_variable(variable, 0)
    if variable == "WORLD_SIZE":
        with pytest.raises(ConfigError):
            distributed.launched_by_torchrun()
