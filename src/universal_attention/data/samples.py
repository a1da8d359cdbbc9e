"""Samples of any dataset: the protocol every dataset follows, and reading many samples at once.

Every dataset the library makes (:func:`~universal_attention.data.get_dataset`, the cache, the synthetic tasks)
follows :class:`ImageDataset`. Sampling tasks, transfer and attention evaluation read samples in bulk through the
helpers here: every label without decoding an image, a fixed subset of indices, and images (with masks) sliced from
a cache's tensors or read item by item and stacked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from ..errors import DatasetError

Sample = tuple[Tensor, int] | tuple[Tensor, int, Tensor]
"""One item: ``(image uint8 [3, H, W], label)``, or ``(image, label, mask)`` for a dataset built with masks."""


class ImageDataset(Protocol):
    """What every dataset is: a length, items (:data:`Sample`), its class names and every label (known without
    decoding an image). A cache also holds ``images`` (and ``masks``) as tensors."""

    @property
    def classes(self) -> Sequence[str]: ...

    @property
    def labels(self) -> Sequence[int] | Tensor: ...

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


def dataset_name(dataset: Any) -> str:
    """A dataset's name for messages: ``synthetic/<task>``, its ``name``, or its class name."""
    if hasattr(dataset, "task"):
        return f"synthetic/{dataset.task}"
    return str(getattr(dataset, "name", type(dataset).__name__))


def dataset_labels(dataset: Any) -> Tensor:
    """Every label as an int64 tensor, from ``dataset.labels`` when it has them (no image decoding), else read
    item by item (a dataset from elsewhere)."""
    labels = getattr(dataset, "labels", None)
    if isinstance(labels, Tensor):
        return labels.to(torch.int64)
    if labels is not None:
        return torch.as_tensor(list(labels), dtype=torch.int64)
    return torch.tensor([int(dataset[index][1]) for index in range(len(dataset))], dtype=torch.int64)


def fixed_subset(count: int, limit: int | None) -> Tensor:
    """All indices ``0 .. count - 1``, or a fixed random subset of ``limit`` of them, sorted (seed 0: the same
    images for every model and start point)."""
    if limit is None or limit >= count:
        return torch.arange(count)
    return torch.randperm(count, generator=torch.Generator().manual_seed(0))[:limit].sort().values


def read_samples(
    dataset: Any, indices: Tensor, *, with_masks: bool = False, name: str | None = None
) -> tuple[Tensor, Tensor | None]:
    """Images ``[len(indices), 3, S, S]`` and, with ``with_masks``, masks ``[len(indices), S, S]`` of the samples at
    ``indices``: sliced from the dataset's ``images`` (and ``masks``) tensors when it holds them (a cache), else read
    item by item and stacked.

    Raises:
        DatasetError: the items' images differ in size (named ``name``, default :func:`dataset_name`).
    """
    images, masks = getattr(dataset, "images", None), getattr(dataset, "masks", None)
    if isinstance(images, Tensor) and (not with_masks or isinstance(masks, Tensor)):
        return images[indices], masks[indices] if with_masks and masks is not None else None
    items = [dataset[int(index)] for index in indices]
    try:
        stacked = torch.stack([item[0] for item in items])
    except RuntimeError as error:
        raise DatasetError(
            f"dataset '{name or dataset_name(dataset)}' has images of different sizes; load it with "
            f"an image_size ({error})"
        ) from None
    if not with_masks:
        return stacked, None
    return stacked, torch.stack([torch.as_tensor(item[2]) for item in items])
