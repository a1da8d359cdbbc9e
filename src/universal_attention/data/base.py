"""The dataset every real-image loader returns: a list of files with labels, read robustly.

Skip policy. Scanning every file when a dataset is built would make opening ImageNet-sized folders
slow, so files are only decoded in ``__getitem__``. When ``ds[i]`` cannot be decoded (or its mask is
missing), the dataset returns the next readable sample *of the same class* instead (wrapping around,
then any class if a whole class is unreadable), remembers the bad index so it is not decoded again,
counts it in ``ds.skipped`` and warns once. ``ds.verify()`` (``uattn data verify``) decodes everything
and lists every odd and unreadable file.
"""

from __future__ import annotations

import bisect
import hashlib
import operator
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DatasetError
from .images import load_label_map, read_image, resize_and_crop, resize_and_crop_mask, resize_mask_to
from .samples import Sample

MaskFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class FileIssue:
    """One odd file found by :meth:`ImageListDataset.verify`.

    Attributes:
        path: the file.
        usable: True when it was converted and is used, False when it is skipped.
        detail: what was odd, e.g. ``"converted from CMYK"`` or ``"not an image"``.
    """

    path: Path
    usable: bool
    detail: str


@dataclass
class VerifyReport:
    """What :meth:`ImageListDataset.verify` found: counts and every odd file."""

    name: str
    split: str
    total: int
    issues: list[FileIssue] = field(default_factory=list)

    @property
    def unreadable(self) -> list[FileIssue]:
        """Files that are skipped."""
        return [issue for issue in self.issues if not issue.usable]

    @property
    def converted(self) -> list[FileIssue]:
        """Odd files that were converted and are used."""
        return [issue for issue in self.issues if issue.usable]


def _as_is(values: np.ndarray) -> np.ndarray:
    return values


def listed_path(folder: Path, entry: str, where: str) -> Path:
    """``folder / entry`` for a path listed in a dataset's index file, refused unless it stays inside ``folder``.

    Args:
        folder: the folder the index's paths are relative to.
        entry: the listed path.
        where: the index entry, for the message (e.g. ``"cub200: images.txt entry of image 7"``).
    """
    relative = PurePosixPath(entry)
    if not entry or relative.is_absolute() or ".." in relative.parts:
        raise DatasetError(
            f"{where} ({entry!r}) is a path outside {folder}; the official index lists paths inside "
            "it, so this file was edited or is not the official one"
        )
    return folder / relative


class ImageListDataset(Dataset):
    """Images (and optional masks) listed up front, decoded on access; see the module docstring.

    Args:
        name: dataset name, used in messages.
        split: canonical split name.
        files: image files, one per sample.
        labels: class index of every sample.
        classes: class names.
        base: the dataset folder (paths in the fingerprint are relative to it).
        image_size: side of the square output, or ``None`` for the original size.
        masks: one mask file per sample, or ``None`` for a dataset served without masks.
        mask_fn: turns the mask file's values into the returned ``uint8`` mask.
        index_files: the index files (lists, .mat) the listing came from, for the fingerprint.
    """

    def __init__(
        self,
        name: str,
        split: str,
        files: Sequence[Path],
        labels: Sequence[int],
        classes: Sequence[str],
        *,
        base: Path,
        image_size: int | None = None,
        masks: Sequence[Path] | None = None,
        mask_fn: MaskFn | None = None,
        index_files: Sequence[Path] = (),
    ) -> None:
        if len(files) != len(labels) or (masks is not None and len(masks) != len(files)):
            raise DatasetError(f"{name} ({split}): the index lists {len(files)} images but {len(labels)} labels")
        if not files:
            raise DatasetError(f"{name} ({split}): no images listed under {base}")
        for file, label in zip(files, labels):
            if not 0 <= label < len(classes):
                sources = ", ".join(path.name for path in index_files) or "the class folders"
                raise DatasetError(
                    f"{name} ({split}): {file} has label {label}, outside 0..{len(classes) - 1} for "
                    f"its {len(classes)} classes; check {sources}"
                )
        self.name = name
        self.split = split
        self.files = list(files)
        self.labels = list(labels)
        self.classes = list(classes)
        self.root = base
        self.image_size = image_size
        self.mask_files = None if masks is None else list(masks)
        self._mask_fn = mask_fn or _as_is
        self.index_files = list(index_files)
        self._bad: set[int] = set()
        self._by_label: dict[int, list[int]] | None = None

    @property
    def with_masks(self) -> bool:
        """Whether samples carry a mask."""
        return self.mask_files is not None

    @property
    def skipped(self) -> int:
        """Number of unreadable files met (and substituted) so far."""
        return len(self._bad)

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        sizes = f"images={len(self)}, classes={len(self.classes)}"
        return f"{type(self).__name__}({self.name!r}, split={self.split!r}, {sizes})"

    def __getitem__(self, index: int) -> Sample:
        index = operator.index(index)  # plain ints, numpy ints and 0-d integer tensors
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {self.name} ({len(self)} images)")
        for candidate in self._candidates(index % len(self)):
            if candidate in self._bad:
                continue
            sample = self._load(candidate)
            if sample is not None:
                return sample
            self._mark_bad(candidate)
        raise DatasetError(
            f"{self.name} ({self.split}): none of its {len(self)} files is readable; "
            f"run `uattn data verify {self.name}`"
        )

    def _candidates(self, index: int) -> Iterator[int]:
        """``index``, then the rest of its class after it (cyclic), then every other index after it."""
        if self._by_label is None:
            self._by_label = {}
            for position, label in enumerate(self.labels):
                self._by_label.setdefault(label, []).append(position)
        label = self.labels[index]
        same = self._by_label[label]
        at = bisect.bisect_left(same, index)
        yield from same[at:]
        yield from same[:at]
        for other in (*range(index + 1, len(self)), *range(index)):
            if self.labels[other] != label:
                yield other

    def _load(self, index: int) -> Sample | None:
        image, _ = read_image(self.files[index], draft_size=self.image_size)
        if image is None:
            return None
        if self.mask_files is None:
            return (self._sized(image), self.labels[index])
        values = load_label_map(self.mask_files[index])
        if values is None:
            return None
        mask = torch.from_numpy(np.ascontiguousarray(self._mask_fn(values), dtype=np.uint8))
        mask = resize_mask_to(mask, image.shape[1], image.shape[2])
        if self.image_size is not None:
            mask = resize_and_crop_mask(mask, self.image_size)
        return (self._sized(image), self.labels[index], mask)

    def _sized(self, image: torch.Tensor) -> torch.Tensor:
        return image if self.image_size is None else resize_and_crop(image, self.image_size)

    def _mark_bad(self, index: int) -> None:
        if not self._bad:
            warnings.warn(
                f"{self.name} ({self.split}): skipped unreadable {self.files[index]} and used the next readable image "
                f"of its class; later skips are only counted in .skipped (`uattn data verify {self.name}` lists them)",
                stacklevel=3,
            )
        self._bad.add(index)

    def fingerprint(self) -> str:
        """A short hex digest of (relative path, size, mtime) of every image, mask and index file."""
        digest = hashlib.sha256(f"{self.name}\0{self.split}\0{self.with_masks}".encode())
        for path in (*self.files, *(self.mask_files or ()), *self.index_files):
            try:
                stat = os.stat(path)
                size, mtime = stat.st_size, stat.st_mtime_ns
            except OSError:
                size, mtime = -1, -1
            relative = os.path.relpath(path, self.root)
            digest.update(f"\0{relative}\0{size}\0{mtime}".encode())
        return digest.hexdigest()[:16]

    def verify(self, progress: Callable[[int], None] | None = None) -> VerifyReport:
        """Decode every image (and mask) and report the odd and unreadable ones.

        Args:
            progress: called with the number of samples checked after each one.
        """
        report = VerifyReport(self.name, self.split, len(self))
        for index, path in enumerate(self.files):
            image, note = read_image(path)
            if image is None or note:
                report.issues.append(FileIssue(path, image is not None, note))
            if image is None:
                self._bad.add(index)
            if self.mask_files is not None and load_label_map(self.mask_files[index]) is None:
                report.issues.append(FileIssue(self.mask_files[index], False, "mask missing or unreadable"))
                self._bad.add(index)
            if progress is not None:
                progress(index + 1)
        return report
