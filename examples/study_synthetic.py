"""The synthetic study: does meta-learned attention help learn a new task? Reptile vs joint training vs scratch.

Three start points with the same budget, on the built-in synthetic tasks (five source tasks; held-out
target ``orientation``), for several seeds:

- ``reptile``: ``meta_train`` with the quickstart settings for ``--steps`` meta-steps;
- ``joint``: the same model trained on the same source tasks, one plain Adam step per batch, for exactly as
  many images (steps x inner steps x batch) — the obvious alternative;
- ``random``: the untrained network.

Each start point is transferred to the target at 1, 5, 20 and 80 shots per class (finetune and linear probe), and its
attention on the target's objects is measured before any finetuning (pointing game, mass in mask / area).
All three start from the same initial weights for a given seed (paired comparison).
Writes ``<out>/study.json``, ``<out>/summary.md`` (tables), ``<out>/accuracy_vs_shots.png`` and
``<out>/attention_grid.png``.

Run: python examples/study_synthetic.py --out docs/study [--seeds 3] [--steps 200] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from universal_attention import (AttentionResNet50, TaskSampler, UattnError, evaluate_attention, load_checkpoint,
                                 load_config, transfer_evaluate)
from universal_attention.atomic import atomic_write_bytes
from universal_attention.data import get_dataset
from universal_attention.meta_train import meta_train
from universal_attention.visualize import attention_grid, attention_maps

MODES = ("finetune", "linear")
STARTS = ("reptile", "joint", "random")
COLOURS = {"reptile": (200, 40, 40), "joint": (40, 90, 200), "random": (110, 110, 110)}


def reptile_start(config, seed: int, folder: Path) -> AttentionResNet50:
    """Meta-train with Reptile from the seed's initialisation."""
    run = config.model_copy(update={"train": config.train.model_copy(update={"seed": seed}),
                                    "sampler": config.sampler.model_copy(update={"seed": seed})})
    meta_train(run, folder / f"reptile-{seed}", on_message=lambda text: None)
    return load_checkpoint(folder / f"reptile-{seed}").model


def joint_start(config, seed: int) -> AttentionResNet50:
    """Multi-task training on the same source tasks and the same number of images as Reptile sees."""
    sources = {name: get_dataset(name, image_size=config.data.image_size) for name in config.data.sources}
    torch.manual_seed(seed)  # as meta_train does just before building the model: the same initial weights
    model = AttentionResNet50(config.model)
    for name, dataset in sources.items():
        model.add_head(name, len(dataset.classes))
    sampler = TaskSampler(sources, config.sampler.model_copy(update={"seed": seed}))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.reptile.inner_lr, betas=(0.0, 0.999))
    model.train()
    for _ in range(config.train.max_steps * config.reptile.meta_batch_size):
        task = sampler.sample(1)[0]
        for images, labels in itertools.islice(task.batches, config.reptile.inner_steps):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(images, task.name).logits, labels).backward()
            optimizer.step()
    return model


def random_start(config, seed: int) -> AttentionResNet50:
    """The untrained network, with the same initial weights as the other two start points."""
    torch.manual_seed(seed)
    return AttentionResNet50(config.model)


def source_images(config) -> int:
    """Images of the source tasks one start point trains on: steps x tasks per step x inner steps x batch."""
    return (config.train.max_steps * config.reptile.meta_batch_size * config.reptile.inner_steps
            * config.sampler.batch_size)


def measure(model: AttentionResNet50, config, seed: int) -> dict:
    """Transfer at every shots setting and mode, and attention on the target's objects."""
    target = config.data.target
    results = {}
    for mode in MODES:
        transfer = config.transfer.model_copy(update={"mode": mode, "seed": seed})
        outcome = transfer_evaluate(model, target, transfer, image_size=config.data.image_size)
        results[mode] = {str(cell.shots): cell.top1 for cell in outcome.cells}
    report = evaluate_attention(model, target, limit=config.transfer.max_test_images,
                                image_size=config.data.image_size, baselines=())
    results["attention"] = report.to_dict()
    return results


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation."""
    return statistics.fmean(values), statistics.pstdev(values)


def summarise(runs: dict) -> dict:
    """Mean and std over seeds of every number, per start point: top-1 per mode and shots, attention per tap."""
    summary = {}
    for start, seeds in runs.items():
        entry = {mode: {shots: mean_std([seed[mode][shots] for seed in seeds]) for shots in seeds[0][mode]}
                 for mode in MODES}
        layers = [seed["attention"]["starts"]["model"]["layers"] for seed in seeds]
        entry["attention"] = {name: {measure: mean_std([layer[name][measure] for layer in layers])
                                     for measure in ("pointing_game", "relative_to_area")}
                              for name in layers[0]}
        summary[start] = entry
    return summary


def summary_markdown(summary: dict) -> str:
    """Markdown tables of the summary: top-1 per mode and shots, then attention per tap (mean +/- std)."""
    shots = list(summary[STARTS[0]][MODES[0]])
    lines = ["| start | mode | " + " | ".join(f"{label} shots" for label in shots) + " |",
             "|---|---|" + "---|" * len(shots)]
    for mode in MODES:
        for start in STARTS:
            cells = [f"{mean:.3f} ± {std:.3f}" for mean, std in (summary[start][mode][label] for label in shots)]
            lines.append(f"| {start} | {mode} | " + " | ".join(cells) + " |")
    layers = list(summary[STARTS[0]]["attention"])
    lines += ["", "| start | measure | " + " | ".join(layers) + " |", "|---|---|" + "---|" * len(layers)]
    for measure in ("pointing_game", "relative_to_area"):
        for start in STARTS:
            cells = [f"{mean:.2f} ± {std:.2f}"
                     for mean, std in (summary[start]["attention"][layer][measure] for layer in layers)]
            lines.append(f"| {start} | {measure} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, chance: float, path: Path) -> None:
    """Top-1 vs shots per class, one line per start point with +/- std bars, one panel per mode (PIL only).

    A dotted grey line marks chance (``1 / classes``).
    """
    width, height, margin, top = 360, 260, 40, 25
    shots = list(summary[STARTS[0]][MODES[0]])
    picture = Image.new("RGB", (width * len(MODES), height + 30), "white")
    draw = ImageDraw.Draw(picture)

    def to_y(value: float) -> float:
        return height - margin - value * (height - margin - top)

    for panel, mode in enumerate(MODES):
        left = panel * width + margin
        step = (width - 2 * margin) / max(1, len(shots) - 1)
        draw.text((left, 5), f"{mode}: top-1 vs shots per class", fill="black")
        draw.line([(left, height - margin), (left + width - 2 * margin, height - margin)], fill="black")
        draw.line([(left, top), (left, height - margin)], fill="black")
        for tick in (0.25, 0.5, 0.75, 1.0):
            draw.text((left - 30, to_y(tick) - 6), f"{tick:.2f}", fill="black")
        for x in range(left, left + width - 2 * margin, 6):
            draw.line([(x, to_y(chance)), (x + 2, to_y(chance))], fill=(160, 160, 160))
        for index, label in enumerate(shots):
            draw.text((left + index * step - 4, height - margin + 4), label, fill="black")
        for row, start in enumerate(STARTS):
            colour = COLOURS[start]
            offset = (row - 1) * 4  # keep the error bars of the three lines apart
            points = []
            for index, label in enumerate(shots):
                mean, std = summary[start][mode][label]
                x = left + index * step + offset
                draw.line([(x, to_y(mean - std)), (x, to_y(mean + std))], fill=colour)
                points.append((x, to_y(mean)))
            draw.line(points, fill=colour, width=2)
            for x, y in points:
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
            draw.text((left + 10 + row * 90, height + 12), start, fill=colour)
    save_png(picture, path)


def save_png(picture: Image.Image, path: Path) -> None:
    """Write a picture as PNG, atomically."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def overlay_grid(models: dict, config, path: Path) -> None:
    """Target images with each start point's attention (rows: start points)."""
    dataset = get_dataset(config.data.target, "test", image_size=config.data.image_size)
    images = torch.stack([dataset[index][0] for index in range(3)])
    rows = []
    for start, model in models.items():
        captions = [f"{start}: {dataset.classes[int(dataset[index][1])]}" for index in range(len(images))]
        rows.append(attention_grid(images, attention_maps(model, images, layers=[*model.config.taps, "combined"]),
                                   captions=captions, cell_size=112, title=start))
    canvas = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    top = 0
    for row in rows:
        canvas.paste(row, (0, top))
        top += row.height
    save_png(canvas, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("study"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200, help="meta-steps (the quickstart's 200 by default)")
    parser.add_argument("--shots", default="1,5,20,80", help="shots per class for transfer, comma-separated")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override on top of the quickstart preset, e.g. data.image_size=32")
    args = parser.parse_args()
    begin = time.perf_counter()
    try:
        config = load_config(preset="quickstart", overrides=[
            f"train.max_steps={args.steps}", "train.eval_every=0", "train.image_log_every=0",
            "train.final_comparison=false", f"train.checkpoint_every={args.steps}", "transfer.steps=100",
            "transfer.draws=1", "transfer.max_test_images=200", f"transfer.shots_per_class=[{args.shots}]", *args.overrides,
        ])
    except UattnError as error:
        parser.error(str(error))
    args.out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {start: [] for start in STARTS}
    train_seconds: dict[str, list[float]] = {start: [] for start in STARTS}
    last_models = {}
    builders = {"reptile": lambda seed, folder: reptile_start(config, seed, folder),
                "joint": lambda seed, folder: joint_start(config, seed),
                "random": lambda seed, folder: random_start(config, seed)}
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.seeds):
            models = {}
            for start, build in builders.items():
                clock = time.perf_counter()
                models[start] = build(seed, Path(folder))
                train_seconds[start].append(time.perf_counter() - clock)
                runs[start].append(measure(models[start], config, seed))
                print(f"seed {seed} {start} ({time.perf_counter() - clock:.0f} s): finetune "
                      f"{runs[start][-1]['finetune']} linear {runs[start][-1]['linear']}", flush=True)
            last_models = models
    summary = summarise(runs)
    chance = 1 / len(get_dataset(config.data.target, "test", image_size=config.data.image_size).classes)
    plot(summary, chance, args.out / "accuracy_vs_shots.png")
    overlay_grid(last_models, config, args.out / "attention_grid.png")
    atomic_write_bytes(args.out / "summary.md", summary_markdown(summary).encode())
    wall = time.perf_counter() - begin
    atomic_write_bytes(args.out / "study.json", json.dumps({
        "summary": summary, "runs": runs, "seeds": args.seeds, "steps": args.steps,
        "source_images": {"reptile": source_images(config), "joint": source_images(config), "random": 0},
        "train_seconds": train_seconds, "wall_seconds": wall, "config": config.to_dict(),
    }, indent=2).encode())
    print(json.dumps({"wall_seconds": round(wall), "summary": {
        start: {mode: summary[start][mode] for mode in MODES} for start in STARTS}}))


if __name__ == "__main__":
    main()
