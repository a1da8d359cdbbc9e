"""``uattn meta-train``: one meta-training run from a preset, a config file and overrides."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import ConfigError, UnsavedResultError
from .options import config_options, data_root_option, resolve_config
from .output import make_console

if TYPE_CHECKING:
    from ..meta.training import MetaTrainResult

START_LABELS = {
    "meta_trained": "meta-trained",
    "random_init": "random init",
    "joint": "joint training",
    "supervised": "attention supervised",
}


def sources_table(sources: dict) -> Table:
    """Held-out source images of the meta-trained model: top-1, and per tap attention on the object relative to
    its area (1 = uniform) and map entropy relative to uniform."""
    taps = list(next(iter(sources.values()))["attention"]["relative_to_area"])
    table = Table(title="held-out source images: top-1, attention on the object / its area, entropy / uniform")
    table.add_column("source", no_wrap=True)
    table.add_column("top-1", justify="right")
    for tap in taps:
        table.add_column(f"{tap} mass/area", justify="right")
        table.add_column(f"{tap} entropy", justify="right")
    for name, entry in sources.items():
        cells = [f"{entry['top1']:.3f}"]
        for tap in taps:
            cells += [
                f"{entry['attention']['relative_to_area'][tap]:.2f}",
                f"{entry['attention']['entropy'][tap]:.3f}",
            ]
        table.add_row(name, *cells)
    return table


def comparison_table(comparison: dict) -> Table:
    """The start points side by side: transfer top-1 (mean ± sample std, 95 % CI, paired differences) and,
    per tap, the attention in the target's object masks relative to the masks' area (uniform = 1)."""
    taps = list(comparison["meta_trained"].get("attention", {}).get("relative_to_area", {}))
    table = Table(title=f"transfer to {comparison['target']}: same protocol, same budget, run for run")
    table.add_column("start point", no_wrap=True)
    table.add_column("top-1", justify="right")
    table.add_column("95% CI", justify="right")
    for tap in taps:
        table.add_column(f"{tap} mass/area", justify="right")
    for key, label in START_LABELS.items():
        if key not in comparison:
            continue
        entry = comparison[key]
        low, high = entry.get("top1_ci", [float("nan")] * 2)
        cells = [
            label,
            f"{entry['top1']:.3f} ± {entry['top1_std']:.3f}",
            "-" if low != low else f"[{low:.3f}, {high:.3f}]",
        ]
        cells += [f"{entry['attention']['relative_to_area'][tap]:.2f}" for tap in taps]
        table.add_row(*cells)
    notes = []
    for delta in comparison.get("comparisons", []):
        low, high = delta["ci"]
        notes.append(
            f"meta-trained - {START_LABELS[delta['baseline']]}, paired over {delta['pairs']} runs: "
            f"{delta['delta_top1']:+.3f} (95% CI [{low:.3f}, {high:.3f}])"
        )
    if taps:
        area = comparison["meta_trained"]["attention"]["mask_area"]
        notes.append(
            f"mass/area: attention inside the objects' masks over their share of the image ({area:.3f}); "
            "uniform attention scores 1"
        )
    table.caption = "\n".join(notes) or None
    return table


@click.command("meta-train")
@config_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Run folder (default: runs/<config name>).")
@click.option("--max-steps", type=click.IntRange(min=1), help="Meta-steps to run (train.max_steps).")
@data_root_option
@click.option("--device", help="auto, cpu, cuda, cuda:1 ... (train.device).")
@click.option("--overwrite", is_flag=True, help="Replace a run already in the run folder.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its newest readable checkpoint.")
@click.option(
    "--compare",
    metavar="NAMES",
    help="Baselines beside the meta-trained model at the end, comma separated: random (an untrained "
    "init), joint (the same run with reptile.algorithm=joint), supervised (the same run with attention told "
    "where, train.attention_supervision=1) (train.compare; default random).",
)
def meta_train_command(
    preset: str | None,
    config_file: str | None,
    overrides: tuple[str, ...],
    out_dir: str | None,
    max_steps: int | None,
    data_root: str | None,
    device: str | None,
    overwrite: bool,
    resume: bool,
    compare: str | None,
) -> None:
    """Meta-train an attention ResNet50 with Reptile, then compare its transfer with a random init.

    Under torchrun (torchrun --nproc_per_node N -m universal_attention.cli meta-train ...) every process
    adapts to its own tasks and the Reptile updates are averaged; only rank 0 writes.
    """
    from .. import distributed  # torch loads when the command runs, not when uattn starts
    from ..meta.training import meta_train

    options = {
        key: value
        for key, value in (
            ("train.max_steps", max_steps),
            ("data.data_root", data_root),
            ("train.device", device),
            ("train.compare", None if compare is None else [part.strip() for part in compare.split(",")]),
        )
        if value is not None
    }
    if resume and out_dir is None:
        raise ConfigError("--resume needs --out: the run folder to continue")
    if resume and out_dir is not None and preset is None and config_file is None:
        config_file = str(Path(out_dir) / "config.yaml")
        if not Path(config_file).is_file():
            raise ConfigError(f"cannot resume {out_dir}: no config.yaml there (is it a run folder?)")
    config = resolve_config(preset, config_file, overrides, values=options)
    out = out_dir or f"runs/{config.name}"
    main_process = distributed.launch_variable("RANK", 0) == 0
    console = make_console(quiet=not main_process)
    columns = (
        TextColumn("step"),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn("{task.description}", markup=False),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task("", total=config.train.max_steps)
        target: dict[str, float | None] = {"top1": None}

        def on_step(step: int, metrics: dict[str, float]) -> None:
            if "target_top1" in metrics:
                target["top1"] = metrics["target_top1"]
            shown = f"loss {metrics['loss']:.3f}  {metrics['images_per_s']:.0f} img/s"
            if target["top1"] is not None:
                shown += f"  target top-1 {target['top1']:.3f}"
            progress.update(bar, completed=step, description=shown)

        unsaved: UnsavedResultError | None = None
        try:
            result = meta_train(
                config,
                out,
                overwrite=overwrite,
                resume=resume,
                on_step=on_step,
                on_message=lambda text: progress.console.print(text, highlight=False, soft_wrap=True),
            )
            saved_to: str | None = str(result.out_dir / "results.json")
        except UnsavedResultError as error:  # shown all the same, then the error's one line
            result, saved_to, unsaved = cast("MetaTrainResult", error.result), error.fallback, error
    distributed.destroy()
    print_summary(console, result, saved_to)
    if unsaved is not None:
        raise unsaved


def print_summary(console: Console, result: MetaTrainResult, saved_to: str | None) -> None:
    """The finished run's tables and where its files are (``saved_to``: where its results went, if anywhere)."""
    if result.interrupted or not result.comparison:
        return
    if result.comparison.get("sources"):
        console.print(sources_table(result.comparison["sources"]))
    if "meta_trained" in result.comparison:
        console.print(comparison_table(result.comparison))
    stages = result.comparison.get("stage_seconds", {})
    if stages:
        console.print(
            "stage seconds: "
            + ", ".join(f"{name} {value:.0f}" for name, value in stages.items())
            + f" (total {sum(stages.values()):.0f})",
            soft_wrap=True,
        )
    console.print(
        f"run folder: {result.out_dir}  ({result.steps} steps, {result.seconds:.0f} s, "
        f"{result.images_per_second:.0f} img/s meta-training)",
        soft_wrap=True,
    )
    console.print(f"final checkpoint: {result.final_checkpoint}  results: {saved_to or 'not saved'}", soft_wrap=True)
    report = result.out_dir / "report.md"
    if report.is_file():
        console.print(f"report: {report}", highlight=False, soft_wrap=True)
