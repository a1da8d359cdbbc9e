"""``<class>/<image>`` trees with torchvision ``ImageFolder`` semantics: beans and ``folder:<path>``."""

from __future__ import annotations

import os
from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes

from ..errors import DatasetError
from .base import ImageListDataset

BEANS_FOLDERS = {"train": "train", "val": "validation", "test": "test"}
SPLIT_FOLDERS = ("train", "val", "validation", "test")


def image_folder(name: str, split: str, directory: Path, *, image_size: int | None = None) -> ImageListDataset:
    """Every image under ``directory/<class>/``; classes are the sorted sub-folder names.

    Args:
        name: dataset name for messages.
        split: split name recorded on the dataset.
        directory: the folder holding one sub-folder per class.
        image_size: side of the square output, or ``None``.
    """
    try:
        classes, class_to_idx = find_classes(directory)
    except FileNotFoundError as error:
        raise DatasetError(f"{name}: no class folders in {directory}; expected {directory}/<class>/<image>") from error
    samples = image_samples(directory, class_to_idx)
    if not samples:
        raise DatasetError(f"{name}: no images ({', '.join(IMG_EXTENSIONS)}) in {directory}/<class>/")
    return ImageListDataset(
        name,
        split,
        [Path(path) for path, _ in samples],
        [label for _, label in samples],
        classes,
        base=directory,
        image_size=image_size,
    )


def image_samples(directory: Path, class_to_idx: dict[str, int]) -> list[tuple[str, int]]:
    """``(path, label)`` of every image file under ``directory/<class>/``, in torchvision's order (sorted folders,
    then sorted names). Unlike torchvision's ``make_dataset`` the walk does not follow symlinked folders (a link
    to ``.`` inside a class folder would make it endless). Files that are not images (a FIFO named ``x.jpg``
    included) are listed and then skipped and counted by the reader."""
    samples = []
    for name, label in sorted(class_to_idx.items()):
        found = []
        for root, folders, files in os.walk(directory / name, followlinks=False):
            folders.sort()
            found += [os.path.join(root, file) for file in files if file.lower().endswith(IMG_EXTENSIONS)]
        samples += [(path, label) for path in sorted(found)]
    return samples


def load_beans(base: Path, split: str, *, image_size: int | None = None) -> ImageListDataset:
    """iBean leaf images (3 classes) from the release layout ``beans/{train,validation,test}/<class>/``."""
    return image_folder("beans", split, base / BEANS_FOLDERS[split], image_size=image_size)


def folder_splits(path: Path) -> list[str]:
    """The splits of ``folder:<path>``: its split sub-folders (``validation`` as ``val``), else ``["train"]``."""
    present = ("val" if folder == "validation" else folder for folder in SPLIT_FOLDERS if (path / folder).is_dir())
    return list(dict.fromkeys(present)) or ["train"]


def load_folder(path: Path, split: str, *, image_size: int | None = None) -> ImageListDataset:
    """``folder:<path>``: a ``<class>/<image>`` tree, optionally split into sub-folders.

    If ``path`` has any of the sub-folders train / val / validation / test, split ``s`` reads
    ``path/s`` (``val`` and ``validation`` are the same). Otherwise ``path`` itself is the tree and is
    the ``train`` split.
    """
    name = f"folder:{path}"
    if not path.is_dir():
        raise DatasetError(f"{name} not found: expected a folder of <class>/<image> there")
    present = [folder for folder in SPLIT_FOLDERS if (path / folder).is_dir()]
    if not present:
        if split != "train":
            raise DatasetError(f"{name} has no split folders, so only split 'train' (the whole tree) exists")
        return image_folder(name, split, path, image_size=image_size)
    aliases = ("val", "validation") if split in ("val", "validation") else (split,)
    for folder in aliases:
        if folder in present:
            return image_folder(name, split, path / folder, image_size=image_size)
    raise DatasetError(f"{name} has no {path / split} folder; its splits: {', '.join(present)}")
