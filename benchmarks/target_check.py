"""The periodic target check two ways: finetuning against the linear probe on frozen features.

Meta-trains the quickstart preset (checkpoints every ``--every`` meta-steps, no periodic checks, no final
comparison), then scores every checkpoint and a random init with the check as it is configured,
``train.eval_mode: finetune`` (``train.eval_steps`` finetuning steps) and ``linear`` (the solved probe, forward
passes only), and once more with finetuning under another transfer seed: how far the finetuning check agrees
with itself is the bar the cheaper check has to meet in ranking the start points.

Run: python benchmarks/target_check.py [--steps 600] [--every 100] [--set KEY=VALUE ...]
Last line: {"spearman_linear_vs_finetune": .., "spearman_finetune_reseeded": .., "linear_vs_finetune_seconds": ..,
...}
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from universal_attention import AttentionResNet50, ExperimentConfig, load_checkpoint, load_config, meta_train
from universal_attention.devices import resolve_device
from universal_attention.meta.comparison import quick_transfer
from universal_attention.meta.training import source_dataset


def ranks(values: list[float]) -> list[float]:
    """Ranks from 1, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            result[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return result


def spearman(first: list[float], second: list[float]) -> float:
    """Spearman's rank correlation (Pearson's correlation of the ranks)."""
    a, b = ranks(first), ranks(second)
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    covariance = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b))
    spread = (sum((x - mean_a) ** 2 for x in a) * sum((y - mean_b) ** 2 for y in b)) ** 0.5
    return covariance / spread if spread else float("nan")


def check(model: AttentionResNet50, config: ExperimentConfig, device: torch.device, target) -> tuple[float, float]:
    """(top-1, seconds) of one periodic check."""
    start = time.perf_counter()
    top1 = quick_transfer(model, config, device, target).cells[0].top1
    return top1, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="meta-steps")
    parser.add_argument("--every", type=int, default=100, help="meta-steps between the checkpoints scored")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)"
    )
    args = parser.parse_args()
    config = load_config(
        preset="quickstart",
        overrides=[
            *args.overrides,
            f"train.max_steps={args.steps}",
            f"train.checkpoint_every={args.every}",
            f"train.keep_last={args.steps // args.every + 1}",
            "train.eval_every=0",
            "train.image_log_every=0",
            "train.final_comparison=false",
        ],
    )
    device = resolve_device(config.train.device)
    modes = {
        "finetune": config.model_copy(update={"train": config.train.updated(eval_mode="finetune")}),
        "linear": config.model_copy(update={"train": config.train.updated(eval_mode="linear")}),
        "finetune_reseeded": config.model_copy(
            update={"train": config.train.updated(eval_mode="finetune"), "transfer": config.transfer.updated(seed=1)}
        ),
    }
    target = (source_dataset(config.data.target, "train", config), source_dataset(config.data.target, "test", config))
    torch.manual_seed(config.train.seed)
    starts: dict[str, AttentionResNet50] = {"random_init": AttentionResNet50(config.model).to_device(device)}
    with tempfile.TemporaryDirectory() as folder:
        clock = time.perf_counter()
        meta_train(config, f"{folder}/run", on_message=lambda text: None)
        training_seconds = time.perf_counter() - clock
        for path in sorted(Path(folder, "run", "checkpoints").glob("step-*.safetensors")):
            starts[path.stem] = load_checkpoint(path).model.to_device(device)
    top1: dict[str, list[float]] = {mode: [] for mode in modes}
    seconds: dict[str, list[float]] = {mode: [] for mode in modes}
    for model in starts.values():
        for mode, mode_config in modes.items():
            score, spent = check(model, mode_config, device, target)
            top1[mode].append(round(score, 4))
            seconds[mode].append(spent)
    best = {mode: list(starts)[max(range(len(starts)), key=lambda i: values[i])] for mode, values in top1.items()}
    print(
        json.dumps(
            {
                "spearman_linear_vs_finetune": round(spearman(top1["linear"], top1["finetune"]), 3),
                "spearman_finetune_reseeded": round(spearman(top1["finetune_reseeded"], top1["finetune"]), 3),
                "best_linear": best["linear"],
                "best_finetune": best["finetune"],
                "best_finetune_reseeded": best["finetune_reseeded"],
                "finetune_check_seconds": round(statistics.median(seconds["finetune"]), 3),
                "linear_check_seconds": round(statistics.median(seconds["linear"]), 3),
                "linear_vs_finetune_seconds": round(
                    statistics.median(seconds["linear"]) / statistics.median(seconds["finetune"]), 3
                ),
                "starts": list(starts),
                "top1": top1,
                "training_seconds": round(training_seconds, 1),
                "eval_steps": config.train.eval_steps,
                "eval_test_images": config.train.eval_test_images,
                "shots": config.transfer.shots_per_class[0],
                "trunk": config.model.trunk,
                "device": str(device),
            }
        )
    )


if __name__ == "__main__":
    main()
