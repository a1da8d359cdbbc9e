"""Stanford Dogs from its official ``train_list.mat`` / ``test_list.mat`` (read with scipy.io)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .base import ImageListDataset, listed_path


def load_stanford_dogs(base: Path, split: str, *, image_size: int | None = None) -> ImageListDataset:
    """Stanford Dogs (120 breeds) with its official train/test lists.

    Labels come from the list's ``labels`` (1-based); class names are the breed part of the sorted
    ``Images/<wnid>-<breed>`` folders (underscores as spaces), the order the official labels follow.

    Args:
        base: the ``stanford_dogs`` folder holding ``Images/`` and the ``*_list.mat`` files.
        split: ``"train"`` or ``"test"``.
        image_size: side of the square output, or ``None``.
    """
    from scipy.io import loadmat  # imported here: scipy is slow to import and only this dataset needs it

    index = base / f"{split}_list.mat"
    try:
        lists = loadmat(index, squeeze_me=True)
        files = [str(name) for name in np.atleast_1d(lists["file_list"])]
        labels = [int(label) - 1 for label in np.atleast_1d(lists["labels"])]
    except (KeyError, ValueError, TypeError, OSError) as error:
        raise DatasetError(f"stanford_dogs: cannot read file_list/labels from {index} ({error})") from error
    folders = sorted(entry.name for entry in (base / "Images").iterdir() if entry.is_dir())
    where = f"stanford_dogs: {index.name} entry"
    return ImageListDataset(
        "stanford_dogs",
        split,
        [listed_path(base / "Images", name, f"{where} {number}") for number, name in enumerate(files, start=1)],
        labels,
        [folder.split("-", 1)[-1].replace("_", " ") for folder in folders],
        base=base,
        image_size=image_size,
        index_files=[index],
    )
