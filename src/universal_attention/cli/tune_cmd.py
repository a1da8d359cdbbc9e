"""``uattn tune``: hyperparameter search with hyperopt, resumable, with parallel trials on Spark.

hyperopt is imported when the command runs, not when ``uattn`` starts.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, get_args

import click
from rich.table import Table

from ..config import TuneConfig, parse_override
from ..errors import UattnError
from .options import config_options, resolve_config
from .output import make_console, styled

if TYPE_CHECKING:
    from ..tuning.search import TrialRecord, TuneResult


def _value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _trial_name(record: TrialRecord) -> str:
    """The trial's folder name (``tid N`` for a trial that failed before it had one)."""
    return record.run_dir.name if record.run_dir is not None else f"tid {record.tid}"


def trials_table(result: TuneResult, objective: str = "target") -> Table:
    """Every trial, best first: its objective's top-1, the searched values, time, and the error of failed ones."""
    keys = list(dict.fromkeys(key for record in result.trials for key in record.params))
    table = Table(title=f"{len(result.trials)} trials in {result.out_dir}, best first")
    table.add_column("trial", no_wrap=True)
    table.add_column(f"{objective} top-1", justify="right")
    for key in keys:
        table.add_column(key, justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("error")
    for record in result.ranked():
        name = _trial_name(record)
        top1 = "failed" if record.top1 is None else f"{record.top1:.3f}"
        cells = [name, top1] + [_value(record.params[key]) if key in record.params else "-" for key in keys]
        table.add_row(*cells, f"{record.seconds:.0f}", record.error or "")
    return table


@click.command("tune")
@config_options
@click.option(
    "--algo",
    type=click.Choice(get_args(TuneConfig.model_fields["algo"].annotation)),
    help="Search algorithm (tune.algo, default tpe); atpe, the original's, needs the atpe extra.",
)
@click.option(
    "--max-evals",
    type=click.IntRange(min=1),
    help="Trials the search ends with, counting those already in --out (tune.max_evals).",
)
@click.option("--steps-per-trial", type=click.IntRange(min=1), help="Meta-steps per trial (tune.steps_per_trial).")
@click.option(
    "--objective",
    type=click.Choice(get_args(TuneConfig.model_fields["objective"].annotation)),
    help="What a trial is scored by (tune.objective): target top-1 after transfer (default), or sources: the "
    "mean held-out source top-1 after meta-training.",
)
@click.option(
    "--fix",
    multiple=True,
    metavar="KEY=VALUE",
    help="Keep a dotted key at one value and out of the search, e.g. --fix reptile.inner_steps=5.",
)
@click.option(
    "--space",
    "space_file",
    type=click.Path(dir_okay=False),
    help="YAML file mapping dotted keys to distributions (default: the original's five parameters).",
)
@click.option("--parallel", type=click.IntRange(min=1), help="Trials at once, on Spark (tune.parallel).")
@click.option("--spark-master", help="Spark master URL of a cluster (default: an embedded local[N] Spark).")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Search folder (default: runs/tune-<config name>); the same command again continues it.",
)
def tune_command(
    preset: str | None,
    config_file: str | None,
    overrides: tuple[str, ...],
    algo: str | None,
    max_evals: int | None,
    steps_per_trial: int | None,
    objective: str | None,
    fix: tuple[str, ...],
    space_file: str | None,
    parallel: int | None,
    spark_master: str | None,
    out_dir: str | None,
) -> None:
    """Search hyperparameters: each trial meta-trains, then transfers to the target; best config to best.yaml.

    With --objective sources a trial is scored by the held-out source images instead, without transfer.

    Any dotted config key can be searched (--space FILE) or fixed (--fix). Every trial is a run folder
    <out>/trial-NNN; <out>/trials.json is saved after every trial, and running the same command again
    continues the search until --max-evals trials exist.
    """
    from ..tuning.search import tune
    from ..tuning.space import read_space_file

    config = resolve_config(preset, config_file, overrides)
    updates: dict[str, Any] = {
        key: value
        for key, value in (
            ("algo", algo),
            ("max_evals", max_evals),
            ("steps_per_trial", steps_per_trial),
            ("objective", objective),
            ("parallel", parallel),
            ("spark_master", spark_master),
        )
        if value is not None
    }
    if fix:
        updates["fix"] = {**config.tune.fix, **dict(parse_override(text) for text in fix)}
    if space_file is not None:
        updates["space"] = read_space_file(space_file)
    tune_config = config.tune.updated(**updates)
    console = make_console()

    def on_trial(record: TrialRecord, done: int) -> None:
        name = _trial_name(record)
        shown = ", ".join(f"{key}={_value(value)}" for key, value in record.params.items())
        outcome = (f"top-1 {record.top1:.3f}",) if record.top1 is not None else (("failed", "red"), f": {record.error}")
        console.print(
            styled(f"{name} ({done}/{tune_config.max_evals}): ", *outcome, f"  ({shown}, {record.seconds:.0f} s)"),
            soft_wrap=True,
        )

    try:
        result = tune(
            config,
            tune_config,
            out_dir,
            on_trial=on_trial,
            on_message=lambda text: console.print(text, highlight=False, soft_wrap=True),
        )
    except KeyboardInterrupt:
        console.print("stopped; finished trials are in trials.json; run the same command again to continue")
        sys.exit(130)
    console.print(trials_table(result, tune_config.objective))
    if result.best is None:
        raise UattnError(
            f"no trial succeeded; the errors are in {result.out_dir / 'trials.json'} and in each trial's error.txt"
        )
    console.print(
        f"best: {_trial_name(result.best)} with {tune_config.objective} top-1 {result.best.top1:.3f}; its config: "
        f"{result.best_config_path}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"train it: uattn meta-train --config {result.best_config_path}", highlight=False, soft_wrap=True)
    console.print(
        f"compare trials: tensorboard --logdir {result.out_dir / 'hparams'} (HPARAMS tab)",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"report: {result.out_dir / 'report.md'}", highlight=False, soft_wrap=True)
