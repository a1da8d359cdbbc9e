"""The docs cannot rot: the command reference is regenerated and every runnable code block is executed."""

import re
from pathlib import Path

import pytest

from universal_attention.cli.reference import cli_reference

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = re.compile(r"```python runnable\n(.*?)```", re.DOTALL)


def runnable_blocks():
    for document in DOCUMENTS:
        for index, block in enumerate(RUNNABLE.findall(document.read_text())):
            yield pytest.param(block, id=f"{document.name}-{index}")


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
