"""Tiny fake copies of every official dataset layout, and a folder of odd image files.

Each ``make_*`` builder writes small generated JPEGs (40x30 px, a coloured rectangle on a plain
background) and real index files (text lists, ``.mat`` files written with ``scipy.io.savemat`` in the
official structure, trimaps, segmentations, class maps) under ``root`` exactly where the registry
expects them, and returns the dataset's folder. ``make_all`` builds all of them in well under a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat

WIDTH, HEIGHT = 40, 30
BOX = (10, 8, 30, 22)  # left, top, right, bottom of the "object" in every generated image and mask

PET_BREEDS = (("Abyssinian", 1), ("Bengal", 1), ("american_bulldog", 2))  # (breed, species: 1 cat 2 dog)
IMAGENETTE_WNIDS = ("n01440764", "n02102040", "n03000684")  # tench, English springer, chain saw
CUB_CLASSES = ("001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross")
DOG_FOLDERS = ("n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02085936-Maltese_dog")
BEAN_CLASSES = ("angular_leaf_spot", "bean_rust", "healthy")


def write_image(path: Path, seed: int) -> None:
    """A JPEG with a coloured box on a plain background, different for every seed."""
    rng = np.random.default_rng(seed)
    pixels = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    pixels[:] = rng.integers(0, 256, 3, dtype=np.uint8)
    left, top, right, bottom = BOX
    pixels[top:bottom, left:right] = rng.integers(0, 256, 3, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)


def _write_map(path: Path, inside: int, outside: int, border: int | None = None) -> None:
    """A single-channel PNG: ``inside`` in BOX, ``outside`` elsewhere, optional 1-px ``border`` ring."""
    values = np.full((HEIGHT, WIDTH), outside, dtype=np.uint8)
    left, top, right, bottom = BOX
    if border is not None:
        values[top - 1 : bottom + 1, left - 1 : right + 1] = border
    values[top:bottom, left:right] = inside
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values, mode="L").save(path)


def _cell(strings: list[str]) -> np.ndarray:
    """A MATLAB N x 1 cell array of strings, as in the official Stanford Dogs lists."""
    cell = np.empty((len(strings), 1), dtype=object)
    for index, text in enumerate(strings):
        cell[index, 0] = text
    return cell


def make_caltech101(root: Path, classes: int = 3, per_class: int = 35) -> Path:
    """``caltech101/101_ObjectCategories/<class>/image_NNNN.jpg`` plus 2 BACKGROUND_Google images."""
    folder = Path(root) / "caltech101" / "101_ObjectCategories"
    names = {"BACKGROUND_Google": 2, **{f"class_{c}": per_class for c in range(classes)}}
    for c, (name, count) in enumerate(names.items()):
        for n in range(1, count + 1):
            write_image(folder / name / f"image_{n:04d}.jpg", seed=1000 * c + n)
    return folder.parent


def make_flowers102(root: Path, classes: int = 3, per_split: int = 2) -> Path:
    """``flowers-102/{jpg/image_NNNNN.jpg, imagelabels.mat, setid.mat}``: per_split images per class and split."""
    folder = Path(root) / "flowers-102"
    total = classes * per_split * 3
    labels = np.array([[image % classes + 1 for image in range(total)]], dtype=np.uint8)
    for image_id in range(1, total + 1):
        write_image(folder / "jpg" / f"image_{image_id:05d}.jpg", seed=image_id)
    ids = np.arange(1, total + 1, dtype=np.uint16).reshape(3, -1)  # consecutive thirds hold every class
    savemat(folder / "imagelabels.mat", {"labels": labels})
    savemat(folder / "setid.mat", {"trnid": ids[None, 0], "valid": ids[None, 1], "tstid": ids[None, 2]})
    return folder


def make_oxford_pets(root: Path, trainval: int = 3, test: int = 2) -> Path:
    """``oxford-iiit-pet/{images/, annotations/{trainval,test}.txt, annotations/trimaps/}`` for 3 breeds.

    Trimaps: 1 (pet) inside BOX, a 1-px ring of 3 (border) around it, 2 (background) elsewhere.
    """
    folder = Path(root) / "oxford-iiit-pet"
    lines: dict[str, list[str]] = {"trainval": [], "test": []}
    for class_id, (breed, species) in enumerate(PET_BREEDS, start=1):
        for n in range(1, trainval + test + 1):
            image_id = f"{breed}_{n}"
            write_image(folder / "images" / f"{image_id}.jpg", seed=100 * class_id + n)
            _write_map(folder / "annotations" / "trimaps" / f"{image_id}.png", inside=1, outside=2, border=3)
            lines["trainval" if n <= trainval else "test"].append(f"{image_id} {class_id} {species} {n}")
    for split, rows in lines.items():
        (folder / "annotations" / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return folder


def make_imagenette(root: Path, train: int = 3, val: int = 2) -> Path:
    """``imagenette2-320/{train,val}/<wnid>/<wnid>_N.JPEG`` for 3 real Imagenette wnids."""
    folder = Path(root) / "imagenette2-320"
    for c, wnid in enumerate(IMAGENETTE_WNIDS):
        for split, count in (("train", train), ("val", val)):
            for n in range(count):
                write_image(folder / split / wnid / f"{wnid}_{n}.JPEG", seed=300 * c + 10 * len(split) + n)
    return folder


def make_cub200(root: Path, per_class: int = 4, segmentations: bool = True) -> Path:
    """``CUB_200_2011/`` with its five index files; every other image of a class is a test image.

    Segmentations (optional) are 255 inside BOX, a ring of 100 (below the 127 threshold), 0 elsewhere.
    """
    folder = Path(root) / "CUB_200_2011"
    images, labels, split, image_id = [], [], [], 0
    for c, class_folder in enumerate(CUB_CLASSES, start=1):
        for n in range(per_class):
            image_id += 1
            relative = f"{class_folder}/{class_folder.split('.')[1]}_{n:04d}_{image_id}.jpg"
            write_image(folder / "images" / relative, seed=500 + image_id)
            if segmentations:
                _write_map(folder / "segmentations" / Path(relative).with_suffix(".png"), 255, 0, border=100)
            images.append(f"{image_id} {relative}")
            labels.append(f"{image_id} {c}")
            split.append(f"{image_id} {1 - n % 2}")
    (folder / "images.txt").write_text("\n".join(images) + "\n")
    (folder / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (folder / "train_test_split.txt").write_text("\n".join(split) + "\n")
    (folder / "classes.txt").write_text("".join(f"{c} {name}\n" for c, name in enumerate(CUB_CLASSES, start=1)))
    return folder


def make_stanford_dogs(root: Path, train: int = 3, test: int = 2) -> Path:
    """``stanford_dogs/{Images/<wnid>-<breed>/, train_list.mat, test_list.mat}`` for 3 breeds."""
    folder = Path(root) / "stanford_dogs"
    lists: dict[str, tuple[list[str], list[int]]] = {"train": ([], []), "test": ([], [])}
    for label, breed_folder in enumerate(DOG_FOLDERS, start=1):
        wnid = breed_folder.split("-")[0]
        for n in range(train + test):
            relative = f"{breed_folder}/{wnid}_{1000 + n}.jpg"
            write_image(folder / "Images" / relative, seed=700 + 10 * label + n)
            files, labels = lists["train" if n < train else "test"]
            files.append(relative)
            labels.append(label)
    for split, (files, labels) in lists.items():
        annotations = [name.removesuffix(".jpg") for name in files]
        labels_column = np.array(labels, dtype=np.float64)[:, None]
        lists_mat = {"file_list": _cell(files), "annotation_list": _cell(annotations), "labels": labels_column}
        savemat(folder / f"{split}_list.mat", lists_mat)
    return folder


def make_beans(root: Path, per_class: int = 3) -> Path:
    """``beans/{train,validation,test}/<class>/*.jpg`` (iBean release layout)."""
    folder = Path(root) / "beans"
    for s, split in enumerate(("train", "validation", "test")):
        for c, name in enumerate(BEAN_CLASSES):
            for n in range(per_class):
                write_image(folder / split / name / f"{name}_{s}{n}.jpg", seed=900 + 100 * s + 10 * c + n)
    return folder


def make_ade20k(root: Path, train: int = 3, val: int = 2) -> Path:
    """``ADEChallengeData2016/{images,annotations}/{training,validation}/`` plus ``sceneCategories.txt``.

    Class maps: 13 (person) inside BOX, 1 (wall) elsewhere; scenes alternate bathroom / kitchen.
    """
    folder = Path(root) / "ADEChallengeData2016"
    scenes = []
    for split, prefix, count in (("training", "ADE_train", train), ("validation", "ADE_val", val)):
        for n in range(1, count + 1):
            stem = f"{prefix}_{n:08d}"
            write_image(folder / "images" / split / f"{stem}.jpg", seed=1100 + len(split) * 10 + n)
            _write_map(folder / "annotations" / split / f"{stem}.png", inside=13, outside=1)
            scenes.append(f"{stem} {('bathroom', 'kitchen')[n % 2]}")
    (folder / "sceneCategories.txt").write_text("\n".join(scenes) + "\n")
    return folder


def make_all(root: Path) -> Path:
    """Every fake layout above under one data root; returns the root."""
    for make in (
        make_caltech101,
        make_flowers102,
        make_oxford_pets,
        make_imagenette,
        make_cub200,
        make_stanford_dogs,
        make_beans,
        make_ade20k,
    ):
        make(root)
    return Path(root)


def write_odd_images(folder: Path) -> dict[str, Path]:
    """One file of each odd kind in ``folder``; returns ``{kind: path}``.

    Readable after conversion: ``truncated`` (second half of a JPEG cut off), ``tiny`` (1x1),
    ``grayscale``, ``rgba``, ``sixteen_bit`` (16-bit grayscale PNG), ``cmyk`` (CMYK JPEG),
    ``palette``. Unreadable: ``text`` (text saved as .jpg), ``header_only`` (a JPEG cut after 100 bytes).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    rgb = Image.fromarray(pixels)
    paths = {
        kind: folder / name
        for kind, name in {
            "truncated": "truncated.jpg",
            "tiny": "tiny.png",
            "grayscale": "grayscale.jpg",
            "rgba": "rgba.png",
            "sixteen_bit": "sixteen_bit.png",
            "cmyk": "cmyk.jpg",
            "palette": "palette.png",
            "text": "text.jpg",
            "header_only": "header_only.jpg",
        }.items()
    }
    rgb.save(paths["truncated"])
    whole = paths["truncated"].read_bytes()
    paths["truncated"].write_bytes(whole[: len(whole) // 2])
    paths["header_only"].write_bytes(whole[:100])
    Image.new("RGB", (1, 1), (200, 30, 30)).save(paths["tiny"])
    rgb.convert("L").save(paths["grayscale"])
    Image.fromarray(np.dstack([pixels, np.full((HEIGHT, WIDTH), 128, np.uint8)])).save(paths["rgba"])
    Image.fromarray(pixels[:, :, 0].astype(np.uint16) * 257).save(paths["sixteen_bit"])
    rgb.convert("CMYK").save(paths["cmyk"])
    rgb.convert("P").save(paths["palette"])
    paths["text"].write_text("this is not an image\n")
    return paths
