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
            "attention_above_flops": "<= 0.01",
            "attention_above_flops_128": "<= 0.01",
            "attention_vs_resnet50": "",
            "attention_flops_vs_resnet50": "",
            "attention_vs_resnet50_128": "",
            "attention_flops_vs_resnet50_128": "",
            "quickstart_vs_resnet50": "",
            "quickstart_flops_vs_resnet50": "",
            "attention_img_per_s": "",
            "gpu_attention_vs_resnet50": "<= 1.10",
            "gpu_attention_img_per_s": "",
            "gpu_resnet50_img_per_s": "",
        },
    ),
    (
        "reptile_overhead.py",
        [],
        {
            "reptile_vs_plain": "<= 1.03",
            "reptile_vs_plain_ci": "",
            "reptile_vs_plain_kept_optimizer": "",
            "naive_vs_plain": "",
        },
    ),
    (
        "data_throughput.py",
        [],
        {
            "cached_img_per_s": ">= 2000",
            "decode_img_per_s": "",
            "ratio": ">= 5",
            "synthetic_img_per_s": ">= 1000",
            "synthetic_kept_img_per_s": "",
        },
    ),
    (
        "meta_train_speed.py",
        [],
        {
            "meta_train_vs_model": ">= 0.95",
            "meta_train_vs_model_without_checks": "",
            "meta_steps_vs_model": "",
            "meta_train_vs_model_images_kept": "",
            "meta_steps_vs_model_images_kept": "",
            "target_checks_share": "",
            "meta_train_img_per_s": "",
            "model_train_img_per_s": "",
            "model_train_img_per_s_spread": "",
            "gpu_meta_train_vs_model": ">= 0.90",
            "peak_rss_mb": "",
        },
    ),
    (
        "prefetch.py",
        [],
        {
            "prefetch_minus_off_seconds": "",
            "prefetch_minus_off_ci": "",
            "prefetch_vs_off": "",
            "prefetch_minus_off_seconds_free_core": "",
            "prefetch_minus_off_ci_free_core": "",
            "prefetch_vs_off_free_core": "",
        },
    ),
    (
        "transfer_speed.py",
        [],
        {"finetune_frozen_bn_img_per_s": "", "finetune_train_bn_img_per_s": "", "quickstart_transfer_seconds": "<= 90"},
    ),
    ("scaling.py", [], {"paper_seconds_per_1000_steps": ""}),
    (
        "cli_startup.py",
        [],
        {"cli_help_over_python_seconds": "<= 0.5", "cli_help_seconds": "", "torch_import_seconds": ""},
    ),
    (
        "target_check.py",
        [],
        {
            "spearman_linear_vs_finetune": "",
            "spearman_finetune_reseeded": "",
            "finetune_check_seconds": "",
            "linear_check_seconds": "",
            "linear_vs_finetune_seconds": "",
        },
    ),
    (
        "quickstart.py",
        [],
        {
            "quickstart_seconds": "",
            "quickstart_stage_meta_train_seconds": "",
            "quickstart_stage_baselines_seconds": "",
            "quickstart_stage_transfer_seconds": "",
            "quickstart_stage_attention_seconds": "",
            "quickstart_stage_other_seconds": "",
        },
    ),
]
# On a CPU the cost curve uses 8 images per inner step instead of the paper's 64 (its ms_per_image column
# predicts the paper's batch); a GPU runs the paper's own.
CPU_ARGUMENTS = {"scaling.py": ["--batch", "8", "--steps", "4"]}


def machine() -> str:
    """A short description of where the figures were measured."""
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{platform.machine()}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}"


NOTES = """\
- `attention_above_flops` is the paper model's forward+backward time against resnet50's (median of the paired
  ratio over repeats) less the same ratio of arithmetic (`attention_flops_vs_resnet50`, FLOPs counted by
  `torch.utils.flop_counter`): what the attention blocks cost beyond their arithmetic. The blocks apply their
  1x1 projections as matrix products over the locations and pool with one batched product; a convolution with
  one output channel and a broadcast multiply-and-sum cost several times their arithmetic on a CPU. Its 95 %
  interval is in the JSON (`attention_above_flops_ci`): on a shared 2-core machine it is several hundredths
  wide, so a value within 0.01 of the target either way is not resolved. A value below 0 means the blocks'
  matrix products run faster per FLOP than the trunk's convolutions, not that the blocks are free.
- `reptile_vs_plain` is one Reptile meta-step against the same inner steps without Reptile (a new inner
  optimiser each time, as a new task gets): copying the meta weights into the model and one `lerp` toward the
  adapted weights, within the machine's noise. `reptile_vs_plain_ci` is the 95 % interval of the mean paired
  ratio over the repeats: where it holds the target, the target is not resolved either way.
- `meta_train_vs_model` is a whole meta-training run of the quickstart preset with its own schedule (start-up,
  sampler, Reptile's copies, logging, checkpoints, attention pictures, periodic target checks) against the same
  model's plain training steps at the same batch and image size, both with the inner optimiser (fused Adam).
  The plain steps are timed in bursts during the run (3 steps every 10 meta-steps, the pauses taken out of the
  run's time), so a slow spell of the machine slows both sides; `model_train_img_per_s_spread` is the slowest
  and the fastest burst.
  The periodic target check is training by design (`train.eval_steps` finetuning steps every `train.eval_every`
  meta-steps: 800 images per 16,000 for the quickstart), so `target_checks_share` of the run is spent on it;
  `meta_train_vs_model_without_checks` takes that time out, `meta_steps_vs_model` counts the meta-steps alone.
  The run's 200 meta-steps (one period of the check) read 16,000 images from the quickstart's 12,000, so most
  reads paint an image for the first time (`synthetic_img_per_s`, at 128 px; `synthetic_kept_img_per_s` once
  kept in memory). Where torch's threads use every CPU core (on 2 cores, say), `reptile.prefetch: auto` reads the
  batches in the training thread (`prefetch` in the JSON): a reading thread beside them slowed meta-training
  down. Over the whole 600-step quickstart the meta-training stage reads 48,000 images in
  `quickstart_stage_meta_train_seconds`, most of them read again. The `*_images_kept` rows are a second,
  identical run in the same process, which reads the images the first one painted (painted images are kept for
  the process): `meta_steps_vs_model_images_kept` is what Reptile's meta-steps cost beside their data.
- `prefetch_*` compare the meta-steps of paired quickstart runs (25 meta-steps each, images painted afresh, order
  alternating) with `reptile.prefetch: true` and `false`: the mean difference in seconds (on minus off) with its
  95 % t interval, and the ratio of the means; `*_free_core` runs torch on one thread fewer, so a core is free
  for the reading thread. An interval that holds 0 is not resolved. `auto` prefetches only where a core is free.
- `gpu_*` rows appear only when the runner has a CUDA device (`gpu_*`: bf16 autocast and channels_last;
  `gpu_fp32_*` in the JSON: fp32).
- `finetune_*_bn_img_per_s` are finetuning steps of the quickstart model (64 px, batch 16) with BatchNorm frozen
  (the start model's statistics) and in train mode, side by side. `quickstart_transfer_seconds` is the transfer
  part of the quickstart's final comparison: two start points with the preset's protocol (steps budget, draws,
  test images).
- `cli_help_seconds` is `python -m universal_attention --help` in a fresh interpreter (median of 7);
  `cli_help_over_python_seconds` is its cost beyond `python -c pass`, against `torch_import_seconds`, what every
  command paid before the command line loaded torch only in the commands that use it.
- `spearman_linear_vs_finetune` ranks a random init and the checkpoints of a 600-step quickstart run (every 100
  steps) by the periodic target check two ways, `train.eval_mode: finetune` (the default) and `linear` (the solved
  probe on frozen features); `spearman_finetune_reseeded` is the finetuning check against itself under another
  transfer seed, the bar the cheaper check has to meet before it can be the default. `*_check_seconds` are the
  medians of one check.
- `quickstart_seconds` and `quickstart_stage_*_seconds` are `uattn meta-train --preset quickstart` in a fresh
  interpreter, whole and by stage (`stage_seconds` of its `results.json`; `other`: start-up, the held-out source
  checks, writing the files).
- `paper_seconds_per_1000_steps` comes from the cost curve below: on a CPU, points at 8 images per inner step
  predict the paper's 64 by their time per image.
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


def shown(argument: str) -> str:
    """An argument as the report prints it: paths inside the repository relative to its root."""
    path = Path(argument)
    return str(path.relative_to(HERE.parent)) if path.is_absolute() and path.is_relative_to(HERE.parent) else argument


def cost_curve_section(result: dict, command: str, picture: Path) -> str:
    """The scaling benchmark's table and plot as a section of the report."""
    plot = f"\n![seconds per meta-step against each factor]({picture.name})\n" if result.get("plotted") else ""
    return (
        f"## Cost curve\n\nTime per meta-step and peak memory of the paper preset's model and Reptile settings, one "
        f"factor at a time around the paper's own point (`{command}`, {result['steps']} meta-steps per point, the "
        f"first not timed, batch {result['batch']}, on {result['device']}). A meta-step on other data costs what the "
        f"point of the same image size, meta-batch and taps costs here; at another batch, multiply ms per image by "
        f"the images of a step. Predicted time of 1,000 meta-steps of the paper preset: "
        f"**{result['paper_seconds_per_1000_steps']} s**.\n\n{result['table']}{plot}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "benchmarks.md")
    args = parser.parse_args()
    where = machine()
    rows, sections, everything = [], [], {}
    picture = args.out.with_name(args.out.stem + "-scaling.png")
    for script, arguments, figures in BENCHMARKS:
        if not torch.cuda.is_available():
            arguments = arguments + CPU_ARGUMENTS.get(script, [])
        if script == "scaling.py":
            arguments = arguments + ["--plot", str(picture)]
        result = run(script, arguments)
        everything[script] = result
        command = " ".join(["python", f"benchmarks/{script}", *map(shown, arguments)])
        for figure, target in figures.items():
            if result.get(figure) is not None:
                rows.append(
                    f"| {figure} | {result[figure]} | {target or '-'} | {meets(result[figure], target)} "
                    f"| `{command}` | {where} |"
                )
        if script == "scaling.py" and "table" in result:
            sections.append(cost_curve_section(result, command, picture))
    table = "\n".join(["| figure | value | target | met | command | machine |", "|---|---|---|---|---|---|", *rows])
    atomic_write_bytes(
        args.out,
        (
            "# Benchmarks\n\nMeasured by `python benchmarks/run_all.py`, which runs every script in `benchmarks/` and "
            "writes this file. Ratios are measured side by side in one run; absolute speeds depend on what else the "
            "machine is doing.\n\n" + table + "\n\n" + NOTES + "\n" + "".join(sections)
        ).encode(),
    )
    print(json.dumps(everything))


if __name__ == "__main__":
    main()
