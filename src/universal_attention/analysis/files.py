"""What `uattn visualize` runs: image files and a model in, one labelled picture out."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn

from ..atomic import atomic_write_bytes
from ..config import DISPLAY_SIZE
from ..data.images import read_image, resize_and_crop
from ..data.registry import SYNTHETIC_PREFIX
from ..data.synthetic import TASK_CLASSES
from ..devices import resolve_device
from ..errors import ImageError, ModelError
from ..models.attention_resnet import DEFAULT_HEAD, TARGET_HEAD, AttentionResNet50
from ..runs.loading import LoadedModel, image_size_for, resolve_model
from .maps import eval_forward, require_attention, upsample_maps
from .pictures import DEFAULT_CMAP, Scale, attention_grid, colour_table

MIN_CELL = 160  # pictures in visualize_attention's grid are shown at least this wide


@dataclass
class LoadedImages:
    """Image files decoded to RGB: the square the model sees, and the same square at display size.

    Attributes:
        images: ``uint8 [B, 3, S, S]``: what the model sees (shorter side resized to S, centre crop).
        names: file name of every image.
        notes: what was odd about each file (``""`` for a plain RGB image), e.g. ``"converted from RGBA"``.
        skipped: ``"name: reason"`` for files in a folder that could not be decoded, or that were over
            ``max_images``.
        display: ``uint8 [B, 3, D, D]``: the same centre crop at display size D, from the original pixels.
    """

    images: Tensor
    names: list[str]
    notes: list[str]
    skipped: list[str]
    display: Tensor


def display_side(originals: Sequence[Tensor], size: int) -> int:
    """The side pictures are drawn at: ``size``, or less when no photo has that many pixels across its
    centre square (never below :data:`MIN_CELL`, so thumbnails stay visible)."""
    native = max(min(image.shape[-2:]) for image in originals)
    return max(MIN_CELL, min(size, native))


def load_image_files(
    paths: Sequence[str | Path], image_size: int, *, max_images: int = 16, display_size: int = DISPLAY_SIZE
) -> LoadedImages:
    """Decode image files of any size and mode (grayscale, RGBA, 16-bit, CMYK, ...) to square RGB.

    A folder stands for every file in it (sorted; files that are not images are skipped and listed).
    Each file gives the ``image_size`` square the model sees and the same centre square at the display
    side (:func:`display_side` of ``display_size``), resized from the original pixels, for pictures.

    Raises:
        ImageError: a path does not exist, a named file cannot be decoded, or nothing could be read.
    """
    images: list[Tensor] = []
    names: list[str] = []
    notes: list[str] = []
    skipped: list[str] = []
    for path in map(Path, paths):
        if not path.exists():
            raise ImageError(f"image {path} not found")
        in_folder = path.is_dir()
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")) if in_folder else [path]
        for file in files:
            if len(images) == max_images:
                skipped.append(f"{file.name}: over max_images={max_images}")
                continue
            image, note = read_image(file, draft_size=display_size)
            if image is None:
                if not in_folder:
                    raise ImageError(
                        f"{file} cannot be read as an image ({note}); give a JPEG, PNG or other image Pillow can decode"
                    )
                skipped.append(f"{file.name}: {note}")
                continue
            images.append(image)
            names.append(file.name)
            notes.append(note)
    if not images:
        raise ImageError(f"no readable image in {', '.join(map(str, paths))} ({len(skipped)} files skipped)")
    side = display_side(images, display_size)
    return LoadedImages(
        torch.stack([resize_and_crop(image, image_size) for image in images]),
        names,
        notes,
        skipped,
        torch.stack([resize_and_crop(image, side) for image in images]),
    )


def pick_head(model: AttentionResNet50, task: str | None) -> str | None:
    """The head to predict with: ``task``, else ``"default"``, else the target's head of a model that
    ``uattn transfer --save-model`` kept, else the only head; ``None`` if ambiguous.

    Raises:
        ModelError: ``task`` is given but the model has no head for it.
    """
    heads = list(getattr(model, "head_classes", {}))
    if task is not None:
        if task not in heads:
            raise ModelError(f"the model has no head for task '{task}' (heads: {', '.join(heads) or 'none'})")
        return task
    for preferred in (DEFAULT_HEAD, TARGET_HEAD):
        if preferred in heads:
            return preferred
    return heads[0] if len(heads) == 1 else None


def head_class_names(head: str, classes: int) -> list[str]:
    """Class names of a head that its model does not carry (checkpoints written before they stored them): known
    without reading data for synthetic tasks, else indices."""
    names = TASK_CLASSES.get(head.removeprefix(SYNTHETIC_PREFIX), ()) if head.startswith(SYNTHETIC_PREFIX) else ()
    return list(names) if len(names) == classes else [f"class {index}" for index in range(classes)]


def top_predictions(logits: Tensor, names: Sequence[str], k: int = 3) -> list[list[tuple[str, float]]]:
    """Per row of ``[B, classes]`` logits: the ``k`` most probable ``(class name, probability)``."""
    probabilities = logits.float().softmax(dim=1)
    values, indices = probabilities.topk(min(k, probabilities.shape[1]), dim=1)
    return [
        [(names[i], float(p)) for p, i in zip(row_values, row_indices.tolist())]
        for row_values, row_indices in zip(values, indices)
    ]


@dataclass
class Visualization:
    """What :func:`visualize_attention` made.

    Attributes:
        picture: per image a row: the image, then one overlay per layer; predictions in the captions.
        images: the images as shown, ``uint8 [B, 3, D, D]`` (image files: the crop the model sees, at the
            display side D from the original pixels).
        maps: layer -> ``[B, 1, D, D]`` maps as shown (upsampled).
        native: tap -> ``[B, 1, h, w]`` maps at the tap's own resolution.
        names: file name (or ``"image N"``) of every row.
        heads: every head of the model.
        head: the head the predictions come from, or ``None`` (no head, or several and no ``task``).
        predictions: per image, the top-3 ``(class, probability)``; ``None`` without a head.
        model_label: which model it is (e.g. ``"step-000200.safetensors (step 200)"``).
        skipped: files of a folder that were not shown, with the reason.
    """

    picture: Image.Image
    images: Tensor
    maps: dict[str, Tensor]
    native: dict[str, Tensor]
    names: list[str]
    heads: list[str]
    head: str | None
    predictions: list[list[tuple[str, float]]] | None
    model_label: str
    skipped: list[str]

    def save(self, path: str | Path) -> Path:
        """Write the picture as PNG (atomically) and return the path."""
        buffer = io.BytesIO()
        self.picture.save(buffer, format="PNG")
        atomic_write_bytes(Path(path), buffer.getvalue())
        return Path(path)

    def save_maps(self, path: str | Path) -> Path:
        """Write the maps as safetensors: ``maps/<layer>`` (as shown), ``native/<tap>``, ``images``.

        The metadata holds ``names`` (JSON list, one per row) and ``model``.
        """
        tensors = {"images": self.images.contiguous()}
        tensors.update({f"maps/{name}": amap.float().contiguous() for name, amap in self.maps.items()})
        tensors.update({f"native/{name}": amap.float().contiguous() for name, amap in self.native.items()})
        metadata = {"names": json.dumps(self.names), "model": self.model_label}
        atomic_write_bytes(Path(path), safetensors_bytes(tensors, metadata=metadata))
        return Path(path)


def visualize_attention(
    model_or_checkpoint: nn.Module | LoadedModel | str | Path,
    images: Sequence[str | Path] | Tensor,
    *,
    layers: Sequence[str] | None = None,
    task: str | None = None,
    image_size: int | None = None,
    display_size: int = DISPLAY_SIZE,
    alpha: float = 0.5,
    max_images: int = 16,
    device: str | torch.device = "auto",
    scale: Scale = "per-map",
    cmap: str = DEFAULT_CMAP,
) -> Visualization:
    """Attention overlays of image files (or a ``[B, 3, H, W]`` tensor) in one labelled picture.

    Args:
        model_or_checkpoint: a model, a checkpoint file or run folder, or ``"random"`` (untrained).
        images: image files and folders (every image in them), or a uint8 / 0..1 float tensor.
        layers: taps to show, optionally ``"combined"`` (default: every tap).
        task: head for the top-3 predictions (default: ``"default"``, or the only head).
        image_size: square side the files are resized and cropped to for the model (default: the
            checkpoint's ``data.image_size``, else 128).
        display_size: side of the pictures of image files: the model's crop is drawn from the original
            pixels at this size (at most the photo's own), and every map is upsampled onto it.
        alpha: weight of the maps in the overlays.
        max_images: at most this many images from the files given.
        device: where to run the model: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:1"``... (a model
            you pass is moved there).
        scale: ``per-map`` (every map stretched to the full colour range) or ``shared`` (one scale relative to
            uniform attention for every panel, with a colour bar); every panel states its map's peak and entropy
            relative to uniform either way.
        cmap: the colour map of the overlays: ``inferno`` (default, built in), or any matplotlib colour map name
            (needs matplotlib).

    Raises:
        ImageError: a file is missing or unreadable. ModelError: unknown layer or task, or no attention.
        ConfigError: ``device`` is not a device; ``cmap`` is unknown, or not inferno without matplotlib installed.
    """
    colour_table(cmap)  # an unusable colour map fails before the model is loaded
    loaded = resolve_model(model_or_checkpoint)
    require_attention(loaded.model)
    run_device = resolve_device(device)
    model = loaded.model.to(run_device)
    if isinstance(images, Tensor):
        batch = LoadedImages(images, [f"image {i}" for i in range(len(images))], [""] * len(images), [], images)
    else:
        batch = load_image_files(
            images, image_size_for(loaded.experiment, image_size), max_images=max_images, display_size=display_size
        )
    head = pick_head(model, task)
    output = eval_forward(model, batch.images.to(run_device), head)
    softmax = model.config.normalisation == "softmax"
    maps = upsample_maps(output.attention, batch.display.shape[-2:], softmax, layers)
    predictions = None
    captions = [f"{name} ({note})" if note else name for name, note in zip(batch.names, batch.notes)]
    if head is not None and output.logits is not None:
        names = model.class_names.get(head) or head_class_names(head, model.head_classes[head])
        predictions = top_predictions(output.logits.cpu(), names)
        captions = [
            caption + f"\n{head}: " + " · ".join(f"{label} {p:.2f}" for label, p in top)
            for caption, top in zip(captions, predictions)
        ]
    picture = attention_grid(
        batch.display,
        maps,
        captions=captions,
        alpha=alpha,
        title=f"attention of {loaded.label}",
        cell_size=max(MIN_CELL, batch.display.shape[-1]),
        annotate=True,
        scale=scale,
        cmap=cmap,
    )
    native = {name: amap.cpu() for name, amap in output.attention.items()}
    return Visualization(
        picture,
        batch.display,
        maps,
        native,
        batch.names,
        list(model.head_classes),
        head,
        predictions,
        loaded.label,
        batch.skipped,
    )
