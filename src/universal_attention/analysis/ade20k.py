"""ADE20K attention: where maps fall on SceneParse150 class maps, per class and per region (object, stuff, unlabelled).

What :func:`~universal_attention.analysis.evaluate.evaluate_attention` adds for ADE20K; no other dataset has class maps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..data.ade20k import ade20k_classes
from .maps import normalised

ADE20K_CLASSES = 151  # class-map values 0..150
REGIONS = ("object", "stuff", "unlabelled")


@dataclass
class RegionMass:
    """Attention on one kind of pixels: mean mass, mean area (share of the image) and mass / area."""

    mass: float
    area: float
    relative: float | None


@dataclass
class ClassMass:
    """Attention on one SceneParse150 class, averaged over the images that show it."""

    index: int
    name: str
    stuff: bool
    images: int
    area: float
    mass: float
    relative: float


def class_masses(maps: Tensor, class_maps: Tensor, classes: int = ADE20K_CLASSES) -> tuple[Tensor, Tensor]:
    """Per image and class: attention share and area share of the class's pixels.

    Args:
        maps: ``[B, 1, H, W]`` non-negative attention.
        class_maps: ``[B, H, W]`` integer class per pixel, in ``0 .. classes - 1``.

    Returns:
        ``(mass, area)``, both ``[B, classes]``; each row sums to one.
    """
    ids = class_maps.flatten(1).long()
    flat = normalised(maps)
    mass = torch.zeros(len(flat), classes, dtype=torch.float64).scatter_add_(1, ids, flat)
    area = torch.zeros_like(mass).scatter_add_(1, ids, torch.ones_like(flat)) / ids.shape[1]
    return mass, area


def object_lookup() -> Tensor:
    """``[151]`` bool: which class-map values are "object" classes."""
    lookup = torch.zeros(ADE20K_CLASSES, dtype=torch.bool)
    lookup[1:] = torch.tensor([not entry.is_stuff for entry in ade20k_classes()])
    return lookup


def region_masses(class_mass: Tensor, class_area: Tensor, images: int) -> dict[str, RegionMass]:
    """Mass and area per region, averaged over ``images``, from per-class sums over those images.

    Args:
        class_mass: ``[151]`` attention share of every class, summed over the images.
        class_area: ``[151]`` area share of every class, summed over the images.
        images: how many images the sums are over.
    """
    objects, unlabelled = object_lookup(), torch.arange(ADE20K_CLASSES) == 0
    regions = {}
    for region, members in zip(REGIONS, (objects, ~objects & ~unlabelled, unlabelled)):
        mass = float(class_mass[members].sum()) / images
        area = float(class_area[members].sum()) / images
        regions[region] = RegionMass(mass, area, mass / area if area else None)
    return regions


def ranked_classes(class_mass: Tensor, class_area: Tensor, class_images: Tensor) -> list[ClassMass]:
    """Every class some image shows, averaged over those images, ranked by ``relative`` (highest first).

    Args:
        class_mass: ``[151]`` attention share of every class, summed over the images.
        class_area: ``[151]`` area share of every class, summed over the images.
        class_images: ``[151]`` how many of the images show each class.
    """
    entries = []
    for index, info in enumerate(ade20k_classes(), start=1):
        count = float(class_images[index])
        if count:
            mass, area = float(class_mass[index]) / count, float(class_area[index]) / count
            entries.append(ClassMass(index, info.name, info.is_stuff, int(count), area, mass, mass / area))
    return sorted(entries, key=lambda entry: -entry.relative)
