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
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from ..config import ExperimentConfig, ModelConfig, TransferConfig
from ..data.samples import ImageDataset, dataset_labels, fixed_subset, read_samples
from ..devices import resolve_device
from ..errors import ConfigError, DatasetError
from ..models.attention_resnet import TARGET_HEAD, AttentionResNet50
from ..runs.loading import image_size_for, resolve_model, start_name
from .finetune import finetune, init_head, loss_curve
from .linear_probe import LinearProbe, fit_linear_probe
from .results import TransferResult, TransferRun, summarise_cell

EVAL_BATCH = 64


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
    from ..data.registry import SYNTHETIC_PREFIX, get_dataset, masks_available

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
        from ..data.synthetic import SyntheticTaskDataset

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
ModelCallback = Callable[[str, TransferRun, AttentionResNet50], None]


def model_shots_for(shots_per_class: Sequence[int | str], model_shots: int | str | None = None) -> int | str:
    """The shots setting whose model a transfer hands over (``on_model``, ``--save-model``): ``model_shots`` when
    given, else the largest number of shots, else (no numeric setting) the last setting.

    Raises:
        ConfigError: ``model_shots`` is not one of ``shots_per_class`` (or there is no setting at all).
    """
    if not shots_per_class:
        raise ConfigError("transfer.shots_per_class is empty: there is no run whose model could be kept")
    if model_shots is None:
        numeric = [shots for shots in shots_per_class if isinstance(shots, int)]
        return max(numeric) if numeric else shots_per_class[-1]
    if model_shots not in shots_per_class:
        allowed = ", ".join(str(shots) for shots in shots_per_class)
        raise ConfigError(
            f"model shots {model_shots} is not a shots setting of this transfer; use one of {allowed} "
            "(transfer.shots_per_class)"
        )
    return model_shots


def model_control(controls: Sequence[str]) -> str:
    """The attention control whose model a transfer hands over: ``learned`` when it runs, else the first."""
    return "learned" if "learned" in controls else controls[0]


def probe_model(start: AttentionResNet50, probe: LinearProbe, classes: Sequence[str]) -> AttentionResNet50:
    """A copy of ``start`` with a head :data:`TARGET_HEAD` (named ``classes``) whose logits are the probe's: the
    probe's standardisation folded into the head (``W / std``, ``b - (mean / std) @ W.T``), in eval mode."""
    model = copy.deepcopy(start)
    head = model.add_head(TARGET_HEAD, len(classes), classes)
    weight = probe.weight / probe.std
    bias = probe.bias - (probe.mean / probe.std) @ probe.weight.T
    with torch.no_grad():
        head.weight.copy_(weight.to(head.weight.dtype))
        head.bias.copy_(bias.to(head.bias.dtype))
    return model.eval()


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

    def run(
        self, control: str, shots: int | str, seed: int, draw: int, keep_model: bool = False
    ) -> tuple[TransferRun, AttentionResNet50 | None]:
        """One run, and with ``keep_model`` its model (finetuned, or the start with the probe as head)."""
        begin = time.perf_counter()
        generator = torch.Generator().manual_seed(run_seed(seed, draw))
        subset = select_shots(self.train_labels, self.classes, shots, run_seed(seed, draw))
        train = self.train_items(subset)
        model: AttentionResNet50 | None = None
        if self.config.mode == "linear":
            steps, losses, train_logits, test_logits, probe = self._probe(train, control)
            if keep_model:
                model = probe_model(self.start, probe, self.classes)
        else:
            steps, losses, train_logits, test_logits, finetuned = self._finetune(train, control, generator)
            if keep_model:
                model = finetuned
        final = accuracy_metrics(test_logits, self.test.labels, len(self.classes))
        train_top1 = accuracy_metrics(train_logits, train.labels, len(self.classes))["top1"]
        run = TransferRun(
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
        return run, model

    def _finetune(
        self, train: Items, control: str, generator: torch.Generator
    ) -> tuple[int, list[float], Tensor, Tensor, AttentionResNet50]:
        model = copy.deepcopy(self.start)
        head = model.add_head(TARGET_HEAD, len(self.classes), self.classes)
        features = None
        if self.config.head_init == "prototypes":
            features = predict(model, train, control, self.device, head=None)
        init_head(head, self.config.head_init, generator, features, train.labels)
        losses = finetune(
            model, TARGET_HEAD, train.images, train.labels, train.masks, self.config, control, self.device, generator
        )
        train_logits = predict(model, train, control, self.device)
        test_logits = predict(model, self.test, control, self.device)
        return len(losses), loss_curve(losses), train_logits, test_logits, model

    def _probe(self, train: Items, control: str) -> tuple[int, list[float], Tensor, Tensor, LinearProbe]:
        if control not in self._test_features:
            self._test_features[control] = predict(self.start, self.test, control, self.device, head=None)
        features = predict(self.start, train, control, self.device, head=None)
        probe = fit_linear_probe(features, train.labels, len(self.classes))
        return probe.iterations, [], probe.logits(features), probe.logits(self._test_features[control]), probe


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
    on_model: ModelCallback | None = None,
    model_shots: int | str | None = None,
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
        on_model: called once, with the start point's label, a run and that run's model: the run of the last
            seed and last draw at ``model_shots`` with attention ``learned`` (else the first control). In
            finetune mode the finetuned model, in linear mode a copy of the start with the probe as head (the
            standardisation folded in: the same logits); either way its head :data:`TARGET_HEAD` holds the
            target's class names. Only this one model is kept (the other runs' are dropped as they finish).
        model_shots: the shots setting of that run (default: the largest number of shots in
            ``config.shots_per_class``, else its last setting).

    Returns:
        A :class:`TransferResult`: every run, and per (attention, shots) cell the mean, sample standard
        deviation and 95 % t interval over seeds x draws.

    Raises:
        ConfigError: a control the model or target cannot serve (oracle without masks, any control on a
            model without attention), ``model_shots`` not in ``config.shots_per_class``, or a device that is
            not one. DatasetError: more shots than a class has.
    """
    begin = time.perf_counter()
    kept = None
    if on_model is not None or model_shots is not None:  # a bad model_shots is refused before any run
        kept_shots = model_shots_for(config.shots_per_class, model_shots)
        kept = (model_control(config.attention), kept_shots, config.seed + config.seeds - 1, config.draws - 1)
    run_device = resolve_device(device)
    start = resolve_model(model_or_checkpoint, model_config, seed=config.seed, copy=True)
    start_model, start_label = start.model, label or start_name(model_or_checkpoint)
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
                    keep = on_model is not None and (control, shots, seed, draw) == kept
                    run, model = protocol.run(control, shots, seed, draw, keep_model=keep)
                    runs.append(run)
                    if on_run is not None:
                        on_run(start_label, run)
                    if on_model is not None and model is not None:
                        on_model(start_label, run, model)
                    del model
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
