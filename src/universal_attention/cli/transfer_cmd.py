"""``uattn transfer``: transfer a checkpoint (and baselines) to a target task, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..config import ExperimentConfig, TransferConfig, load_config, validate_section
from ..errors import ConfigError, UnsavedResultError
from .options import config_options, data_root_option
from .output import echo_json, json_option, make_console

if TYPE_CHECKING:  # these load torch: the command imports them when it runs
    from ..transfer.results import TransferRun


def parse_shots(text: str) -> list[int | str]:
    """``"1,5,all"`` -> ``[1, 5, "all"]``."""
    shots: list[int | str] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if part == "all":
            shots.append("all")
        elif part.isdigit() and int(part) > 0:
            shots.append(int(part))
        else:
            raise ConfigError(f"--shots '{text}': each entry must be a positive number of images per class or 'all'")
    if not shots:
        raise ConfigError(f"--shots '{text}' names no shot count; give e.g. --shots 1,5,all")
    return shots


def parse_model_shots(text: str) -> int | str:
    """``"5"`` -> ``5``, ``"all"`` -> ``"all"``: one shots setting, as ``--shots`` takes them."""
    part = text.strip()
    if part == "all":
        return "all"
    if part.isdigit() and int(part) > 0:
        return int(part)
    raise ConfigError(
        f"--model-shots '{text}': give one shots setting of --shots, a positive number of images per class or 'all'"
    )


def experiment_for(
    checkpoint: str, preset: str | None, config_file: str | None, overrides: tuple[str, ...]
) -> ExperimentConfig:
    """The run config: the checkpoint's own unless --preset/--config is given, then --set overrides.

    A checkpoint is data, not instructions: its ``data.data_root`` (a path on the machine that trained it) is
    dropped, so the data root comes from --data-root, --set, $UATTN_DATA_ROOT or ./data.
    """
    from ..runs.checkpoint import experiment_of, read_metadata, resolve_checkpoint

    if preset is None and config_file is None and checkpoint not in ("random", "imagenet"):
        path = resolve_checkpoint(checkpoint)
        saved = experiment_of(read_metadata(path), path)
        if saved is not None:
            base = saved.updated(data=saved.data.updated(data_root=None))
            return load_config(overrides=overrides, base=base)
    return load_config(preset=preset, config_file=config_file, overrides=overrides)


def _interval(low: float, high: float) -> str:
    return "-" if low != low else f"[{low:.3f}, {high:.3f}]"  # a lone run has no interval (nan)


def results_table(report: dict) -> Table:
    """Rows: start point x attention x shots; top-1 (mean ± sample std, 95 % CI), train top-1, the paired
    difference to the baseline, runs and steps."""
    table = Table(title=f"transfer to {report['target']} ({report['mode']})")
    for column in (
        "start",
        "attention",
        "shots",
        "top-1",
        "95% CI",
        "train top-1",
        "Δ vs baseline (95% CI)",
        "runs",
        "steps",
    ):
        table.add_column(column, justify="left" if column in ("start", "attention") else "right", no_wrap=True)
    deltas = {(c["start"], c["attention"], c["shots"]): c for c in report["comparisons"]}
    for cell in report["cells"]:
        delta = deltas.get((cell["start"], cell["attention"], cell["shots"]))
        shown = (
            "-" if delta is None else (f"{delta['delta_top1']:+.3f} {_interval(*delta['ci'])} vs {delta['baseline']}")
        )
        table.add_row(
            cell["start"],
            cell["attention"],
            str(cell["shots"]),
            f"{cell['top1']:.3f} ± {cell['top1_std']:.3f}",
            _interval(*cell["top1_ci"]),
            f"{cell['train_top1']:.3f}",
            shown,
            str(cell["runs"]),
            str(cell["steps"]),
        )
    return table


def fractions_table(report: dict) -> Table:
    """The share of the oracle's gain over uniform attention that learned attention recovers."""
    table = Table(title="oracle fraction: (learned - uniform) / (oracle - uniform)")
    for column in ("start", "shots", "oracle gain", "fraction", "95% CI"):
        table.add_column(column, justify="left" if column == "start" else "right", no_wrap=True)
    for entry in report["oracle_fraction"]:
        table.add_row(
            entry["start"],
            str(entry["shots"]),
            f"{entry['oracle_gain']:+.3f}",
            f"{entry['fraction']:.2f}",
            _interval(*entry["ci"]),
        )
    return table


def parse_controls(text: str) -> tuple[str, ...]:
    """``"learned,uniform"`` -> ``("learned", "uniform")``, every name checked."""
    from ..models.controls import check_controls

    controls = tuple(part.strip() for part in text.split(",") if part.strip())
    check_controls(controls)
    return controls


@click.command("transfer")
@click.option(
    "--ckpt",
    "checkpoint",
    required=True,
    help="Checkpoint file or run folder to start from; 'random' for a fresh model.",
)
@click.option("--target", help="Target dataset name (default: the run config's data.target).")
@click.option(
    "--mode",
    type=click.Choice(["finetune", "linear"]),
    help="finetune everything, or a linear probe (logistic regression solved on frozen features).",
)
@click.option("--shots", help="Images per class, comma separated, e.g. 1,5,all.")
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    help="Optimiser steps of every run, whatever the shots (transfer.steps; default: epochs).",
)
@click.option("--epochs", type=click.IntRange(min=1), help="Training epochs per run when no --steps is set.")
@click.option("--seeds", type=click.IntRange(min=1), help="Seeds per cell (transfer.seeds).")
@click.option("--draws", type=click.IntRange(min=1, max=1000), help="Shot draws per seed (transfer.draws).")
@click.option(
    "--batchnorm",
    type=click.Choice(["train", "frozen"]),
    help="BatchNorm while finetuning: train-mode batch statistics, or the start model's (frozen).",
)
@click.option("--head-init", type=click.Choice(["zeros", "random", "prototypes"]), help="The new head's weights.")
@click.option(
    "--attention",
    "controls",
    metavar="NAMES",
    help="Attention controls side by side, comma separated: learned, uniform, oracle, shuffled.",
)
@click.option(
    "--remove-object",
    is_flag=True,
    default=None,
    help="Draw the synthetic target without its object (a control: every start must score chance).",
)
@click.option(
    "--baseline",
    "baselines",
    multiple=True,
    type=click.Choice(["random", "imagenet"]),
    help="Also transfer from this start point, run for run (repeatable); paired differences reported.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="runs/transfer",
    show_default=True,
    help="The transfer's folder: config.yaml, results.json, metrics.jsonl and TensorBoard logs.",
)
@click.option("--overwrite", is_flag=True, help="Replace a transfer that --out already holds.")
@click.option(
    "--save-model",
    is_flag=True,
    help="Keep what transfer learned: every start point's model of one run (last seed and draw, learned attention) "
    "as a checkpoint in <out>/models, usable as --ckpt.",
)
@click.option(
    "--model-shots",
    metavar="SHOTS",
    help="The shots setting whose model --save-model keeps: a number or 'all' (default: the largest number).",
)
@data_root_option
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@config_options
@json_option
def transfer(
    checkpoint: str,
    target: str | None,
    mode: str | None,
    shots: str | None,
    steps: int | None,
    epochs: int | None,
    seeds: int | None,
    draws: int | None,
    batchnorm: str | None,
    head_init: str | None,
    controls: str | None,
    remove_object: bool | None,
    baselines: tuple[str, ...],
    out_dir: str,
    overwrite: bool,
    save_model: bool,
    model_shots: str | None,
    data_root: str | None,
    device: str,
    preset: str | None,
    config_file: str | None,
    overrides: tuple[str, ...],
    as_json: bool,
) -> None:
    """Transfer CHECKPOINT to a target task and compare it with baselines side by side.

    Every start point runs the same protocol, run for run: each (attention, shots, seed, draw) gets the same
    shot draw, batch order and new-head initialisation, so differences to a --baseline are paired.
    """
    from ..transfer.protocol import protocol_for
    from ..transfer.run import run_tag, transfer_run

    console = make_console(stderr=as_json)
    kept_shots = None if model_shots is None else parse_model_shots(model_shots)
    if kept_shots is not None and not save_model:
        raise ConfigError("--model-shots picks the model that --save-model keeps; add --save-model")
    experiment = experiment_for(checkpoint, preset, config_file, overrides)
    updates = {
        "mode": mode,
        "seeds": seeds,
        "draws": draws,
        "epochs": epochs,
        "steps": steps,
        "batchnorm": batchnorm,
        "head_init": head_init,
        "remove_object": remove_object,
        "attention": None if controls is None else parse_controls(controls),
        "shots_per_class": None if shots is None else tuple(parse_shots(shots)),
    }
    # every start point transfers at the run's image size (protocol_for), baselines as the checkpoint
    tree = protocol_for(experiment).model_dump() | {key: value for key, value in updates.items() if value is not None}
    data = experiment.data.updated(
        target=experiment.data.target if target is None else target,
        data_root=experiment.data.data_root if data_root is None else data_root,
    )
    run_config = experiment.updated(transfer=validate_section(TransferConfig, tree, "transfer"), data=data)
    starts = [checkpoint] + [name for name in baselines if name != checkpoint]
    per_start = len(run_config.transfer.attention) * len(run_config.transfer.shots_per_class)
    per_start *= run_config.transfer.seeds * run_config.transfer.draws
    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        bar = progress.add_task("transfer", total=len(starts) * per_start)

        def on_run(start: str, run: TransferRun) -> None:
            progress.update(bar, advance=1, description=f"{run_tag(start, run)} top-1 {run.top1:.3f}")

        def on_message(text: str) -> None:
            console.print(text, style="yellow", soft_wrap=True)

        unsaved: UnsavedResultError | None = None
        try:
            report = transfer_run(
                starts,
                run_config,
                out_dir,
                baselines=baselines,
                overwrite=overwrite,
                device=device,
                on_run=on_run,
                on_message=on_message,
                save_model=save_model,
                model_shots=kept_shots,
            )
        except UnsavedResultError as error:  # shown all the same, then the error's one line
            report, unsaved = cast(dict, error.result), error
    if as_json:
        echo_json(report)
    else:
        console.print(results_table(report))
        if report["oracle_fraction"]:
            console.print(fractions_table(report))
    if unsaved is not None:
        raise unsaved
    out = Path(out_dir)
    if not as_json:
        console.print(
            f"results: {out / 'results.json'}  report: {out / 'report.md'}  TensorBoard: {out / 'tb'}  "
            f"metrics: {out / 'metrics.jsonl'}",
            soft_wrap=True,
        )
    for start, file in report.get("models", {}).items():
        console.print(f"model of {start}: {out / file}", highlight=False, soft_wrap=True)
