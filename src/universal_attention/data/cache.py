"""Decode and resize a dataset once into uint8 tensors kept in a safetensors file.

A cache file ``<data_root>/.cache/<key>.safetensors`` holds ``images`` [N, 3, S, S] uint8, ``labels`` [N]
int64 and, for datasets built with masks, ``masks`` [N, S, S] uint8. Its metadata records the source
dataset's fingerprint, the class names (JSON), the image size, the number of skipped files and the format
version. A cache is only used when it passes every check (fingerprint, size and version, then the tensors'
names, dtypes and shapes, the labels' range and the metadata's JSON); anything else is rebuilt. Builds hold an
``flock`` on the cache folder, so two processes never build at once, and they are written atomically, so a
killed build never leaves a half-written cache; its temporary is removed by the next build.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..atomic import atomic_write_with, make_folder, remove_temporaries
from ..errors import DatasetError
from .images import resize_and_crop, resize_and_crop_mask
from .registry import get_dataset, resolve_data_root

FORMAT_VERSION = 2  # 2: images turned upright by their EXIF orientation
WORKERS_FROM = 256
"""Datasets with at least this many images are decoded by two DataLoader workers (about 1.5x faster on
2 cores); smaller ones in the calling process, where starting workers would cost more than it saves."""

Progress = Callable[[int, int], None]


class CachedDataset:
    """A dataset whose images are held in one uint8 tensor; follows the dataset protocol.

    Args:
        images: uint8 [N, 3, S, S].
        labels: int64 [N].
        classes: class names; ``labels`` index into them.
        fingerprint: the fingerprint of the source dataset the images were read from.
        masks: uint8 [N, S, S] (1 = object), or None.
        skipped: number of unreadable source files skipped while building.
        path: the cache file the tensors are memory-mapped from, if any.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        classes: list[str],
        *,
        fingerprint: str,
        masks: Tensor | None = None,
        skipped: int = 0,
        path: Path | None = None,
    ) -> None:
        self.images = images
        self.labels = labels
        self.classes = classes
        self.masks = masks
        self.skipped = skipped
        self.path = path
        self._fingerprint = fingerprint

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, int] | tuple[Tensor, int, Tensor]:
        image, label = self.images[index], int(self.labels[index])
        if self.masks is None:
            return image, label
        return image, label, self.masks[index]

    @property
    def image_size(self) -> int:
        """Side length S of the square images."""
        return self.images.shape[-1]

    def fingerprint(self) -> str:
        """The source dataset's fingerprint at the time the cache was built."""
        return self._fingerprint


def cache_key(name: str, split: str, image_size: int, with_masks: bool = False) -> str:
    """The cache key of a dataset: ``"<name>-<split>-<size>"``, plus ``"-masks"`` when built with masks."""
    return f"{name}-{split}-{image_size}" + ("-masks" if with_masks else "")


def cache_path(cache_dir: Path, key: str) -> Path:
    """Where the cache for ``key`` lives: characters unsafe in file names ('/', ':', ...) become '_'."""
    return Path(cache_dir) / (re.sub(r"[^A-Za-z0-9._-]", "_", key) + ".safetensors")


def build_cache(
    dataset: Any,
    cache_dir: Path,
    key: str,
    image_size: int,
    progress: Progress | None = None,
) -> CachedDataset:
    """Load the cache for ``dataset``, building it first when missing or stale.

    The cache is reused when its stored fingerprint, image size and format version match; otherwise every
    item is read once (decoded and resized to ``image_size`` if the dataset has not done so already) and
    written atomically. ``key`` must tell apart variants of one dataset (split, size, masks), as
    :func:`cache_key` does.

    Args:
        dataset: any dataset following the protocol (``ds[i]``, ``.classes``, ``fingerprint()``).
        cache_dir: the folder for cache files, normally ``<data_root>/.cache``; created if missing.
        key: the cache name, e.g. ``cache_key("cub200", "train", 128)``.
        image_size: side length S of the cached square images.
        progress: called as ``progress(done, total)`` while images are read (not when the cache is reused).

    Raises:
        DatasetError: the dataset is empty.
    """
    path = cache_path(cache_dir, key)
    fingerprint = dataset.fingerprint()
    cached = _open_if_valid(path, fingerprint, image_size)
    if cached is not None:
        return cached
    if len(dataset) == 0:
        raise DatasetError(f"dataset '{key}' has no images to cache")
    with _building(path):
        cached = _open_if_valid(path, fingerprint, image_size)  # another process may have built it meanwhile
        if cached is not None:
            return cached
        tensors, skipped = _read_all(dataset, image_size, progress)
        metadata = _metadata(fingerprint, image_size, json.dumps(list(dataset.classes)), str(skipped))
        atomic_write_with(path, lambda name: save_file(tensors, name, metadata=metadata))
    return _open(path)


@contextmanager
def _building(path: Path) -> Iterator[None]:
    """Hold the cache folder's lock while a cache is built there, after removing what killed builds left."""
    folder = make_folder(path.parent)
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # waits for another process's build
        remove_temporaries(folder, stem=path.name)
        yield
    finally:
        os.close(descriptor)


def cached_dataset(
    name: str,
    split: str = "train",
    *,
    root: str | Path | None = None,
    image_size: int,
    with_masks: bool = False,
) -> CachedDataset:
    """A registered dataset read through its cache under ``resolve_data_root(root)/.cache``.

    Args:
        name: a dataset name known to :func:`universal_attention.data.registry.get_dataset`.
        split: the split, e.g. ``"train"`` or ``"test"``.
        root: the data root (else ``$UATTN_DATA_ROOT``, else ``./data``).
        image_size: side length S of the cached square images.
        with_masks: also cache the object masks.
    """
    dataset = get_dataset(name, split, root=root, image_size=image_size, with_masks=with_masks)
    cache_dir = resolve_data_root(root) / ".cache"
    return build_cache(dataset, cache_dir, cache_key(name, split, image_size, with_masks), image_size)


def _metadata(fingerprint: str, image_size: int, classes: str, skipped: str) -> dict[str, str]:
    """The metadata a cache file of this format stores."""
    return {
        "format_version": str(FORMAT_VERSION),
        "fingerprint": fingerprint,
        "image_size": str(image_size),
        "classes": classes,
        "skipped": skipped,
    }


def _is_current(stored: dict[str, str], fingerprint: str, image_size: int) -> bool:
    """Whether stored metadata describes a cache of this format, source fingerprint and image size."""
    expected = _metadata(fingerprint, image_size, classes="", skipped="")
    return all(stored.get(name) == expected[name] for name in ("format_version", "fingerprint", "image_size"))


def _stored_metadata(path: Path) -> dict[str, str]:
    """The metadata of the cache file at ``path``; empty when it is missing or unreadable."""
    try:
        with safe_open(path, framework="pt") as file:
            return file.metadata() or {}
    except (OSError, SafetensorError):
        return {}


def _problem(tensors: dict[str, Tensor], metadata: dict[str, str], image_size: int) -> str | None:
    """What is wrong with a cache file's contents, or None when it is whole and of this format."""
    if set(tensors) not in ({"images", "labels"}, {"images", "labels", "masks"}):
        return f"tensors {sorted(tensors)}"
    images, labels, masks = tensors["images"], tensors["labels"], tensors.get("masks")
    count = images.shape[0] if images.ndim else -1
    if images.dtype != torch.uint8 or tuple(images.shape) != (count, 3, image_size, image_size):
        return f"images {images.dtype} {tuple(images.shape)}"
    if labels.dtype != torch.int64 or tuple(labels.shape) != (count,):
        return f"labels {labels.dtype} {tuple(labels.shape)}"
    if masks is not None and (masks.dtype != torch.uint8 or tuple(masks.shape) != (count, image_size, image_size)):
        return f"masks {masks.dtype} {tuple(masks.shape)}"
    try:
        classes = json.loads(metadata["classes"])
        skipped = int(metadata["skipped"])
    except (KeyError, ValueError) as error:
        return f"metadata ({error})"
    if not isinstance(classes, list) or not all(isinstance(name, str) for name in classes) or skipped < 0:
        return "metadata"
    if count and not (int(labels.min()) >= 0 and int(labels.max()) < len(classes)):
        return "labels outside the classes"
    return None


def _open_if_valid(path: Path, fingerprint: str, image_size: int) -> CachedDataset | None:
    """The cache at ``path`` if it is current for ``fingerprint`` and ``image_size`` and whole; else None."""
    if not _is_current(_stored_metadata(path), fingerprint, image_size):
        return None
    try:
        with safe_open(path, framework="pt") as file:
            metadata = file.metadata() or {}
            tensors = {name: file.get_tensor(name) for name in file.keys()}
    except (OSError, SafetensorError):
        return None
    return None if _problem(tensors, metadata, image_size) else _open(path)


def _open(path: Path) -> CachedDataset:
    """The cache file at ``path`` as a dataset whose tensors are memory-mapped."""
    with safe_open(path, framework="pt") as file:
        metadata = file.metadata()
        tensors = {name: file.get_tensor(name) for name in file.keys()}
    return CachedDataset(
        tensors["images"],
        tensors["labels"],
        json.loads(metadata["classes"]),
        fingerprint=metadata["fingerprint"],
        masks=tensors.get("masks"),
        skipped=int(metadata["skipped"]),
        path=path,
    )


class _Resized(Dataset):
    """Items of ``dataset`` at ``size`` x ``size``, each with the number of files skipped while reading it.

    Counting per item makes skips visible even when items are read in DataLoader worker processes.
    """

    def __init__(self, dataset: Any, size: int) -> None:
        self.dataset = dataset
        self.size = size

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, int, Tensor | None, int]:
        before = getattr(self.dataset, "skipped", 0)
        item = self.dataset[index]
        skipped = getattr(self.dataset, "skipped", 0) - before
        image, mask = item[0], item[2] if len(item) > 2 else None
        if tuple(image.shape[-2:]) != (self.size, self.size):
            image = resize_and_crop(image, self.size)
            mask = None if mask is None else resize_and_crop_mask(mask, self.size)
        return image, int(item[1]), mask, skipped


Chunk = tuple[Tensor, Tensor, Tensor | None, int]


def _collate(items: list[tuple[Tensor, int, Tensor | None, int]]) -> Chunk:
    """Stack items into (images, labels, masks or None, files skipped): one shared tensor per field."""
    images, labels, masks, skipped = zip(*items)
    stacked_masks = None if masks[0] is None else torch.stack(masks)
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64), stacked_masks, sum(skipped)


def _chunks(dataset: _Resized, size: int = 32) -> Iterator[Chunk]:
    """The dataset in stacked chunks, read by two worker processes for big datasets."""
    if len(dataset) < WORKERS_FROM:
        for start in range(0, len(dataset), size):
            yield _collate([dataset[i] for i in range(start, min(start + size, len(dataset)))])
        return
    yield from DataLoader(dataset, batch_size=size, num_workers=2, collate_fn=_collate)


def _read_all(dataset: Any, size: int, progress: Progress | None) -> tuple[dict[str, Tensor], int]:
    """Every item of ``dataset`` as ``images``, ``labels`` (and ``masks``) tensors, and the skip count."""
    total = len(dataset)
    tensors = {
        "images": torch.empty((total, 3, size, size), dtype=torch.uint8),
        "labels": torch.empty(total, dtype=torch.int64),
    }
    skipped = getattr(dataset, "skipped", 0)
    done = 0
    for images, labels, masks, chunk_skipped in _chunks(_Resized(dataset, size)):
        end = done + len(labels)
        tensors["images"][done:end], tensors["labels"][done:end] = images, labels
        if masks is not None:
            tensors.setdefault("masks", torch.empty((total, size, size), dtype=torch.uint8))[done:end] = masks
        skipped += chunk_skipped
        done = end
        if progress is not None:
            progress(done, total)
    return tensors, skipped
