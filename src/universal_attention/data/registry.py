"""Dataset names -> datasets: where each official layout lives, its splits, and what is found.

``get_dataset(name, split)`` serves every dataset of the design's table: the real ones under
``data_root`` (argument, else ``$UATTN_DATA_ROOT``, else ``./data``), ``synthetic/<task>`` and
``folder:<path>``. ``"test"`` always names the official held-out split; ``"val"`` / ``"validation"``
only exist where the dataset has a split of that name (Imagenette and ADE20K call their held-out
split ``val``, so ``"test"`` reads it there).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from .ade20k import load_ade20k
from .cub import INDEX_FILES as CUB_INDEX_FILES
from .cub import load_cub200
from .dogs import load_stanford_dogs
from .folder import folder_splits, load_beans, load_folder
from .samples import ImageDataset
from .torchvision_sets import load_caltech101, load_flowers102, load_imagenette, load_oxford_pets

ROOT_HINT = "or pass --data-root / set UATTN_DATA_ROOT"
SYNTHETIC_PREFIX = "synthetic/"
FOLDER_PREFIX = "folder:"
SYNTHETIC_SPLITS = ("train", "test")


@dataclass(frozen=True)
class _Spec:
    """How one real dataset is laid out and read.

    Attributes:
        folder: its folder under the data root.
        layout: what is expected inside ``folder`` (shown in messages and ``uattn data list``).
        archive: what to unpack there.
        required: per canonical split, the paths (relative to ``folder``) that must exist.
        aliases: other accepted split names -> canonical split.
        loader: ``loader(folder_path, split, image_size=..., [with_masks=...])``.
        masks: what the mask is, or ``""`` for a dataset without masks.
        mask_folder: where the masks live (relative to ``folder``), for datasets with masks.
    """

    folder: str
    layout: str
    archive: str
    required: dict[str, tuple[str, ...]]
    loader: Callable[..., Any]
    aliases: dict[str, str] = field(default_factory=dict)
    masks: str = ""
    mask_folder: str = ""


_VALIDATION = {"validation": "val"}
_SPECS: dict[str, _Spec] = {
    "caltech101": _Spec(
        "caltech101",
        "101_ObjectCategories/<class>/image_NNNN.jpg",
        "unpack the official caltech-101 archive's 101_ObjectCategories (BACKGROUND_Google included) there",
        {split: ("101_ObjectCategories/BACKGROUND_Google",) for split in ("train", "test")},
        load_caltech101,
    ),
    "flowers102": _Spec(
        "flowers-102",
        "{jpg/image_NNNNN.jpg, imagelabels.mat, setid.mat}",
        "unpack 102flowers.tgz there and put imagelabels.mat and setid.mat beside jpg/",
        {split: ("jpg", "imagelabels.mat", "setid.mat") for split in ("train", "val", "test")},
        load_flowers102,
        aliases=_VALIDATION,
    ),
    "oxford_pets": _Spec(
        "oxford-iiit-pet",
        "{images/<Breed>_N.jpg, annotations/{trainval,test}.txt, annotations/trimaps/}",
        "unpack the official images.tar.gz and annotations.tar.gz there",
        {"train": ("images", "annotations/trainval.txt"), "test": ("images", "annotations/test.txt")},
        load_oxford_pets,
        aliases={"trainval": "train"},
        masks="pet mask from the trimaps (border counts as pet)",
        mask_folder="annotations/trimaps",
    ),
    "imagenette": _Spec(
        "imagenette2-320",
        "{train,val}/<wnid>/*.JPEG",
        "unpack imagenette2-320.tgz there",
        {"train": ("train",), "val": ("val",)},
        load_imagenette,
        aliases={**_VALIDATION, "test": "val"},
    ),
    "cub200": _Spec(
        "CUB_200_2011",
        "{images/<class>/*.jpg, images.txt, image_class_labels.txt, train_test_split.txt, classes.txt}",
        "unpack the official CUB_200_2011.tgz there (and segmentations.tgz inside it for masks)",
        {split: ("images", *CUB_INDEX_FILES) for split in ("train", "test")},
        load_cub200,
        masks="bird mask from segmentations/<class>/<image>.png",
        mask_folder="segmentations",
    ),
    "stanford_dogs": _Spec(
        "stanford_dogs",
        "{Images/<wnid>-<breed>/*.jpg, train_list.mat, test_list.mat}",
        "unpack the official images.tar (Images/) and lists.tar there",
        {"train": ("Images", "train_list.mat"), "test": ("Images", "test_list.mat")},
        load_stanford_dogs,
    ),
    "beans": _Spec(
        "beans",
        "{train,validation,test}/<class>/*.jpg",
        "unpack the iBean release's train.zip, validation.zip and test.zip there",
        {"train": ("train",), "val": ("validation",), "test": ("test",)},
        load_beans,
        aliases=_VALIDATION,
    ),
    "ade20k": _Spec(
        "ADEChallengeData2016",
        "{images,annotations}/{training,validation}/",
        "unpack the official ADEChallengeData2016.zip there",
        {
            "train": ("images/training", "annotations/training"),
            "val": ("images/validation", "annotations/validation"),
        },
        load_ade20k,
        aliases={**_VALIDATION, "training": "train", "test": "val"},
        masks="class map 0..150 (0 = unlabelled), not a 0/1 mask",
        mask_folder="annotations",
    ),
}


@dataclass(frozen=True)
class DatasetInfo:
    """What ``uattn data list`` shows about one dataset.

    Attributes:
        name: the dataset name.
        expected: the full expected layout under the data root (or how it is made).
        found: whether at least one split could be opened.
        classes: number of classes, when found.
        images: images per canonical split that could be opened.
        masks: what its mask is, or ``""``.
        problem: the first split that could not be opened, as a one-line reason ("" when all could).
    """

    name: str
    expected: str
    found: bool
    classes: int | None
    images: dict[str, int]
    masks: str = ""
    problem: str = ""


def resolve_data_root(root: str | Path | None = None) -> Path:
    """The data root: ``root`` if given, else ``$UATTN_DATA_ROOT``, else ``./data`` (made absolute, ``~``
    expanded).

    Raises:
        DatasetError: ``root`` is empty, or the chosen root exists and is not a folder.
    """
    if root is not None and not str(root).strip():
        raise DatasetError("the data root is empty; give a folder, or leave it out for $UATTN_DATA_ROOT or ./data")
    from_environment = root is None and bool(os.environ.get("UATTN_DATA_ROOT"))
    chosen = Path(root if root is not None else os.environ.get("UATTN_DATA_ROOT") or "data").expanduser().absolute()
    if chosen.exists() and not chosen.is_dir():
        where = "$UATTN_DATA_ROOT" if from_environment else "the data root"
        raise DatasetError(f"{where} {chosen} is not a folder; point it at the folder that holds the datasets")
    return chosen


def _synthetic_tasks() -> tuple[str, ...]:
    from .synthetic import TASKS

    return tuple(TASKS)


def dataset_names() -> list[str]:
    """Every dataset name ``get_dataset`` accepts (``folder:<path>`` aside)."""
    return [*_SPECS, *(SYNTHETIC_PREFIX + task for task in _synthetic_tasks())]


def splits(name: str) -> list[str]:
    """The canonical split names of a dataset, e.g. ``["train", "test"]``."""
    if name.startswith(SYNTHETIC_PREFIX):
        return list(SYNTHETIC_SPLITS)
    if name.startswith(FOLDER_PREFIX):
        return folder_splits(Path(name[len(FOLDER_PREFIX) :]).expanduser())
    return list(_spec(name).required)


def expected_layout(name: str, root: str | Path | None = None) -> str:
    """The full path pattern a real dataset is expected at, e.g. ``/data/caltech101/101_ObjectCategories/...``."""
    spec = _spec(name)
    return f"{resolve_data_root(root) / spec.folder}/{spec.layout}"


def masks_available(name: str, root: str | Path | None = None) -> bool:
    """Whether ``get_dataset(name, with_masks=True)`` can serve masks: the dataset has them and they are on disk."""
    if name.startswith(SYNTHETIC_PREFIX):
        return True
    spec = _SPECS.get(name)
    return bool(spec and spec.masks and (resolve_data_root(root) / spec.folder / spec.mask_folder).is_dir())


def _spec(name: str) -> _Spec:
    if name not in _SPECS:
        valid = ", ".join([*dataset_names(), f"{FOLDER_PREFIX}<path>"])
        raise DatasetError(f"unknown dataset {name!r}; valid names: {valid}")
    return _SPECS[name]


def _canonical_split(name: str, spec: _Spec, split: str) -> str:
    canonical = spec.aliases.get(split, split)
    if canonical not in spec.required:
        accepted = ", ".join(spec.required)
        others = f" (also: {', '.join(spec.aliases)})" if spec.aliases else ""
        raise DatasetError(f"{name} has no split {split!r}; valid splits: {accepted}{others}")
    return canonical


def _mask_error(name: str) -> DatasetError:
    with_masks = ", ".join(n for n, spec in _SPECS.items() if spec.masks)
    return DatasetError(f"{name} has no masks; datasets with masks: {with_masks}, synthetic/<task>")


def _located(name: str, split: str, root: str | Path | None) -> tuple[_Spec, str, Path]:
    """A real dataset's spec, canonical split and folder, after checking that its files are where expected."""
    spec = _spec(name)
    canonical = _canonical_split(name, spec, split)
    base = resolve_data_root(root) / spec.folder
    for relative in spec.required[canonical]:
        if not (base / relative).exists():
            missing = f" (missing {base / relative})" if base.is_dir() else ""
            raise DatasetError(f"{name} not found: expected {base}/{spec.layout}{missing}; {spec.archive}, {ROOT_HINT}")
    return spec, canonical, base


def check_dataset(name: str, split: str = "train", *, root: str | Path | None = None) -> None:
    """Fail now, with the error :func:`get_dataset` would give, if it cannot open this dataset: an unknown name,
    task or split, or files that are not on disk. Nothing is listed or decoded, so this is cheap.

    Raises:
        DatasetError: see :func:`get_dataset`.
    """
    if name.startswith(SYNTHETIC_PREFIX):
        if name[len(SYNTHETIC_PREFIX) :] not in _synthetic_tasks():
            _spec(name)  # raises, listing the valid names
        return
    if name.startswith(FOLDER_PREFIX):
        if not Path(name[len(FOLDER_PREFIX) :]).expanduser().is_dir():
            raise DatasetError(f"{name} not found: expected a folder of <class>/<image> there")
        return
    _located(name, split, root)


def get_dataset(
    name: str,
    split: str = "train",
    *,
    root: str | Path | None = None,
    image_size: int | None = None,
    with_masks: bool = False,
) -> ImageDataset:
    """Open a dataset by name; see the module docstring for names, roots and splits.

    Args:
        name: a name from :func:`dataset_names`, or ``folder:<path>`` (a relative path is relative to the
            current directory, not the data root).
        split: ``"train"``, ``"test"``, or ``"val"`` where the dataset has one.
        root: the data root (else ``$UATTN_DATA_ROOT``, else ``./data``).
        image_size: resize the shorter side to this and centre-crop a square; ``None`` keeps the
            original size (synthetic tasks then use 64).
        with_masks: also return a mask per image (oxford_pets, cub200, ade20k, synthetic/<task>).

    Returns:
        A dataset (:class:`~universal_attention.data.samples.ImageDataset`) whose items are
        ``(image uint8 [3, H, W], label)``, or ``(image, label, mask)``.

    Raises:
        DatasetError: unknown name or split, a dataset that is not on disk, or masks it does not have.
    """
    if name.startswith(SYNTHETIC_PREFIX):
        from .synthetic import SyntheticTaskDataset

        task = name[len(SYNTHETIC_PREFIX) :]
        return SyntheticTaskDataset(task, split, image_size=image_size or 64, with_masks=with_masks)
    if name.startswith(FOLDER_PREFIX):
        if with_masks:
            raise _mask_error(name)
        return load_folder(Path(name[len(FOLDER_PREFIX) :]).expanduser(), split, image_size=image_size)
    spec, canonical, base = _located(name, split, root)
    if with_masks and not spec.masks:
        raise _mask_error(name)
    options: dict[str, Any] = {"image_size": image_size}
    if spec.masks:
        options["with_masks"] = with_masks
    return spec.loader(base, canonical, **options)


def _describe_synthetic(task: str) -> DatasetInfo:
    from .synthetic import SyntheticTaskDataset

    images = {split: len(SyntheticTaskDataset(task, split)) for split in SYNTHETIC_SPLITS}
    classes = len(SyntheticTaskDataset(task, "train").classes)
    return DatasetInfo(SYNTHETIC_PREFIX + task, "generated (nothing on disk)", True, classes, images, "object mask")


def describe_datasets(root: str | Path | None = None) -> list[DatasetInfo]:
    """Every dataset with its expected place and, when found, its classes and images per split.

    Args:
        root: the data root (else ``$UATTN_DATA_ROOT``, else ``./data``).
    """
    infos = []
    for name, spec in _SPECS.items():
        images: dict[str, int] = {}
        classes: int | None = None
        problem = ""
        for split in spec.required:
            try:
                dataset = get_dataset(name, split, root=root)
            except DatasetError as error:
                problem = problem or str(error)
                continue
            images[split] = len(dataset)
            classes = len(dataset.classes)
        masks = spec.masks
        if spec.masks and images and not masks_available(name, root):
            masks += " (not found)"
        infos.append(DatasetInfo(name, expected_layout(name, root), bool(images), classes, images, masks, problem))
    infos.extend(_describe_synthetic(task) for task in _synthetic_tasks())
    return infos
