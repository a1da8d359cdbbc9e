"""Attention pictures: maps upsampled to the image, coloured overlays, and grids (also for TensorBoard).

The *combined* map (layer name ``"combined"``) is the mean of every tap layer's upsampled map, each first
scaled to sum to one, so every tap counts the same whatever its resolution or normalisation. What
``uattn visualize`` runs on image files is in :mod:`universal_attention.analysis.files`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from importlib import resources
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from ..data.preview import printable
from ..errors import ConfigError

_FONT_SIZE = 12
_LINE = 15  # pixel height of one line of text at _FONT_SIZE

DEFAULT_CMAP = "inferno"
"""The colour map of overlays and colour bars; drawn from the packaged table, so it needs no matplotlib."""
_TABLE_SIZE = 256
_CMAP_EXAMPLES = ("inferno", "viridis", "magma", "plasma", "gray")


@functools.cache  # an lru_cache without a size limit
def colour_table(cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """The ``[256, 3]`` uint8 RGB table of a colour map (read-only, cached).

    ``inferno`` (the default) is read from the packaged ``inferno.csv``: matplotlib's inferno sampled at 256
    entries (CC0, by Nathaniel J. Smith, Stefan van der Walt and Eric Firing). Any other name is looked up in
    matplotlib's colour maps and sampled at 256 entries.

    Raises:
        ConfigError: ``cmap`` is not inferno and matplotlib is not installed, or matplotlib has no such map.
    """
    if cmap == DEFAULT_CMAP:
        text = resources.files(__package__).joinpath("inferno.csv").read_text(encoding="utf-8")
        rows = [line.split(",") for line in text.splitlines() if line.strip() and not line.startswith("#")]
        table = np.array(rows, dtype=np.uint8)
    else:
        try:
            import matplotlib
        except ImportError:
            raise ConfigError(f'--cmap {cmap} needs matplotlib: pip install "universal-attention[report]"') from None
        try:
            colour_map = matplotlib.colormaps[cmap]
        except KeyError:
            raise ConfigError(
                f"unknown colour map '{cmap}': give a matplotlib colour map name, e.g. {', '.join(_CMAP_EXAMPLES)}"
            ) from None
        rgba = np.asarray(colour_map(np.linspace(0.0, 1.0, _TABLE_SIZE)), dtype=np.float64)
        table = np.round(rgba[:, :3] * 255).astype(np.uint8)
    table.setflags(write=False)
    return table


def colorize(values: np.ndarray, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """Map values in 0..1 (any shape; clipped) to RGB uint8 (shape ``[..., 3]``) with the colour map ``cmap``:
    entry ``round(value * 255)`` of its :func:`colour_table`.

    Raises:
        ConfigError: an unknown ``cmap``, or one other than inferno without matplotlib installed.
    """
    table = colour_table(cmap)
    scaled = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0) * (_TABLE_SIZE - 1)
    index = np.clip(np.round(scaled), 0, _TABLE_SIZE - 1).astype(np.intp)
    return table[index]


def to_pil(image: Tensor) -> Image.Image:
    """A ``[3, H, W]`` uint8 (or 0..1 float) tensor as a PIL RGB image."""
    if image.is_floating_point():
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy()), mode="RGB")


def overlay(
    image: Tensor | Image.Image,
    attention_map: Tensor,
    alpha: float = 0.5,
    *,
    peak: float | None = None,
    cmap: str = DEFAULT_CMAP,
) -> Image.Image:
    """Blend a coloured attention map over an image.

    Args:
        image: ``[3, H, W]`` tensor or a PIL image of any mode.
        attention_map: ``[H, W]`` or ``[1, H, W]`` (resized to the image when the sizes differ).
        alpha: weight of the map in the blend (0: the image only, 1: the map only).
        peak: draw the map relative to uniform attention (its mean), with ``peak`` times uniform at the top of the
            colour scale, so that several maps share one scale; ``None`` (default): the map's own maximum is the top.
        cmap: the colour map (:func:`colour_table`): ``inferno`` (default), or any matplotlib colour map name.

    Returns:
        An RGB image of the input image's size.

    Raises:
        ConfigError: an unknown ``cmap``, or one other than inferno without matplotlib installed.
    """
    picture = image.convert("RGB") if isinstance(image, Image.Image) else to_pil(image)
    amap = attention_map.detach().float().reshape(-1, *attention_map.shape[-2:])[:1]
    if tuple(amap.shape[-2:]) != (picture.height, picture.width):
        amap = F.interpolate(amap[None], size=(picture.height, picture.width), mode="bilinear", align_corners=False)[0]
    values = amap[0].cpu().numpy()
    if peak is None:
        values = values / max(float(values.max()), 1e-12)
    else:
        values = values / max(float(values.mean()), 1e-12) / peak
    heat = Image.fromarray(colorize(values, cmap), mode="RGB")
    return Image.blend(picture, heat, alpha)


def map_figures(attention_map: Tensor) -> tuple[float, float]:
    """``(peak, entropy)`` of one map, both relative to uniform attention: its maximum over its mean (uniform = 1)
    and its entropy over the uniform map's (uniform = 1, all mass on one location = 0)."""
    mass = attention_map.detach().double().flatten().clamp_min(0)
    count = mass.numel()
    mass = mass / mass.sum().clamp_min(1e-300)
    entropy = float(-(mass * mass.clamp_min(1e-300).log()).sum() / math.log(count)) if count > 1 else 1.0
    return float(mass.max() * count), entropy


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=_FONT_SIZE)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, width: float, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> str:
    """``text`` as one line (control characters escaped, see :func:`printable`) cut (with an ellipsis) to at most
    ``width`` pixels."""
    text = printable(text)
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


Scale = Literal["per-map", "shared"]
SCALES: tuple[Scale, ...] = ("per-map", "shared")
_BAR_HEIGHT = 10


def attention_grid(
    images: Tensor,
    maps: dict[str, Tensor],
    *,
    captions: Sequence[str] | None = None,
    alpha: float = 0.5,
    title: str | None = None,
    cell_size: int | None = None,
    annotate: bool = False,
    scale: Scale = "per-map",
    cmap: str = DEFAULT_CMAP,
) -> Image.Image:
    """One row per image: the image, then one overlay per map (columns titled with the maps' names).

    Args:
        images: ``[B, 3, H, W]`` images.
        maps: ``{name: [B, 1, H, W]}`` as from :func:`attention_maps`.
        captions: text under each row, across the whole row (``"\\n"`` starts a new line).
        alpha: weight of the maps in the overlays.
        title: a line of text above everything.
        cell_size: width each picture is shown at (default: the images' own width).
        annotate: write on every overlay its map's peak and entropy relative to uniform (:func:`map_figures`),
            so that a map 1.1 times uniform at its peak does not pass for a sharp one.
        scale: ``per-map`` stretches every map to the full colour range (its own peak at the top);
            ``shared`` puts every map on one scale, relative to uniform attention, up to the highest peak in
            the figure, drawn as a colour bar at the bottom.
        cmap: the colour map of the overlays and the colour bar (:func:`colour_table`): ``inferno`` (default), or
            any matplotlib colour map name.

    Raises:
        ValueError: an unknown ``scale``.
        ConfigError: an unknown ``cmap``, or one other than inferno without matplotlib installed.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    colour_table(cmap)  # an unusable colour map fails before any drawing
    count, _, height, width = images.shape
    cell_width = cell_size or width
    cell_height = round(height * cell_width / width)
    columns = 1 + len(maps)
    font = _font()
    figures = {name: [map_figures(amap[row]) for row in range(count)] for name, amap in maps.items()}
    shared_peak = max((peak for values in figures.values() for peak, _ in values), default=1.0)
    caption_lines = [caption.split("\n") for caption in captions] if captions else [[] for _ in range(count)]
    row_heights = [cell_height + _LINE * len(lines) + (4 if lines else 0) for lines in caption_lines]
    top = _LINE * (2 if title else 1) + 2
    bar = _BAR_HEIGHT + _LINE + 6 if scale == "shared" else 0
    grid = Image.new("RGB", (columns * cell_width, top + sum(row_heights) + bar), "white")
    draw = ImageDraw.Draw(grid)
    if title:
        draw.text((3, 1), _fit(draw, title, grid.width - 6, font), fill="black", font=font)
    for column, name in enumerate(["image", *maps]):
        draw.text(
            (column * cell_width + 3, top - _LINE - 1), _fit(draw, name, cell_width - 6, font), fill="black", font=font
        )
    for row in range(count):
        picture = to_pil(images[row])
        if picture.size != (cell_width, cell_height):
            picture = picture.resize((cell_width, cell_height), Image.Resampling.BILINEAR)
        grid.paste(picture, (0, top))
        for column, (name, amap) in enumerate(maps.items(), start=1):
            peak = shared_peak if scale == "shared" else None
            grid.paste(overlay(picture, amap[row], alpha, peak=peak, cmap=cmap), (column * cell_width, top))
            if annotate:
                map_peak, entropy = figures[name][row]
                label = _fit(draw, f"peak {map_peak:.2f}x, H {entropy:.2f}", cell_width - 6, font)
                left = column * cell_width + 2
                draw.rectangle((left, top + 2, left + draw.textlength(label, font=font) + 2, top + _LINE), fill="white")
                draw.text((left + 1, top + 2), label, fill="black", font=font)
        for number, line in enumerate(caption_lines[row]):
            draw.text(
                (3, top + cell_height + 2 + number * _LINE),
                _fit(draw, line, grid.width - 6, font),
                fill="black",
                font=font,
            )
        top += row_heights[row]
    if scale == "shared":
        _colour_bar(grid, draw, top + 3, shared_peak, font, cmap)
    return grid


def _colour_bar(
    grid: Image.Image,
    draw: ImageDraw.ImageDraw,
    top: int,
    peak: float,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    cmap: str = DEFAULT_CMAP,
) -> None:
    """The shared scale under a grid, in the colour map ``cmap``: 0 to ``peak`` times uniform attention, uniform
    marked."""
    width = grid.width - 6
    colours = colorize(np.linspace(0.0, 1.0, width, dtype=np.float32), cmap)
    grid.paste(Image.fromarray(np.repeat(colours[None], _BAR_HEIGHT, axis=0), mode="RGB"), (3, top))
    uniform = 3 + round((width - 1) * min(1.0, 1.0 / max(peak, 1e-12)))
    draw.line((uniform, top, uniform, top + _BAR_HEIGHT), fill="white", width=1)
    text = f"0 to {peak:.2f}x uniform attention (white line: uniform)"
    draw.text((3, top + _BAR_HEIGHT + 1), _fit(draw, text, width, font), fill="black", font=font)
