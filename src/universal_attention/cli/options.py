"""The config options every run command shares: ``--preset``, ``--config`` and ``--set``, resolved into one config."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import click

from ..config import PRESETS, ExperimentConfig, load_config

data_root_option = click.option(
    "--data-root",
    type=click.Path(file_okay=False),  # a str as given: a Path would turn '' into '.'
    default=None,
    help="Folder holding the datasets (default: $UATTN_DATA_ROOT, else ./data).",
)


def config_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--preset``, ``--config`` and ``--set`` to a command."""
    command = click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="Dotted override, e.g. --set reptile.inner_steps=8 (repeatable).",
    )(command)
    command = click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        help="YAML or JSON file holding an ExperimentConfig (or part of one).",
    )(command)
    command = click.option(
        "--preset",
        type=click.Choice(sorted(PRESETS)),
        help="Named preset the config file and overrides apply on top of.",
    )(command)
    return command


def resolve_config(
    preset: str | None,
    config_file: str | None,
    overrides: tuple[str, ...],
    default_preset: str | None = None,
    values: Mapping[str, Any] | None = None,
) -> ExperimentConfig:
    """The ExperimentConfig the shared options describe; ``values`` (a command's own options, by dotted key) are
    applied last and as they are, not read as YAML like ``--set``."""
    if preset is None and config_file is None:
        preset = default_preset
    return load_config(preset=preset, config_file=config_file, overrides=overrides, values=values)
