"""The command reference (docs/cli.md), generated from the click commands so it cannot drift.

Run: ``python -m universal_attention.cli.reference > docs/cli.md``
"""

from __future__ import annotations

import click

from . import main


def _command_markdown(command: click.Command, path: str, context: click.Context) -> list[str]:
    lines = [f"## `{path}`", "", (command.help or "").strip(), "", "```", command.get_usage(context), "```", ""]
    rows = []
    for parameter in command.get_params(context):
        record = parameter.get_help_record(context)
        if record is not None:
            name, text = record
            rows.append(f"| `{name}` | {text.replace('|', '/')} |")
    if rows:
        lines += ["| option | meaning |", "|---|---|", *rows, ""]
    return lines


def _walk(command: click.Command, path: str, parent: click.Context | None) -> list[str]:
    context = click.Context(command, info_name=path.split()[-1], parent=parent, help_option_names=["-h", "--help"])
    lines = _command_markdown(command, path, context)
    if isinstance(command, click.Group):
        for name in sorted(command.list_commands(context)):
            lines += _walk(command.get_command(context, name), f"{path} {name}", context)
    return lines


def cli_reference() -> str:
    """Markdown for every ``uattn`` command and option."""
    header = ["# Command line reference", "",
              "Generated from the commands themselves (`python -m universal_attention.cli.reference`); "
              "a test checks that this file is current.", ""]
    return "\n".join(header + _walk(main, "uattn", None)).rstrip() + "\n"


if __name__ == "__main__":
    print(cli_reference(), end="")
