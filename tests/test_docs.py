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
