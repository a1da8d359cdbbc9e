"""The image cache: decode once into safetensors, reuse while sources are unchanged, write atomically."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from universal_attention.data import cache
from universal_attention.data.cache import CachedDataset, build_cache, cache_key, cache_path
from universal_attention.errors import DatasetError


class CountingDataset:
    """In-memory dataset following the protocol; counts reads and fakes skipped files."""

    def __init__(self, n: int = 6, size: int = 8, with_masks: bool = False, skip_every: int = 0) -> None:
        generator = torch.Generator().manual_seed(n)
        self.images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)
        self.masks = (self.images[:, 0] > 127).to(torch.uint8) if with_masks else None
        self.labels = [i % 3 for i in range(n)]
        self.classes = ["ant", "bee", "cat"]
        self.reads = 0
        self.skipped = 0
        self.skip_every = skip_every

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        self.reads += 1
        if self.skip_every and index % self.skip_every == 0:
            self.skipped += 1
        if self.masks is None:
            return self.images[index], self.labels[index]
        return self.images[index], self.labels[index], self.masks[index]

    def fingerprint(self) -> str:
        return "counting-v1"


class JpegFolder:
    """A minimal ``<class>/<image>.jpg`` dataset: decode, resize to ``size`` (no crop; images are square)."""

    def __init__(self, root: Path, size: int) -> None:
        self.files = sorted(root.glob("*/*.jpg"))
        self.classes = sorted({path.parent.name for path in self.files})
        self.labels = [self.classes.index(path.parent.name) for path in self.files]
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        with Image.open(self.files[index]) as image:
            array = np.asarray(image.convert("RGB").resize((self.size, self.size)))
        return torch.from_numpy(array.copy()).permute(2, 0, 1), self.labels[index]

    def fingerprint(self) -> str:
        stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in self.files]
        return hashlib.sha1(repr(stats).encode()).hexdigest()[:16]


def write_jpeg(path: Path, seed: int, size: int = 24) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(array).save(path, quality=95)


def test_round_trip_equals_source_items(tmp_path):
    source = CountingDataset(with_masks=True)
    cached = build_cache(source, tmp_path, "counting-train-8-masks", 8)
    assert isinstance(cached, CachedDataset)
    assert len(cached) == len(source) and cached.classes == source.classes
    assert cached.fingerprint() == source.fingerprint()
    for index in range(len(source)):
        image, label, mask = cached[index]
        expected_image, expected_label, expected_mask = source[index]
        assert torch.equal(image, expected_image) and label == expected_label
        assert torch.equal(mask, expected_mask)
    assert cached.images.dtype == torch.uint8 and cached.labels.dtype == torch.int64
    assert cached.masks.shape == (len(source), 8, 8)


def test_without_masks_items_are_pairs(tmp_path):
    cached = build_cache(CountingDataset(), tmp_path, "counting-train-8", 8)
    assert cached.masks is None and len(cached[0]) == 2


def test_cache_is_reused_when_source_is_unchanged(tmp_path):
    build_cache(CountingDataset(), tmp_path, "counting", 8)
    mtime = cache_path(tmp_path, "counting").stat().st_mtime_ns
    again = CountingDataset()
    cached = build_cache(again, tmp_path, "counting", 8)
    assert again.reads == 0
    assert cache_path(tmp_path, "counting").stat().st_mtime_ns == mtime
    assert torch.equal(cached.images, again.images)


def test_cache_is_rebuilt_when_a_source_file_changes(tmp_path):
    root = tmp_path / "images"
    for i in range(4):
        write_jpeg(root / f"class{i % 2}" / f"{i}.jpg", seed=i)
    first = build_cache(JpegFolder(root, 16), tmp_path / ".cache", "folder-train-16", 16)
    write_jpeg(root / "class0" / "0.jpg", seed=99, size=32)
    changed = JpegFolder(root, 16)
    rebuilt = build_cache(changed, tmp_path / ".cache", "folder-train-16", 16)
    assert rebuilt.fingerprint() != first.fingerprint()
    assert torch.equal(rebuilt.images[0], changed[0][0])


def test_cache_is_rebuilt_for_another_image_size(tmp_path):
    build_cache(CountingDataset(size=8), tmp_path, "counting", 8)
    resized = build_cache(CountingDataset(size=16), tmp_path, "counting", 16)
    assert resized.image_size == 16


def test_images_of_another_size_are_resized_and_cropped(tmp_path):
    cached = build_cache(CountingDataset(size=12, with_masks=True), tmp_path, "counting", 8)
    assert cached.images.shape == (6, 3, 8, 8) and cached.masks.shape == (6, 8, 8)


def test_build_leaves_no_temporary_files(tmp_path):
    build_cache(CountingDataset(), tmp_path, "counting", 8)
    assert [p.name for p in tmp_path.iterdir()] == ["counting.safetensors"]


def test_failed_write_keeps_old_cache_and_removes_temporary(tmp_path, monkeypatch):
    build_cache(CountingDataset(), tmp_path, "counting", 8)
    before = cache_path(tmp_path, "counting").read_bytes()

    def crash(tensors, filename, metadata):
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache, "save_file", crash)
    stale = CountingDataset()
    stale.fingerprint = lambda: "counting-v2"
    with pytest.raises(KeyboardInterrupt):
        build_cache(stale, tmp_path, "counting", 8)
    assert [p.name for p in tmp_path.iterdir()] == ["counting.safetensors"]
    assert cache_path(tmp_path, "counting").read_bytes() == before


def test_unreadable_cache_file_is_rebuilt(tmp_path):
    cache_path(tmp_path, "counting").write_bytes(b"not a safetensors file")
    cached = build_cache(CountingDataset(), tmp_path, "counting", 8)
    assert len(cached) == 6


def test_worker_build_counts_skipped_files_and_reports_progress(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "WORKERS_FROM", 1)
    calls = []
    source = CountingDataset(n=40, skip_every=10)
    cached = build_cache(source, tmp_path, "counting", 8, progress=lambda done, total: calls.append((done, total)))
    assert cached.skipped == 4
    assert calls[-1] == (40, 40)
    assert torch.equal(cached.images, source.images)


def test_empty_dataset_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="no images"):
        build_cache(CountingDataset(n=0), tmp_path, "empty", 8)


def test_cache_file_names_are_safe():
    key = cache_key("folder:/data/my images", "train", 128, with_masks=True)
    assert key == "folder:/data/my images-train-128-masks"
    assert cache_path(Path("/root/.cache"), key).name == "folder__data_my_images-train-128-masks.safetensors"
    assert cache_path(Path("c"), "synthetic/colour-train-64").name == "synthetic_colour-train-64.safetensors"


def test_cached_dataset_reads_a_registered_folder_through_the_cache(tmp_path):
    for i in range(4):
        write_jpeg(tmp_path / "photos" / f"class{i % 2}" / f"{i}.jpg", seed=i, size=20)
    name = f"folder:{tmp_path / 'photos'}"
    cached = cache.cached_dataset(name, "train", root=tmp_path, image_size=16)
    assert cached.images.shape == (4, 3, 16, 16)
    assert cached.path.parent == tmp_path / ".cache"


def test_cache_file_is_as_readable_as_its_folder(tmp_path):
    tmp_path.chmod(0o755)
    build_cache(CountingDataset(), tmp_path, "counting", 8)
    assert cache_path(tmp_path, "counting").stat().st_mode & 0o777 == 0o644
