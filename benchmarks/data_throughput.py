"""Data pipeline throughput at 128 px: decoding JPEGs vs. batches from the cache vs. synthetic images.

Builds a fake ImageFolder of 500 x 375 JPEGs in a temporary folder, then measures side by side:

- ``decode``: every image read through the normal dataset path (``get_dataset("folder:<path>")``, decode
  + resize + centre crop, one process);
- ``cache_build``: the same images decoded once into a cache file (``build_cache``, two workers);
- ``cached`` / ``cached_no_augment``: batches of 64 from the cache through ``TaskSampler`` (5 batches per
  task, as Reptile's inner loop draws them), with and without augmentation;
- ``synthetic``: items of ``SyntheticTaskDataset("colour", image_size=128)`` painted from their seeds (the
  process's kept images forgotten before each repeat); ``synthetic_kept``: the same images read again, from
  memory.

Each figure is the best of ``--repeats`` runs, since other work on a shared machine only ever slows a run
down. The last printed line is one JSON object with every figure (images per second).

Run: ``python benchmarks/data_throughput.py [--images 500] [--batches 100]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from universal_attention.config import SamplerConfig
from universal_attention.data.cache import CachedDataset, build_cache
from universal_attention.data.registry import get_dataset
from universal_attention.data.synthetic import SyntheticTaskDataset, forget_painted_images
from universal_attention.meta.sampler import TaskSampler

SIZE = 128
BATCH = 64
BATCHES_PER_TASK = 5


def make_image_folder(root: Path, count: int, classes: int = 5, seed: int = 0) -> None:
    """Write ``count`` 500 x 375 JPEGs (smooth colour waves plus noise) into ``root/class<k>/``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:375, 0:500].astype(np.float32)
    for index in range(count):
        folder = root / f"class{index % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        image = np.empty((375, 500, 3), np.float32)
        for channel in range(3):
            fx, fy = rng.uniform(0.005, 0.05, 2)
            image[..., channel] = rng.uniform(50, 200) + 80 * np.sin(x * fx + y * fy + rng.uniform(0, 6.3))
        image += rng.normal(0, 8, image.shape)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"{index:05d}.jpg", quality=90)


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1)


def best_of(repeats: int, measure: Callable[[], float]) -> float:
    return max(measure() for _ in range(repeats))


def read_rate(dataset: Any) -> float:
    """Images per second reading every item of ``dataset`` once."""
    start = time.perf_counter()
    for index in range(len(dataset)):
        dataset[index]
    return rate(len(dataset), time.perf_counter() - start)


def sampler_rate(cached: CachedDataset, batches: int, augment: bool) -> float:
    """Images per second drawing ``batches`` batches of 64 through the task sampler."""
    sampler = TaskSampler({"bench": cached}, SamplerConfig(batch_size=BATCH, seed=0), augment=augment)
    next(sampler.sample(1)[0].batches)  # warm-up
    start = time.perf_counter()
    drawn = 0
    while drawn < batches:
        for task in sampler.sample(1):
            for _ in range(min(BATCHES_PER_TASK, batches - drawn)):
                images, _ = next(task.batches)
                drawn += 1
    return rate(drawn * images.shape[0], time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="JPEGs in the fake ImageFolder")
    parser.add_argument("--batches", type=int, default=100, help="batches of 64 drawn from the cache")
    parser.add_argument("--synthetic", type=int, default=500, help="synthetic images generated")
    parser.add_argument("--repeats", type=int, default=2, help="runs per figure; the best is reported")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {SIZE} px")

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "images"
        make_image_folder(root, args.images)
        dataset = get_dataset(f"folder:{root}", image_size=SIZE)
        results = {"decode_img_per_s": best_of(args.repeats, lambda: read_rate(dataset))}
        print(f"decode + resize: {results['decode_img_per_s']} img/s ({len(dataset)} JPEGs of 500x375)")

        start = time.perf_counter()
        cached = build_cache(dataset, Path(folder) / ".cache", f"bench-train-{SIZE}", SIZE)
        results["cache_build_img_per_s"] = rate(len(cached), time.perf_counter() - start)
        print(f"cache build (2 workers): {results['cache_build_img_per_s']} img/s")

        results["cached_img_per_s"] = best_of(args.repeats, lambda: sampler_rate(cached, args.batches, True))
        results["cached_no_augment_img_per_s"] = best_of(
            args.repeats, lambda: sampler_rate(cached, args.batches, False)
        )
        print(
            f"cached batches of {BATCH}: {results['cached_img_per_s']} img/s with augmentation, "
            f"{results['cached_no_augment_img_per_s']} img/s without"
        )

    results["ratio"] = round(results["cached_img_per_s"] / results["decode_img_per_s"], 2)
    # painted: the kept images forgotten before each repeat, so every image is drawn from its seed; kept: read again
    synthetic = SyntheticTaskDataset("colour", image_size=SIZE, length=args.synthetic)

    def painted_rate() -> float:
        forget_painted_images()
        return read_rate(synthetic)

    results["synthetic_img_per_s"] = best_of(args.repeats, painted_rate)
    results["synthetic_kept_img_per_s"] = best_of(args.repeats, lambda: read_rate(synthetic))
    print(
        f"synthetic 'colour': {results['synthetic_img_per_s']} img/s painted, "
        f"{results['synthetic_kept_img_per_s']} img/s read again (kept in memory)"
    )
    first = ("cached_img_per_s", "decode_img_per_s", "ratio", "synthetic_img_per_s")
    print(json.dumps({**{key: results[key] for key in first}, **results}))


if __name__ == "__main__":
    main()
