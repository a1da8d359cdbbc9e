"""The command reference (docs/cli.md), generated from the click commands so it cannot drift.

Everything is read from the commands' own parameters (names, types, help, defaults) and formatted here,
not by click's help formatter, so the reference is the same whichever click release is installed.

Run: ``python -m universal_attention.cli.reference > docs/cli.md``
"""

from __future__ import annotations

import click

from . import main

_TYPE_NAMES = {"integer": "INTEGER", "float": "FLOAT", "text": "TEXT", "boolean": "BOOLEAN"}


def _metavar(parameter: click.Parameter) -> str:
    """What a value of ``parameter`` is called: its own metavar, the choices, or a name for its type."""
    if parameter.metavar:
        return parameter.metavar
    kind = parameter.type
    if isinstance(kind, click.Choice):
        return "[" + "|".join(str(choice) for choice in kind.choices) + "]"
    if isinstance(kind, click.Path):
        return "FILE" if not kind.dir_okay else "DIRECTORY" if not kind.file_okay else "PATH"
    if isinstance(kind, (click.IntRange, click.FloatRange)):
        return "INTEGER" if isinstance(kind, click.IntRange) else "FLOAT"
    return _TYPE_NAMES.get(kind.name, kind.name.upper())


def _argument_usage(argument: click.Argument) -> str:
    name = (argument.metavar or argument.name or "").upper()
    text = f"{name}..." if argument.nargs == -1 else name
    return text if argument.required else f"[{text}]"


def _option_row(option: click.Option) -> str:
    names = ", ".join(option.opts)
    if option.secondary_opts:
        names += " / " + ", ".join(option.secondary_opts)
    if not option.is_flag and not option.count:
        names += f" {_metavar(option)}"
    notes = []
    if isinstance(option.type, (click.IntRange, click.FloatRange)):
        low, high = option.type.min, option.type.max
        notes.append(
            " and ".join(
                filter(None, [f">= {low}" if low is not None else "", f"<= {high}" if high is not None else ""])
            )
        )
    if option.show_default and option.default is not None and not option.is_flag:
        notes.append(f"default: {option.default}")
    if option.required:
        notes.append("required")
    help_text = " ".join((option.help or "").split())
    if notes:
        help_text += f" [{'; '.join(notes)}]"
    return f"| `{names}` | {help_text.replace('|', '/')} |"


def _command_markdown(command: click.Command, path: str) -> list[str]:
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    options = [p for p in command.params if isinstance(p, click.Option) and not p.hidden]
    usage = " ".join([f"Usage: {path} [OPTIONS]", *map(_argument_usage, arguments)])
    if isinstance(command, click.Group):
        usage += " COMMAND [ARGS]..."
    help_text = "\n".join(line.strip() for line in (command.help or "").strip().splitlines())
    lines = [f"## `{path}`", "", help_text, "", "```", usage, "```", ""]
    rows = [_option_row(option) for option in options] + ["| `-h, --help` | Show this message and exit. |"]
    return lines + ["| option | meaning |", "|---|---|", *rows, ""]


def _walk(command: click.Command, path: str) -> list[str]:
    lines = _command_markdown(command, path)
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            lines += _walk(command.commands[name], f"{path} {name}")
    return lines


def cli_reference() -> str:
    """Markdown for every ``uattn`` command and option."""
    header = [
        "# Command line reference",
        "",
        "Generated from the commands themselves (`python -m universal_attention.cli.reference`); "
        "a test checks that this file is current.",
        "",
    ]
    return "\n".join(header + _walk(main, "uattn")).rstrip() + "\n"


if __name__ == "__main__":
    print(cli_reference(), end="")
