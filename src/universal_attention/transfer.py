"""Transfer to a new task: the few-shot protocol that says whether a start point learns a new task faster.

``transfer_evaluate`` runs one start point (meta-trained, random, ImageNet) on a target task for every
(attention control, shots per class, seed, shot draw). Every run starts from the same untouched copy of the
model and gets the same budget (``TransferConfig.steps`` optimiser steps, whatever the shots); a run's shot
draw, batch order and new-head initialisation depend only on its (seed, draw), so two start points' runs
pair up exactly. :func:`transfer_report` puts several start points side by side: cells with means, sample
standard deviations and t intervals, paired differences with bootstrap intervals, and the share of the
oracle's gain that learned attention recovers.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .checkpoint import load_checkpoint
from .config import ExperimentConfig, ModelConfig, TransferConfig
from .data.samples import ImageDataset, dataset_labels, fixed_subset, read_samples
from .devices import resolve_device
from .errors import ConfigError, DatasetError
from .finetune import finetune, init_head, loss_curve
from .linear_probe import fit_linear_probe
from .loading import image_size_for, random_model
from .model import AttentionResNet50
from .stats import mean_ci, paired_bootstrap, ratio_bootstrap

TARGET_HEAD = "transfer-target"
EVAL_BATCH = 64


@dataclass
class TransferRun:
    """One (attention, shots, seed, draw) run.

    ``steps`` is the number of optimiser steps it took (linear probes: L-BFGS iterations of the final fit);
    ``train_top1`` is its final accuracy on its own training shots (underfitting shows here);
    ``train_loss`` the mean loss of each tenth of its steps.
    """

    attention: str
    shots: int | str
    seed: int
    draw: int
    steps: int
    train_top1: float
    top1: float
    top5: float
    mean_per_class: float
    train_loss: list[float]
    train_size: int
    test_size: int
    seconds: float


@dataclass
class TransferCell:
    """Every run of one (attention, shots) setting: means, sample standard deviations and 95 % t intervals."""

    attention: str
    shots: int | str
    runs: int
    top1: float
    top1_std: float
    top1_ci: tuple[float, float]
    top5: float
    top5_std: float
    mean_per_class: float
    mean_per_class_std: float
    train_top1: float
    steps: int


@dataclass
class TransferResult:
    """What :func:`transfer_evaluate` returns for one start point; ``to_json()`` for ``results.json``."""

    start: str
    target: str
    mode: str
    num_classes: int
    runs: list[TransferRun]
    cells: list[TransferCell]
    wall_seconds: float
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict."""
        return asdict(self)

    def to_json(self) -> str:
        """The result as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)

    def cell(self, shots: int | str, attention: str = "learned") -> TransferCell:
        """The cell of one shots setting and attention control."""
        for entry in self.cells:
            if entry.shots == shots and entry.attention == attention:
                return entry
        raise KeyError(f"no cell for shots {shots!r} with attention {attention!r}")

    def paired_top1(self, shots: int | str, attention: str) -> dict[tuple[int, int], float]:
        """Top-1 of every run of a cell, keyed by (seed, draw)."""
        return {
            (run.seed, run.draw): run.top1 for run in self.runs if run.shots == shots and run.attention == attention
        }


class Items(NamedTuple):
    """Images, labels and (for oracle attention) masks of a set of samples."""

    images: Tensor
    labels: Tensor
    masks: Tensor | None


def load_items(dataset: ImageDataset, indices: Tensor, with_masks: bool) -> Items:
    """The samples at ``indices`` as stacked tensors (a dataset's images share one size)."""
    images, masks = read_samples(dataset, indices, with_masks=with_masks)
    return Items(images, dataset_labels(dataset)[indices], masks)


def protocol_for(config: ExperimentConfig) -> TransferConfig:
    """A run's transfer protocol at the run's image size (``data.image_size``) unless ``transfer.image_size`` sets
    one: what to pass to :func:`transfer_evaluate` with a model of that run."""
    return config.transfer.updated(image_size=config.transfer.image_size or config.data.image_size)


def resolve_target(
    target: str | tuple[ImageDataset, ImageDataset],
    image_size: int,
    data_root: str | Path | None = None,
    *,
    with_masks: bool = False,
    remove_object: bool = False,
) -> tuple[ImageDataset, ImageDataset, str]:
    """``(train, test, name)`` for a dataset name or an explicit ``(train, test)`` pair.

    Raises:
        ConfigError: masks are needed but the target has none, or ``remove_object`` on a target that is
            not synthetic.
    """
    if not isinstance(target, str):
        train, test = target
        if remove_object:
            raise ConfigError("transfer.remove_object needs a synthetic target given by name (synthetic/<task>)")
        return train, test, getattr(train, "name", "custom")
    from .data.registry import SYNTHETIC_PREFIX, get_dataset, masks_available

    if with_masks and not masks_available(target, data_root):
        raise ConfigError(
            f"oracle attention needs object masks and {target} has none; use a target with masks "
            "(synthetic/<task>, oxford_pets, cub200) or drop oracle from transfer.attention"
        )
    if remove_object:
        if not target.startswith(SYNTHETIC_PREFIX):
            raise ConfigError(
                f"transfer.remove_object draws a synthetic target without its object; {target} is not synthetic"
            )
        from .data.synthetic import SyntheticTaskDataset

        train, test = (
            SyntheticTaskDataset(
                target[len(SYNTHETIC_PREFIX) :], split, image_size=image_size, with_masks=with_masks, with_object=False
            )
            for split in ("train", "test")
        )
        return train, test, target
    train = get_dataset(target, "train", root=data_root, image_size=image_size, with_masks=with_masks)
    test = get_dataset(target, "test", root=data_root, image_size=image_size, with_masks=with_masks)
    return train, test, target


class Start(NamedTuple):
    """A start point: the model (never the caller's object), its label, and its run config (checkpoints saved
    with one)."""

    model: AttentionResNet50
    label: str
    experiment: ExperimentConfig | None


def resolve_start(
    model_or_checkpoint: AttentionResNet50 | str | Path, model_config: ModelConfig | None, seed: int = 0
) -> Start:
    """The start point to transfer; ``"random"`` is initialised from ``seed``."""
    if isinstance(model_or_checkpoint, AttentionResNet50):
        return Start(copy.deepcopy(model_or_checkpoint), "model", None)
    name = str(model_or_checkpoint)
    if name == "random":
        return Start(random_model(model_config or ModelConfig(), seed), name, None)
    if name == "imagenet":
        return Start(
            AttentionResNet50((model_config or ModelConfig()).updated(backbone_weights="imagenet")), name, None
        )
    checkpoint = load_checkpoint(name)
    return Start(checkpoint.model, Path(name).name, checkpoint.experiment)


def select_shots(labels: Tensor, classes: Sequence[str], shots: int | str, seed: int) -> Tensor:
    """Indices of ``shots`` images per class (all when ``"all"``), chosen with ``seed``."""
    if isinstance(shots, str):  # "all", the one word a config allows
        return torch.arange(len(labels))
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label, name in enumerate(classes):
        members = torch.nonzero(labels == label).flatten()
        if len(members) < shots:
            raise DatasetError(
                f"shots_per_class {shots} is more than class '{name}' has ({len(members)} training "
                f"images); use at most {int(min((labels == c).sum() for c in range(len(classes))))}"
            )
        chosen.append(members[torch.randperm(len(members), generator=generator)[:shots]])
    return torch.cat(chosen).sort().values


def run_seed(seed: int, draw: int) -> int:
    """The seed of one run's shot draw, batch order and head: a function of (seed, draw) only."""
    return seed * 1000 + draw


@torch.no_grad()
def predict(
    model: AttentionResNet50, items: Items, control: str, device: torch.device, head: str | None = TARGET_HEAD
) -> Tensor:
    """Logits (or, with ``head=None``, features) for every image, in eval mode, with attention ``control``."""
    model.eval()
    outputs = []
    for start in range(0, len(items.labels), EVAL_BATCH):
        masks = None if items.masks is None else items.masks[start : start + EVAL_BATCH].to(device)
        out = model(items.images[start : start + EVAL_BATCH].to(device), head, control=control, masks=masks)
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


RunCallback = Callable[[str, TransferRun], None]


class _Protocol:
    """One start point on one target: the fixed test set, features for probes, and one run at a time."""

    def __init__(
        self,
        start: AttentionResNet50,
        train_set: ImageDataset,
        test_set: ImageDataset,
        config: TransferConfig,
        device: torch.device,
    ) -> None:
        self.start, self.train_set, self.config, self.device = start, train_set, config, device
        self.with_masks = "oracle" in config.attention
        self.classes = list(train_set.classes)
        self.train_labels = dataset_labels(train_set)
        self.test = load_items(test_set, fixed_subset(len(test_set), config.max_test_images), self.with_masks)
        self._test_features: dict[str, Tensor] = {}
        self._train_items: dict[int, tuple[Tensor, Tensor | None]] = {}

    def train_items(self, subset: Tensor) -> Items:
        """The training samples at ``subset``, each read from the dataset once across all runs."""
        missing = torch.tensor([int(i) for i in subset if int(i) not in self._train_items], dtype=torch.int64)
        if len(missing):
            read = load_items(self.train_set, missing, self.with_masks)
            for position, index in enumerate(missing.tolist()):
                self._train_items[index] = (read.images[position], None if read.masks is None else read.masks[position])
        images, masks = zip(*(self._train_items[int(i)] for i in subset))
        return Items(torch.stack(images), self.train_labels[subset], None if masks[0] is None else torch.stack(masks))

    def run(self, control: str, shots: int | str, seed: int, draw: int) -> TransferRun:
        begin = time.perf_counter()
        generator = torch.Generator().manual_seed(run_seed(seed, draw))
        subset = select_shots(self.train_labels, self.classes, shots, run_seed(seed, draw))
        train = self.train_items(subset)
        if self.config.mode == "linear":
            steps, losses, train_logits, test_logits = self._probe(train, control)
        else:
            steps, losses, train_logits, test_logits = self._finetune(train, control, generator)
        final = accuracy_metrics(test_logits, self.test.labels, len(self.classes))
        train_top1 = accuracy_metrics(train_logits, train.labels, len(self.classes))["top1"]
        return TransferRun(
            attention=control,
            shots=shots,
            seed=seed,
            draw=draw,
            steps=steps,
            train_top1=train_top1,
            train_loss=losses,
            train_size=len(subset),
            test_size=len(self.test.labels),
            seconds=time.perf_counter() - begin,
            **final,
        )

    def _finetune(
        self, train: Items, control: str, generator: torch.Generator
    ) -> tuple[int, list[float], Tensor, Tensor]:
        model = copy.deepcopy(self.start)
        head = model.add_head(TARGET_HEAD, len(self.classes))
        features = None
        if self.config.head_init == "prototypes":
            features = predict(model, train, control, self.device, head=None)
        init_head(head, self.config.head_init, generator, features, train.labels)
        losses = finetune(
            model, TARGET_HEAD, train.images, train.labels, train.masks, self.config, control, self.device, generator
        )
        train_logits = predict(model, train, control, self.device)
        return len(losses), loss_curve(losses), train_logits, predict(model, self.test, control, self.device)

    def _probe(self, train: Items, control: str) -> tuple[int, list[float], Tensor, Tensor]:
        if control not in self._test_features:
            self._test_features[control] = predict(self.start, self.test, control, self.device, head=None)
        features = predict(self.start, train, control, self.device, head=None)
        probe = fit_linear_probe(features, train.labels, len(self.classes))
        return probe.iterations, [], probe.logits(features), probe.logits(self._test_features[control])


def transfer_evaluate(
    model_or_checkpoint: AttentionResNet50 | str | Path,
    target: str | tuple[ImageDataset, ImageDataset],
    config: TransferConfig,
    *,
    model_config: ModelConfig | None = None,
    data_root: str | Path | None = None,
    device: str | torch.device = "auto",
    label: str | None = None,
    on_run: RunCallback | None = None,
) -> TransferResult:
    """Transfer a start point to a target task and measure how well it learns it.

    Images are prepared at ``config.image_size``, else at the image size of the checkpoint's run
    (``data.image_size`` of the config saved with it), else at 128 (:func:`protocol_for` gives a run's protocol
    at the run's size, for a model of that run held in memory).

    Args:
        model_or_checkpoint: an :class:`AttentionResNet50` (copied, never changed), a checkpoint path,
            ``"random"`` (a fresh init seeded with ``config.seed``) or ``"imagenet"`` (torchvision's ImageNet
            trunk).
        target: a dataset name (``"caltech101"``, ``"synthetic/orientation"``, ``"folder:<path>"``) or a
            ``(train, test)`` pair of datasets (with masks as third item when ``oracle`` is asked for).
        config: the protocol: mode, budget, BatchNorm policy, head init, shots, seeds, draws, controls, image size.
        model_config: the architecture for ``"random"``/``"imagenet"`` starts (default ``ModelConfig()``).
        data_root: where real datasets live (see ``universal_attention.data``).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
        label: the start point's name in the result (default: the checkpoint's file name, ``"random"``,
            ``"imagenet"`` or ``"model"``).
        on_run: called after every run with the start point's label and the :class:`TransferRun`.

    Returns:
        A :class:`TransferResult`: every run, and per (attention, shots) cell the mean, sample standard
        deviation and 95 % t interval over seeds x draws.

    Raises:
        ConfigError: a control the model or target cannot serve (oracle without masks, any control on a
            model without attention), or a device that is not one. DatasetError: more shots than a class has.
    """
    begin = time.perf_counter()
    run_device = resolve_device(device)
    start = resolve_start(model_or_checkpoint, model_config, config.seed)
    start_model, start_label = start.model, label or start.label
    if not start_model.config.attention and config.attention != ("learned",):
        raise ConfigError(
            "transfer.attention controls need a model with attention (this one has attention: false); "
            "use attention: [learned]"
        )
    train_set, test_set, target_name = resolve_target(
        target,
        image_size_for(start.experiment, config.image_size),
        data_root,
        with_masks="oracle" in config.attention,
        remove_object=config.remove_object,
    )
    start_model.to_device(run_device)
    protocol = _Protocol(start_model, train_set, test_set, config, run_device)
    runs = []
    for control in config.attention:
        for shots in config.shots_per_class:
            for seed in range(config.seed, config.seed + config.seeds):
                for draw in range(config.draws):
                    runs.append(protocol.run(control, shots, seed, draw))
                    if on_run is not None:
                        on_run(start_label, runs[-1])
    cells = [
        summarise_cell(control, shots, [run for run in runs if run.attention == control and run.shots == shots])
        for control in config.attention
        for shots in config.shots_per_class
    ]
    return TransferResult(
        start=start_label,
        target=target_name,
        mode=config.mode,
        num_classes=len(protocol.classes),
        runs=runs,
        cells=cells,
        wall_seconds=time.perf_counter() - begin,
        config=config.model_dump(mode="json"),
    )


def merge_results(results: Sequence[TransferResult]) -> TransferResult:
    """One start point's results from several calls (e.g. one per training seed) as one result: every run,
    and cells over all of them. The results must share start, target and mode."""
    first = results[0]
    if any((r.start, r.target, r.mode) != (first.start, first.target, first.mode) for r in results):
        raise ConfigError("merge_results needs results of one start point, target and mode")
    runs = [run for result in results for run in result.runs]
    settings = list(dict.fromkeys((run.attention, run.shots) for run in runs))
    cells = [
        summarise_cell(control, shots, [r for r in runs if (r.attention, r.shots) == (control, shots)])
        for control, shots in settings
    ]
    return TransferResult(
        start=first.start,
        target=first.target,
        mode=first.mode,
        num_classes=first.num_classes,
        runs=runs,
        cells=cells,
        wall_seconds=sum(r.wall_seconds for r in results),
        config=first.config,
    )


def summarise_cell(control: str, shots: int | str, runs: list[TransferRun]) -> TransferCell:
    """Mean, sample standard deviation and t interval of the runs of one (attention, shots) setting."""
    top1, top1_std, top1_ci = mean_ci([run.top1 for run in runs])
    top5, top5_std, _ = mean_ci([run.top5 for run in runs])
    per_class, per_class_std, _ = mean_ci([run.mean_per_class for run in runs])
    return TransferCell(
        attention=control,
        shots=shots,
        runs=len(runs),
        top1=top1,
        top1_std=top1_std,
        top1_ci=top1_ci,
        top5=top5,
        top5_std=top5_std,
        mean_per_class=per_class,
        mean_per_class_std=per_class_std,
        train_top1=mean_ci([r.train_top1 for r in runs])[0],
        steps=max(run.steps for run in runs),
    )


def _paired(
    first: dict[tuple[int, int], float], second: dict[tuple[int, int], float]
) -> tuple[list[float], list[float]]:
    keys = sorted(first.keys() & second.keys())
    return [first[key] for key in keys], [second[key] for key in keys]


def paired_comparisons(results: Sequence[TransferResult], baselines: Sequence[str]) -> list[dict[str, Any]]:
    """Every start point against every baseline, per (attention, shots): the mean paired difference in top-1
    (same seed, draw and new-head init) with its 95 % bootstrap interval."""
    by_start = {result.start: result for result in results}
    comparisons = []
    for result in results:
        for baseline in baselines:
            if baseline == result.start or baseline not in by_start:
                continue
            for cell in result.cells:
                mine, theirs = _paired(
                    result.paired_top1(cell.shots, cell.attention),
                    by_start[baseline].paired_top1(cell.shots, cell.attention),
                )
                if not mine:
                    continue
                delta, interval = paired_bootstrap(mine, theirs)
                comparisons.append(
                    {
                        "start": result.start,
                        "baseline": baseline,
                        "attention": cell.attention,
                        "shots": cell.shots,
                        "pairs": len(mine),
                        "delta_top1": delta,
                        "ci": list(interval),
                    }
                )
    return comparisons


def oracle_fractions(result: TransferResult) -> list[dict[str, Any]]:
    """Per shots setting, where ``learned``, ``uniform`` and ``oracle`` all ran: (learned - uniform) /
    (oracle - uniform) over paired runs, with its 95 % bootstrap interval: the share of what perfect *where*
    is worth that the learned attention recovers."""
    controls = {cell.attention for cell in result.cells}
    if not {"learned", "uniform", "oracle"} <= controls:
        return []
    fractions = []
    for shots in dict.fromkeys(cell.shots for cell in result.cells):
        learned, uniform, oracle = (result.paired_top1(shots, name) for name in ("learned", "uniform", "oracle"))
        keys = sorted(learned.keys() & uniform.keys() & oracle.keys())
        values = [[table[key] for key in keys] for table in (learned, uniform, oracle)]
        fraction, interval = ratio_bootstrap((values[0], values[1]), (values[2], values[1]))
        fractions.append(
            {
                "start": result.start,
                "shots": shots,
                "fraction": fraction,
                "ci": list(interval),
                "oracle_gain": sum(values[2]) / len(keys) - sum(values[1]) / len(keys),
            }
        )
    return fractions


def transfer_report(results: Sequence[TransferResult], baselines: Sequence[str] = ()) -> dict[str, Any]:
    """Start points side by side, as ``uattn transfer`` saves them in ``results.json``: ``results`` (every
    start's runs and cells), ``cells`` (flat, with ``start``), ``comparisons`` (paired differences against each
    baseline) and ``oracle_fraction`` (where learned, uniform and oracle attention ran)."""
    return {
        "target": results[0].target if results else None,
        "mode": results[0].mode if results else None,
        "results": {result.start: result.to_dict() for result in results},
        "cells": [{"start": result.start, **asdict(cell)} for result in results for cell in result.cells],
        "comparisons": paired_comparisons(results, baselines),
        "oracle_fraction": [entry for result in results for entry in oracle_fractions(result)],
    }
