"""Caltech101, Flowers102, Oxford-IIIT Pet and Imagenette: listed by torchvision, read by us.

torchvision's classes (``download=False``) parse each official layout; the files they list are then
read through :class:`~universal_attention.data.base.ImageListDataset`, so odd images are converted or
skipped instead of stopping a run. Each loader takes the dataset folder (e.g. ``<root>/caltech101``)
and a canonical split name; the registry checks that the folder exists first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torchvision.datasets import Caltech101, Flowers102, Imagenette, OxfordIIITPet

from ..errors import DatasetError
from .base import ImageListDataset


def caltech101_split(
    files: Sequence[str], labels: Sequence[int], *, per_class: int = 30, seed: int = 0
) -> tuple[list[int], list[int]]:
    """The usual Caltech101 protocol: ``per_class`` training images per class, the rest for testing.

    Within each class, images are ranked by a SHA-256 hash of ``(seed, file name)`` and the first
    ``per_class`` go to training. The choice depends only on the seed and the file names, so it is
    the same on every machine and library version, and adding a class never changes another's split.
    A class with ``per_class`` images or fewer goes entirely to training.

    Args:
        files: a stable name of every image, e.g. ``"accordion/image_0001.jpg"``.
        labels: class index of every image.
        per_class: training images per class.
        seed: changes which images are chosen.

    Returns:
        ``(train_indices, test_indices)``, each sorted.
    """
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    train: list[int] = []
    for members in by_class.values():
        ranked = sorted(members, key=lambda i: hashlib.sha256(f"{seed}/{files[i]}".encode()).hexdigest())
        train.extend(ranked[:per_class])
    chosen = set(train)
    return sorted(train), [index for index in range(len(labels)) if index not in chosen]


def load_caltech101(base: Path, split: str, *, image_size: int | None = None) -> ImageListDataset:
    """Caltech101 without BACKGROUND_Google (101 classes), split by :func:`caltech101_split`."""
    listing = Caltech101(base.parent, download=False)
    folder = base / "101_ObjectCategories"
    names = [f"{listing.categories[y]}/image_{n:04d}.jpg" for n, y in zip(listing.index, listing.y)]
    train, test = caltech101_split(names, listing.y)
    chosen = train if split == "train" else test
    return ImageListDataset(
        "caltech101",
        split,
        [folder / names[i] for i in chosen],
        [listing.y[i] for i in chosen],
        listing.categories,
        base=base,
        image_size=image_size,
    )


class _Flowers102Listing(Flowers102):
    """torchvision's Flowers102 without the md5 check of its .mat files.

    Copies generated for tests cannot match the official checksums; the official files parse the
    same either way.
    """

    def _check_integrity(self) -> bool:
        index_files = (self._file_dict["label"][0], self._file_dict["setid"][0])
        return self._images_folder.is_dir() and all((self._base_folder / name).is_file() for name in index_files)


def load_flowers102(base: Path, split: str, *, image_size: int | None = None) -> ImageListDataset:
    """Oxford 102 Flowers with its official train / val / test split."""
    try:
        listing = _Flowers102Listing(base.parent, split=split, download=False)
    except (KeyError, ValueError) as error:
        raise DatasetError(f"flowers102: cannot read {base}/setid.mat or imagelabels.mat ({error})") from error
    return ImageListDataset(
        "flowers102",
        split,
        listing._image_files,
        listing._labels,
        listing.classes,
        base=base,
        image_size=image_size,
        index_files=[base / "imagelabels.mat", base / "setid.mat"],
    )


def _trimap_to_mask(trimap: np.ndarray) -> np.ndarray:
    # Trimap values: 1 = pet, 2 = background, 3 = border (counted as pet).
    return ((trimap == 1) | (trimap == 3)).astype(np.uint8)


def load_oxford_pets(
    base: Path, split: str, *, image_size: int | None = None, with_masks: bool = False
) -> ImageListDataset:
    """Oxford-IIIT Pet (37 breeds), trainval -> ``train`` and test; masks from the trimaps."""
    listing_split = "trainval" if split == "train" else "test"
    try:
        listing = OxfordIIITPet(base.parent, split=listing_split, download=False)
    except ValueError as error:
        raise DatasetError(f"oxford_pets: cannot parse {base}/annotations/{listing_split}.txt ({error})") from error
    masks = None
    if with_masks:
        trimaps = base / "annotations" / "trimaps"
        if not trimaps.is_dir():
            raise DatasetError(f"oxford_pets masks not found: expected {trimaps}/<image>.png from annotations.tar.gz")
        masks = listing._segs
    return ImageListDataset(
        "oxford_pets",
        split,
        listing._images,
        listing._labels,
        listing.classes,
        base=base,
        image_size=image_size,
        masks=masks,
        mask_fn=_trimap_to_mask,
        index_files=[base / "annotations" / f"{listing_split}.txt"],
    )


def load_imagenette(base: Path, split: str, *, image_size: int | None = None) -> ImageListDataset:
    """Imagenette (320 px release), train and val; class names are the first English name per wnid."""
    try:
        listing = Imagenette(base.parent, split=split, size="320px", download=False)
    except KeyError as error:
        raise DatasetError(
            f"imagenette: unexpected class folder {error} in {base / split}; expected the 10 Imagenette wnids"
        ) from error
    except FileNotFoundError as error:
        raise DatasetError(f"imagenette: {base / split} has a class folder without .JPEG images ({error})") from error
    files, labels = zip(*listing._samples) if listing._samples else ((), ())
    return ImageListDataset(
        "imagenette",
        split,
        [Path(file) for file in files],
        list(labels),
        [names[0] for names in listing.classes],
        base=base,
        image_size=image_size,
    )
