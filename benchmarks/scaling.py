"""Cost curve: time per meta-step and peak memory against image size, meta-batch and number of taps.

Every point meta-trains the ``paper`` preset's model and Reptile settings (5 inner Adam steps) on the built-in
synthetic source tasks for ``--steps`` meta-steps, in a fresh process, and reports the median time of a
meta-step after the first (warm-up) one and the process's peak memory: resident memory on the CPU, the CUDA
allocator's peak on a GPU. One factor varies at a time around the paper preset's own point (128 px, meta-batch
1, its 4 taps): the image size, then the meta-batch, then the taps (the first 1, 2, 3 or 4 of the paper's
taps). A meta-step on a user's own data costs what the point of the same image size, meta-batch and taps costs
here: the model and the number of images decide it, not what the images show. ``--batch`` (default the
paper's 64) sets the images per inner step; ``ms_per_image`` lets a point at a smaller batch predict the
paper's (time grows about linearly with the images of a step), and ``paper_seconds_per_1000_steps`` is that
prediction for the paper preset: its point's time per image x 5 x 64 images x 1,000.

Prints the table (markdown, also in the JSON as ``table``); with ``--plot`` and matplotlib installed (the ``study``
extra), draws seconds per meta-step against each factor into that PNG file.

Run: python benchmarks/scaling.py [--sizes 64,128,224] [--meta-batches 1,2,4] [--taps 1,2,3,4] [--steps 3]
                                  [--batch 64] [--device auto] [--plot curve.png]
Last line: {"paper_seconds_per_1000_steps": .., "points": [{"image_size": .., "meta_batch": .., "taps": ..,
            "seconds_per_step": .., "ms_per_image": .., "peak_memory_mb": .., "memory": "rss" | "cuda"}, ...],
            "table": "<markdown>", ...}
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from universal_attention import load_config, meta_train
from universal_attention.atomic import atomic_write_bytes
from universal_attention.config import TRUNK_STAGES, default_taps
from universal_attention.devices import resolve_device

SOURCES = "[synthetic/colour,synthetic/texture,synthetic/size]"


def measure_point(image_size: int, meta_batch: int, taps: int, steps: int, batch: int, device: str, trunk: str) -> dict:
    """Meta-train one point in this process; its time per meta-step and this process's peak memory."""
    config = load_config(
        preset="paper",
        overrides=[
            f"model.trunk={trunk}",
            f"data.sources={SOURCES}",
            "data.target=synthetic/orientation",
            f"data.image_size={image_size}",
            f"reptile.meta_batch_size={meta_batch}",
            f"model.taps=[{','.join(default_taps(trunk)[:taps])}]",
            f"sampler.batch_size={batch}",
            "reptile.inner_lr=1e-4",  # the cost of a step does not depend on it; a small one keeps tiny batches finite
            f"train.max_steps={steps}",
            f"train.checkpoint_every={steps}",
            f"train.device={device}",
            "train.eval_every=0",
            "train.image_log_every=0",
            "train.final_comparison=false",
        ],
    )
    seconds: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        meta_train(
            config,
            Path(folder) / "run",
            on_message=lambda text: None,
            on_step=lambda step, m: seconds.append(m["seconds"]),
        )
    if resolve_device(device).type == "cuda":
        peak_mb, memory = torch.cuda.max_memory_allocated() / 2**20, "cuda"
    else:
        peak_mb, memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss"  # kilobytes on Linux
    step_seconds = statistics.median(seconds[1:] or seconds)
    images = batch * config.reptile.inner_steps * meta_batch
    return {
        "image_size": image_size,
        "meta_batch": meta_batch,
        "taps": taps,
        "batch": batch,
        "inner_steps": config.reptile.inner_steps,
        "images_per_step": images,
        "seconds_per_step": round(step_seconds, 3),
        "ms_per_image": round(1000 * step_seconds / images, 2),
        "peak_memory_mb": round(peak_mb, 1),
        "memory": memory,
    }


def grid(sizes: list[int], meta_batches: list[int], taps: list[int], base: tuple[int, int, int]) -> list[tuple]:
    """One factor at a time around ``base`` (image size, meta-batch, taps), the base point first, no repeats."""
    points = [base]
    points += [(size, base[1], base[2]) for size in sizes]
    points += [(base[0], meta_batch, base[2]) for meta_batch in meta_batches]
    points += [(base[0], base[1], count) for count in taps]
    return list(dict.fromkeys(points))


def table(points: list[dict]) -> str:
    rows = [
        "| image size | meta-batch | taps | images per meta-step | seconds per meta-step | ms per image "
        "| peak memory (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for point in points:
        rows.append(
            f"| {point['image_size']} | {point['meta_batch']} | {point['taps']} | {point['images_per_step']} | "
            f"{point['seconds_per_step']} | {point['ms_per_image']} | {point['peak_memory_mb']} ({point['memory']}) |"
        )
    return "\n".join(rows) + "\n"


FACTORS = (("image_size", "image size (px)"), ("meta_batch", "meta-batch (tasks)"), ("taps", "taps"))


def plot(points: list[dict], path: Path) -> bool:
    """Seconds per meta-step against each factor, the others at the base point; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    base = points[0]
    figure, axes = plt.subplots(1, len(FACTORS), figsize=(10, 3.2), sharey=True)
    for axis, (factor, label) in zip(axes, FACTORS):
        others = [name for name, _ in FACTORS if name != factor]
        line = sorted(
            (point[factor], point["seconds_per_step"])
            for point in points
            if all(point[name] == base[name] for name in others)
        )
        axis.plot(*zip(*line), marker="o")
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("seconds per meta-step")
    figure.suptitle(f"paper preset, batch {base['batch']}, {base['inner_steps']} inner steps; one factor at a time")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return True


def integers(text: str) -> list[int]:
    return [int(value) for value in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=integers, default=[64, 128, 224])
    parser.add_argument("--meta-batches", type=integers, default=[1, 2, 4])
    parser.add_argument("--taps", type=integers, default=[1, 2, 3, 4], help="how many of the paper's taps")
    parser.add_argument("--steps", type=int, default=3, help="meta-steps per point; the first is not timed")
    parser.add_argument("--batch", type=int, default=64, help="images per inner step (the paper preset's 64)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--trunk", default="resnet50", choices=list(TRUNK_STAGES), help="model.trunk (the paper's)")
    parser.add_argument("--plot", type=Path, default=None, help="draw the curve into this PNG file")
    parser.add_argument("--point", type=integers, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.point is not None:  # one point, in a process of its own, so that peak memory is the point's
        size, meta_batch, taps = args.point
        print(json.dumps(measure_point(size, meta_batch, taps, args.steps, args.batch, args.device, args.trunk)))
        return
    if not all(1 <= count <= len(default_taps(args.trunk)) for count in args.taps):
        parser.error(f"--taps counts must be between 1 and {len(default_taps(args.trunk))}")
    paper = load_config(preset="paper", overrides=[f"model.trunk={args.trunk}"])
    base = (paper.data.image_size, paper.reptile.meta_batch_size, len(paper.model.tap_layers()))
    points = []
    for size, meta_batch, taps in grid(args.sizes, args.meta_batches, args.taps, base):
        command = [sys.executable, __file__, "--point", f"{size},{meta_batch},{taps}", "--steps", str(args.steps)]
        command += ["--batch", str(args.batch), "--device", args.device, "--trunk", args.trunk]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        points.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(points[-1]), file=sys.stderr, flush=True)
    print(table(points), end="")
    plotted = False
    if args.plot is not None:
        plotted = plot(points, args.plot)
    paper_images = paper.reptile.inner_steps * paper.sampler.batch_size * paper.reptile.meta_batch_size
    summary = {
        "paper_seconds_per_1000_steps": round(points[0]["ms_per_image"] * paper_images, 1),
        "points": points,
        "table": table(points),
        "plotted": plotted,
        "steps": args.steps,
        "batch": args.batch,
        "device": str(resolve_device(args.device)),
        "trunk": args.trunk,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
