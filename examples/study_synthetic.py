"""The synthetic study: does meta-learned attention help learn a new task? Reptile vs joint training vs scratch.

Three start points with the same budget, on the built-in synthetic tasks (five source tasks; held-out
target ``orientation``), for several seeds:

- ``reptile``: ``meta_train`` with the quickstart settings for ``--steps`` meta-steps;
- ``joint``: the same model trained on the same source tasks, one plain Adam step per batch, for exactly as
  many images (steps x inner steps x batch) — the obvious alternative;
- ``random``: the untrained network.

Each start point is transferred to the target at 1, 5 and 20 shots per class (finetune and linear probe), and its
attention on the target's objects is measured before any finetuning (pointing game, mass in mask / area).
Writes ``<out>/study.json``, ``<out>/accuracy_vs_shots.png`` and ``<out>/attention_grid.png``.

Run: python examples/study_synthetic.py --out docs/study [--seeds 3] [--steps 120]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from universal_attention import AttentionResNet50, TaskSampler, evaluate_attention, load_config, transfer_evaluate
from universal_attention.data import get_dataset
from universal_attention.meta_train import meta_train
from universal_attention.visualize import attention_grid, attention_maps

SHOTS = (1, 5, 20)
MODES = ("finetune", "linear")
STARTS = ("reptile", "joint", "random")
COLOURS = {"reptile": (200, 40, 40), "joint": (40, 90, 200), "random": (110, 110, 110)}


def reptile_start(config, seed: int, folder: Path) -> AttentionResNet50:
    """Meta-train with Reptile from the seed's initialisation."""
    run = config.model_copy(update={"train": config.train.model_copy(update={"seed": seed}),
                                    "sampler": config.sampler.model_copy(update={"seed": seed})})
    meta_train(run, folder / f"reptile-{seed}", on_message=lambda text: None)
    from universal_attention import load_checkpoint

    return load_checkpoint(folder / f"reptile-{seed}").model


def joint_start(config, seed: int) -> AttentionResNet50:
    """Multi-task training on the same source tasks and the same number of images as Reptile sees."""
    torch.manual_seed(seed)
    sources = {name: get_dataset(name, image_size=config.data.image_size) for name in config.data.sources}
    model = AttentionResNet50(config.model)
    for name, dataset in sources.items():
        model.add_head(name, len(dataset.classes))
    sampler = TaskSampler(sources, config.sampler.model_copy(update={"seed": seed}))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.reptile.inner_lr, betas=(0.0, 0.999))
    model.train()
    for _ in range(config.train.max_steps):
        task = sampler.sample(1)[0]
        for images, labels in itertools.islice(task.batches, config.reptile.inner_steps):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(images, task.name).logits, labels).backward()
            optimizer.step()
    return model


def random_start(config, seed: int) -> AttentionResNet50:
    torch.manual_seed(seed)
    return AttentionResNet50(config.model)


def measure(model: AttentionResNet50, config, seed: int) -> dict:
    """Transfer at every shots setting and mode, and attention on the target's objects."""
    target = config.data.target
    results = {}
    for mode in MODES:
        transfer = config.transfer.model_copy(update={"mode": mode, "shots_per_class": SHOTS, "seed": seed,
                                                      "lr": 1e-2 if mode == "linear" else config.transfer.lr})
        outcome = transfer_evaluate(model, target, transfer, image_size=config.data.image_size)
        results[mode] = {str(entry.shots): entry.top1 for entry in outcome.shots}
    report = evaluate_attention(model, target, limit=200, image_size=config.data.image_size, baselines=())
    results["attention"] = report.to_dict()
    return results


def summarise(runs: dict) -> dict:
    """Mean and std over seeds of every number, per start point."""
    summary = {}
    for start in STARTS:
        seeds = runs[start]
        entry = {}
        for mode in MODES:
            entry[mode] = {shots: (statistics.fmean(s[mode][shots] for s in seeds),
                                   statistics.pstdev([s[mode][shots] for s in seeds]))
                           for shots in seeds[0][mode]}
        entry["attention"] = _attention_summary(seeds)
        summary[start] = entry
    return summary


def _attention_summary(seeds: list[dict]) -> dict:
    layers = {}
    first = seeds[0]["attention"]
    for layer_name in _layer_names(first):
        pointing = [_layer(seed["attention"], layer_name)["pointing_game"] for seed in seeds]
        relative = [_layer(seed["attention"], layer_name)["relative_to_area"] for seed in seeds]
        layers[layer_name] = {"pointing_game": (statistics.fmean(pointing), statistics.pstdev(pointing)),
                              "relative_to_area": (statistics.fmean(relative), statistics.pstdev(relative))}
    return layers


def _layer_names(report: dict) -> list[str]:
    return list(report["starts"]["model"]["layers"])


def _layer(report: dict, name: str) -> dict:
    return report["starts"]["model"]["layers"][name]


def plot(summary: dict, path: Path) -> None:
    """Accuracy vs shots per start point, one panel per mode (a small PIL line chart)."""
    width, height, margin = 360, 260, 40
    picture = Image.new("RGB", (width * len(MODES), height + 30), "white")
    draw = ImageDraw.Draw(picture)
    for panel, mode in enumerate(MODES):
        left = panel * width + margin
        draw.text((left, 5), f"{mode}: top-1 vs shots per class", fill="black")
        draw.line([(left, height - margin), (left + width - 2 * margin, height - margin)], fill="black")
        draw.line([(left, 25), (left, height - margin)], fill="black")
        for tick in (0.25, 0.5, 0.75, 1.0):
            y = height - margin - tick * (height - margin - 25)
            draw.text((left - 30, y - 6), f"{tick:.2f}", fill="black")
        for index, shots in enumerate(SHOTS):
            x = left + index * (width - 2 * margin) / (len(SHOTS) - 1)
            draw.text((x - 4, height - margin + 4), str(shots), fill="black")
        for row, start in enumerate(STARTS):
            points = []
            for index, shots in enumerate(SHOTS):
                x = left + index * (width - 2 * margin) / (len(SHOTS) - 1)
                mean, _ = summary[start][mode][str(shots)]
                points.append((x, height - margin - mean * (height - margin - 25)))
            draw.line(points, fill=COLOURS[start], width=2)
            for x, y in points:
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=COLOURS[start])
            draw.text((left + 10 + row * 90, height + 12), start, fill=COLOURS[start])
    picture.save(path)


def overlay_grid(models: dict, config, path: Path) -> None:
    """Target images with each start point's attention (rows: start points)."""
    dataset = get_dataset(config.data.target, "test", image_size=config.data.image_size)
    images = torch.stack([dataset[index][0] for index in range(3)])
    rows = []
    for start, model in models.items():
        grid = attention_grid(images, attention_maps(model, images), captions=[start] * len(images))
        rows.append(grid)
    canvas = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    top = 0
    for row in rows:
        canvas.paste(row, (0, top))
        top += row.height
    canvas.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("study"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=120)
    args = parser.parse_args()
    begin = time.perf_counter()
    config = load_config(preset="quickstart", overrides=[
        f"train.max_steps={args.steps}", "train.eval_every=0", "train.image_log_every=0",
        "train.final_comparison=false", f"train.checkpoint_every={args.steps}", "transfer.epochs=10",
        "transfer.max_test_images=200",
    ])
    args.out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {start: [] for start in STARTS}
    last_models = {}
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.seeds):
            models = {"reptile": reptile_start(config, seed, Path(folder)), "joint": joint_start(config, seed),
                      "random": random_start(config, seed)}
            for start, model in models.items():
                runs[start].append(measure(model, config, seed))
                print(f"seed {seed} {start}: {runs[start][-1]['finetune']} {runs[start][-1]['linear']}", flush=True)
            last_models = models
    summary = summarise(runs)
    plot(summary, args.out / "accuracy_vs_shots.png")
    overlay_grid(last_models, config, args.out / "attention_grid.png")
    wall = time.perf_counter() - begin
    (args.out / "study.json").write_text(json.dumps({"summary": summary, "runs": runs, "steps": args.steps,
                                                     "seeds": args.seeds, "wall_seconds": wall}, indent=2))
    print(json.dumps({"wall_seconds": round(wall), "summary": {
        start: {mode: summary[start][mode] for mode in MODES} for start in STARTS}}))


if __name__ == "__main__":
    main()
