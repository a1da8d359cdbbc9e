"""Hostile data: odd images are skipped and counted (never a hang or a giant decode), labels and listed paths are
checked, and a cache is validated and rebuilt instead of trusted."""

import json
import os
import signal
import struct
import tracemalloc
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file
from scipy.io import loadmat, savemat

from universal_attention.data.cache import build_cache, cache_path
from universal_attention.data.images import read_image
from universal_attention.data.registry import get_dataset
from universal_attention.errors import DatasetError

from fake_datasets import make_cub200, make_stanford_dogs, write_image


class Hang(Exception):
    """Raised by the alarm when a read blocks (not an OSError, which the decoder would treat as a bad file)."""


@contextmanager
def deadline(seconds: int):
    def expire(signum, frame):
        raise Hang(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def write_dds(path):
    """A DDS file (named .jpg) whose pixel format Pillow does not implement: NotImplementedError."""
    header = bytearray(124)
    struct.pack_into("<IIIII", header, 0, 124, 0x1007, 4, 4, 0)
    struct.pack_into("<II4s", header, 72, 32, 4, b"ZZZZ")
    path.write_bytes(b"DDS " + bytes(header) + bytes(64))


def write_huge(path):
    """A 10000 x 10000 (100 MP) image that is tiny on disk: above the pixel cap, so never decoded."""
    Image.new("1", (10_000, 10_000)).save(path, format="PNG")


@pytest.fixture
def hostile(tmp_path):
    folder = tmp_path / "tree" / "odd"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "fifo.jpg")
    write_dds(folder / "dds.jpg")
    write_huge(folder / "huge.png")
    write_image(folder / "fine.jpg", seed=1)
    for n in range(2):
        write_image(tmp_path / "tree" / "plain" / f"plain_{n}.jpg", seed=n)
    return folder


@pytest.mark.parametrize(
    ("name", "note"),
    [("fifo.jpg", "not a regular file"), ("dds.jpg", "unreadable"), ("huge.png", "too large (10000x10000 px")],
)
def test_hostile_files_are_unreadable_not_fatal(hostile, name, note):
    with deadline(20):
        image, why = read_image(hostile / name)
    assert image is None and why.startswith(note)


@pytest.mark.parametrize("error", [OverflowError, MemoryError, NotImplementedError])
def test_every_decoder_error_means_unreadable(tmp_path, monkeypatch, error):
    write_image(tmp_path / "a.jpg", seed=0)

    def failing(*args, **kwargs):
        raise error("hostile")

    monkeypatch.setattr(Image, "open", failing)
    assert read_image(tmp_path / "a.jpg") == (None, "unreadable (hostile)")


def test_hostile_files_in_a_dataset_are_skipped_and_counted(hostile):
    dataset = get_dataset(f"folder:{hostile.parent}", image_size=16)
    with deadline(60), pytest.warns(UserWarning, match="skipped unreadable"):
        items = [dataset[index] for index in range(len(dataset))]
    assert len(items) == 6 and all(image.shape == (3, 16, 16) for image, _ in items)
    assert dataset.skipped == 3
    with deadline(60):
        report = dataset.verify()
    assert sorted(issue.path.name for issue in report.unreadable) == ["dds.jpg", "fifo.jpg", "huge.png"]


def test_a_sixteen_bit_image_is_converted_without_float64_copies(tmp_path):
    Image.fromarray(np.full((1000, 1000), 51400, dtype=np.uint16)).save(tmp_path / "wide.png")
    tracemalloc.start()
    image, _ = read_image(tmp_path / "wide.png")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert int(image[0, 0, 0]) == 200
    assert peak < 12 * 1000 * 1000  # the 16-bit pixels (2 MB), one 32-bit working copy and the RGB result


def edit_cub(root, name, edit):
    path = root / "CUB_200_2011" / name
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


@pytest.mark.parametrize("entry", ["../../../outside.jpg", "/etc/hostname", "001.Black/../../../x.jpg"])
def test_cub_entries_outside_the_images_folder_are_refused(tmp_path, entry):
    make_cub200(tmp_path, per_class=2, segmentations=False)
    edit_cub(tmp_path, "images.txt", lambda lines: [f"1 {entry}"] + lines[1:])
    with pytest.raises(DatasetError, match=r"cub200: images.txt entry of image 1 .* outside"):
        get_dataset("cub200", root=tmp_path)


def test_a_cub_label_of_zero_is_refused(tmp_path):
    make_cub200(tmp_path, per_class=2, segmentations=False)
    edit_cub(tmp_path, "image_class_labels.txt", lambda lines: ["1 0"] + lines[1:])
    with pytest.raises(DatasetError, match=r"cub200 \(train\): .* has label -1, outside 0\.\.2"):
        get_dataset("cub200", root=tmp_path)


def edit_dogs(root, split, files=None, labels=None):
    path = root / "stanford_dogs" / f"{split}_list.mat"
    lists = loadmat(path)
    if files is not None:
        cell = np.empty((len(files), 1), dtype=object)
        for index, name in enumerate(files):
            cell[index, 0] = name
        lists["file_list"] = cell
    if labels is not None:
        lists["labels"] = np.array(labels, dtype=np.float64)[:, None]
    savemat(path, {key: value for key, value in lists.items() if not key.startswith("__")})


@pytest.mark.parametrize("entry", ["../../outside.jpg", "/etc/hostname"])
def test_dogs_entries_outside_the_images_folder_are_refused(tmp_path, entry):
    make_stanford_dogs(tmp_path)
    files = [
        str(name)
        for name in np.atleast_1d(loadmat(tmp_path / "stanford_dogs" / "train_list.mat", squeeze_me=True)["file_list"])
    ]
    edit_dogs(tmp_path, "train", files=[entry] + files[1:])
    with pytest.raises(DatasetError, match=r"stanford_dogs: train_list.mat entry 1 .* outside"):
        get_dataset("stanford_dogs", root=tmp_path)


@pytest.mark.parametrize("label", [0, 4])
def test_dogs_labels_out_of_range_are_refused(tmp_path, label):
    make_stanford_dogs(tmp_path)
    edit_dogs(tmp_path, "train", labels=[label] + [1] * 8)
    with pytest.raises(DatasetError, match=rf"has label {label - 1}, outside 0\.\.2"):
        get_dataset("stanford_dogs", root=tmp_path)


class Counting:
    """A tiny dataset following the protocol that counts reads."""

    classes = ["ant", "bee", "cat"]

    def __init__(self):
        self.images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        self.reads = 0

    def __len__(self):
        return 6

    def __getitem__(self, index):
        self.reads += 1
        return self.images[index], index % 3

    def fingerprint(self):
        return "counting-v1"


DAMAGE = {
    "images-float32": lambda t, m: t.update(images=t["images"].float()),
    "images-wrong-size": lambda t, m: t.update(images=t["images"][..., :7].contiguous()),
    "images-wrong-count": lambda t, m: t.update(images=t["images"][:5].contiguous()),
    "labels-missing": lambda t, m: t.pop("labels"),
    "labels-out-of-range": lambda t, m: t.update(labels=torch.full((6,), 3, dtype=torch.int64)),
    "labels-int8": lambda t, m: t.update(labels=t["labels"].to(torch.int8)),
    "extra-tensor": lambda t, m: t.update(weights=torch.zeros(2)),
    "classes-not-json": lambda t, m: m.update(classes="[ant, bee"),
    "classes-not-a-list": lambda t, m: m.update(classes='{"ant": 1}'),
    "skipped-not-a-number": lambda t, m: m.update(skipped="many"),
    "classes-missing": lambda t, m: m.pop("classes"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_cache_is_rebuilt_not_trusted(tmp_path, damage):
    source = Counting()
    build_cache(source, tmp_path, "counting", 8)
    path = cache_path(tmp_path, "counting")
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {name: handle.get_tensor(name).clone() for name in handle.keys()}
    DAMAGE[damage](tensors, metadata)
    save_file(tensors, str(path), metadata=metadata)
    source.reads = 0
    cached = build_cache(source, tmp_path, "counting", 8)
    assert source.reads == 6, "the damaged cache was trusted"
    assert cached.images.dtype == torch.uint8 and tuple(cached.images.shape) == (6, 3, 8, 8)
    assert torch.equal(cached.images, source.images) and cached.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert cached.classes == source.classes and json.loads(json.dumps(cached.classes)) == cached.classes


def test_symlinks_to_folders_in_a_class_folder_do_not_make_the_walk_endless(tmp_path):
    import os

    from PIL import Image

    from universal_attention.data.registry import get_dataset

    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        Image.new("RGB", (8, 8), (10, 200, 10)).save(tmp_path / label / "one.jpg")
    os.symlink(".", tmp_path / "cat" / "loop")
    os.symlink(".", tmp_path / "cat" / "loop2")
    os.symlink(tmp_path, tmp_path / "dog" / "up")
    dataset = get_dataset(f"folder:{tmp_path}", "train")
    assert len(dataset) == 2 and [label for _, label in (dataset[0], dataset[1])] == [0, 1]
