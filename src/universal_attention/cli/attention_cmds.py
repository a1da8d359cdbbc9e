"""``uattn visualize`` and ``uattn evaluate-attention``: attention you can see and measure."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from ..config import DEFAULT_IMAGE_SIZE, DISPLAY_SIZE, RANDOM
from ..errors import ConfigError, RunFolderError
from .options import data_root_option
from .output import echo_json, json_option, make_console, styled

if TYPE_CHECKING:  # these load torch: each command imports what it uses when it runs
    import torch

    from ..analysis.evaluate import AttentionReport
    from ..analysis.pictures import Scale
    from ..data.samples import ImageDataset
    from ..runs.loading import LoadedModel

TOP_CLASSES = 10
SCALES = ("per-map", "shared")
"""The colour scales of ``uattn visualize`` (:data:`~universal_attention.analysis.pictures.SCALES`, named here so
that ``uattn visualize --help`` loads no torch)."""
DEFAULT_CMAP = "inferno"
"""The default colour map of ``uattn visualize`` (:data:`~universal_attention.analysis.pictures.DEFAULT_CMAP`,
named here so that ``uattn visualize --help`` loads no torch)."""
START_NAMES = {
    "model": "model",
    "random_init": "random init",
    "uniform": "uniform",
    "oracle": "oracle",
    "shuffled": "shuffled",
}


def _layers(values: tuple[str, ...]) -> list[str] | None:
    """``--layers a,b --layers c`` -> ``["a", "b", "c"]``; ``None`` when not given."""
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    return names or None


@click.command("visualize")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--ckpt",
    "checkpoint",
    default=RANDOM,
    show_default=True,
    help="Checkpoint file or run folder; 'random' for a fresh, untrained model.",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("attention.png"),
    show_default=True,
    help="The PNG to write.",
)
@click.option(
    "--layers",
    multiple=True,
    metavar="NAMES",
    help="Tap layers to show, comma separated or repeated; 'combined' is the mean map (default: every tap).",
)
@click.option("--task", help="Head whose top-3 predictions are shown (default: 'default' or the only head).")
@click.option(
    "--image-size",
    type=click.IntRange(16, 1024),
    help=f"Square side images are resized and cropped to (default: the checkpoint's, else {DEFAULT_IMAGE_SIZE}).",
)
@click.option(
    "--size",
    "display_size",
    type=click.IntRange(16, 4096),
    default=DISPLAY_SIZE,
    show_default=True,
    help="Side of each picture in pixels: the crop the model sees, drawn from the photo's own pixels "
    "(never larger than the photo), with every map upsampled onto it.",
)
@click.option(
    "--save-maps",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the raw maps to this .safetensors file.",
)
@click.option(
    "--max-images",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="At most this many images (folders can hold many).",
)
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Weight of the maps.")
@click.option(
    "--scale",
    type=click.Choice(SCALES),
    default="per-map",
    show_default=True,
    help="per-map stretches every map to the full colour range; shared draws every map on one scale relative to "
    "uniform attention, with a colour bar. Every panel states its map's peak and entropy relative to uniform.",
)
@click.option(
    "--cmap",
    default=DEFAULT_CMAP,
    show_default=True,
    metavar="NAME",
    help="Colour map of the overlays: inferno is built in; any matplotlib colour map (viridis, magma, gray, ...) "
    "when matplotlib is installed.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
def visualize(
    images: tuple[Path, ...],
    checkpoint: str,
    out: Path,
    layers: tuple[str, ...],
    task: str | None,
    image_size: int | None,
    display_size: int,
    save_maps: Path | None,
    max_images: int,
    alpha: float,
    scale: str,
    cmap: str,
    device: str,
) -> None:
    """Overlay a model's attention on IMAGES (files or folders) in one PNG: per image, the original and one
    overlay per tap layer, with the top predictions when the model has a head for the task."""
    from ..analysis.files import visualize_attention

    console = make_console()
    result = visualize_attention(
        checkpoint,
        images,
        layers=_layers(layers),
        task=task,
        image_size=image_size,
        display_size=display_size,
        alpha=alpha,
        max_images=max_images,
        device=device,
        scale=cast("Scale", scale),
        cmap=cmap,
    )
    result.save(out)
    console.print(
        f"wrote {out}: {len(result.names)} image(s) x {len(result.maps)} layer(s) "
        f"({', '.join(result.maps)}), attention of {result.model_label}",
        highlight=False,
        soft_wrap=True,
    )
    if checkpoint == RANDOM:
        console.print(
            styled(
                ("the model is untrained", "yellow"),
                " (--ckpt random): its attention shows the architecture, not anything learned",
            ),
            soft_wrap=True,
        )
    for name, top in zip(result.names, result.predictions or []):
        console.print(
            f"  {name}: " + ", ".join(f"{label} {p:.2f}" for label, p in top), highlight=False, soft_wrap=True
        )
    if result.head is None and result.heads:
        console.print(
            f"no predictions: the model has several heads ({', '.join(result.heads)}); pick one with --task",
            highlight=False,
            soft_wrap=True,
        )
    for line in result.skipped:
        console.print(styled(("skipped", "yellow"), f" {line}"), soft_wrap=True)
    if save_maps:
        result.save_maps(save_maps)
        console.print(f"maps: {save_maps}", highlight=False, soft_wrap=True)


def layers_table(report: AttentionReport) -> Table:
    """Rows: layer x start point; columns: pointing game, mass in mask, mass / area, share on the frame."""
    table = Table(title=f"attention on {report.dataset} objects", title_justify="left")
    for column in ("layer", "start", "pointing game", "mass in mask", "mass / area", "on frame"):
        table.add_column(column, justify="left" if column in ("layer", "start") else "right", no_wrap=True)
    for layer in report.starts["model"].layers:
        for number, (key, start) in enumerate(report.starts.items()):
            scores = start.layers[layer]
            table.add_row(
                layer if number == 0 else "",
                START_NAMES[key],
                f"{scores.pointing_game:.3f}",
                f"{scores.mass_in_mask:.3f}",
                f"{scores.relative_to_area:.2f}",
                f"{scores.frame_share:.2f}",
                end_section=number == len(report.starts) - 1,
            )
    return table


def regions_table(report: AttentionReport) -> Table:
    """ADE20K, combined map: attention mass, area and mass / area on object, stuff and unlabelled pixels."""
    from ..analysis.ade20k import REGIONS
    from ..analysis.maps import COMBINED

    table = Table(title="object vs stuff pixels (combined map)", title_justify="left")
    for column in ("pixels", "start", "mass", "area", "mass / area"):
        table.add_column(column, justify="left" if column in ("pixels", "start") else "right", no_wrap=True)
    for region in REGIONS:
        for number, (key, start) in enumerate(report.starts.items()):
            entry = (start.regions or {})[COMBINED][region]
            ratio = "-" if entry.relative is None else f"{entry.relative:.2f}"
            table.add_row(
                region if number == 0 else "",
                START_NAMES[key],
                f"{entry.mass:.3f}",
                f"{entry.area:.3f}",
                ratio,
                end_section=number == len(report.starts) - 1,
            )
    return table


def classes_table(report: AttentionReport) -> Table:
    """ADE20K: the model's classes ranked by mass / area (combined map), top and bottom."""
    from ..analysis.maps import COMBINED

    ranked = (report.starts["model"].classes or {})[COMBINED]
    shown = ranked if len(ranked) <= 2 * TOP_CLASSES else ranked[:TOP_CLASSES] + ranked[-TOP_CLASSES:]
    table = Table(
        title=f"classes ranked by mass / area (combined map, {len(ranked)} classes seen)", title_justify="left"
    )
    for column in ("rank", "class", "kind", "images", "area", "mass", "mass / area"):
        table.add_column(column, justify="left" if column in ("class", "kind") else "right", no_wrap=True)
    for entry in shown:
        table.add_row(
            str(ranked.index(entry) + 1),
            entry.name,
            "stuff" if entry.stuff else "object",
            str(entry.images),
            f"{entry.area:.3f}",
            f"{entry.mass:.3f}",
            f"{entry.relative:.2f}",
        )
    return table


@click.command("evaluate-attention")
@click.option("--ckpt", "checkpoint", required=True, help="Checkpoint file or run folder; 'random' for a fresh model.")
@click.option("--dataset", help="Dataset with masks (default: the checkpoint's data.target).")
@click.option("--split", default="test", show_default=True, help="Split to evaluate.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Evaluate a fixed random subset of this many images.",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Images per forward pass."
)
@click.option(
    "--image-size",
    type=click.IntRange(16, 1024),
    help=f"Square image side (default: the checkpoint's, else {DEFAULT_IMAGE_SIZE}).",
)
@click.option("--no-baselines", is_flag=True, help="Skip the random-init and uniform baselines.")
@click.option(
    "--attention",
    "controls",
    metavar="NAMES",
    default="",
    help="Also score the model under these attention controls, comma separated: oracle (the mask as "
    "the map: the ceiling at each tap's resolution), shuffled (another image's map).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/attention"),
    show_default=True,
    help="Where attention_report.json and attention_examples.png go (a folder of its own, marked as uattn's).",
)
@click.option("--overwrite", is_flag=True, help="Replace the report that --out already holds.")
@data_root_option
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@json_option
def evaluate_attention_command(
    checkpoint: str,
    dataset: str | None,
    split: str,
    limit: int,
    batch_size: int,
    image_size: int | None,
    no_baselines: bool,
    controls: str,
    out_dir: Path,
    overwrite: bool,
    data_root: str | None,
    device: str,
    as_json: bool,
) -> None:
    """Pointing game and attention mass in object masks, per tap layer, beside a random init and uniform
    attention; ADE20K adds attention per class and the stuff / object split."""
    from ..data.registry import get_dataset
    from ..devices import resolve_device
    from ..runs.folder import claim_folder
    from ..runs.loading import image_size_for, resolve_model

    run_device = resolve_device(device)
    loaded = resolve_model(checkpoint)
    if dataset is not None:
        name = dataset
    elif loaded.experiment is not None:
        name = loaded.experiment.data.target
    else:
        raise ConfigError("give --dataset: the checkpoint has no run config naming a target dataset")
    # data_root is never the checkpoint's: a file does not choose where this machine reads
    masked = get_dataset(
        name, split, root=data_root, image_size=image_size_for(loaded.experiment, image_size), with_masks=True
    )
    with claim_folder(out_dir, "attention"):  # refused now, before the evaluation, if --out is not ours
        if (out_dir / "attention_report.json").exists() and not overwrite:
            raise RunFolderError(
                f"{out_dir} already holds an attention report; choose another --out, or pass --overwrite to replace it"
            )
        _evaluate_into(
            out_dir, loaded, masked, name, split, limit, batch_size, no_baselines, controls, run_device, as_json
        )


def _evaluate_into(
    out_dir: Path,
    loaded: LoadedModel,
    masked: ImageDataset,
    name: str,
    split: str,
    limit: int,
    batch_size: int,
    no_baselines: bool,
    controls: str,
    run_device: torch.device,
    as_json: bool,
) -> None:
    """:func:`evaluate_attention_command` while it holds ``out_dir``: evaluate, print, write the two files."""
    from ..analysis.evaluate import BASELINES, evaluate_attention, example_grid
    from ..atomic import atomic_write_bytes

    console = make_console(stderr=as_json)
    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        bar = progress.add_task(f"attention on {name}", total=min(limit, len(masked)))
        report = evaluate_attention(
            loaded,
            masked,
            limit=limit,
            batch_size=batch_size,
            baselines=() if no_baselines else BASELINES,
            controls=[name.strip() for name in controls.split(",") if name.strip()],
            device=run_device,
            on_batch=lambda done, total: progress.update(bar, completed=done),
        )
    console.print(
        f"model: {report.starts['model'].label}; {report.images} {name} {split} images, mean object "
        f"area {report.mask_area:.3f}" + (f", {report.empty_masks} without objects" if report.empty_masks else ""),
        highlight=False,
        soft_wrap=True,
    )
    if not as_json:
        console.print(layers_table(report))
        if report.class_maps:
            console.print(regions_table(report))
            console.print(classes_table(report))
    atomic_write_bytes(out_dir / "attention_report.json", report.to_json().encode())
    buffer = io.BytesIO()
    example_grid(loaded.model, masked, limit=limit, device=run_device).save(buffer, format="PNG")
    atomic_write_bytes(out_dir / "attention_examples.png", buffer.getvalue())
    console.print(
        f"report: {out_dir / 'attention_report.json'}  examples: {out_dir / 'attention_examples.png'}",
        highlight=False,
        soft_wrap=True,
    )
    if as_json:
        echo_json(report.to_dict())
