"""Built-in synthetic tasks that need *where*: the offline default for demos, CI and benchmarks.

Every image shows a cluttered, textured background (a colour gradient, a patch of stripes and small distractor
blobs) and FOUR objects drawn the same way: the target and three decoys, one in each quarter of the image (in
a random order). Each task asks one property of the target, and the four objects carry the four values of that
property, one each, so the image as a whole holds every value whatever the label: global statistics of the
image (colour histograms, object areas, ...) do not give it. One task-independent cue marks the target: a
marker beside it, a small bullseye (white on black or black on white) of the same size for every target, at a
random side of it and a fixed gap from its edge. The marker itself carries nothing about the target (an
outline ring would: its shape follows the target's and its width or length its size), so a network that only
detects the cue learns nothing; it has to look next to it. Finding the marked object is the one skill every
task shares; every property a task does not ask is drawn at random for each object.

Source tasks ask the target's colour, texture and size; held-out targets ask its orientation (every object is
elongated), the mark at its centre (glyph), and its hue among four hues that no source task uses (hue: the
colour features of the sources, with new values). ``shape`` is drawn the same way but is too slow to learn at
64 px to serve as either (see :data:`EXTRA_TASKS`). The mask marks the target.

Nothing is stored on disk: image ``i`` is drawn on demand from ``np.random.default_rng`` seeded with (seed,
split, task, i), and the labels of a whole split come from one seeded permutation (exactly balanced), so they
are known without drawing any image. Painted images are kept in memory for the whole process (up to
:data:`MEMO_BYTES`), shared by every dataset of the same task, split, seed, length and size: the next run of a
study or a search in the same process reads them instead of painting them again.
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
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
    "orientation": ("0deg", "45deg", "90deg", "135deg"),
    "glyph": ("none", "dot", "ring", "plus"),
    "hue": ("orange", "lime", "cyan", "purple"),
}
"""Every task's class names; a task's label indexes into its tuple."""
SOURCE_TASKS: tuple[str, ...] = ("colour", "texture", "size")
TARGET_TASKS: tuple[str, ...] = ("orientation", "glyph", "hue")
EXTRA_TASKS: tuple[str, ...] = ("shape",)
"""Tasks that are neither: ``shape`` is drawn like the others, but at 64 px a ResNet50 trained from scratch
barely learns it in the budgets used here even when told where the target is (docs/datasets.md)."""
TASKS: tuple[str, ...] = SOURCE_TASKS + TARGET_TASKS + EXTRA_TASKS
OBJECTS = 4
"""Objects per image: the target and one decoy for each other value of the asked property."""

DEFAULT_LENGTHS = {"train": 4000, "test": 1000}
MEMO_BYTES = 512 * 2**20
"""Bytes of pixels and masks of painted images kept in this process, over every synthetic dataset together."""
_SPLITS = {"train": "train", "test": "test", "val": "test", "validation": "test"}
_VERSION = 2  # bump whenever drawing changes, so caches built from older images are rebuilt

_HUES = (0.0, 55.0, 120.0, 225.0)  # red, yellow, green, blue (degrees): the colour task and every other task
_NEW_HUES = (28.0, 88.0, 175.0, 285.0)  # orange, lime, cyan, purple: only the held-out hue task uses them
_HUE_JITTER = 8.0
_SIZES = ((0.075, 0.085), (0.095, 0.105), (0.115, 0.125), (0.135, 0.145))  # radius / image size
_DISTRACTOR_SIZE = (0.025, 0.045)  # radius / image size: the smallest object is 1.7x the largest distractor
_DISTRACTORS = (6, 11)  # how many distractor blobs (low inclusive, high exclusive)
_MARKER_RADIUS = 0.04  # of the image size (at least 1.5 px): the marker's outer disc
_MARKER_GAP = 0.02  # of the image size (at least 1 px): between the target's edge and the marker
_DARK = np.float32(0.45)  # brightness of the dark part of a texture
_LUMA = np.array([0.3, 0.59, 0.11], np.float32)  # RGB weights of a colour's luminance
_RGB_K = (5.0, 3.0, 1.0)  # HSV to RGB: each channel's offset, in sixths of the hue circle
_PROPERTIES = ("shape", "colour", "texture", "size", "glyph")  # drawn at random unless asked

# Shapes of equal area (pi in units of the radius), so the size classes mean the same for every shape.
_SQUARE_HALF = 0.886
_TRIANGLE_INRADIUS = 0.778
_TRIANGLE_NORMALS = ((0.0, -1.0), (0.866, 0.5), (-0.866, 0.5))
_CROSS_LONG, _CROSS_WIDE = 1.108, 0.443
_REACH = (1.0, 1.26, 1.56, 1.2)  # how far each shape reaches from its centre, in radii
_SPRITES = 256  # distractor variants per image size (shape x texture x 16 random angles, sizes, stretches)


@dataclass
class _Object:
    """Everything needed to draw one object; ``props`` holds a class index per property of ``_PROPERTIES``."""

    props: dict[str, int]
    cx: float
    cy: float
    radius: float
    stretch: float
    angle: float
    colour: np.ndarray
    texture_angle: float
    period: float


class SyntheticTaskDataset:
    """One synthetic salient-object task; follows the dataset protocol.

    Args:
        task: one of ``TASKS``.
        split: ``"train"`` or ``"test"`` (``"val"`` and ``"validation"`` mean ``"test"``).
        image_size: side length S of the square images, at least 16; objects scale with it.
        with_masks: also return the target's mask (uint8 [S, S], 1 = the target).
        seed: any non-negative integer; each (seed, split) pair gives different images.
        length: number of images; defaults to 4000 for train and 1000 for test.
        with_object: ``False`` draws every image without its objects (the same background and clutter, the
            mask still marks where the target would be): a control on which any model must score chance.

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
        self._memo_key = (*self._key, length, image_size)  # with the index: everything that decides an image

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
        """Draw image ``index``, or the same image without its objects.

        With ``with_object=False`` none of the four objects is painted (the background and clutter are
        identical), and the mask still marks where the target would be.

        Returns:
            The image (uint8 [3, S, S]) and the target's mask (uint8 [S, S]).

        An image is painted from its own seed the first time it is asked for and kept in memory (up to
        :data:`MEMO_BYTES` in this process, shared with every dataset of the same task, split, seed, length and
        size), so later passes over the data cost a copy instead of a painting.

        Raises:
            IndexError: ``index`` is outside ``0 .. len(self) - 1``.
        """
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        key = (*self._memo_key, index, with_object)
        kept = _MEMO.get(key)
        if kept is not None:  # a copy: whoever receives the image may change it
            return kept[0].clone(), kept[1].clone()
        image, mask = self._draw(index, with_object)
        _MEMO.keep(key, image, mask)
        return image, mask

    def _draw(self, index: int, with_object: bool) -> tuple[Tensor, Tensor]:
        """Paint image ``index`` from its own seed (what :meth:`draw` keeps)."""
        # ``index + 1``: seeds with a trailing 0 equal shorter ones, and ``self._key`` seeds the labels.
        rng = np.random.default_rng([*self._key, index + 1])
        canvas = _background(rng, self.image_size)
        target, *decoys = _sample_objects(rng, self.image_size, self.task, self.labels[index])
        marker_angle, marker_white = rng.uniform(0, 2 * math.pi), bool(rng.integers(0, 2))
        mask = np.zeros((self.image_size, self.image_size), np.uint8)
        objects = (*decoys, target)  # the target is drawn last, so no decoy hides it
        footprints = [_footprint(obj, self.image_size) for obj in objects]
        for obj, footprint in zip(objects, footprints):
            _draw_object(canvas, mask if obj is target else None, obj, footprint, with_object)
        if with_object:
            _draw_marker(canvas, target, footprints[-1], marker_angle, marker_white)
        return torch.from_numpy(canvas.astype(np.uint8)), torch.from_numpy(mask)


class _Memo:
    """Painted images and masks by (seed, split, task, length, size, index, with_object), for the whole process,
    first come first kept up to :data:`MEMO_BYTES`; safe to fill from a prefetching thread."""

    def __init__(self) -> None:
        self.items: dict[tuple[object, ...], tuple[Tensor, Tensor]] = {}
        self.bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...]) -> tuple[Tensor, Tensor] | None:
        return self.items.get(key)

    def keep(self, key: tuple[object, ...], image: Tensor, mask: Tensor) -> None:
        size = image.numel() + mask.numel()  # uint8: one byte each
        with self._lock:
            if key not in self.items and self.bytes + size <= MEMO_BYTES:
                self.items[key] = (image.clone(), mask.clone())
                self.bytes += size

    def clear(self) -> None:
        with self._lock:
            self.items.clear()
            self.bytes = 0


_MEMO = _Memo()


def forget_painted_images() -> None:
    """Drop every painted image kept in this process, so the next reads paint again (what a benchmark of
    painting needs, or a long process that is done with its synthetic tasks)."""
    _MEMO.clear()


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
    count = int(rng.integers(*_DISTRACTORS))
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


def _sample_objects(rng: np.random.Generator, size: int, task: str, label: int) -> list[_Object]:
    """The target (first) and its decoys: the asked property takes value ``label`` on the target and each
    other value on one decoy; every other property is random per object. Each object gets its own quarter."""
    values = [label, *rng.permutation([value for value in range(OBJECTS) if value != label]).tolist()]
    quarters = rng.permutation(OBJECTS)
    return [_sample_object(rng, size, task, value, int(quarter)) for value, quarter in zip(values, quarters)]


def _sample_object(rng: np.random.Generator, size: int, task: str, value: int, quarter: int) -> _Object:
    """One object whose asked property is ``value``, placed in ``quarter`` (0..3, row by row)."""
    props = {name: int(rng.integers(0, 4)) for name in _PROPERTIES}
    if task in props:
        props[task] = value
    radius = size * rng.uniform(*_SIZES[props["size"]])
    if task == "orientation":  # elongated, long axis at 0/45/90/135 degrees
        stretch = math.sqrt(rng.uniform(1.8, 2.2))
        angle = math.radians(45 * value + rng.uniform(-5, 5))
    else:  # mildly elongated at any angle, so no other task's label says anything about orientation
        stretch = math.sqrt(rng.uniform(1.0, 1.3))
        angle = rng.uniform(0, 2 * math.pi)
    hues = _NEW_HUES if task == "hue" else _HUES
    hue = hues[value if task == "hue" else props["colour"]] + rng.uniform(-_HUE_JITTER, _HUE_JITTER)
    half = size / 2
    reach = min(radius * stretch * _REACH[props["shape"]], half / 2)  # stays in its quarter where it can
    row, column = divmod(quarter, 2)
    return _Object(
        props=props,
        cx=column * half + rng.uniform(reach, half - reach),
        cy=row * half + rng.uniform(reach, half - reach),
        radius=radius,
        stretch=stretch,
        angle=angle,
        colour=_hsv_one(hue, rng.uniform(0.7, 1), rng.uniform(0.7, 1)),
        texture_angle=rng.uniform(0, math.pi),
        period=_period(rng, size),
    )


@dataclass
class _Footprint:
    """The box around an object in an image: which of its pixels the object covers, the pixels' coordinates in
    the object's own frame (see :func:`_frame`), and the box's top row and left column."""

    inside: np.ndarray
    u: np.ndarray
    v: np.ndarray
    y0: int
    x0: int


def _footprint(obj: _Object, size: int) -> _Footprint:
    """The pixels ``obj`` covers in an image of side ``size``."""
    shape, su, sv = obj.props["shape"], obj.radius * obj.stretch, obj.radius / obj.stretch
    half = su * _REACH[shape] + 1
    y0, y1 = max(0, int(obj.cy - half)), min(size, math.ceil(obj.cy + half))
    x0, x1 = max(0, int(obj.cx - half)), min(size, math.ceil(obj.cx + half))
    u, v = _frame(y0, y1, x0, x1, obj.cx, obj.cy, obj.angle)
    return _Footprint(_sdf(shape, u, v, su, sv) <= 0, u, v, y0, x0)


def _draw_object(
    canvas: np.ndarray, mask: np.ndarray | None, obj: _Object, footprint: _Footprint, with_object: bool
) -> None:
    """Mark ``obj`` (covering ``footprint``) in ``mask`` (when given); if ``with_object``, also paint it."""
    inside, u, v = footprint.inside, footprint.u, footprint.v
    rows = slice(footprint.y0, footprint.y0 + inside.shape[0])
    columns = slice(footprint.x0, footprint.x0 + inside.shape[1])
    if mask is not None:
        mask[rows, columns] |= inside
    if not with_object:
        return
    region = canvas[:, rows, columns]
    np.copyto(region, obj.colour[:, None, None], where=inside)
    if obj.props["texture"]:  # texture 0 is plain
        dark = _pattern(obj.props["texture"], u, v, obj.texture_angle, obj.period) & inside
        np.copyto(region, _DARK * obj.colour[:, None, None], where=dark)
    if obj.props["glyph"]:  # glyph 0 is none
        sv = obj.radius / obj.stretch
        glyph = _glyph(obj.props["glyph"], u / (0.4 * sv), v / (0.4 * sv))
        luminance = float(obj.colour @ _LUMA)
        np.copyto(region, np.float32(255.0 if luminance < 140 else 0.0), where=glyph & inside)


def marker_place(
    obj: _Object, size: int, angle: float, footprint: _Footprint | None = None
) -> tuple[float, float, float]:
    """``(x, y, radius)`` of the marker beside ``obj``: on the first of eight directions from ``angle`` (turning
    by 45 degrees) where the whole marker fits in the image, the marker's edge a fixed gap from the nearest
    pixel of the object.

    A point outside every pixel of the object has its nearest pixel on the object's edge (an inner pixel has a
    neighbour nearer to the point), so only edge pixels are measured; a point inside a pixel of the object is
    under 1 px from it, never clear. ``footprint``: the object's, when already measured."""
    radius = max(1.5, _MARKER_RADIUS * size)
    clearance = radius + max(1.0, _MARKER_GAP * size)
    footprint = footprint or _footprint(obj, size)
    inside, y0, x0 = footprint.inside, footprint.y0, footprint.x0
    padded = np.zeros((inside.shape[0] + 2, inside.shape[1] + 2), bool)
    padded[1:-1, 1:-1] = inside
    inner = inside & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    rows, columns = np.nonzero(inside & ~inner)
    edge = np.stack([columns + x0 + 0.5, rows + y0 + 0.5], axis=1).astype(np.float32)
    steps = np.arange(
        0.0, 2 * obj.radius * obj.stretch * _REACH[obj.props["shape"]] + 2 * clearance, 0.25, dtype=np.float32
    )
    x = y = 0.0
    for turn in range(8):
        direction = angle + turn * math.pi / 4
        xs, ys = obj.cx + math.cos(direction) * steps, obj.cy + math.sin(direction) * steps
        nearest = np.sqrt(
            ((edge[None, :, 0] - xs[:, None]) ** 2 + (edge[None, :, 1] - ys[:, None]) ** 2).min(axis=1, initial=np.inf)
        )
        row, column = np.floor(ys).astype(np.int64) - y0, np.floor(xs).astype(np.int64) - x0
        within = (row >= 0) & (row < inside.shape[0]) & (column >= 0) & (column < inside.shape[1])
        on_object = np.zeros(len(steps), bool)
        on_object[within] = inside[row[within], column[within]]
        first = int(np.argmax((nearest >= clearance) & ~on_object))
        x, y = float(xs[first]), float(ys[first])
        if radius <= x <= size - radius and radius <= y <= size - radius:
            break
    return x, y, radius


def _draw_marker(canvas: np.ndarray, obj: _Object, footprint: _Footprint, angle: float, white: bool) -> None:
    """The target's marker: a bullseye (white disc with a black centre, or the reverse) beside it."""
    size = canvas.shape[-1]
    x, y, radius = marker_place(obj, size, angle, footprint)
    y0, y1 = max(0, int(y - radius) - 1), min(size, math.ceil(y + radius) + 1)
    x0, x1 = max(0, int(x - radius) - 1), min(size, math.ceil(x + radius) + 1)
    ys, xs = np.arange(y0, y1)[:, None], np.arange(x0, x1)[None, :]
    distance = np.sqrt((xs + 0.5 - x) ** 2 + (ys + 0.5 - y) ** 2)
    outer, inner = np.float32(255.0 if white else 0.0), np.float32(0.0 if white else 255.0)
    region = canvas[:, y0:y1, x0:x1]
    np.copyto(region, outer, where=(distance <= radius)[None])
    np.copyto(region, inner, where=(distance <= radius / 2)[None])


def _frame(y0: int, y1: int, x0: int, x1: int, cx: float, cy: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
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
    """The mark at the object's centre (1 dot, 2 ring, 3 plus; 0, none, draws nothing), in glyph units."""
    if glyph == 3:
        au, av = np.abs(u), np.abs(v)
        return ((au <= 1) & (av <= 0.3)) | ((au <= 0.3) & (av <= 1))
    radius = np.sqrt(u * u + v * v)
    return radius <= 0.6 if glyph == 1 else (radius >= 0.55) & (radius <= 1)


def _fraction(x: np.ndarray) -> np.ndarray:
    """``x % 1``, several times faster than numpy's float modulo."""
    return x - np.floor(x)


def _period(rng: np.random.Generator, size: int) -> float:
    """A texture period in pixels, about 7.5% of the image size."""
    return max(3.0, 0.075 * size) * rng.uniform(0.85, 1.15)


def _hsv_one(hue: float, saturation: float, value: float) -> np.ndarray:
    """One RGB colour (float32 [3], 0..255): :func:`_hsv` of one hue, saturation and value, the same arithmetic
    in Python floats, without numpy's cost per call on three numbers."""
    rgb = []
    for offset in _RGB_K:
        k = (offset + hue / 60.0) % 6
        rgb.append(255.0 * (value - value * saturation * min(max(min(k, 4 - k), 0.0), 1.0)))
    return np.array(rgb, np.float32)


def _hsv(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    """RGB colours (float32 [..., 3], 0..255) from hues in degrees and saturations, values in 0..1."""
    k = (np.array(_RGB_K) + hue[..., None] / 60.0) % 6
    chroma = (value * saturation)[..., None] * np.minimum(np.maximum(np.minimum(k, 4 - k), 0.0), 1.0)
    return (255.0 * (value[..., None] - chroma)).astype(np.float32)
