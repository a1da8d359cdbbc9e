"""Cost of one Reptile meta-step against plain training on the same batches, and against a naive version.

- plain: ``inner_steps`` optimiser steps on the model with a new inner optimiser (what the inner loop of a task
  costs by itself); ``plain_kept``: the same steps on one optimiser allocated once, whose state carries on (the
  cheapest the steps can be, for ``reptile_vs_plain_kept_optimizer``);
- reptile: one ``Reptile.meta_step`` (the same steps plus copying and updating the meta weights with
  ``torch._foreach_*`` ops, and zeroing the inner optimiser's state);
- naive: deepcopy the model, train the copy, interpolate state dicts (a common hand-written Reptile).

Run: python benchmarks/reptile_overhead.py [--image-size 64] [--batch 8] [--repeats 15]
Interleaved repeats in rotating order, medians. Last line: {"reptile_vs_plain": .., "naive_vs_plain": .., ...}.
Target: reptile_vs_plain <= 1.03. ``reptile_vs_plain_ci`` is the 95 % t interval of the mean of the repeats' paired
ratios (reptile / plain of the same repeat): where it holds 1.03, the target is not resolved either way.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import statistics
import time

import torch
import torch.nn.functional as F

from universal_attention import AttentionResNet50, ModelConfig, Reptile, ReptileConfig, Task
from universal_attention.optim import adam
from universal_attention.transfer.stats import mean_ci

TASK = "benchmark"


def plain_steps(
    model: AttentionResNet50, batches: list, config: ReptileConfig, optimizer: torch.optim.Optimizer | None = None
) -> None:
    optimizer = optimizer or adam(model.parameters(), lr=config.inner_lr, betas=(0.0, 0.999))
    for images, labels in batches:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images, TASK).logits, labels).backward()
        optimizer.step()


def naive_meta_step(model: AttentionResNet50, batches: list, config: ReptileConfig) -> None:
    adapted = copy.deepcopy(model)
    plain_steps(adapted, batches, config)
    meta, new = model.state_dict(), adapted.state_dict()
    model.load_state_dict(
        {
            name: meta[name] + config.outer_lr * (new[name] - meta[name])
            if meta[name].is_floating_point()
            else new[name]
            for name in meta
        }
    )


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    torch.manual_seed(0)
    config = ReptileConfig(inner_steps=5, inner_optimizer="adam", inner_lr=1e-3, outer_optimizer="sgd", outer_lr=0.5)
    model = AttentionResNet50(ModelConfig(), num_classes=None)
    model.add_head(TASK, 5)
    batches = [
        (
            torch.randint(0, 256, (args.batch, 3, args.image_size, args.image_size), dtype=torch.uint8),
            torch.randint(0, 5, (args.batch,)),
        )
        for _ in range(config.inner_steps)
    ]
    reptile = Reptile(model, config)

    def reptile_step():
        reptile.meta_step([Task(TASK, itertools.cycle(batches), num_classes=5)])

    kept = adam(model.parameters(), lr=config.inner_lr, betas=(0.0, 0.999))
    runs = {
        "plain": lambda: plain_steps(model, batches, config),
        "plain_kept": lambda: plain_steps(model, batches, config, kept),
        "reptile": reptile_step,
        "naive": lambda: naive_meta_step(model, batches, config),
    }
    for run in runs.values():  # warm-up
        run()
    times = {name: [] for name in runs}
    names = list(runs)
    for repeat in range(args.repeats):
        shift = repeat % len(names)  # rotate the order so no run always follows another
        for name in names[shift:] + names[:shift]:
            times[name].append(timed(runs[name]))
    median = {name: statistics.median(values) for name, values in times.items()}
    paired_mean, _, (low, high) = mean_ci([r / p for r, p in zip(times["reptile"], times["plain"])])
    print(
        json.dumps(
            {
                "reptile_vs_plain": round(median["reptile"] / median["plain"], 3),
                "reptile_vs_plain_paired_mean": round(paired_mean, 3),
                "reptile_vs_plain_ci": [round(low, 3), round(high, 3)],
                "reptile_vs_plain_kept_optimizer": round(median["reptile"] / median["plain_kept"], 3),
                "naive_vs_plain": round(median["naive"] / median["plain"], 3),
                "plain_s": round(median["plain"], 3),
                "plain_kept_optimizer_s": round(median["plain_kept"], 3),
                "reptile_s": round(median["reptile"], 3),
                "naive_s": round(median["naive"], 3),
                "inner_steps": config.inner_steps,
                "repeats": args.repeats,
                "batch": args.batch,
                "image_size": args.image_size,
                "parameters": sum(p.numel() for p in model.parameters()),
            }
        )
    )


if __name__ == "__main__":
    main()
