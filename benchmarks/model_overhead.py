"""Forward+backward time of AttentionResNet50 against torchvision's resnet50 on the same input.

Run: python benchmarks/model_overhead.py [--image-size 64] [--batch 8] [--repeats 15]
Three models are timed: the default (paper) AttentionResNet50 (alignment 256, query 512), the quickstart one
(alignment 64, query 128) and torchvision's resnet50; they take turns within each repeat in a rotating order,
so that machine noise hits all alike. ``attention_flops_vs_resnet50`` counts FLOPs of the same step
(``torch.utils.flop_counter``): the attention blocks' share of the arithmetic, the floor for the time ratio.
On a CUDA machine it also reports training images/s of both models with bf16 autocast and channels_last
(``gpu_*`` figures, batch 64 at twice the image size); on a CPU-only machine those are left out.
Prints one JSON object as its last line: {"attention_vs_resnet50": ratio, ...}. Target: ratio <= 1.10.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from universal_attention import AttentionResNet50, load_config


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


def gpu_images_per_second(batch: int, image_size: int, repeats: int = 20) -> dict[str, float]:
    """Training images/s on CUDA with bf16 autocast and channels_last, both models, interleaved."""
    device = torch.device("cuda")
    images = torch.randint(0, 256, (batch, 3, image_size, image_size), dtype=torch.uint8, device=device)
    attention_model = AttentionResNet50(num_classes=10).to_device(device).train()
    resnet = torchvision.models.resnet50(num_classes=10).to(device, memory_format=torch.channels_last).train()
    normalised = attention_model.normalise(images).contiguous(memory_format=torch.channels_last)

    def resnet_step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            resnet(normalised).float().sum().backward()

    def attention_step():
        attention_model(images).logits.sum().backward()

    times: dict[str, list[float]] = {"gpu_attention_img_per_s": [], "gpu_resnet50_img_per_s": []}
    for repeat in range(repeats + 3):
        for name, step in (("gpu_attention_img_per_s", attention_step), ("gpu_resnet50_img_per_s", resnet_step)):
            torch.cuda.synchronize()
            start = time.perf_counter()
            step()
            torch.cuda.synchronize()
            if repeat >= 3:  # warm-up
                times[name].append(time.perf_counter() - start)
    figures = {name: round(batch / statistics.median(values), 1) for name, values in times.items()}
    return {**figures, "gpu_batch": batch, "gpu_image_size": image_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    torch.manual_seed(0)
    images = torch.rand(args.batch, 3, args.image_size, args.image_size)
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
    for repeat in range(args.repeats):  # rotate the order so no model always follows another
        for name in names[repeat % 3 :] + names[: repeat % 3]:
            times[name].append(step_seconds(models[name], images, forwards[name]))
    median = {name: statistics.median(values) for name, values in times.items()}
    gpu = gpu_images_per_second(args.batch * 8, args.image_size * 2) if torch.cuda.is_available() else {}
    print(
        json.dumps(
            {
                **gpu,
                "attention_vs_resnet50": round(median["attention"] / median["resnet50"], 3),
                "attention_flops_vs_resnet50": round(flops["attention"] / flops["resnet50"], 3),
                "quickstart_vs_resnet50": round(median["quickstart"] / median["resnet50"], 3),
                "quickstart_flops_vs_resnet50": round(flops["quickstart"] / flops["resnet50"], 3),
                "attention_step_s": round(median["attention"], 4),
                "resnet50_step_s": round(median["resnet50"], 4),
                "attention_img_per_s": round(args.batch / median["attention"], 1),
                "image_size": args.image_size,
                "batch": args.batch,
                "repeats": args.repeats,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
