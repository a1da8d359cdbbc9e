"""A contact sheet of dataset samples: class name under each image, mask outlines drawn on top."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .images import resize_and_crop, resize_and_crop_mask

OUTLINE = (255, 220, 0)
CAPTION_HEIGHT = 14


def printable(text: str) -> str:
    """``text`` as one drawable line: a control character (a newline in a class folder's name) is shown escaped
    (``\\n``), since drawing and measuring text take single lines."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


def mask_outline(mask: torch.Tensor) -> torch.Tensor:
    """Boolean ``[H, W]``: pixels whose mask value differs from their right or lower neighbour.

    Works for 0/1 masks and class maps alike (every region boundary is outlined).
    """
    edge = torch.zeros(mask.shape, dtype=torch.bool)
    edge[:, :-1] |= mask[:, 1:] != mask[:, :-1]
    edge[:-1, :] |= mask[1:, :] != mask[:-1, :]
    return edge


def sample_rows(datasets: dict[str, Any], n: int = 8, *, tile: int = 128) -> Image.Image:
    """One row of ``n`` samples per dataset, each row headed by the dataset's name (see :func:`sample_grid`)."""
    grids = {name: sample_grid(dataset, n, tile=tile, columns=n) for name, dataset in datasets.items()}
    width = max(grid.width for grid in grids.values())
    sheet = Image.new("RGB", (width, sum(CAPTION_HEIGHT + grid.height for grid in grids.values())), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    top = 0
    for name, grid in grids.items():
        draw.text((2, top + 1), printable(name), fill=(0, 0, 0), font=ImageFont.load_default())
        sheet.paste(grid, (0, top + CAPTION_HEIGHT))
        top += CAPTION_HEIGHT + grid.height
    return sheet


def sample_grid(dataset: Any, n: int = 16, *, tile: int = 128, columns: int | None = None) -> Image.Image:
    """``n`` samples spread evenly over ``dataset`` in a grid (square-ish unless ``columns`` is given).

    Args:
        dataset: any dataset of the protocol (items ``(image, label)`` or ``(image, label, mask)``).
        n: number of samples (fewer if the dataset is smaller).
        tile: side of each square thumbnail in pixels.
        columns: thumbnails per row.

    Returns:
        An RGB image with the class name under every thumbnail.
    """
    count = min(n, len(dataset))
    columns = columns or max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / columns))
    sheet = Image.new("RGB", (columns * tile, rows * (tile + CAPTION_HEIGHT)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for slot in range(count):
        item = dataset[slot * len(dataset) // count]
        thumbnail = resize_and_crop(item[0], tile).clone()
        if len(item) > 2:
            edge = mask_outline(resize_and_crop_mask(item[2], tile))
            thumbnail[:, edge] = torch.tensor(OUTLINE, dtype=torch.uint8)[:, None]
        left, top = (slot % columns) * tile, (slot // columns) * (tile + CAPTION_HEIGHT)
        sheet.paste(Image.fromarray(np.ascontiguousarray(thumbnail.permute(1, 2, 0).numpy())), (left, top))
        caption = printable(str(dataset.classes[int(item[1])]))
        while len(caption) > 1 and draw.textlength(caption, font=font) > tile - 4:
            caption = caption[:-1]
        draw.text((left + 2, top + tile + 1), caption, fill=(0, 0, 0), font=font)
    return sheet
