"""Caltech-UCSD Birds-200-2011 from its official text index files; masks from ``segmentations/``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .base import ImageListDataset, listed_path

INDEX_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")


def read_id_table(path: Path) -> dict[str, str]:
    """Read a CUB index file of ``<id> <value>`` lines into a dict (blank lines ignored)."""
    table: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise DatasetError(f"cub200: {path} line {number} is not '<id> <value>': {line!r}")
        table[parts[0]] = parts[1].strip()
    return table


def _segmentation_to_mask(values: np.ndarray) -> np.ndarray:
    # The segmentations are soft (0..255, averaged over annotators): the bird is the majority vote.
    return (values > 127).astype(np.uint8)


def load_cub200(base: Path, split: str, *, image_size: int | None = None, with_masks: bool = False) -> ImageListDataset:
    """CUB-200-2011 with its official train/test split (``train_test_split.txt``: 1 = train).

    Args:
        base: the ``CUB_200_2011`` folder.
        split: ``"train"`` or ``"test"``.
        image_size: side of the square output, or ``None``.
        with_masks: serve ``segmentations/<class>/<image>.png`` thresholded at 127 as the mask.
    """
    images, labels, is_train, class_names = (read_id_table(base / name) for name in INDEX_FILES)
    wanted = "1" if split == "train" else "0"
    try:
        ids = sorted((i for i in images if is_train[i] == wanted), key=int)
        targets = [int(labels[i]) - 1 for i in ids]
        classes = [class_names[key].split(".", 1)[-1].replace("_", " ") for key in sorted(class_names, key=int)]
    except (KeyError, ValueError) as error:
        raise DatasetError(f"cub200: the index files in {base} disagree about image or class {error}") from error
    masks = None
    if with_masks:
        folder = base / "segmentations"
        if not folder.is_dir():
            raise DatasetError(
                f"cub200 masks not found: expected {folder}/<class>/<image>.png; "
                "unpack the official segmentations.tgz there"
            )
        masks = [folder / Path(images[i]).with_suffix(".png") for i in ids]
    files = [listed_path(base / "images", images[i], f"cub200: images.txt entry of image {i}") for i in ids]
    return ImageListDataset(
        "cub200",
        split,
        files,
        targets,
        classes,
        base=base,
        image_size=image_size,
        masks=masks,
        mask_fn=_segmentation_to_mask,
        index_files=[base / name for name in INDEX_FILES],
    )
