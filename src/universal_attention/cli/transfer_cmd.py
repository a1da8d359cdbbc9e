"""``uattn transfer``: transfer a checkpoint (and baselines) to a target task, side by side."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from torch.utils.tensorboard import SummaryWriter

from ..checkpoint import atomic_write_bytes, read_metadata
from ..config import ExperimentConfig, load_config
from ..errors import ConfigError, ModelError
from ..transfer import TransferResult, transfer_evaluate
from .options import config_options
from .output import echo_json, json_option, make_console


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
    return shots


def experiment_for(checkpoint: str, preset: str | None, config_file: str | None,
                   overrides: tuple[str, ...]) -> ExperimentConfig:
    """The run config: the checkpoint's own unless --preset/--config is given, then --set overrides."""
    if preset is None and config_file is None and checkpoint not in ("random", "imagenet"):
        saved = read_metadata(checkpoint).get("experiment_config")
        if saved:
            base = ExperimentConfig.model_validate_json(saved)
            return load_config(overrides=overrides, base=base)
    return load_config(preset=preset, config_file=config_file, overrides=overrides)


def results_table(results: list[TransferResult]) -> Table:
    """Rows: start point x shots; columns: top-1, top-5, mean per-class (mean ± std over seeds)."""
    table = Table(title=f"transfer to {results[0].target} ({results[0].mode})")
    for column in ("start", "shots", "top-1", "top-5", "mean per-class", "seeds"):
        table.add_column(column, justify="left" if column == "start" else "right", no_wrap=column == "start")
    for result in results:
        for entry in result.shots:
            table.add_row(result.start, str(entry.shots), f"{entry.top1:.3f} ± {entry.top1_std:.3f}",
                          f"{entry.top5:.3f} ± {entry.top5_std:.3f}",
                          f"{entry.mean_per_class:.3f} ± {entry.mean_per_class_std:.3f}", str(len(entry.runs)))
    return table


@click.command("transfer")
@click.option("--ckpt", "checkpoint", required=True,
              help="Checkpoint file or run folder to start from; 'random' for a fresh model.")
@click.option("--target", help="Target dataset name (default: the run config's data.target).")
@click.option("--mode", type=click.Choice(["finetune", "linear"]), help="finetune everything, or a linear probe.")
@click.option("--shots", help="Images per class, comma separated, e.g. 1,5,all.")
@click.option("--seeds", type=click.IntRange(min=1), help="Runs per shots setting (mean and std reported).")
@click.option("--epochs", type=click.IntRange(min=1), help="Training epochs per run.")
@click.option("--baseline", "baselines", multiple=True, type=click.Choice(["random", "imagenet"]),
              help="Also transfer from this start point, same protocol (repeatable).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/transfer", show_default=True,
              help="Where results.json and TensorBoard logs go.")
@click.option("--data-root", type=click.Path(file_okay=False), help="Folder holding the datasets.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@config_options
@json_option
def transfer(checkpoint: str, target: str | None, mode: str | None, shots: str | None, seeds: int | None,
             epochs: int | None, baselines: tuple[str, ...], out_dir: str, data_root: str | None, device: str,
             preset: str | None, config_file: str | None, overrides: tuple[str, ...], as_json: bool) -> None:
    """Transfer CHECKPOINT to a target task and compare it with baselines side by side."""
    console = make_console(stderr=as_json)
    experiment = experiment_for(checkpoint, preset, config_file, overrides)
    updates = {"mode": mode, "seeds": seeds, "epochs": epochs,
               "shots_per_class": tuple(parse_shots(shots)) if shots else None}
    config = experiment.transfer.model_copy(update={k: v for k, v in updates.items() if v is not None})
    config = type(config).model_validate(config.model_dump())
    target = target or experiment.data.target
    data_root = data_root or experiment.data.data_root
    starts = [checkpoint] + [name for name in baselines if name != checkpoint]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: list[TransferResult] = []
    total = len(starts) * len(config.shots_per_class) * config.seeds * config.epochs
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=console, transient=True) as progress, \
            SummaryWriter(str(out / "tb")) as writer:
        bar = progress.add_task("transfer", total=total)

        def on_epoch(info: dict) -> None:
            tag = f"{info['start']}/shots-{info['shots']}/seed-{info['seed']}"
            writer.add_scalar(f"{tag}/train_loss", info["train_loss"], info["epoch"])
            writer.add_scalar(f"{tag}/test_top1", info["test_top1"], info["epoch"])
            progress.update(bar, advance=1, description=f"{tag} epoch {info['epoch']} top-1 {info['test_top1']:.3f}")

        for start in starts:
            try:
                result = transfer_evaluate(start, target, config, model_config=experiment.model,
                                           image_size=experiment.data.image_size, data_root=data_root,
                                           device=device, on_epoch=on_epoch)
            except ModelError as error:
                if start != "imagenet" or start == checkpoint:
                    raise
                console.print(f"[yellow]skipped the imagenet baseline:[/yellow] {error}", highlight=False, soft_wrap=True)
                continue
            results.append(result)
            document = {"target": target, "results": {r.start: r.to_dict() for r in results}}
            atomic_write_bytes(out / "results.json", json.dumps(document, indent=2).encode())
    if as_json:
        echo_json(document)
        return
    console.print(results_table(results))
    console.print(f"results: {out / 'results.json'}  TensorBoard: {out / 'tb'}", soft_wrap=True)
