"""Run every benchmark and write docs/benchmarks.md: one table of figure, value, target, command, machine.

Run: python benchmarks/run_all.py [--quick]
Each benchmark script prints one JSON object as its last line; this collects them side by side. The last
line printed here is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from universal_attention.atomic import atomic_write_bytes

HERE = Path(__file__).resolve().parent
# (script, arguments, {figure: target or ""})
BENCHMARKS = [
    (
        "model_overhead.py",
        [],
        {
            "attention_vs_resnet50": "<= 1.10",
            "attention_flops_vs_resnet50": "",
            "quickstart_vs_resnet50": "",
            "quickstart_flops_vs_resnet50": "",
            "attention_img_per_s": "",
            "gpu_attention_img_per_s": "",
            "gpu_resnet50_img_per_s": "",
        },
    ),
    ("reptile_overhead.py", [], {"reptile_vs_plain": "<= 1.03", "naive_vs_plain": ""}),
    (
        "data_throughput.py",
        [],
        {"cached_img_per_s": ">= 2000", "decode_img_per_s": "", "ratio": ">= 5", "synthetic_img_per_s": ">= 1000"},
    ),
    ("meta_train_speed.py", [], {"meta_train_img_per_s": "", "end_to_end_img_per_s": "", "peak_rss_mb": ""}),
    (
        "transfer_speed.py",
        [],
        {"finetune_frozen_bn_img_per_s": "", "finetune_train_bn_img_per_s": "", "quickstart_transfer_seconds": "<= 90"},
    ),
]


def machine() -> str:
    """A short description of where the figures were measured."""
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{platform.machine()}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}"


NOTES = """\
- `attention_vs_resnet50` times the default (paper) model: alignment 256 and query 512 at four taps.
  `attention_flops_vs_resnet50` is the arithmetic of the same step against resnet50's, so the time ratio cannot
  fall below it; the rest of the gap is the blocks' elementwise work (tanh, softmax, pooling). At 64 px that
  floor is already about 1.10, so the target needs a smaller attention (the `quickstart_*` rows: alignment 64,
  query 128), not faster code.
- `reptile_vs_plain` is one Reptile meta-step against the same inner steps without Reptile. The difference is
  copying the meta weights into the model and one `lerp` toward the adapted weights (26 M parameters, a few ms
  each against about a second of inner steps), which is within the machine's noise: a value below 1 means
  just that.
- `gpu_*` rows appear only when the runner has a CUDA device (bf16 autocast, channels_last).
- `finetune_*_bn_img_per_s` are finetuning steps of the quickstart model (64 px, batch 16) with BatchNorm frozen
  (the start model's statistics) and in train mode, side by side. `quickstart_transfer_seconds` is the transfer
  part of the quickstart's final comparison: two start points with the preset's protocol (steps budget, draws,
  test images).
"""


def meets(value: float, target: str) -> str:
    """``yes``/``no`` for a target such as ``<= 1.10``; ``-`` when there is none."""
    if not target:
        return "-"
    operator, bound = target.split()
    return "yes" if (value <= float(bound) if operator == "<=" else value >= float(bound)) else "no"


def run(script: str, arguments: list[str]) -> dict:
    done = subprocess.run([sys.executable, str(HERE / script), *arguments], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "benchmarks.md")
    args = parser.parse_args()
    where = machine()
    rows, everything = [], {}
    for script, arguments, figures in BENCHMARKS:
        result = run(script, arguments)
        everything[script] = result
        command = " ".join(["python", f"benchmarks/{script}", *arguments])
        for figure, target in figures.items():
            if result.get(figure) is not None:
                rows.append(
                    f"| {figure} | {result[figure]} | {target or '-'} | {meets(result[figure], target)} "
                    f"| `{command}` | {where} |"
                )
    table = "\n".join(["| figure | value | target | met | command | machine |", "|---|---|---|---|---|---|", *rows])
    atomic_write_bytes(
        args.out,
        (
            "# Benchmarks\n\nMeasured by `python benchmarks/run_all.py`, which runs every script in `benchmarks/` and "
            "writes this file. Ratios are measured side by side in one run; absolute speeds depend on what else the "
            "machine is doing.\n\n" + table + "\n\n" + NOTES
        ).encode(),
    )
    print(json.dumps(everything))


if __name__ == "__main__":
    main()
