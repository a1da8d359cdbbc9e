"""Decode any image file into an RGB ``uint8`` tensor, and resize images and masks to a square.

Real datasets contain odd files: grayscale, CMYK, palette and RGBA images, 16-bit PNGs, 1x1 images,
truncated JPEGs, and text saved under an image name. :func:`read_image` converts every decodable file
to RGB, turned upright as its EXIF orientation says (a phone photo stored sideways), and says what it
did; it returns ``None`` (never raises) for a file that cannot be decoded, and for files it will not
decode: anything but a regular file (a FIFO would block forever), images of more than :data:`MAX_PIXELS`
pixels, and images longer than :data:`MAX_ASPECT_RATIO` times their width (a 1 x 2,000,000 px strip is a
2 KB PNG, and resizing its short side to the image size would take tens of gigabytes).
"""

from __future__ import annotations

import stat
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from ..errors import ImageError

T = TypeVar("T")

MAX_PIXELS = 89_478_485
"""Images with more pixels are unreadable here (Pillow's own bomb warning limit, about 90 MP): decoding one would
take gigabytes; a JPEG counts at its draft size."""
MAX_ASPECT_RATIO = 32
"""Images whose long side is more than this many times their short side are refused: the resize target (short side
at the image size, at most 1,024 px) stays under 32 M pixels."""
# Everything Pillow's decoders raise on a broken or hostile file.
_DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    Image.DecompressionBombError,
    NotImplementedError,
    OverflowError,
    MemoryError,
)
_ORIENTATION = 0x0112  # the EXIF tag: how the stored pixels are turned for display
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_TRUNCATED_LOCK = threading.Lock()


class _Refused(Exception):
    """A file read_image will not decode (too many pixels, or too elongated)."""


def shape_problem(width: int, height: int) -> str | None:
    """Why an image of ``width x height`` pixels is not decoded or resized here, or ``None``."""
    if width * height > MAX_PIXELS:
        return f"too large ({width}x{height} px; at most {MAX_PIXELS:,} are decoded)"
    if max(width, height) > MAX_ASPECT_RATIO * max(1, min(width, height)):
        return f"too elongated ({width}x{height} px; at most {MAX_ASPECT_RATIO}:1)"
    return None


@contextmanager
def _decode_truncated() -> Iterator[None]:
    # Pillow only has a process-wide switch; flip it for one retry instead of leaving it on, so
    # that a truncated file is reported as such everywhere else.
    with _TRUNCATED_LOCK:
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _decode(
    path: Path, convert: Callable[[Image.Image], tuple[T, str]], draft_size: int | None
) -> tuple[T | None, str]:
    """Open, fully decode and convert one file; retry a truncated file decoding what is there."""

    def attempt() -> tuple[T, str]:
        with Image.open(path) as image:
            if draft_size and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))  # decode at a reduced scale, still >= size
            problem = shape_problem(image.width, image.height)
            if problem is not None:
                raise _Refused(problem)
            image.load()
            if image.getexif().get(_ORIENTATION, 1) != 1:  # a phone photo stored sideways, shown upright by viewers
                image = ImageOps.exif_transpose(image)
            return convert(image)

    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return None, "not a regular file"
        return attempt()
    except FileNotFoundError:
        return None, "missing"
    except _Refused as refused:
        return None, str(refused)
    except UnidentifiedImageError:
        return None, "not an image"
    except _DECODE_ERRORS as first_error:
        try:
            with _decode_truncated():
                value, note = attempt()
        except (_Refused, *_DECODE_ERRORS):
            return None, f"unreadable ({first_error})"
        return value, "truncated, decoded partially" + (f"; {note}" if note else "")


def _wide_to_uint8(array: np.ndarray, sixteen_bit: bool) -> np.ndarray:
    values = array.astype(np.float32)  # one working copy, changed in place: exact enough for 8 bits out
    peak = float(values.max(initial=0.0))
    if sixteen_bit or 255 < peak <= 65535:
        values /= 257.0
    elif peak > 65535:
        values *= 255.0 / peak
    np.round(values, out=values)
    np.clip(values, 0, 255, out=values)
    return values.astype(np.uint8)


def _rgb_array(image: Image.Image) -> tuple[np.ndarray, str]:
    """Convert a decoded PIL image to an ``[H, W, 3]`` uint8 array and describe the conversion."""
    mode = image.mode
    if mode == "RGB":
        array, note = np.array(image), ""
    elif mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        gray = _wide_to_uint8(np.asarray(image), mode in _SIXTEEN_BIT_MODES)
        array, note = np.repeat(gray[:, :, None], 3, axis=2), f"converted from {mode} (high bit depth)"
    elif "A" in mode or (mode == "P" and "transparency" in image.info):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        flat = Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
        array, note = np.array(flat), f"converted from {mode} (transparency on white)"
    else:
        array, note = np.array(image.convert("RGB")), f"converted from {mode}"
    height, width = array.shape[:2]
    if min(height, width) < 8:
        note = "; ".join(filter(None, [note, f"tiny ({width}x{height} px)"]))
    return array, note


def _label_array(image: Image.Image) -> tuple[np.ndarray, str]:
    if image.mode in ("L", "P"):
        return np.array(image), ""  # palette indices are the labels
    if image.mode in _SIXTEEN_BIT_MODES or image.mode == "I":
        return np.clip(np.asarray(image), 0, 255).astype(np.uint8), f"converted from {image.mode}"
    return np.array(image.convert("L")), f"converted from {image.mode}"


def read_image(path: str | Path, *, draft_size: int | None = None) -> tuple[torch.Tensor | None, str]:
    """Decode one image file to RGB, saying what was odd about it.

    Args:
        path: the file.
        draft_size: when set, JPEGs may be decoded at a reduced scale whose shorter side is still at
            least this many pixels (much faster before :func:`resize_and_crop` to this size).

    Returns:
        ``(image, note)``: image is ``uint8 [3, H, W]`` or ``None`` when the file cannot be decoded;
        note is ``""`` for a plain 8-bit RGB image, otherwise a short description such as
        ``"converted from CMYK"``, ``"truncated, decoded partially"`` or ``"not an image"``.
    """
    array, note = _decode(Path(path), _rgb_array, draft_size)
    if array is None:
        return None, note
    return torch.from_numpy(array).permute(2, 0, 1).contiguous(), note


def load_rgb(path: str | Path, *, draft_size: int | None = None) -> torch.Tensor | None:
    """Decode any readable image file to ``uint8 [3, H, W]`` RGB; ``None`` if it cannot be decoded.

    Args:
        path: the file.
        draft_size: see :func:`read_image`.
    """
    return read_image(path, draft_size=draft_size)[0]


def load_label_map(path: str | Path) -> np.ndarray | None:
    """Read a single-channel PNG of per-pixel values (trimap, class map, segmentation) as-is.

    Returns:
        ``uint8 [H, W]`` values (palette images give their indices), or ``None`` if unreadable.
    """
    return _decode(Path(path), _label_array, None)[0]


def resize_mask_to(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize a ``[H, W]`` mask to exactly ``height x width`` with nearest-neighbour sampling."""
    if tuple(mask.shape) == (height, width):
        return mask
    return F.resize(mask[None], [height, width], interpolation=InterpolationMode.NEAREST_EXACT)[0]


def resize_and_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the shorter side is ``size`` (bilinear, antialiased), then centre-crop ``size x size``.

    Args:
        image: ``uint8 [3, H, W]``.
        size: output side in pixels.

    Raises:
        ImageError: the image is longer than :data:`MAX_ASPECT_RATIO` times its width (its resize would not fit
            in memory).
    """
    height, width = image.shape[-2:]
    if max(height, width) > MAX_ASPECT_RATIO * max(1, min(height, width)):
        raise ImageError(
            f"an image of {width}x{height} px is too elongated to resize (at most {MAX_ASPECT_RATIO}:1); crop it"
        )
    if tuple(image.shape[-2:]) != (size, size):
        image = F.resize(image, [size], interpolation=InterpolationMode.BILINEAR, antialias=True)
        image = F.center_crop(image, [size, size])
    return image


def resize_and_crop_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Resize and centre-crop a ``[H, W]`` mask exactly like :func:`resize_and_crop` (nearest-neighbour)."""
    if tuple(mask.shape) != (size, size):
        mask = F.resize(mask[None], [size], interpolation=InterpolationMode.NEAREST_EXACT)
        mask = F.center_crop(mask, [size, size])[0]
    return mask
