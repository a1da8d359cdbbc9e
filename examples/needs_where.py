"""Do the synthetic source tasks need *where*? Oracle-attention pooling against the plain pooled network.

For every source task, two networks start from the same random initialisation and get the same training
budget (``--steps`` optimiser steps of ``--batch`` images from ``--shots`` training images per class, Adam):

- ``oracle``: the attention network whose every tap pools with the ground-truth mask of the target
  (``TransferConfig.attention = ("oracle",)``): it is told *where* and has to learn only *what*;
- ``plain``: the same trunk with ``model.attention: false`` (global average pooling of the last stage): it has
  to find the target by itself.

A task that global statistics or a blind network could answer shows no gap. Prints a markdown table and, as
its last line, one JSON object of the figures.

Run: python examples/needs_where.py [--steps 100] [--batch 32] [--shots 250] [--image-size 64]
"""

from __future__ import annotations

import argparse
import json
import time

from universal_attention import ModelConfig, TransferConfig, transfer_evaluate
from universal_attention.data.synthetic import SOURCE_TASKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--shots", type=int, default=250, help="training images per class")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--test-images", type=int, default=400)
    parser.add_argument("--tasks", default=",".join(SOURCE_TASKS))
    args = parser.parse_args()
    attention = ModelConfig(alignment_size=64, query_size=128)
    plain = attention.updated(attention=False)
    protocol = TransferConfig(
        steps=args.steps,
        batch_size=args.batch,
        lr=1e-3,
        shots_per_class=(args.shots,),
        max_test_images=args.test_images,
        image_size=args.image_size,
    )
    begin = time.perf_counter()
    figures = {}
    print("| task | oracle top-1 | plain top-1 | gap | oracle train top-1 | plain train top-1 |")
    print("|---|---|---|---|---|---|")
    for task in args.tasks.split(","):
        target = f"synthetic/{task}"
        oracle = transfer_evaluate(
            "random", target, protocol.updated(attention=("oracle",)), model_config=attention
        ).runs[0]
        blind = transfer_evaluate("random", target, protocol, model_config=plain).runs[0]
        figures[task] = {
            "oracle": oracle.top1,
            "plain": blind.top1,
            "gap": oracle.top1 - blind.top1,
            "oracle_train": oracle.train_top1,
            "plain_train": blind.train_top1,
        }
        print(
            f"| {task} | {oracle.top1:.3f} | {blind.top1:.3f} | {oracle.top1 - blind.top1:+.3f} | "
            f"{oracle.train_top1:.3f} | {blind.train_top1:.3f} |",
            flush=True,
        )
    print(
        json.dumps(
            {
                "figures": figures,
                "steps": args.steps,
                "batch": args.batch,
                "shots": args.shots,
                "image_size": args.image_size,
                "test_images": args.test_images,
                "seconds": round(time.perf_counter() - begin),
            }
        )
    )


if __name__ == "__main__":
    main()
