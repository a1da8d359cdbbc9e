"""Transfer speed: finetuning images/s with frozen and train-mode BatchNorm, and the quickstart's transfer stage.

- ``finetune_frozen_bn_img_per_s`` / ``finetune_train_bn_img_per_s``: optimiser steps of the quickstart model
  (64 px, batch 16) on a synthetic target, medians of interleaved repeats, side by side in one run.
- ``quickstart_transfer_seconds``: what the quickstart's final comparison spends on transfer: two start points
  (meta-trained and random init; two random inits here, the cost is the same) with the preset's protocol
  (``transfer.steps`` steps per run, ``transfer.draws`` draws, ``transfer.max_test_images`` test images).

Run: python benchmarks/transfer_speed.py [--repeats 5] [--steps 10]
Last line: {"finetune_frozen_bn_img_per_s": .., "finetune_train_bn_img_per_s": .., "quickstart_transfer_seconds": ..}
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from universal_attention import load_config, transfer_evaluate
from universal_attention.data import get_dataset
from universal_attention.runs.loading import random_model
from universal_attention.transfer.finetune import finetune
from universal_attention.transfer.protocol import protocol_for


def finetune_rate(config, images: torch.Tensor, labels: torch.Tensor, policy: str, steps: int) -> float:
    """Images per second of ``steps`` finetuning steps with BatchNorm ``policy``."""
    model = random_model(config.model)
    model.add_head("target", 4)
    transfer = config.transfer.updated(steps=steps, batchnorm=policy)
    start = time.perf_counter()
    finetune(
        model,
        "target",
        images,
        labels,
        None,
        transfer,
        "learned",
        torch.device("cpu"),
        torch.Generator().manual_seed(0),
    )
    return steps * min(transfer.batch_size, len(labels)) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    config = load_config(preset="quickstart")
    target = get_dataset(config.data.target, "train", image_size=config.data.image_size)
    images = torch.stack([target[index][0] for index in range(320)])
    labels = torch.tensor(target.labels[:320])
    rates: dict[str, list[float]] = {"frozen": [], "train": []}
    for _ in range(args.repeats):
        for policy in rates:
            rates[policy].append(finetune_rate(config, images, labels, policy, args.steps))
    start = time.perf_counter()
    for seed in (0, 1):
        transfer_evaluate(
            "random",
            config.data.target,
            protocol_for(config).updated(seed=seed),
            model_config=config.model,
            device="cpu",
        )
    stage = time.perf_counter() - start
    print(
        json.dumps(
            {
                "finetune_frozen_bn_img_per_s": round(statistics.median(rates["frozen"]), 1),
                "finetune_train_bn_img_per_s": round(statistics.median(rates["train"]), 1),
                "quickstart_transfer_seconds": round(stage, 1),
                "repeats": args.repeats,
                "steps": args.steps,
                "image_size": config.data.image_size,
                "batch": config.transfer.batch_size,
                "transfer_steps": config.transfer.steps,
                "draws": config.transfer.draws,
                "test_images": config.transfer.max_test_images,
            }
        )
    )


if __name__ == "__main__":
    main()
