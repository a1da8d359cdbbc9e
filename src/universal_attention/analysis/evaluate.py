"""How much of a model's attention falls on the object, measured against masks.

Per tap layer and for the ``combined`` map (the mean of the taps' maps, each scaled to sum to one; see
:mod:`universal_attention.analysis.pictures`), every map is first scaled to sum to one over the image, then:

- **pointing game**: whether the map's maximum lies inside the object mask (when several pixels share the
  maximum, the share of them that is inside: uniform attention scores the mask's area);
- **mass in mask**: the share of the map on the mask, averaged over images;
- **relative to area**: mean mass in mask / mean mask area, so 1.0 is no better than uniform attention.

Images whose mask is empty are left out of these three (counted in ``empty_masks``).

ADE20K's mask is a class map (0 = unlabelled, 1..150 SceneParse150 classes). There the object mask is the
pixels of "object" classes (not "stuff", see :func:`~universal_attention.data.ade20k.ade20k_classes`), and
the report adds, per layer, the mass per class (averaged over images showing the class, with its mean
area and mass / area, ranked) and the split between stuff, object and unlabelled pixels (see
:mod:`universal_attention.analysis.ade20k`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from ..data.images import resize_mask_to
from ..data.preview import mask_outline
from ..data.registry import get_dataset
from ..data.samples import ImageDataset, dataset_name, fixed_subset
from ..devices import resolve_device
from ..errors import ConfigError, DatasetError
from ..models.attention_resnet import AttentionResNet50
from ..models.controls import check_controls
from ..runs.loading import RANDOM_LABEL, LoadedModel, image_size_for, random_model, resolve_model
from .ade20k import (
    ADE20K_CLASSES,
    REGIONS,
    ClassMass,
    RegionMass,
    class_masses,
    object_lookup,
    ranked_classes,
    region_masses,
)
from .maps import COMBINED, attention_maps, has_attention, normalised, require_attention
from .pictures import attention_grid

__all__ = [
    "ADE20K_CLASSES",
    "BASELINES",
    "REGIONS",
    "AttentionMass",
    "AttentionReport",
    "ClassMass",
    "LayerScores",
    "RegionMass",
    "StartReport",
    "attention_in_mask",
    "class_masses",
    "evaluate_attention",
    "example_grid",
    "mass_in_masks",
]

BASELINES = ("random_init", "uniform")
OUTLINE = (0, 255, 255)  # cyan: apart from every colour of the attention colormap


@dataclass
class LayerScores:
    """One layer's scores against the object masks (see the module docstring).

    ``frame_share`` is the share of the map on the outer frame of the image (the outer eighth of its side all
    round, :data:`FRAME_AREA` of the image): uniform attention puts :data:`FRAME_AREA` there, a map that
    sticks to the image border (zero padding gives border cells a signature of their own) much more.
    """

    pointing_game: float
    mass_in_mask: float
    relative_to_area: float
    frame_share: float


@dataclass
class StartReport:
    """The scores of one start point (the model, a random init, or uniform attention).

    Attributes:
        label: what it is, e.g. ``"step-000200.safetensors (step 200)"``.
        layers: layer (taps and ``"combined"``) -> scores.
        regions: ADE20K only: layer -> ``{"object"|"stuff"|"unlabelled": RegionMass}``.
        classes: ADE20K only: layer -> classes present, ranked by ``relative`` (highest first).
    """

    label: str
    layers: dict[str, LayerScores]
    regions: dict[str, dict[str, RegionMass]] | None = None
    classes: dict[str, list[ClassMass]] | None = None


@dataclass
class AttentionReport:
    """What :func:`evaluate_attention` returns; ``to_json()`` is ``attention_report.json``.

    Attributes:
        dataset: dataset name.
        split: its split, when known.
        images: images evaluated.
        empty_masks: of those, images whose object mask is empty (left out of the layer scores).
        mask_area: mean share of the image covered by the object mask (non-empty masks).
        class_maps: whether masks were ADE20K class maps.
        starts: ``"model"``, then ``"random_init"``, the controls (``"oracle"``, ``"shuffled"``) and
            ``"uniform"`` when computed.
        seconds: wall time.
    """

    dataset: str
    split: str | None
    images: int
    empty_masks: int
    mask_area: float
    class_maps: bool
    starts: dict[str, StartReport]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict."""
        return asdict(self)

    def to_json(self) -> str:
        """The report as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)


@dataclass
class AttentionMass:
    """Attention against object masks, per tap layer, averaged over images.

    Attributes:
        mass_in_mask: share of the attention inside the object mask (0..1).
        relative_to_area: ``mass_in_mask`` divided by the mask's share of the image (1.0 = uniform).
        pointing_game: share of images whose attention maximum lies inside the mask.
        frame_share: share of the attention on the image's outer frame (uniform: :data:`FRAME_AREA`).
        mask_area: mean share of the image covered by the mask (what uniform attention scores).
        images: how many images were measured.
    """

    mass_in_mask: dict[str, float]
    relative_to_area: dict[str, float]
    pointing_game: dict[str, float]
    frame_share: dict[str, float]
    mask_area: float
    images: int

    def mean_mass(self) -> float:
        """``mass_in_mask`` averaged over tap layers (NaN without any)."""
        return sum(self.mass_in_mask.values()) / len(self.mass_in_mask) if self.mass_in_mask else float("nan")

    def to_dict(self) -> dict:
        """Plain JSON-compatible dict."""
        return asdict(self)


def frame_mask(height: int, width: int) -> Tensor:
    """``[H, W]`` bool: the outer eighth of the image on every side."""
    rows, columns = max(1, round(height / 8)), max(1, round(width / 8))
    inner = torch.zeros(height, width, dtype=torch.bool)
    inner[rows : height - rows, columns : width - columns] = True
    return ~inner


FRAME_AREA = 1 - (3 / 4) ** 2
"""The frame's share of the image (for sides divisible by 8): what uniform attention puts on it."""


def mass_in_masks(maps: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    """Per image: attention share inside the mask and the pointing-game hit (0..1, ties split).

    Args:
        maps: ``[B, 1, H, W]`` non-negative attention.
        masks: ``[B, H, W]`` with 1 (or any non-zero) on the object.
    """
    inside = (masks > 0).flatten(1).double()
    flat = normalised(maps)
    share = (flat * inside).sum(1)
    peak = flat.max(1, keepdim=True).values
    at_peak = (flat >= peak * (1 - 1e-6)).double()
    hit = (at_peak * inside).sum(1) / at_peak.sum(1)
    return share.float(), hit.float()


def _batch(dataset: Any, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
    items = [dataset[index] for index in indices]
    if len(items[0]) < 3:
        raise DatasetError(
            f"{dataset_name(dataset)} yields no masks: build it with with_masks=True (datasets with "
            "masks: oxford_pets, cub200, ade20k, synthetic/<task>)"
        )
    shapes = {tuple(item[0].shape) for item in items}
    if len(shapes) > 1:
        raise DatasetError(f"{dataset_name(dataset)} has images of different sizes; build it with image_size=N")
    images = torch.stack([item[0] for item in items])
    masks = torch.stack([resize_mask_to(torch.as_tensor(item[2]), *images.shape[-2:]) for item in items])
    return images, masks


class _Tally:
    """Running sums of one start point's scores over batches."""

    def __init__(self) -> None:
        self.mass: dict[str, float] = {}
        self.hits: dict[str, float] = {}
        self.frame: dict[str, float] = {}
        self.class_mass: dict[str, Tensor] = {}

    def add(self, maps: dict[str, Tensor], objects: Tensor, class_ids: Tensor | None) -> None:
        present = objects.flatten(1).any(1)
        for name, amap in maps.items():
            share, hit = mass_in_masks(amap, objects)
            self.mass[name] = self.mass.get(name, 0.0) + float(share[present].double().sum())
            self.hits[name] = self.hits.get(name, 0.0) + float(hit[present].double().sum())
            on_frame = (normalised(amap) * frame_mask(*amap.shape[-2:]).flatten().double()).sum(1)
            self.frame[name] = self.frame.get(name, 0.0) + float(on_frame[present].sum())
            if class_ids is not None:
                mass = class_masses(amap, class_ids)[0].sum(0)
                self.class_mass[name] = self.class_mass.get(name, torch.zeros_like(mass)) + mass


class _MaskTally:
    """Running sums about the masks themselves (the same for every start point)."""

    def __init__(self) -> None:
        self.images = self.present = 0
        self.area = 0.0
        self.class_area = torch.zeros(ADE20K_CLASSES, dtype=torch.float64)
        self.class_images = torch.zeros(ADE20K_CLASSES, dtype=torch.float64)

    def add(self, objects: Tensor, class_ids: Tensor | None) -> None:
        areas = objects.flatten(1).double().mean(1)
        self.images += len(objects)
        self.present += int((areas > 0).sum())
        self.area += float(areas.sum())
        if class_ids is not None:
            area = class_masses(torch.ones(class_ids.shape[0], 1, *class_ids.shape[1:]), class_ids)[1]
            self.class_area += area.sum(0)
            self.class_images += (area > 0).double().sum(0)


def _start_report(label: str, tally: _Tally, masks: _MaskTally) -> StartReport:
    area = masks.area / masks.present
    layers = {
        name: LayerScores(
            tally.hits[name] / masks.present,
            mass / masks.present,
            mass / masks.present / area,
            tally.frame[name] / masks.present,
        )
        for name, mass in tally.mass.items()
    }
    if not tally.class_mass:
        return StartReport(label, layers)
    return StartReport(
        label,
        layers,
        {name: region_masses(mass, masks.class_area, masks.images) for name, mass in tally.class_mass.items()},
        {name: ranked_classes(mass, masks.class_area, masks.class_images) for name, mass in tally.class_mass.items()},
    )


def evaluate_attention(
    model_or_checkpoint: nn.Module | LoadedModel | str | Path,
    dataset: ImageDataset | str,
    *,
    split: str = "test",
    limit: int | None = 256,
    batch_size: int = 32,
    image_size: int | None = None,
    data_root: str | Path | None = None,
    baselines: Sequence[str] = BASELINES,
    controls: Sequence[str] = (),
    class_maps: bool | None = None,
    device: str | torch.device = "auto",
    on_batch: Callable[[int, int], None] | None = None,
) -> AttentionReport:
    """Pointing game and attention mass in object masks, per layer, beside a random init and uniform attention.

    Args:
        model_or_checkpoint: a model, a checkpoint file or run folder, ``"random"``, or a
            :class:`~universal_attention.runs.loading.LoadedModel` (keeps its label).
        dataset: a dataset built with ``with_masks=True``, or a dataset name (opened with ``split``,
            ``image_size`` and ``data_root``).
        split: split of a named dataset.
        limit: evaluate a fixed random subset of this many images (seed 0); ``None`` for all.
        batch_size: images per forward pass.
        image_size: square side for a named dataset (default: the checkpoint's ``data.image_size``, else 128).
        data_root: data root for a named dataset.
        baselines: which of ``"random_init"`` (same architecture, seed 0; not added for ``"random"``)
            and ``"uniform"`` to add.
        controls: the model again under attention controls, each reported as a start point of its name:
            ``"oracle"`` (the mask as the map: the measure's ceiling at each tap's resolution) and
            ``"shuffled"`` (another image's map: what the maps' statistics alone score). ``"uniform"`` is
            the ``uniform`` baseline.
        class_maps: masks are ADE20K class maps (default: when the dataset is ``ade20k``).
        device: where to run the models: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:1"``... (a model
            you pass is moved there).
        on_batch: called with ``(images done, images in all)`` after every batch.

    Raises:
        DatasetError: the dataset has no masks, or no evaluated image has object pixels.
        CheckpointError: the checkpoint cannot be read. ConfigError: an unknown baseline or device.
        ModelError: the model has no attention.
    """
    started = time.perf_counter()
    unknown = [name for name in baselines if name not in BASELINES]
    if unknown:
        raise ConfigError(f"unknown baseline(s) {', '.join(unknown)}; choose from {', '.join(BASELINES)}")
    check_controls(controls)
    controls = [name for name in controls if name not in ("learned", "uniform")]
    if class_maps and "oracle" in controls:
        raise ConfigError("the oracle control needs 0/1 object masks, not ADE20K class maps")
    device = resolve_device(device)
    loaded = resolve_model(model_or_checkpoint)
    require_attention(loaded.model)
    if isinstance(dataset, str):
        dataset = get_dataset(
            dataset, split, root=data_root, image_size=image_size_for(loaded.experiment, image_size), with_masks=True
        )
    name = dataset_name(dataset)
    class_maps = name == "ade20k" if class_maps is None else class_maps
    models = {"model": loaded.model.to(device)}
    if "random_init" in baselines and loaded.label != RANDOM_LABEL:
        models["random_init"] = random_model(loaded.model.config).to(device)
    tallies = {key: _Tally() for key in [*models, *controls, *(["uniform"] if "uniform" in baselines else [])]}
    masks_tally = _MaskTally()
    indices = fixed_subset(len(dataset), limit).tolist()
    lookup = object_lookup()
    for start in range(0, len(indices), batch_size):
        images, masks = _batch(dataset, indices[start : start + batch_size])
        if class_maps and int(masks.max()) >= ADE20K_CLASSES:
            raise DatasetError(f"{name}: class map value {int(masks.max())} is outside 0..150")
        class_ids = masks.long() if class_maps else None
        objects = lookup[class_ids] if class_ids is not None else masks > 0
        masks_tally.add(objects, class_ids)
        layer_names: list[str] = []
        for key, model in models.items():
            maps = attention_maps(model, images.to(device), layers=[*model.config.tap_layers(), COMBINED])
            layer_names = list(maps)
            tallies[key].add(maps, objects, class_ids)
        for control in controls:
            maps = attention_maps(
                models["model"],
                images.to(device),
                layers=[*models["model"].config.tap_layers(), COMBINED],
                control=control,
                masks=masks.to(device),
            )
            tallies[control].add(maps, objects, class_ids)
        if "uniform" in tallies:
            uniform = torch.ones(len(images), 1, *images.shape[-2:])
            tallies["uniform"].add(dict.fromkeys(layer_names, uniform), objects, class_ids)
        if on_batch:
            on_batch(min(start + batch_size, len(indices)), len(indices))
    if masks_tally.present == 0:
        raise DatasetError(
            f"none of the {masks_tally.images} evaluated images of {name} has object pixels in its "
            "mask; evaluate more images (--limit)"
        )
    labels = {
        "model": loaded.label,
        "random_init": "random init (seed 0)",
        "uniform": "uniform attention",
        "oracle": "oracle attention (the mask)",
        "shuffled": "the model's maps, shuffled across images",
    }
    starts = {key: _start_report(labels[key], tally, masks_tally) for key, tally in tallies.items()}
    return AttentionReport(
        name,
        getattr(dataset, "split", None),
        masks_tally.images,
        masks_tally.images - masks_tally.present,
        masks_tally.area / masks_tally.present,
        bool(class_maps),
        starts,
        time.perf_counter() - started,
    )


def attention_in_mask(
    model: nn.Module,
    dataset: ImageDataset,
    *,
    limit: int | None = 64,
    batch_size: int = 32,
    device: str | torch.device = "auto",
) -> AttentionMass:
    """Measure where ``model`` looks on images of ``dataset`` (built with ``with_masks=True``), per tap.

    The quick form of :func:`evaluate_attention` (no baselines, no combined map) used during training; a
    model without attention gets empty dicts (and ``mean_mass()`` NaN).

    Raises:
        DatasetError: the dataset yields no masks.
    """
    if not has_attention(model):
        return AttentionMass({}, {}, {}, {}, float("nan"), 0)
    report = evaluate_attention(model, dataset, limit=limit, batch_size=batch_size, baselines=(), device=device)
    layers = {name: scores for name, scores in report.starts["model"].layers.items() if name != COMBINED}
    return AttentionMass(
        mass_in_mask={name: scores.mass_in_mask for name, scores in layers.items()},
        relative_to_area={name: scores.relative_to_area for name, scores in layers.items()},
        pointing_game={name: scores.pointing_game for name, scores in layers.items()},
        frame_share={name: scores.frame_share for name, scores in layers.items()},
        mask_area=report.mask_area,
        images=report.images,
    )


def example_grid(
    model: AttentionResNet50,
    dataset: ImageDataset,
    *,
    count: int = 6,
    limit: int | None = 256,
    class_maps: bool | None = None,
    device: str | torch.device = "auto",
) -> Image.Image:
    """The first ``count`` images :func:`evaluate_attention` evaluates (same ``limit``), object mask outlined,
    with every tap's and the combined map's overlay."""
    indices = fixed_subset(len(dataset), limit)[:count].tolist()
    images, masks = _batch(dataset, indices)
    if class_maps if class_maps is not None else dataset_name(dataset) == "ade20k":
        masks = object_lookup()[masks.long()]
    device = resolve_device(device)
    maps = attention_maps(model.to(device), images.to(device), layers=[*model.config.tap_layers(), COMBINED])
    outlined = images.clone()
    for image, mask in zip(outlined, masks):
        image[:, mask_outline((mask > 0).to(torch.uint8))] = torch.tensor(OUTLINE, dtype=torch.uint8)[:, None]
    return attention_grid(
        outlined,
        maps,
        title=f"{dataset_name(dataset)}: object mask outlined in cyan",
        cell_size=max(128, images.shape[-1]),
    )
