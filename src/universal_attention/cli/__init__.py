"""The ``uattn`` command line: a thin shell over the library (parse, build configs, call, print)."""

from __future__ import annotations

import sys

import click

from .._version import __version__
from ..errors import UattnError
from .output import make_console, styled

error_console = make_console(stderr=True)


class UattnGroup(click.Group):
    """A click group that turns library errors, bad options and the system's refusals (a full disk, a read-only
    folder: ``OSError``) into one red line and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (UattnError, click.UsageError, OSError) as error:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            error_console.print(styled(("error:", "red"), " ", " ".join(_message(error).split())), soft_wrap=True)
            sys.exit(2)


def _message(error: Exception) -> str:
    if isinstance(error, click.UsageError):
        return error.format_message()
    if isinstance(error, OSError) and not isinstance(error, UattnError):
        where = f"{error.filename}: " if error.filename is not None else ""
        return f"{where}{error.strerror or error}; files written before are kept"
    return str(error)


@click.group(cls=UattnGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="uattn", help="Show the version and exit.")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """universal-attention: meta-train task-independent visual attention and test its transfer."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _register() -> None:
    from .attention_cmds import evaluate_attention_command, visualize
    from .config_cmds import config_group, info
    from .data_cmds import data
    from .meta_train_cmd import meta_train_command
    from .report_cmd import report_command
    from .transfer_cmd import transfer
    from .tune_cmd import tune_command

    main.add_command(config_group)
    main.add_command(info)
    main.add_command(data)
    main.add_command(meta_train_command)
    main.add_command(transfer)
    main.add_command(tune_command)
    main.add_command(visualize)
    main.add_command(evaluate_attention_command)
    main.add_command(report_command)


_register()
