"""Built-in synthetic salient-object tasks: the offline default for demos, CI and benchmarks.

Every image shows a cluttered, textured background (a colour gradient, a patch of stripes and a dozen
small distractor blobs with the same kinds of shapes, colours and textures as the object) and ONE salient
object with a known mask. The object is always clearly larger than every distractor and always has a white
or black outline ring, so *where to look* is one skill shared by every task; each task asks a different
question about the object, and every property a task does not ask is randomised. The background is drawn
independently of the label, so a model that ignores the object is at chance.

Nothing is stored: image ``i`` is drawn on demand from ``np.random.default_rng`` seeded with (seed, split,
task, i), and the labels of a whole split come from one seeded permutation (exactly balanced), so they
are known without drawing any image.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import DatasetError

TASK_CLASSES: dict[str, tuple[str, ...]] = {
    "shape": ("circle", "square", "triangle", "cross"),
    "colour": ("red", "yellow", "green", "blue"),
    "texture": ("plain", "stripes", "checker", "dots"),
    "size": ("small", "medium", "large", "huge"),
    "outline": ("thin", "thick", "double", "dashed"),
    "orientation": ("0deg", "45deg", "90deg", "135deg"),
    "glyph": ("none", "dot", "ring", "plus"),
}
"""Every task's class names; a task's label indexes into its tuple."""
SOURCE_TASKS: tuple[str, ...] = ("shape", "colour", "texture", "size", "outline")
TARGET_TASKS: tuple[str, ...] = ("orientation", "glyph")
TASKS: tuple[str, ...] = SOURCE_TASKS + TARGET_TASKS

DEFAULT_LENGTHS = {"train": 4000, "test": 1000}
_SPLITS = {"train": "train", "test": "test", "val": "test", "validation": "test"}
_VERSION = 1  # bump whenever drawing changes, so caches built from older images are rebuilt

_HUES = (0.0, 55.0, 120.0, 225.0)  # red, yellow, green, blue (degrees)
_SIZES = ((0.10, 0.12), (0.135, 0.155), (0.17, 0.19), (0.205, 0.225))  # radius / image size
_DISTRACTOR_SIZE = (0.03, 0.06)  # radius / image size: the smallest object is 1.7x the largest distractor
_DARK = np.float32(0.45)  # brightness of the dark part of a texture

# Shapes of equal area (pi in units of the radius), so the size classes mean the same for every shape.
_SQUARE_HALF = 0.886
_TRIANGLE_INRADIUS = 0.778
_TRIANGLE_NORMALS = ((0.0, -1.0), (0.866, 0.5), (-0.866, 0.5))
_CROSS_LONG, _CROSS_WIDE = 1.108, 0.443
_REACH = (1.0, 1.26, 1.56, 1.2)  # how far each shape reaches from its centre, in radii
_SPRITES = 256  # distractor variants per image size (shape x texture x 16 random angles, sizes, stretches)


@dataclass
class _Object:
    """Everything needed to draw the object; ``props`` holds one class index per entry of TASK_CLASSES."""

    props: dict[str, int]
    cx: float
    cy: float
    radius: float
    stretch: float
    angle: float
    colour: np.ndarray
    ring_colour: np.ndarray
    texture_angle: float
    period: float


class SyntheticTaskDataset:
    """One synthetic salient-object task; follows the dataset protocol.

    Args:
        task: one of ``TASKS``.
        split: ``"train"`` or ``"test"`` (``"val"`` and ``"validation"`` mean ``"test"``).
        image_size: side length S of the square images, at least 16; objects scale with it.
        with_masks: also return the object mask (uint8 [S, S], 1 = object or its outline).
        seed: any non-negative integer; each (seed, split) pair gives different images.
        length: number of images; defaults to 4000 for train and 1000 for test.
        with_object: ``False`` draws every image without its object (the same background, the mask still
            marks where the object would be): a control on which any model must score chance.

    Raises:
        DatasetError: unknown task or split, image size below 16, length below 1 or a negative seed.
    """

    def __init__(
        self,
        task: str,
        split: str = "train",
        *,
        image_size: int = 64,
        with_masks: bool = False,
        seed: int = 0,
        length: int | None = None,
        with_object: bool = True,
    ) -> None:
        if task not in TASK_CLASSES:
            raise DatasetError(f"unknown synthetic task '{task}'; valid tasks: {', '.join(TASKS)}")
        if split not in _SPLITS:
            raise DatasetError(f"unknown split '{split}' for synthetic/{task}; use train or test")
        if image_size < 16:
            raise DatasetError(f"synthetic image_size must be at least 16, got {image_size}")
        if seed < 0:
            raise DatasetError(f"synthetic seed must be a non-negative integer, got {seed}")
        self.task = task
        self.split = _SPLITS[split]
        self.image_size = image_size
        self.with_masks = with_masks
        self.with_object = with_object
        self.seed = seed
        self.classes = list(TASK_CLASSES[task])
        length = DEFAULT_LENGTHS[self.split] if length is None else length
        if length < 1:
            raise DatasetError(f"synthetic length must be at least 1, got {length}")
        self._key = [seed, ("train", "test").index(self.split), TASKS.index(task)]
        balanced = np.arange(length) % len(self.classes)
        self.labels: list[int] = np.random.default_rng(self._key).permutation(balanced).tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int] | tuple[Tensor, int, Tensor]:
        image, mask = self.draw(index, with_object=self.with_object)
        label = self.labels[int(index)]
        return (image, label, mask) if self.with_masks else (image, label)

    def fingerprint(self) -> str:
        """A short hex digest of everything that decides the images: task, split, seed, length, size."""
        text = f"synthetic-v{_VERSION}/{self.task}/{self.split}/{self.seed}/{len(self)}/{self.image_size}"
        if not self.with_object:
            text += "/without-object"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def draw(self, index: int, *, with_object: bool = True) -> tuple[Tensor, Tensor]:
        """Draw image ``index``, or the same image without its object.

        With ``with_object=False`` the object's pixels show the background that lies under it; everything
        else is identical, and the mask still marks where the object would be.

        Returns:
            The image (uint8 [3, S, S]) and the object mask (uint8 [S, S]).

        Raises:
            IndexError: ``index`` is outside ``0 .. len(self) - 1``.
        """
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        # ``index + 1``: seeds with a trailing 0 equal shorter ones, and ``self._key`` seeds the labels.
        rng = np.random.default_rng([*self._key, index + 1])
        canvas = _background(rng, self.image_size)
        obj = _sample_object(rng, self.image_size, self.task, self.labels[index])
        mask = np.zeros((self.image_size, self.image_size), np.uint8)
        _draw_object(canvas, mask, obj, with_object)
        return torch.from_numpy(canvas.astype(np.uint8)), torch.from_numpy(mask)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A float32 [3, S, S] canvas: a muted gradient, stripes over part of it, and distractor blobs."""
    coords = np.arange(size, dtype=np.float32) + (0.5 - size / 2)  # pixel centres, 0 at the image centre
    a, b = rng.uniform(0, 2 * math.pi, size=2).tolist()
    cos, sin = math.cos(a) / (1.5 * size), math.sin(a) / (1.5 * size)
    ramp = (coords * cos + 0.5)[None, :] + (coords * sin)[:, None]  # within 0..1
    start, end = _hsv(rng.uniform(0, 360, 2), rng.uniform(0, 0.35, 2), rng.uniform(0.35, 0.75, 2))
    canvas = start[:, None, None] + (end - start)[:, None, None] * ramp
    period = size * rng.uniform(0.05, 0.12)
    across = (coords * (math.cos(b) / period))[None, :] + (coords * (math.sin(b) / period))[:, None]
    stripes = (_fraction(across) < 0.5) & (ramp > rng.uniform(0.3, 0.7))
    np.multiply(canvas, np.float32(rng.uniform(0.6, 0.85)), out=canvas, where=stripes)
    count = int(rng.integers(10, 17))
    sprites = _distractor_sprites(size)
    picks, ys, xs = rng.integers(0, len(sprites), count), rng.random(count), rng.random(count)
    colours = _hsv(rng.uniform(0, 360, count), rng.uniform(0.3, 1, count), rng.uniform(0.35, 1, count))
    for pick, y, x, colour in zip(picks, ys, xs, colours):
        light, dark = sprites[pick]
        h, w = light.shape
        region = canvas[:, int(y * (size - h + 1)) :, int(x * (size - w + 1)) :][:, :h, :w]
        np.copyto(region, colour[:, None, None], where=light)
        np.copyto(region, _DARK * colour[:, None, None], where=dark)
    return canvas


@functools.lru_cache(maxsize=4)
def _distractor_sprites(size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """A fixed bank of distractor blobs for one image size: every shape and texture at random angles,
    sizes and stretches, as (light, dark) pixel masks. Drawing them once and only colouring and placing
    them per image is what makes generation fast; the bank does not depend on the dataset's seed."""
    rng = np.random.default_rng(0)
    sprites = []
    for k in range(_SPRITES):
        shape, texture = k % 4, k // 4 % 4
        radius = size * rng.uniform(*_DISTRACTOR_SIZE)
        stretch = math.sqrt(rng.uniform(1.0, 1.8))
        half = math.ceil(radius * stretch * _REACH[shape])
        side, angle = 2 * half + 1, rng.uniform(0, 2 * math.pi)
        u, v = _frame(0, side, 0, side, half + 0.5, half + 0.5, angle)
        inside = _sdf(shape, u, v, radius * stretch, radius / stretch) <= 0
        dark = inside & _pattern(texture, u, v, rng.uniform(0, math.pi), _period(rng, size))
        sprites.append((inside & ~dark, dark))
    return sprites


def _sample_object(rng: np.random.Generator, size: int, task: str, label: int) -> _Object:
    """Pick the object's properties: the asked one is ``label``, every other one is random."""
    props = {name: int(rng.integers(0, 4)) for name in TASK_CLASSES}
    props[task] = label
    radius = size * rng.uniform(*_SIZES[props["size"]])
    if task == "orientation":  # elongated, long axis at 0/45/90/135 degrees
        stretch = math.sqrt(rng.uniform(2.0, 2.4))
        angle = math.radians(45 * label + rng.uniform(-5, 5))
    else:  # mildly elongated at any angle, so no other task's label says anything about orientation
        stretch = math.sqrt(rng.uniform(1.0, 1.3))
        angle = rng.uniform(0, 2 * math.pi)
    margin = min(radius * stretch + _ring_width(size, props["outline"]), size / 2)
    hue = _HUES[props["colour"]] + rng.uniform(-10, 10)
    return _Object(
        props=props,
        cx=rng.uniform(margin, size - margin),
        cy=rng.uniform(margin, size - margin),
        radius=radius,
        stretch=stretch,
        angle=angle,
        colour=_hsv(np.array(hue), np.array(rng.uniform(0.7, 1)), np.array(rng.uniform(0.7, 1))),
        ring_colour=np.full(3, 255.0 * int(rng.integers(0, 2)), np.float32),
        texture_angle=rng.uniform(0, math.pi),
        period=_period(rng, size),
    )


def _draw_object(canvas: np.ndarray, mask: np.ndarray, obj: _Object, with_object: bool) -> None:
    """Mark ``obj`` (fill and outline ring) in ``mask``; if ``with_object``, also paint it on ``canvas``."""
    size = canvas.shape[-1]
    shape, su, sv = obj.props["shape"], obj.radius * obj.stretch, obj.radius / obj.stretch
    ring = _ring_width(size, obj.props["outline"])
    half = su * _REACH[shape] + ring + 1
    y0, y1 = max(0, int(obj.cy - half)), min(size, math.ceil(obj.cy + half))
    x0, x1 = max(0, int(obj.cx - half)), min(size, math.ceil(obj.cx + half))
    u, v = _frame(y0, y1, x0, x1, obj.cx, obj.cy, obj.angle)
    distance = _sdf(shape, u, v, su, sv)
    mask[y0:y1, x0:x1] = distance <= ring
    if not with_object:
        return
    region = canvas[:, y0:y1, x0:x1]
    np.copyto(region, obj.colour[:, None, None], where=distance <= 0)
    dark = _pattern(obj.props["texture"], u, v, obj.texture_angle, obj.period) & (distance <= 0)
    np.copyto(region, _DARK * obj.colour[:, None, None], where=dark)
    glyph = _glyph(obj.props["glyph"], u / (0.4 * sv), v / (0.4 * sv))
    luminance = float(obj.colour @ np.array([0.3, 0.59, 0.11], np.float32))
    np.copyto(region, np.float32(255.0 if luminance < 140 else 0.0), where=glyph)
    outline = _outline(obj.props["outline"], distance, ring, u / su, v / sv)
    np.copyto(region, obj.ring_colour[:, None, None], where=outline)


def _frame(
    y0: int, y1: int, x0: int, x1: int, cx: float, cy: float, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (u, v) of the pixels in rows y0..y1 and columns x0..x1, in a frame centred on (cx, cy)
    and turned ``angle`` radians anticlockwise (v points up)."""
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] + (0.5 - cx)
    dy = (cy - 0.5) - np.arange(y0, y1, dtype=np.float32)[:, None]
    c, s = math.cos(angle), math.sin(angle)
    return dx * c + dy * s, dy * c - dx * s


def _sdf(shape: int, u: np.ndarray, v: np.ndarray, su: float, sv: float) -> np.ndarray:
    """Signed distance in pixels (negative inside, exact near the edge) to shape number ``shape`` of
    ``TASK_CLASSES["shape"]``, of unit radius stretched to ``su`` pixels along u and ``sv`` along v."""
    if shape == 0:  # ellipse: (q - 1) / |grad q|, exact for a circle
        uu, vv = u * u, v * v
        q = np.sqrt(uu * (1 / su**2) + vv * (1 / sv**2))
        return (q - 1) * q / np.maximum(np.sqrt(uu * (1 / su**4) + vv * (1 / sv**4)), 1e-6)
    if shape == 1:
        return np.maximum(np.abs(u) - _SQUARE_HALF * su, np.abs(v) - _SQUARE_HALF * sv)
    if shape == 2:  # the farthest of the three edges, each scaled to pixels
        sides = []
        for nu, nv in _TRIANGLE_NORMALS:
            a, b = nu / su, nv / sv
            sides.append((u * a + v * b - _TRIANGLE_INRADIUS) / math.hypot(a, b))
        return np.maximum(np.maximum(sides[0], sides[1]), sides[2])
    au, av = np.abs(u), np.abs(v)
    bar = np.maximum(au - _CROSS_LONG * su, av - _CROSS_WIDE * sv)
    return np.minimum(bar, np.maximum(au - _CROSS_WIDE * su, av - _CROSS_LONG * sv))


def _pattern(texture: int, u: np.ndarray, v: np.ndarray, angle: float, period: float) -> np.ndarray:
    """Where a texture (plain, stripes, checker, dots) turned ``angle`` radians is dark."""
    if texture == 0:
        return np.zeros(u.shape, bool)
    c, s = math.cos(angle) / period, math.sin(angle) / period
    pu = _fraction(u * c + v * s)
    if texture == 1:
        return pu < 0.5
    pv = _fraction(v * c - u * s)
    if texture == 2:
        return (pu < 0.5) ^ (pv < 0.5)
    return (pu - 0.5) ** 2 + (pv - 0.5) ** 2 < 0.09


def _glyph(glyph: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The mark at the object's centre (none, dot, ring, plus), in glyph units."""
    if glyph == 0:
        return np.zeros(u.shape, bool)
    if glyph == 3:
        au, av = np.abs(u), np.abs(v)
        return ((au <= 1) & (av <= 0.3)) | ((au <= 0.3) & (av <= 1))
    radius = np.sqrt(u * u + v * v)
    return radius <= 0.6 if glyph == 1 else (radius >= 0.55) & (radius <= 1)


def _ring_width(size: int, outline: int) -> float:
    """How far (pixels) the outline reaches outside the fill: thin, thick, double, dashed."""
    return max((1.0, 2.0, 3.0, 1.5)[outline], size * (0.02, 0.055, 0.054, 0.04)[outline])


def _outline(outline: int, distance: np.ndarray, width: float, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The outline ring's pixels: a band of ``width`` outside the fill, split in two (double) or in eight
    dashes around the centre (dashed)."""
    band = (distance > 0) & (distance <= width)
    if outline == 2:
        return band & ((distance <= width / 3) | (distance > 2 * width / 3))
    if outline == 3:
        return band & (np.cos(8 * np.arctan2(v, u)) > 0)
    return band


def _fraction(x: np.ndarray) -> np.ndarray:
    """``x % 1``, several times faster than numpy's float modulo."""
    return x - np.floor(x)


def _period(rng: np.random.Generator, size: int) -> float:
    """A texture period in pixels, about 7.5% of the image size."""
    return max(3.0, 0.075 * size) * rng.uniform(0.85, 1.15)


def _hsv(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    """RGB colours (float32 [..., 3], 0..255) from hues in degrees and saturations, values in 0..1."""
    k = (np.array([5.0, 3.0, 1.0]) + hue[..., None] / 60.0) % 6
    chroma = (value * saturation)[..., None] * np.clip(np.minimum(k, 4 - k), 0, 1)
    return (255.0 * (value[..., None] - chroma)).astype(np.float32)
