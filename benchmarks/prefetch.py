"""Reading inner batches ahead in a thread (``reptile.prefetch: true``) against reading them in the training thread.

Meta-trains the quickstart preset for ``--steps`` meta-steps (no periodic check, pictures or checkpoints: the
meta-steps alone, images painted afresh for every run) with prefetch on and off, in pairs whose order alternates,
once with torch's own number of CPU threads and once with ``--threads`` fewer than it (so that a core is free
for the reading thread). Per setting: the mean paired difference of the meta-steps' seconds, on minus off, its
sample standard deviation and 95 % t interval, and the relative difference. An interval that holds 0 is not
resolved.

Run: python benchmarks/prefetch.py [--steps 25] [--pairs 4] [--set KEY=VALUE ...]
Last line: {"prefetch_minus_off_seconds": .., "prefetch_minus_off_ci": [..], "prefetch_vs_off": .., ...}
(``*_free_core`` keys: the same with a core left free).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from universal_attention import load_config, meta_train
from universal_attention.data.synthetic import forget_painted_images
from universal_attention.transfer.stats import mean_ci


def meta_step_seconds(steps: int, prefetch: bool, out: Path, extra: list[str]) -> float:
    """Seconds inside the meta-steps of a fresh quickstart run of ``steps`` meta-steps, its images painted anew."""
    forget_painted_images()
    overrides = [
        *extra,
        f"train.max_steps={steps}",
        f"reptile.prefetch={str(prefetch).lower()}",
        "train.final_comparison=false",
        "train.eval_every=0",
        "train.image_log_every=0",
        f"train.checkpoint_every={steps}",
        "train.report=false",
    ]
    seconds: list[float] = []
    meta_train(
        load_config(preset="quickstart", overrides=overrides),
        out,
        on_message=lambda text: None,
        on_step=lambda step, metrics: seconds.append(metrics["seconds"]),
    )
    return sum(seconds)


def paired(steps: int, pairs: int, folder: Path, extra: list[str]) -> dict[str, object]:
    """``pairs`` runs with and without prefetch in alternating order, at the current thread count."""
    meta_step_seconds(2, False, folder / "warm-up", extra)  # the process's first steps are slow
    on, off = [], []
    for pair in range(pairs):
        for prefetch in (True, False) if pair % 2 == 0 else (False, True):
            (on if prefetch else off).append(meta_step_seconds(steps, prefetch, folder / f"{pair}-{prefetch}", extra))
    differences = [a - b for a, b in zip(on, off)]
    mean, spread, (low, high) = mean_ci(differences)
    return {
        "minus_off_seconds": round(mean, 2),
        "minus_off_std": round(spread, 2),
        "minus_off_ci": [round(low, 2), round(high, 2)],
        "vs_off": round(statistics.fmean(on) / statistics.fmean(off), 3),
        "on_seconds": [round(value, 2) for value in on],
        "off_seconds": [round(value, 2) for value in off],
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25, help="meta-steps per run")
    parser.add_argument("--pairs", type=int, default=4, help="pairs of runs per setting")
    parser.add_argument("--threads", type=int, default=1, help="threads fewer than torch's own for the free core")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)"
    )
    args = parser.parse_args()
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as folder:
        default_threads = torch.get_num_threads()
        for suffix, threads in (("", default_threads), ("_free_core", default_threads - args.threads)):
            if threads < 1:
                continue
            torch.set_num_threads(threads)
            result = paired(args.steps, args.pairs, Path(folder) / f"threads-{threads}", args.overrides)
            figures.update({f"prefetch_{key}{suffix}": value for key, value in result.items()})
    figures.update({"steps": args.steps, "pairs": args.pairs})
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
