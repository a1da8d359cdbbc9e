"""``uattn config show``, ``uattn config trunks`` and ``uattn info``: a resolved config, the trunks, a checkpoint."""

from __future__ import annotations

import json
from dataclasses import asdict

import click
from rich.table import Table

from .options import config_options, resolve_config
from .output import echo_json, json_option, make_console

MAX_SHOWN_NAMES = 20
"""Class names listed per head by ``uattn info`` (``--json`` gives them all)."""


@click.group("config")
def config_group() -> None:
    """Inspect run configurations."""


@config_group.command("show")
@config_options
def show(preset: str | None, config_file: str | None, overrides: tuple[str, ...]) -> None:
    """Print the fully resolved config as YAML (defaults are the 'paper' preset)."""
    click.echo(resolve_config(preset, config_file, overrides).to_yaml(), nl=False)


@config_group.command("trunks")
@json_option
def trunks(as_json: bool) -> None:
    """List the trunks model.trunk can name: parameters, blocks per stage, default and all tap layers."""
    from ..models.trunks import list_trunks, trunk_info

    infos = [trunk_info(name) for name in list_trunks()]
    if as_json:
        echo_json([asdict(info) for info in infos])
        return
    table = Table(title="trunks (model.trunk)")
    for column in ("trunk", "parameters", "blocks", "ImageNet", "default taps", "taps", "about"):
        table.add_column(column, justify="right" if column == "parameters" else "left")
    for info in infos:
        table.add_row(
            info.name,
            f"{info.parameters / 1e6:.1f} M",
            "-".join(map(str, info.stages)),
            "yes" if info.imagenet else "no",
            ", ".join(info.default_taps),
            ", ".join(info.taps),
            info.summary,
        )
    make_console().print(table)


@click.command("info")
@click.argument("checkpoint", type=click.Path())
@click.option(
    "--verify",
    is_flag=True,
    help="Also say whether the file's tensors matched the SHA-256 stored in it (every load checks it).",
)
@json_option
def info(checkpoint: str, verify: bool, as_json: bool) -> None:
    """Print what CHECKPOINT holds: model config, heads, step and parameter count.

    Loading checks the file: sizes against its tensors, its content digest and finite weights; a damaged
    file is one red line and exit code 2.
    """
    from ..runs.checkpoint import load_checkpoint, parameter_count  # torch loads when a command needs it

    loaded = load_checkpoint(checkpoint)
    if as_json:
        echo_json(
            {
                **({"verified": loaded.verified} if verify else {}),
                "path": str(loaded.path),
                "step": loaded.step,
                "parameters": parameter_count(loaded.model),
                "library_version": loaded.metadata.get("library_version"),
                "heads": loaded.model.head_classes,
                "class_names": loaded.model.class_names,
                "model": loaded.config.model_dump(mode="json"),
                "experiment": None if loaded.experiment is None else loaded.experiment.to_dict(),
                "extra": {key: value for key, value in loaded.metadata.items() if key != "library_version"},
            }
        )
        return
    console = make_console()
    table = Table(title=str(loaded.path), show_header=False)
    table.add_row("step", str(loaded.step))
    if verify:
        tensors = len(loaded.model.state_dict()) + len(loaded.state)
        table.add_row(
            "content",
            f"SHA-256 of its {tensors} tensors matches"
            if loaded.verified
            else "no digest to check: written before checkpoints stored one",
        )
    table.add_row("parameters", f"{parameter_count(loaded.model):,}")
    table.add_row("library version", str(loaded.metadata.get("library_version")))
    table.add_row(
        "heads", ", ".join(f"{task} ({classes})" for task, classes in loaded.model.head_classes.items()) or "none"
    )
    for task, names in loaded.model.class_names.items():
        shown = names if len(names) <= MAX_SHOWN_NAMES else [*names[:MAX_SHOWN_NAMES], f"... {len(names)} in all"]
        table.add_row(f"classes of {task}", ", ".join(shown))
    for key, value in loaded.config.model_dump(mode="json").items():
        table.add_row(f"model.{key}", json.dumps(value))
    if loaded.experiment is not None:
        table.add_row("experiment", loaded.experiment.name)
    extra = {key: value for key, value in loaded.metadata.items() if key != "library_version"}
    if extra:
        table.add_row("extra", json.dumps(extra))
    console.print(table)
