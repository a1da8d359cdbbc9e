"""``uattn data list|verify|show|prepare``: find, check, preview and cache datasets."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..config import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from ..errors import DatasetError
from .options import data_root_option
from .output import echo_json, json_option, make_console, styled

if TYPE_CHECKING:  # the data modules load torch: each command imports what it uses when it runs
    from ..data.base import ImageListDataset, VerifyReport
    from ..data.cache import CachedDataset
    from ..data.samples import ImageDataset

MAX_LISTED_ISSUES = 50


def image_size_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--image-size``, in the range a config's ``data.image_size`` takes."""
    return click.option(
        "--image-size",
        type=click.IntRange(MIN_IMAGE_SIZE, MAX_IMAGE_SIZE),
        default=128,
        show_default=True,
        help=help_text,
    )


split_option = click.option("--split", default=None, help="One split (default: every split of the dataset).")


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@click.group("data")
def data() -> None:
    """List, check, preview and cache the datasets."""


@data.command("list")
@data_root_option
@json_option
def list_datasets(data_root: str | None, as_json: bool) -> None:
    """Every dataset: the folder it is expected in, whether it is found, classes and images per split."""
    from ..data.registry import describe_datasets, resolve_data_root

    console = make_console()
    root = resolve_data_root(data_root)
    if as_json:
        echo_json({"data_root": str(root), "datasets": [asdict(info) for info in describe_datasets(root)]})
        return
    table = Table(title=f"datasets under {root}", title_justify="left")
    for column in ("name", "expected", "found", "classes", "images per split", "masks"):
        table.add_column(column, overflow="fold")
    for info in describe_datasets(root):
        found = styled(("found", "green")) if info.found else styled(("missing", "red"))
        images = ", ".join(f"{split} {count}" for split, count in info.images.items()) or "-"
        classes = "-" if info.classes is None else str(info.classes)
        table.add_row(info.name, info.expected, found, classes, images, info.masks or "-")
    console.print(table)
    console.print("folder:<path> reads any <class>/<image> tree (with optional train/val/test sub-folders).")


def _print_report(console: Console, report: VerifyReport, folder: Path) -> None:
    if report.issues:
        table = Table(title=f"odd files in {report.name} ({report.split})", title_justify="left")
        for column in ("file", "status", "detail"):
            table.add_column(column, overflow="fold")
        for issue in report.issues[:MAX_LISTED_ISSUES]:
            status = styled("converted") if issue.usable else styled(("skipped", "red"))
            shown = issue.path.relative_to(folder) if issue.path.is_relative_to(folder) else issue.path
            table.add_row(str(shown), status, issue.detail)
        console.print(table)
        if len(report.issues) > MAX_LISTED_ISSUES:
            console.print(f"... and {len(report.issues) - MAX_LISTED_ISSUES} more")
    console.print(
        f"{report.name} ({report.split}): {report.total} images, {len(report.converted)} odd but converted, "
        f"{len(report.unreadable)} unreadable (skipped)"
    )


@data.command("verify")
@click.argument("name")
@data_root_option
@split_option
def verify(name: str, data_root: str | None, split: str | None) -> None:
    """Read every image of NAME and report odd and unreadable files.

    Exits 0 when the dataset is usable (odd files are converted or skipped), 2 when it is missing or a
    split has no readable image at all.
    """
    from ..data.base import ImageListDataset
    from ..data.registry import get_dataset, masks_available, resolve_data_root, splits

    console = make_console()
    root = resolve_data_root(data_root)
    for current in [split] if split else splits(name):
        dataset = get_dataset(name, current, root=root, with_masks=masks_available(name, root))
        if not isinstance(dataset, ImageListDataset):  # synthetic tasks read no files
            console.print(f"{name} ({current}): generated on the fly, nothing to verify")
            continue
        report = _verify_with_progress(console, dataset, f"{name} {current}")
        _print_report(console, report, dataset.root)
        if len(report.unreadable) >= report.total:
            raise DatasetError(f"{name} ({current}): none of its {report.total} files is readable")


def _verify_with_progress(console: Console, dataset: ImageListDataset, label: str) -> VerifyReport:
    """``dataset.verify()`` under a progress bar named ``label``."""
    with _progress(console) as progress:
        task = progress.add_task(label, total=len(dataset))
        return dataset.verify(lambda done: progress.update(task, completed=done))


@data.command("show")
@click.argument("names", nargs=-1, required=True)
@click.option(
    "-n",
    "count",
    type=click.IntRange(1, 1024),
    default=16,
    show_default=True,
    help="Number of samples (per dataset when several).",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PNG to write.")
@click.option("--split", default="train", show_default=True, help="Split to sample.")
@data_root_option
@image_size_option("Side of each thumbnail in pixels.")
def show(names: tuple[str, ...], count: int, output: Path, split: str, data_root: str | None, image_size: int) -> None:
    """Write a grid of samples of NAMES with class names (and mask outlines where they have masks): one
    dataset fills a square grid, several make one row each."""
    from ..atomic import atomic_write_bytes
    from ..data.preview import sample_grid, sample_rows
    from ..data.registry import get_dataset, masks_available, resolve_data_root

    console = make_console()
    root = resolve_data_root(data_root)
    datasets = {
        name: get_dataset(name, split, root=root, image_size=image_size, with_masks=masks_available(name, root))
        for name in names
    }
    if len(datasets) == 1:
        sheet = sample_grid(next(iter(datasets.values())), count, tile=image_size)
    else:
        sheet = sample_rows(datasets, count, tile=image_size)
    picture = io.BytesIO()
    sheet.save(picture, format="PNG")
    atomic_write_bytes(output, picture.getvalue())
    for name, dataset in datasets.items():
        skipped = getattr(dataset, "skipped", 0)
        note = f" ({skipped} unreadable files skipped)" if skipped else ""
        console.print(f"wrote {output}: {min(count, len(dataset))} samples of {name} ({split}){note}")


@data.command("prepare")
@click.argument("name")
@image_size_option("Side of the cached square images.")
@split_option
@data_root_option
@click.option("--masks", is_flag=True, help="Also cache masks (oxford_pets, cub200, ade20k, synthetic).")
def prepare(name: str, image_size: int, split: str | None, data_root: str | None, masks: bool) -> None:
    """Decode and resize NAME once into <data-root>/.cache (rebuilt only when its files change)."""
    from ..data.cache import cache_key
    from ..data.registry import get_dataset, resolve_data_root, splits

    console = make_console()
    root = resolve_data_root(data_root)
    for current in [split] if split else splits(name):
        dataset = get_dataset(name, current, root=root, image_size=image_size, with_masks=masks)
        cached, built = _cache_with_progress(
            console, dataset, root, cache_key(name, current, image_size, masks), image_size, f"{name} {current}"
        )
        state = "built" if built else "up to date"
        note = f", {cached.skipped} unreadable files skipped" if cached.skipped else ""
        console.print(f"{name} ({current}): {len(cached)} images at {image_size} px, {state}: {cached.path}{note}")


def _cache_with_progress(
    console: Console, dataset: ImageDataset, root: Path, key: str, image_size: int, label: str
) -> tuple[CachedDataset, bool]:
    """``build_cache`` under a progress bar named ``label``; also whether anything was read (built, not reused)."""
    from ..data.cache import build_cache

    read: list[int] = []
    with _progress(console) as progress:
        task = progress.add_task(label, total=len(dataset))

        def advance(done: int, total: int) -> None:
            read.append(done)
            progress.update(task, completed=done, total=total)

        cached = build_cache(dataset, root / ".cache", key, image_size, progress=advance)
        progress.update(task, completed=len(dataset))
    return cached, bool(read)
