"""Forward+backward time of AttentionResNet50 against torchvision's resnet50 on the same input.

Run: python benchmarks/model_overhead.py [--image-sizes 64,128] [--batch 8] [--repeats 25]
At each image size three models are timed on the CPU: the default (paper) AttentionResNet50 (alignment 256, query 512),
the quickstart one (alignment 64, query 128) and torchvision's resnet50; they take turns within each repeat in
a rotating order, so that machine noise hits all alike. ``attention_flops_vs_resnet50`` counts FLOPs of the
same step (``torch.utils.flop_counter``): the attention blocks' share of the arithmetic, the floor for the time
ratio. ``attention_above_flops`` is the time ratio (median over repeats of the paired ratio) less that floor
(target <= 0.01), with the 95 % t interval of the mean paired ratio less the floor
(``attention_above_flops_ci``). Figures of the second and later sizes carry the size as a suffix
(``attention_above_flops_128``).
On a CUDA machine it also times both models there, with channels_last and bf16 autocast (``gpu_*``) and in
fp32 (``gpu_fp32_*``), batch 64 at twice the first image size; on a CPU-only machine those are left out.
Prints one JSON object as its last line: {"attention_vs_resnet50": ratio, ...}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from universal_attention import AttentionResNet50, ModelConfig, load_config
from universal_attention.transfer.stats import mean_ci


def step_seconds(model: torch.nn.Module, images: torch.Tensor, forward) -> float:
    """Time one forward+backward pass."""
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    forward(model, images).sum().backward()
    return time.perf_counter() - start


def step_flops(model: torch.nn.Module, images: torch.Tensor, forward) -> int:
    """FLOPs of one forward+backward pass."""
    counter = FlopCounterMode(display=False)
    with counter:
        forward(model, images).sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def gpu_images_per_second(batch: int, image_size: int, bf16: bool, repeats: int = 20) -> dict[str, Any]:
    """Training images/s on CUDA with channels_last, with or without bf16 autocast, both models, interleaved;
    keys start ``gpu_`` (bf16) or ``gpu_fp32_``."""
    device = torch.device("cuda")
    prefix = "gpu_" if bf16 else "gpu_fp32_"
    images = torch.randint(0, 256, (batch, 3, image_size, image_size), dtype=torch.uint8, device=device)
    config = ModelConfig(bf16_autocast=bf16)
    attention_model = AttentionResNet50(config, num_classes=10).to_device(device).train()
    resnet = torchvision.models.resnet50(num_classes=10).to(device, memory_format=torch.channels_last).train()
    normalised = attention_model.normalise(images).contiguous(memory_format=torch.channels_last)

    def resnet_step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            resnet(normalised).float().sum().backward()

    def attention_step():
        attention_model(images).logits.sum().backward()

    steps = {"attention": attention_step, "resnet50": resnet_step}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for repeat in range(repeats + 3):
        for name, step in steps.items():
            torch.cuda.synchronize()
            start = time.perf_counter()
            step()
            torch.cuda.synchronize()
            if repeat >= 3:  # warm-up
                times[name].append(time.perf_counter() - start)
    paired = [attention / resnet for attention, resnet in zip(times["attention"], times["resnet50"])]
    return {
        f"{prefix}attention_vs_resnet50": round(statistics.median(paired), 3),
        f"{prefix}attention_img_per_s": round(batch / statistics.median(times["attention"]), 1),
        f"{prefix}resnet50_img_per_s": round(batch / statistics.median(times["resnet50"]), 1),
        "gpu_batch": batch,
        "gpu_image_size": image_size,
        "gpu": torch.cuda.get_device_name(device),
    }


def cpu_ratios(image_size: int, batch: int, repeats: int) -> dict[str, Any]:
    """Time and FLOP ratios of the paper and quickstart models against resnet50 at one image size."""
    torch.manual_seed(0)
    images = torch.rand(batch, 3, image_size, image_size)
    models = {
        "attention": AttentionResNet50(num_classes=10).train(),
        "quickstart": AttentionResNet50(load_config(preset="quickstart").model, num_classes=10).train(),
        "resnet50": torchvision.models.resnet50(num_classes=10).train(),
    }
    normalised = models["attention"].normalise(images)

    def attention_forward(model, batch):
        return model(batch).logits

    def resnet_forward(model, batch):
        return model(normalised)

    forwards = {"attention": attention_forward, "quickstart": attention_forward, "resnet50": resnet_forward}
    flops = {name: step_flops(model, images, forwards[name]) for name, model in models.items()}
    for _ in range(2):  # warm-up
        for name, model in models.items():
            step_seconds(model, images, forwards[name])
    times: dict[str, list[float]] = {name: [] for name in models}
    names = list(models)
    for repeat in range(repeats):  # rotate the order so no model always follows another
        for name in names[repeat % 3 :] + names[: repeat % 3]:
            times[name].append(step_seconds(models[name], images, forwards[name]))
    median = {name: statistics.median(values) for name, values in times.items()}
    paired = [attention / resnet for attention, resnet in zip(times["attention"], times["resnet50"])]
    time_ratio = statistics.median(paired)  # per repeat, so that a slow spell of the machine cancels
    flop_ratio = flops["attention"] / flops["resnet50"]
    _, _, (low, high) = mean_ci(paired)
    return {
        "attention_vs_resnet50": round(time_ratio, 3),
        "attention_flops_vs_resnet50": round(flop_ratio, 3),
        "attention_above_flops": round(time_ratio - flop_ratio, 3),
        "attention_above_flops_ci": [round(low - flop_ratio, 3), round(high - flop_ratio, 3)],
        "quickstart_vs_resnet50": round(
            statistics.median(q / r for q, r in zip(times["quickstart"], times["resnet50"])), 3
        ),
        "quickstart_flops_vs_resnet50": round(flops["quickstart"] / flops["resnet50"], 3),
        "attention_step_s": round(median["attention"], 4),
        "resnet50_step_s": round(median["resnet50"], 4),
        "attention_img_per_s": round(batch / median["attention"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-sizes", default="64,128", help="comma-separated; the first is the headline size")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=25)
    args = parser.parse_args()
    sizes = [int(size) for size in args.image_sizes.split(",")]
    figures: dict[str, Any] = {}
    for index, size in enumerate(sizes):
        suffix = "" if index == 0 else f"_{size}"
        figures |= {f"{key}{suffix}": value for key, value in cpu_ratios(size, args.batch, args.repeats).items()}
    gpu: dict[str, Any] = {}
    if torch.cuda.is_available():
        for bf16 in (True, False):
            gpu |= gpu_images_per_second(args.batch * 8, sizes[0] * 2, bf16)
    summary = {"image_sizes": sizes, "batch": args.batch, "repeats": args.repeats, "threads": torch.get_num_threads()}
    print(json.dumps({**gpu, **figures, **summary}))


if __name__ == "__main__":
    main()
