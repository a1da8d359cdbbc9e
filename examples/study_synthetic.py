"""The synthetic study with its controls: does meta-learned attention recover part of what knowing *where* is
worth, and does Reptile beat joint training at an equal budget?

Start points, trained per seed from the same initial weights (``train.seed`` = seed) on the four source tasks
of the synthetic family, with the same images and steps:

- ``reptile``: Reptile with persistent heads (the original experiment's protocol, a dataset is a task);
- ``reptile_reset``: Reptile with a fresh head and shuffled labels for every task (the Reptile paper's);
- ``joint``: joint training, one optimiser step per batch (``reptile.algorithm: joint``);
- ``supervised``: ``reptile`` with attention told where (``train.attention_supervision: 1``): the positive
  control, what meta-learned *where* could give at best at this budget;
- ``reptile_replicate``: ``reptile`` with the trunk's convolutions padding by repeating edge pixels
  (``model.padding: replicate``) instead of zeros: does zero padding draw the maps to the image frame?
- ``random``: the initial weights, untrained.

Every trained start point's held-out source check (top-1 and attention per source, from ``meta_train``) is
kept too: a start point that has not learned its sources cannot have learned where they are.

Each is measured on the held-out targets (orientation, glyph, hue) with the few-shot protocol:

- linear probes at 1 / 5 / 20 shots per class, ``--draws`` shot draws per seed, 1,000 test images, with the
  attention controls ``learned``, ``uniform`` and ``oracle`` side by side: paired differences between start
  points and the oracle fraction (learned - uniform) / (oracle - uniform), each with a 95 % interval;
- finetuning (``--finetune-steps`` optimiser steps, learned attention) at ``--finetune-shots`` on the first
  target, one draw per seed: the costly protocol on a subset;
- attention on the target's objects before any transfer: mass in the mask relative to its area per tap
  (uniform = 1), share on the image frame;
- the object-removed control: a probe on the first target drawn without its objects must score chance;
- zeros against replicate padding: the share of attention on the image frame, paired by seed.

Writes ``<out>/study.json`` (every run and every summary), ``<out>/summary.md`` (the tables) and the chart
``<out>/accuracy_vs_shots.png`` (``--chart-format svg`` or ``pdf`` for a vector file; drawn with matplotlib by
the library's report figures, the ``report`` extra: ``pip install "universal-attention[report]"``). The last
line printed is one JSON object with the headline figures.

Run: python examples/study_synthetic.py --out docs/study [--seeds 3] [--draws 3] [--steps 120] [--set KEY=VALUE]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from universal_attention import (
    AttentionResNet50,
    TransferConfig,
    UattnError,
    evaluate_attention,
    load_checkpoint,
    load_config,
    meta_train,
    transfer_evaluate,
)
from universal_attention.atomic import atomic_write_bytes
from universal_attention.errors import ConfigError
from universal_attention.reports import figures
from universal_attention.reports.tables import cell_text, delta_text
from universal_attention.transfer.report import transfer_report
from universal_attention.transfer.results import TransferResult, merge_results
from universal_attention.transfer.stats import mean_ci

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STARTS = ("reptile", "reptile_reset", "joint", "supervised", "reptile_replicate", "random")
START_OVERRIDES = {
    "reptile": ["reptile.heads=persistent"],
    "reptile_reset": ["reptile.heads=reset"],
    "joint": ["reptile.algorithm=joint"],
    "supervised": ["reptile.heads=persistent", "train.attention_supervision=1.0"],
    "reptile_replicate": ["reptile.heads=persistent", "model.padding=replicate"],
    "random": [],
}
TRAINED = STARTS[:-1]
CONTROLS = ("learned", "uniform", "oracle")
MEASURES = ("relative_to_area", "frame_share", "pointing_game")
COLOURS = {
    "reptile": "#c82828",
    "reptile_reset": "#e68c14",
    "joint": "#285ac8",
    "supervised": "#2a9d4b",
    "reptile_replicate": "#9b4dca",
    "random": "#6e6e6e",
}
PAIRS = (
    ("reptile", "joint"),
    ("reptile_reset", "joint"),
    ("reptile", "random"),
    ("reptile_reset", "random"),
    ("joint", "random"),
    ("supervised", "random"),
)
"""The paired top-1 differences the summary shows (every start point is compared with joint and random)."""
CHART_FORMATS = ("png", "svg", "pdf")


def build_start(name: str, config, seed: int, folder: Path) -> tuple[AttentionResNet50, dict]:
    """Train (or, for ``random``, just initialise) one start point from the seed's initial weights; with it, the
    run's held-out source check (``{}`` for ``random``)."""
    run = load_config(base=config, overrides=[*START_OVERRIDES[name], f"train.seed={seed}", f"sampler.seed={seed}"])
    if name == "random":
        torch.manual_seed(seed)  # as meta_train does just before it builds the model: the same initial weights
        return AttentionResNet50(run.model), {}
    result = meta_train(run, folder / f"{name}-{seed}", on_message=lambda text: None)
    return load_checkpoint(folder / f"{name}-{seed}").model, result.comparison.get("sources", {})


def measure(name: str, model: AttentionResNet50, config, seed: int, args) -> dict:
    """Every measurement of one start point and seed: probes with controls, finetuning, attention, control."""
    size = config.data.image_size
    probe = TransferConfig(
        mode="linear",
        shots_per_class=args.shots,
        seed=seed,
        draws=args.draws,
        attention=CONTROLS,
        max_test_images=args.test_images,
        image_size=size,
    )
    finetune = config.transfer.updated(
        steps=args.finetune_steps,
        shots_per_class=(args.finetune_shots,),
        seed=seed,
        draws=1,
        attention=("learned",),
        max_test_images=args.test_images,
        image_size=config.transfer.image_size or size,
    )
    removed = TransferConfig(
        mode="linear",
        shots_per_class=(max(args.shots),),
        seed=seed,
        remove_object=True,
        max_test_images=args.test_images,
        image_size=size,
    )
    first = args.targets[0]
    measured = {
        "probe": {target: transfer_evaluate(model, target, probe, label=name) for target in args.targets},
        "finetune": transfer_evaluate(model, first, finetune, label=name),
        "removed": transfer_evaluate(model, first, removed, label=name),
    }
    report = evaluate_attention(model, first, limit=args.attention_images, image_size=size, baselines=())
    measured["attention"] = {
        layer: {measure_name: getattr(scores, measure_name) for measure_name in MEASURES}
        for layer, scores in report.starts["model"].layers.items()
    }
    return measured


def interval_text(summary: list) -> str:
    """``mean ± std [low, high]`` of a :func:`mean_ci` triple."""
    mean, std, (low, high) = summary
    return f"{mean:.2f} ± {std:.2f} [{low:.2f}, {high:.2f}]"


def summary_markdown(
    reports: dict, finetune: dict, removed: dict, attention: dict, sources: dict, padding: dict, shots: list
) -> str:
    """The study's tables (see the module docstring)."""
    lines = ["## Linear probe, learned attention: top-1 mean ± sample std [95 % CI]", ""]
    for target, report in reports.items():
        lines += [
            f"### {target}",
            "",
            "| start | " + " | ".join(f"{s} shots" for s in shots) + " |",
            "|---|" + "---|" * len(shots),
        ]
        for start in STARTS:
            cells = {c["shots"]: c for c in report["cells"] if c["start"] == start and c["attention"] == "learned"}
            lines.append(f"| {start} | " + " | ".join(cell_text(cells[s]) for s in shots) + " |")
        lines.append("")
    lines += [
        "## Paired differences in top-1 (learned attention, linear probe) [95 % bootstrap CI]; * resolved",
        "",
        "| target | shots | " + " | ".join(f"{a} - {b}" for a, b in PAIRS) + " |",
        "|---|---|" + "---|" * len(PAIRS),
    ]
    for target, report in reports.items():
        deltas = {
            (c["start"], c["baseline"], c["shots"]): c for c in report["comparisons"] if c["attention"] == "learned"
        }
        for s in shots:
            lines.append(f"| {target} | {s} | " + " | ".join(delta_text(deltas[(a, b, s)]) for a, b in PAIRS) + " |")
    lines += [
        "",
        "## Attention controls at the largest shots: top-1 per control and the oracle fraction",
        "",
        "| target | start | learned | uniform | oracle | oracle fraction [95 % CI] |",
        "|---|---|---|---|---|---|",
    ]
    for target, report in reports.items():
        top = max(shots)
        for start in STARTS:
            cells = {c["attention"]: c for c in report["cells"] if c["start"] == start and c["shots"] == top}
            fraction = next(f for f in report["oracle_fraction"] if f["start"] == start and f["shots"] == top)
            low, high = fraction["ci"]
            lines.append(
                f"| {target} | {start} | "
                + " | ".join(f"{cells[c]['top1']:.3f}" for c in CONTROLS)
                + f" | {fraction['fraction']:.2f} [{low:.2f}, {high:.2f}] |"
            )
    lines += [
        "",
        "## Finetuning (learned attention): top-1 mean ± sample std [95 % CI]",
        "",
        "| start | top-1 | train top-1 | vs joint | vs random |",
        "|---|---|---|---|---|",
    ]
    deltas = {(c["start"], c["baseline"]): c for c in finetune["comparisons"]}
    for start in STARTS:
        cell = next(c for c in finetune["cells"] if c["start"] == start)
        against = [delta_text(deltas[(start, b)]) if (start, b) in deltas else "-" for b in ("joint", "random")]
        lines.append(f"| {start} | {cell_text(cell)} | {cell['train_top1']:.3f} | " + " | ".join(against) + " |")
    lines += [
        "",
        "## Object-removed control (linear probe, the first target drawn without its objects)",
        "",
        "| start | top-1 [95 % CI] |",
        "|---|---|",
    ]
    for start in STARTS:
        lines.append(f"| {start} | {cell_text(removed[start])} |")
    layers = list(attention[STARTS[0]])
    lines += [
        "",
        "## Attention on the first target's objects before transfer: mean ± sample std [95 % CI] over seeds",
        "",
        "| start | measure | " + " | ".join(layers) + " |",
        "|---|---|" + "---|" * len(layers),
    ]
    for measure_name in ("relative_to_area", "frame_share"):
        for start in STARTS:
            cells = [interval_text(attention[start][layer][measure_name]) for layer in layers]
            lines.append(f"| {start} | {measure_name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Frame share, zero against replicate padding (reptile): paired by seed, mean [95 % CI]; * resolved",
        "",
        "| tap | zeros | replicate | replicate - zeros |",
        "|---|---|---|---|",
    ]
    for layer, entry in padding.items():
        low, high = entry["ci"]
        resolved = "" if low <= 0 <= high else " *"
        lines.append(
            f"| {layer} | {entry['zeros']:.2f} | {entry['replicate']:.2f} | "
            f"{entry['delta']:+.2f} [{low:+.2f}, {high:+.2f}]{resolved} |"
        )
    names = list(sources[TRAINED[0]])
    source_layers = list(sources[TRAINED[0]][names[0]]["relative_to_area"]) if names else []
    lines += [
        "",
        "## Held-out source images after meta-training: top-1, and relative_to_area per tap (mean ± std)",
        "",
        "| start | source | top-1 | " + " | ".join(source_layers) + " |",
        "|---|---|---|" + "---|" * len(source_layers),
    ]
    for start in TRAINED:
        for name in names:
            entry = sources[start][name]
            areas = [
                f"{entry['relative_to_area'][layer][0]:.2f} ± {entry['relative_to_area'][layer][1]:.2f}"
                for layer in source_layers
            ]
            top1 = f"{entry['top1'][0]:.3f} ± {entry['top1'][1]:.3f}"
            lines.append(f"| {start} | {name} | {top1} | " + " | ".join(areas) + " |")
    return "\n".join(lines) + "\n"


def summarise_attention(attention: dict) -> dict:
    """Per start point, tap and measure: :func:`mean_ci` over seeds of the target attention scores."""
    return {
        s: {layer: {m: mean_ci([seed[layer][m] for seed in runs]) for m in MEASURES} for layer in runs[0]}
        for s, runs in attention.items()
    }


def summarise_sources(sources: dict) -> dict:
    """Per trained start point and source: :func:`mean_ci` over seeds of top-1 and of relative_to_area per tap."""
    summary: dict = {}
    for start in TRAINED:
        runs = sources[start]
        summary[start] = {
            name: {
                "top1": mean_ci([run[name]["top1"] for run in runs]),
                "relative_to_area": {
                    layer: mean_ci([run[name]["attention"]["relative_to_area"][layer] for run in runs])
                    for layer in runs[0][name]["attention"]["relative_to_area"]
                },
            }
            for name in (runs[0] if runs else {})
        }
    return summary


def padding_comparison(attention: dict) -> dict:
    """Frame share per tap of ``reptile`` (zero padding) and ``reptile_replicate``, the difference paired by seed."""
    comparison = {}
    for layer in attention["reptile"][0]:
        zeros = [seed[layer]["frame_share"] for seed in attention["reptile"]]
        replicate = [seed[layer]["frame_share"] for seed in attention["reptile_replicate"]]
        mean, _, ci = mean_ci([b - a for a, b in zip(zeros, replicate)])
        comparison[layer] = {
            "zeros": statistics.fmean(zeros),
            "replicate": statistics.fmean(replicate),
            "delta": mean,
            "ci": ci,
        }
    return comparison


def figure_class() -> type[Figure]:
    """matplotlib's ``Figure``, or exit with one line that names the extra installing it."""
    try:
        return figures.figure_class()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def chart(reports: dict, shots: list, chance: float) -> Figure:
    """Top-1 (learned attention, linear probe) vs shots per class with 95 % CI error bars, one panel per target
    (:func:`universal_attention.reports.figures.shots_figure`, as every transfer's report draws it)."""
    panels = {
        target: [c for c in report["cells"] if c["attention"] == "learned" and c["shots"] in shots]
        for target, report in reports.items()
    }
    return figures.shots_figure(
        panels, starts=STARTS, colours=COLOURS, chance=chance, ylabel="top-1, linear probe [95 % CI]"
    )


def plot(reports: dict, shots: list, chance: float, path: Path, chart_format: str = "png") -> None:
    """Write :func:`chart` to ``path`` as ``chart_format`` (png, svg or pdf)."""
    buffer = io.BytesIO()
    chart(reports, shots, chance).savefig(buffer, format=chart_format, dpi=150)
    atomic_write_bytes(path, buffer.getvalue())


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("study"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--draws", type=int, default=3, help="shot draws per seed")
    parser.add_argument("--steps", type=int, default=120, help="meta-steps of every trained start point")
    parser.add_argument("--shots", default="1,5,20", help="shots per class of the probes, comma-separated")
    parser.add_argument("--targets", default="orientation,glyph,hue", help="held-out synthetic tasks")
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--attention-images", type=int, default=200)
    parser.add_argument("--finetune-steps", type=int, default=100)
    parser.add_argument("--finetune-shots", type=int, default=20)
    parser.add_argument("--chart-format", choices=CHART_FORMATS, default="png", help="file format of the chart")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override on top of the quickstart preset, e.g. data.image_size=32",
    )
    args = parser.parse_args()
    args.shots = [int(value) for value in args.shots.split(",")]
    args.targets = [f"synthetic/{name}" for name in args.targets.split(",")]
    return args


def main() -> None:
    args = parse_arguments()
    figure_class()  # a missing chart extra stops the study now, not after it has run
    begin = time.perf_counter()
    try:
        config = load_config(
            preset="quickstart",
            overrides=[
                f"train.max_steps={args.steps}",
                "train.eval_every=0",
                "train.image_log_every=0",
                "train.final_comparison=false",
                f"train.checkpoint_every={args.steps}",
                *args.overrides,
            ],
        )
    except UattnError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    args.out.mkdir(parents=True, exist_ok=True)
    probes: dict[str, dict[str, list[TransferResult]]] = {t: {s: [] for s in STARTS} for t in args.targets}
    finetunes: dict[str, list[TransferResult]] = {s: [] for s in STARTS}
    removed: dict[str, list[TransferResult]] = {s: [] for s in STARTS}
    attention: dict[str, list[dict]] = {s: [] for s in STARTS}
    sources: dict[str, list[dict]] = {s: [] for s in TRAINED}
    seconds: dict[str, list[float]] = {s: [] for s in STARTS}
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.seeds):
            for start in STARTS:
                clock = time.perf_counter()
                model, checked = build_start(start, config, seed, Path(folder))
                trained = time.perf_counter() - clock
                if start in sources:
                    sources[start].append(checked)
                measured = measure(start, model, config, seed, args)
                for target in args.targets:
                    probes[target][start].append(measured["probe"][target])
                finetunes[start].append(measured["finetune"])
                removed[start].append(measured["removed"])
                attention[start].append(measured["attention"])
                seconds[start].append(time.perf_counter() - clock)
                print(
                    f"seed {seed} {start}: trained in {trained:.0f} s, measured in "
                    f"{seconds[start][-1] - trained:.0f} s",
                    flush=True,
                )
    baselines = ["joint", "random"]
    reports = {
        target: transfer_report([merge_results(probes[target][s]) for s in STARTS], baselines)
        for target in args.targets
    }
    finetune_report = transfer_report([merge_results(finetunes[s]) for s in STARTS], baselines)
    removed_cells = {s: transfer_report([merge_results(removed[s])])["cells"][0] for s in STARTS}
    attention_summary = summarise_attention(attention)
    sources_summary = summarise_sources(sources)
    padding = padding_comparison(attention)
    atomic_write_bytes(
        args.out / "summary.md",
        summary_markdown(
            reports, finetune_report, removed_cells, attention_summary, sources_summary, padding, args.shots
        ).encode(),
    )
    plot(reports, args.shots, 0.25, args.out / f"accuracy_vs_shots.{args.chart_format}", args.chart_format)
    wall = time.perf_counter() - begin
    headline = {
        "oracle_fraction": {
            t: [f for f in r["oracle_fraction"] if f["start"] in ("reptile", "reptile_reset")]
            for t, r in reports.items()
        },
        "reptile_vs_joint": {
            t: [
                c
                for c in r["comparisons"]
                if c["attention"] == "learned" and c["baseline"] == "joint" and c["start"] != "random"
            ]
            for t, r in reports.items()
        },
        "relative_to_area": {
            s: {layer: attention_summary[s][layer]["relative_to_area"] for layer in attention_summary[s]}
            for s in STARTS
        },
        "sources_top1": {s: {name: entry["top1"] for name, entry in sources_summary[s].items()} for s in TRAINED},
    }
    atomic_write_bytes(
        args.out / "study.json",
        json.dumps(
            {
                "probe": reports,
                "finetune": finetune_report,
                "object_removed": removed_cells,
                "attention": {s: attention[s] for s in STARTS},
                "attention_summary": attention_summary,
                "sources": {s: sources[s] for s in TRAINED},
                "sources_summary": sources_summary,
                "padding": padding,
                "headline": headline,
                "seconds_per_start": {s: statistics.fmean(v) for s, v in seconds.items()},
                "wall_seconds": wall,
                "arguments": {k: (v if not isinstance(v, Path) else str(v)) for k, v in vars(args).items()},
                "config": config.to_dict(),
            },
            indent=2,
        ).encode(),
    )
    print(json.dumps({"wall_seconds": round(wall), **headline}))


if __name__ == "__main__":
    main()
