"""Transfer to a new task: a fresh head, then finetuning (everything trains) or a linear probe.

``transfer_evaluate`` answers the library's question for one start point: given a model (meta-trained,
random, ImageNet), how well does it learn a target task from 1, 5, ... or all images per class? Each
(shots, seed) run starts from the same untouched copy of the model; results are averaged over seeds.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from .config import ModelConfig, TransferConfig
from .errors import DatasetError
from .model import AttentionResNet50, head_key

TARGET_HEAD = "transfer-target"
START_POINTS = ("random", "imagenet")


@dataclass
class TransferRun:
    """One (shots, seed) run: final metrics and per-epoch curves."""

    shots: int | str
    seed: int
    top1: float
    top5: float
    mean_per_class: float
    train_loss: list[float]
    test_top1: list[float]
    train_size: int
    test_size: int
    seconds: float


@dataclass
class ShotsSummary:
    """Mean and standard deviation over seeds for one shots-per-class setting."""

    shots: int | str
    top1: float
    top1_std: float
    top5: float
    top5_std: float
    mean_per_class: float
    mean_per_class_std: float
    runs: list[TransferRun]


@dataclass
class TransferResult:
    """What :func:`transfer_evaluate` returns; ``to_json()`` for ``results.json``."""

    start: str
    target: str
    mode: str
    num_classes: int
    shots: list[ShotsSummary]
    wall_seconds: float
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict."""
        return asdict(self)

    def to_json(self) -> str:
        """The result as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)

    def summary(self, shots: int | str) -> ShotsSummary:
        """The summary of one shots-per-class setting."""
        return next(entry for entry in self.shots if entry.shots == shots)


def dataset_labels(dataset: Dataset) -> Tensor:
    """Every label of a dataset, from ``dataset.labels`` when it has them (no image decoding)."""
    if hasattr(dataset, "labels"):
        return torch.as_tensor(list(dataset.labels), dtype=torch.int64)
    return torch.tensor([int(dataset[index][1]) for index in range(len(dataset))], dtype=torch.int64)


def load_images(dataset: Dataset, indices: Tensor) -> Tensor:
    """The images at ``indices`` as one uint8 tensor (a dataset's images share one size)."""
    if hasattr(dataset, "images"):
        return dataset.images[indices]
    return torch.stack([dataset[int(index)][0] for index in indices])


def _memoised(compute: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``indices -> stacked rows`` where each index's row is computed by ``compute`` once, then reused."""
    cache: dict[int, Tensor] = {}

    def rows(indices: Tensor) -> Tensor:
        missing = torch.tensor([int(i) for i in indices if int(i) not in cache], dtype=torch.int64)
        if len(missing):
            cache.update(zip(missing.tolist(), compute(missing)))
        return torch.stack([cache[int(i)] for i in indices])

    return rows


def _test_indices(count: int, limit: int | None) -> Tensor:
    """All test indices, or a fixed random subset of ``limit`` of them (seed 0, the same for every start)."""
    if limit is None or limit >= count:
        return torch.arange(count)
    return torch.randperm(count, generator=torch.Generator().manual_seed(0))[:limit].sort().values


def resolve_target(
    target: str | tuple[Dataset, Dataset], image_size: int, data_root: str | Path | None = None
) -> tuple[Dataset, Dataset, str]:
    """``(train, test, name)`` for a dataset name or an explicit ``(train, test)`` pair."""
    if isinstance(target, str):
        from .data.registry import get_dataset

        train = get_dataset(target, "train", root=data_root, image_size=image_size)
        test = get_dataset(target, "test", root=data_root, image_size=image_size)
        return train, test, target
    train, test = target
    return train, test, getattr(train, "name", "custom")


def resolve_start(model_or_checkpoint: AttentionResNet50 | str | Path, model_config: ModelConfig | None) -> tuple[
    AttentionResNet50, str
]:
    """The start model (never the caller's object) and its label."""
    if isinstance(model_or_checkpoint, AttentionResNet50):
        return copy.deepcopy(model_or_checkpoint), "model"
    name = str(model_or_checkpoint)
    if name in START_POINTS:
        config = (model_config or ModelConfig()).model_copy(
            update={"backbone_weights": "imagenet" if name == "imagenet" else "none"}
        )
        return AttentionResNet50(config), name
    from .checkpoint import load_checkpoint

    return load_checkpoint(name).model, Path(name).name


def select_shots(labels: Tensor, classes: Sequence[str], shots: int | str, seed: int) -> Tensor:
    """Indices of ``shots`` images per class (all when ``"all"``), chosen with ``seed``."""
    if shots == "all":
        return torch.arange(len(labels))
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label, name in enumerate(classes):
        members = torch.nonzero(labels == label).flatten()
        if len(members) < shots:
            raise DatasetError(f"shots_per_class {shots} is more than class '{name}' has ({len(members)} training "
                               f"images); use at most {int(min((labels == c).sum() for c in range(len(classes))))}")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:shots]])
    return torch.cat(chosen).sort().values


def _pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@torch.no_grad()
def _predict(model: AttentionResNet50, images: Tensor, batch_size: int, device: torch.device,
             head: str | None = TARGET_HEAD) -> Tensor:
    """Logits (or, with ``head=None``, features) for every image, in eval mode."""
    model.eval()
    outputs = []
    for start in range(0, len(images), batch_size):
        out = model(images[start:start + batch_size].to(device), head)
        outputs.append((out.features if head is None else out.logits).float().cpu())
    return torch.cat(outputs)


def accuracy_metrics(logits: Tensor, labels: Tensor, num_classes: int) -> dict[str, float]:
    """Top-1, top-5 (top-k with k = min(5, classes)) and mean per-class accuracy."""
    top = logits.topk(min(5, num_classes), dim=1).indices
    top1_hits = top[:, 0] == labels
    top5_hits = (top == labels[:, None]).any(dim=1)
    per_class = [float(top1_hits[labels == c].float().mean()) for c in range(num_classes) if (labels == c).any()]
    return {
        "top1": float(top1_hits.float().mean()),
        "top5": float(top5_hits.float().mean()),
        "mean_per_class": sum(per_class) / len(per_class),
    }


def _training_epochs(count: int, config: TransferConfig, generator: torch.Generator,
                     train_batch: Callable[[Tensor], float]) -> Iterator[list[float]]:
    """Shuffled mini-batch epochs over ``count`` items; yields the mean losses so far after each epoch.

    Stops early after ``config.max_steps`` optimiser steps. A last batch of one image is skipped
    (batch norm cannot train on it) unless the whole set is one image.
    """
    losses, steps = [], 0
    for _ in range(config.epochs):
        order = torch.randperm(count, generator=generator)
        epoch_losses = []
        for start in range(0, count, config.batch_size):
            batch = order[start:start + config.batch_size]
            if len(batch) < 2 <= count:
                continue
            epoch_losses.append(train_batch(batch))
            steps += 1
            if config.max_steps and steps >= config.max_steps:
                break
        losses.append(statistics.fmean(epoch_losses) if epoch_losses else float("nan"))
        yield losses
        if config.max_steps and steps >= config.max_steps:
            return


def _linear_probe(features: Tensor, labels: Tensor, num_classes: int, config: TransferConfig,
                  generator: torch.Generator) -> Iterator[tuple[torch.nn.Linear, list[float]]]:
    """Train only a linear head on fixed features; yields the head and the losses after each epoch."""
    head = torch.nn.Linear(features.shape[1], num_classes)
    optimizer = torch.optim.Adam(head.parameters(), lr=config.head_lr or config.lr)

    def train_batch(batch: Tensor) -> float:
        loss = F.cross_entropy(head(features[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    for losses in _training_epochs(len(labels), config, generator, train_batch):
        yield head, losses


def _finetune(model: AttentionResNet50, images: Tensor, labels: Tensor, config: TransferConfig,
              device: torch.device, generator: torch.Generator) -> Iterator[list[float]]:
    """Train every parameter (trunk at ``lr``, head at ``head_lr``); yields the losses after each epoch."""
    head_parameters = list(model.heads[head_key(TARGET_HEAD)].parameters())
    head_ids = {id(p) for p in head_parameters}
    optimizer = torch.optim.Adam([
        {"params": [p for p in model.parameters() if id(p) not in head_ids], "lr": config.lr},
        {"params": head_parameters, "lr": config.head_lr or config.lr},
    ])

    def train_batch(batch: Tensor) -> float:
        model.train()
        logits = model(images[batch].to(device), TARGET_HEAD).logits
        loss = F.cross_entropy(logits, labels[batch].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    yield from _training_epochs(len(labels), config, generator, train_batch)


EpochCallback = Callable[[dict[str, Any]], None]


def transfer_evaluate(
    model_or_checkpoint: AttentionResNet50 | str | Path,
    target: str | tuple[Dataset, Dataset],
    config: TransferConfig | None = None,
    *,
    model_config: ModelConfig | None = None,
    image_size: int = 128,
    data_root: str | Path | None = None,
    device: str = "auto",
    on_epoch: EpochCallback | None = None,
) -> TransferResult:
    """Transfer a start point to a target task and measure how well it learns it.

    Args:
        model_or_checkpoint: an :class:`AttentionResNet50` (copied, never changed), a checkpoint path,
            ``"random"`` (fresh init) or ``"imagenet"`` (torchvision's ImageNet trunk).
        target: a dataset name (``"caltech101"``, ``"synthetic/orientation"``, ``"folder:<path>"``) or a
            ``(train, test)`` pair of datasets.
        config: mode, learning rates, epochs, batch size, shots per class, seeds.
        model_config: the architecture for ``"random"``/``"imagenet"`` starts (default ``ModelConfig()``).
        image_size: image size when the config gives none.
        data_root: where real datasets live (see ``universal_attention.data``).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
        on_epoch: called after every epoch with ``{"start", "shots", "seed", "epoch", "train_loss", "test_top1"}``.

    Returns:
        A :class:`TransferResult` with mean and std over seeds for every shots setting.
    """
    config = config or TransferConfig()
    begin = time.perf_counter()
    start_model, start_label = resolve_start(model_or_checkpoint, model_config)
    size = config.image_size or image_size
    train_set, test_set, target_name = resolve_target(target, size, data_root)
    classes = list(train_set.classes)
    num_classes = len(classes)
    train_labels = dataset_labels(train_set)
    test_subset = _test_indices(len(test_set), config.max_test_images)
    test_images, test_labels = load_images(test_set, test_subset), dataset_labels(test_set)[test_subset]
    run_device = _pick_device(device)
    start_model.to_device(run_device)
    train_images = _memoised(lambda missing: load_images(train_set, missing))
    train_features = _memoised(
        lambda missing: _predict(start_model, train_images(missing), config.batch_size, run_device, head=None))

    if config.mode == "linear":
        test_features = _predict(start_model, test_images, config.batch_size, run_device, head=None)

    summaries = []
    for shots in config.shots_per_class:
        runs = []
        for seed in range(config.seed, config.seed + config.seeds):
            run_begin = time.perf_counter()
            subset = select_shots(train_labels, classes, shots, seed)
            generator = torch.Generator().manual_seed(seed)
            torch.manual_seed(seed)
            curve: list[float] = []
            if config.mode == "linear":
                epochs = _linear_probe(train_features(subset), train_labels[subset], num_classes, config,
                                       generator)
                for head, losses in epochs:
                    with torch.no_grad():
                        logits = head(test_features)
                    curve.append(accuracy_metrics(logits, test_labels, num_classes)["top1"])
                    _report(on_epoch, start_label, shots, seed, losses, curve)
            else:
                model = copy.deepcopy(start_model)
                model.add_head(TARGET_HEAD, num_classes)
                for losses in _finetune(model, train_images(subset), train_labels[subset], config, run_device,
                                        generator):
                    logits = _predict(model, test_images, config.batch_size, run_device)
                    curve.append(accuracy_metrics(logits, test_labels, num_classes)["top1"])
                    _report(on_epoch, start_label, shots, seed, losses, curve)
            final = accuracy_metrics(logits, test_labels, num_classes)
            runs.append(TransferRun(shots=shots, seed=seed, train_loss=losses, test_top1=curve,
                                    train_size=len(subset), test_size=len(test_labels),
                                    seconds=time.perf_counter() - run_begin, **final))
        summaries.append(_summarise(shots, runs))
    return TransferResult(start=start_label, target=target_name, mode=config.mode, num_classes=num_classes,
                          shots=summaries, wall_seconds=time.perf_counter() - begin,
                          config=config.model_dump(mode="json"))


def _report(on_epoch: EpochCallback | None, start: str, shots: int | str, seed: int, losses: list[float],
            curve: list[float]) -> None:
    if on_epoch is not None:
        on_epoch({"start": start, "shots": shots, "seed": seed, "epoch": len(curve),
                  "train_loss": losses[-1], "test_top1": curve[-1]})


def _summarise(shots: int | str, runs: list[TransferRun]) -> ShotsSummary:
    def mean_std(values: list[float]) -> tuple[float, float]:
        return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0

    top1, top1_std = mean_std([run.top1 for run in runs])
    top5, top5_std = mean_std([run.top5 for run in runs])
    per_class, per_class_std = mean_std([run.mean_per_class for run in runs])
    return ShotsSummary(shots=shots, top1=top1, top1_std=top1_std, top5=top5, top5_std=top5_std,
                        mean_per_class=per_class, mean_per_class_std=per_class_std, runs=runs)
