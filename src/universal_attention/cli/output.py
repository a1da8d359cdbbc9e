"""Where the CLI prints: rich consoles that never break a name across lines, and JSON for scripts.

Consoles read no markup and highlight nothing: a path or a name holding ``[bold]`` or ``[/]`` prints as it is.
Colour is given explicitly, with :func:`styled` (or a ``style=``), never by brackets inside printed text.

On a terminal, tables fit the window as usual. When the output is a pipe or a file, lines are not wrapped
at all (a console as wide as any line), so ``uattn data list | grep stanford_dogs`` finds whole names.
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.text import Text

UNWRAPPED_WIDTH = 100_000


def make_console(*, stderr: bool = False, quiet: bool = False) -> Console:
    """A console on stdout (or stderr) that wraps only on a terminal, and reads no markup in what it prints."""
    console = Console(stderr=stderr, quiet=quiet, markup=False, highlight=False)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, quiet=quiet, width=UNWRAPPED_WIDTH, soft_wrap=True, markup=False, highlight=False)


def styled(*parts: str | tuple[str, str]) -> Text:
    """Printed text from plain strings and ``(text, style)`` pairs, e.g. ``styled(("error:", "red"), " ", message)``:
    the strings are shown as they are, brackets included."""
    return Text.assemble(*parts)


def echo_json(document: Any) -> None:
    """Print ``document`` as indented JSON on stdout, and nothing else there."""
    click.echo(json.dumps(document, indent=2))


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the result as JSON on stdout (messages go to stderr)."
)
