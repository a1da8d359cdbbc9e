"""ADE20K SceneParse150 (``ADEChallengeData2016``), for attention evaluation.

Unlike the other datasets, its mask is the class map: ``uint8 [H, W]`` with 0 = unlabelled and
``k`` = class ``k`` of :func:`ade20k_classes` (1-based, 150 classes), not a 0/1 object mask. The label
is the scene category from ``sceneCategories.txt`` (``"unlabelled"`` for an image it does not list).
"""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from .base import ImageListDataset

SPLIT_FOLDERS = {"train": "training", "val": "validation"}


class Ade20kClass(NamedTuple):
    """One SceneParse150 class: its first name and whether it is amorphous stuff (wall, sky, road...)."""

    name: str
    is_stuff: bool


def ade20k_classes() -> list[Ade20kClass]:
    """The 150 SceneParse150 classes in class-map order (entry ``k - 1`` is map value ``k``).

    Read from the packaged ``objectInfo150.csv`` (the official list plus a ``Stuff`` column: the 35
    stuff classes of the scene-parsing benchmark's stuff/object split, 115 discrete objects).
    """
    text = resources.files(__package__).joinpath("objectInfo150.csv").read_text(encoding="utf-8")
    rows = sorted(csv.DictReader(text.splitlines()), key=lambda row: int(row["Idx"]))
    return [Ade20kClass(row["Name"].split(",")[0].strip(), row["Stuff"] == "1") for row in rows]


def _scene_categories(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    pairs = (line.split() for line in path.read_text(encoding="utf-8").splitlines())
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def load_ade20k(base: Path, split: str, *, image_size: int | None = None, with_masks: bool = False) -> ImageListDataset:
    """SceneParse150 images with scene labels; ``with_masks=True`` adds the class map (see module docs).

    Args:
        base: the ``ADEChallengeData2016`` folder.
        split: ``"train"`` (training) or ``"val"`` (validation).
        image_size: side of the square output, or ``None``.
        with_masks: serve ``annotations/<split>/<image>.png`` as the mask.
    """
    folder = SPLIT_FOLDERS[split]
    files = sorted((base / "images" / folder).glob("*.jpg"))
    scenes = _scene_categories(base / "sceneCategories.txt")
    names = [scenes.get(file.stem, "unlabelled") for file in files]
    classes = sorted(set(scenes.values()) | set(names))
    lookup = {name: index for index, name in enumerate(classes)}
    masks = [base / "annotations" / folder / f"{file.stem}.png" for file in files] if with_masks else None
    return ImageListDataset(
        "ade20k",
        split,
        files,
        [lookup[name] for name in names],
        classes,
        base=base,
        image_size=image_size,
        masks=masks,
        index_files=[base / "sceneCategories.txt"],
    )
