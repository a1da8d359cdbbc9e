"""A command's own options are taken as they are: never re-read as YAML, never dropped when empty."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from universal_attention import load_config
from universal_attention.cli import main
from universal_attention.data.registry import resolve_data_root
from universal_attention.errors import DatasetError

from small import SMALL_OVERRIDES

RUN = [
    *SMALL_OVERRIDES,
    "data.image_size=32",
    "data.sources=[synthetic/colour]",
    "sampler.batch_size=2",
    "reptile.inner_steps=1",
    "train.eval_every=0",
    "train.image_log_every=0",
    "train.final_comparison=false",
    "train.source_images=2",
]


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, [*map(str, args)], env=env)


@pytest.mark.parametrize("root", ["~", "{folder}/d #1", "{folder}/[x]: y"])
def test_meta_train_data_root_is_the_path_given(tmp_path, root):
    root = root.format(folder=tmp_path)
    args = ["meta-train", "--preset", "quickstart", "--max-steps", "1", "--data-root", root, "--out", tmp_path / "run"]
    for override in RUN:
        args += ["--set", override]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["data"]["data_root"] == root and saved["train"]["max_steps"] == 1


def test_option_values_are_not_read_as_yaml_but_set_values_are():
    config = load_config(overrides=["data.data_root=~"], values={"train.device": "cpu"})
    assert config.data.data_root is None  # --set reads YAML: ~ is null there, as documented
    assert load_config(values={"data.data_root": "~"}).data.data_root == "~"
    assert resolve_data_root("~") == resolve_data_root(None).home()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["transfer", "--ckpt", "random", "--preset", "quickstart", "--shots", ""], "error: --shots '' names no shot"),
        (
            ["transfer", "--ckpt", "random", "--preset", "quickstart", "--data-root", ""],
            "data_root: is empty; give a folder",
        ),
        (["meta-train", "--preset", "quickstart", "--data-root", " "], "data_root: is empty; give a folder"),
        (["data", "list", "--data-root", ""], "error: the data root is empty"),
    ],
)
def test_empty_option_values_are_refused_not_ignored(args, message):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert result.output.startswith("error: ") and message in result.output


def test_a_data_root_that_is_a_file_is_one_line(tmp_path):
    file = tmp_path / "datasets.txt"
    file.write_text("not a folder")
    result = invoke("data", "list", env={"UATTN_DATA_ROOT": str(file)})
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == f"error: $UATTN_DATA_ROOT {file} is not a folder; point it at the folder that holds the datasets"
    )
    with pytest.raises(DatasetError, match="the data root .* is not a folder"):
        resolve_data_root(file)
