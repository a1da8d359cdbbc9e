"""The docs cannot rot: the command reference is regenerated and every runnable code block is executed.

A block opened with ```` ```python runnable ```` runs in a fresh folder; ```` ```python runnable slow ```` marks one
that trains a model for longer than the other blocks (the ``slow`` marker).
"""

import ast
import re
from pathlib import Path

import pytest

from universal_attention.cli.reference import cli_reference

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = re.compile(r"```python runnable( slow)?\n(.*?)```", re.DOTALL)


def runnable_blocks(documents=DOCUMENTS):
    for document in documents:
        for index, (slow, block) in enumerate(RUNNABLE.findall(document.read_text())):
            marks = [pytest.mark.slow] if slow else []
            yield pytest.param(block, id=f"{document.name}-{index}", marks=marks)


def api_blocks():
    return [pytest.param(param.values[0], id=param.id) for param in runnable_blocks([ROOT / "docs" / "api.md"])]


def test_cli_reference_is_current():
    assert (ROOT / "docs" / "cli.md").read_text() == cli_reference(), (
        "docs/cli.md is stale: python -m universal_attention.cli.reference > docs/cli.md"
    )


def test_there_are_runnable_blocks():
    assert len(list(runnable_blocks())) >= 4


@pytest.mark.parametrize("block", list(runnable_blocks()))
def test_runnable_block(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "<docs>", "exec"), {"__name__": "__docs__"})


@pytest.mark.parametrize("block", api_blocks())
def test_api_examples_import_from_the_top_level_and_assert(block):
    tree = ast.parse(block)
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    ours = {name for name in imported if name.split(".")[0] == "universal_attention"}
    assert ours == {"universal_attention"}, f"docs/api.md imports {ours}: use from universal_attention import ..."
    assert any(isinstance(node, ast.Assert) for node in ast.walk(tree)), "a docs/api.md example checks nothing"


NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def test_readme_and_the_docs_state_the_presets_as_they_are():
    from universal_attention import load_config

    quickstart, paper = load_config(preset="quickstart"), load_config(preset="paper")
    readme = " ".join((ROOT / "README.md").read_text().split())
    index = " ".join((ROOT / "docs" / "index.md").read_text().split())
    sources = [name.removeprefix("synthetic/") for name in quickstart.data.sources]
    assert f"meta-train on {NUMBER_WORDS[len(sources)]} built-in synthetic tasks" in readme
    assert f"{NUMBER_WORDS[len(sources)]} source tasks, " + ", ".join(f"`{name}`" for name in sources[:-1]) in readme
    assert f"Reptile on {len(sources)} synthetic tasks" in index
    assert (
        quickstart.data.target.removeprefix("synthetic/")
        in readme.split("held out")[0].rsplit("in the quickstart", 1)[1]
    )
    assert f"small `{quickstart.model.trunk}` trunk" in readme
    assert f"{quickstart.train.max_steps} meta-steps" in readme
    assert paper.model.trunk == "resnet50" and f"ResNet50 at {paper.data.image_size} px" in readme
