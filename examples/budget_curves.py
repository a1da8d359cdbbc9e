"""Learning curves of meta-train runs: held-out source top-1 and attention on the object against meta-steps.

Reads only the run folders' ``metrics.jsonl`` (the ``sources/<name>/...`` scalars of the periodic checks,
``train.eval_every``) and draws one row per run: source top-1 (one line per source, the 0.9 goal dashed) and
relative_to_area per tap (the attention mass on the object over the object's area, averaged over the sources;
1 is uniform). For each run it reports the first checked step at which every source reached the goal, and the
wall time to that step.

Run: python examples/budget_curves.py --run resnet10=runs/r10 --run resnet18=runs/r18 --out docs/budget_curves.png
Last line: one JSON object {label: {"steps": .., "seconds": .., "first_step_all_sources_at_goal": .., ...}}.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from universal_attention.runs.loggers import read_metrics


def source_curves(folder: Path) -> dict[str, dict[str, dict[int, float]]]:
    """``{source: {measure: {step: value}}}`` from a run's periodic source checks; measure is ``top1`` or
    ``relative_to_area/<tap>``."""
    curves: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for record in read_metrics(folder):
        tag = record["tag"]
        if not tag.startswith("sources/"):
            continue
        parts = tag.split("/")  # sources / synthetic / colour / top1  or  ... / relative_to_area / tap
        if parts[-1] == "top1":
            curves["/".join(parts[1:-1])]["top1"][record["step"]] = record["value"]
        elif parts[-2] == "relative_to_area":
            curves["/".join(parts[1:-2])][f"relative_to_area/{parts[-1]}"][record["step"]] = record["value"]
    return curves


def first_step_at_goal(curves: dict[str, dict[str, dict[int, float]]], goal: float) -> int | None:
    """The first checked step at which every source's top-1 is at least ``goal`` (None if never)."""
    steps = sorted(set.intersection(*(set(measures["top1"]) for measures in curves.values())))
    return next((step for step in steps if all(m["top1"][step] >= goal for m in curves.values())), None)


def seconds_at(folder: Path) -> dict[int, float]:
    """Wall time since the first logged record, at every logged step."""
    records = read_metrics(folder)
    begin = min(record["wall_time"] for record in records)
    times: dict[int, float] = {}
    for record in records:
        times[record["step"]] = max(times.get(record["step"], 0.0), record["wall_time"] - begin)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=FOLDER")
    parser.add_argument("--goal", type=float, default=0.9)
    parser.add_argument("--out", type=Path, help="PNG of the curves (needs matplotlib, the study extra)")
    args = parser.parse_args()
    runs = {label: Path(folder) for label, folder in (text.split("=", 1) for text in args.run)}
    figures: dict[str, dict] = {}
    all_curves = {}
    for label, folder in runs.items():
        curves = source_curves(folder)
        if not curves:
            raise SystemExit(f"error: {folder} has no source checks in metrics.jsonl (set train.eval_every)")
        all_curves[label] = curves
        times = seconds_at(folder)
        first = first_step_at_goal(curves, args.goal)
        last = max(max(m["top1"]) for m in curves.values())
        figures[label] = {
            "steps": last,
            "seconds": times.get(last),
            "first_step_all_sources_at_goal": first,
            "seconds_to_goal": None if first is None else times.get(first),
            "final_top1": {source: m["top1"][max(m["top1"])] for source, m in curves.items()},
            "final_relative_to_area": {
                key.split("/", 1)[1]: sum(m[key][max(m[key])] for m in curves.values()) / len(curves)
                for key in next(iter(curves.values()))
                if key.startswith("relative_to_area/")
            },
        }
        print(f"{label}: {json.dumps(figures[label])}", flush=True)
    if args.out is not None:
        draw(all_curves, args.goal, args.out)
    print(json.dumps(figures))


def draw(all_curves: dict[str, dict[str, dict[str, dict[int, float]]]], goal: float, out: Path) -> None:
    """One row per run: source top-1 on the left, mean relative_to_area per tap on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(all_curves), 2, figsize=(11, 3.4 * len(all_curves)), squeeze=False)
    for row, (label, curves) in enumerate(all_curves.items()):
        accuracy, attention = axes[row]
        for source, measures in curves.items():
            steps = sorted(measures["top1"])
            accuracy.plot(steps, [measures["top1"][s] for s in steps], marker="o", label=source.split("/")[-1])
        accuracy.axhline(goal, linestyle="--", color="grey", linewidth=1)
        accuracy.set(title=f"{label}: held-out source top-1", xlabel="meta-step", ylim=(0, 1.02))
        accuracy.legend(fontsize=8)
        taps = [key for key in next(iter(curves.values())) if key.startswith("relative_to_area/")]
        for key in taps:
            steps = sorted(next(iter(curves.values()))[key])
            mean = [sum(m[key][s] for m in curves.values()) / len(curves) for s in steps]
            attention.plot(steps, mean, marker="o", label=key.split("/", 1)[1])
        attention.axhline(1.0, linestyle="--", color="grey", linewidth=1)
        attention.set(title=f"{label}: mass on object / area (1 = uniform)", xlabel="meta-step")
        attention.legend(fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
