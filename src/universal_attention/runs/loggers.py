"""What a run logs, through one small interface: TensorBoard events and a JSON-lines record, chosen in one place.

Meta-training, tuning and transfer talk only to :class:`RunLogger` (scalars, images, histograms, hparams, close);
:func:`open_run_logger` picks the backends. Every run folder gets ``metrics.jsonl`` beside ``tb/``: one JSON
object a line, readable without TensorBoard (``pandas.read_json(path, lines=True)``):

- ``{"kind": "scalar", "step": 10, "tag": "meta/loss", "value": 1.3, "wall_time": 1764670000.1}``;
- ``{"kind": "histogram", "step", "tag", "wall_time", "count", "mean", "std", "min", "max"}`` (the values' summary);
- ``{"kind": "image", "step", "tag", "wall_time", "file"}``: the picture itself is saved as a PNG under
  ``images/`` beside ``metrics.jsonl`` (``file`` is its path relative to the run folder);
- ``{"kind": "hparams", "wall_time", "params": {...}, "metrics": {...}}``.

A non-finite scalar is written as ``null`` (JSON has no NaN).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..atomic import atomic_write_bytes

METRICS_FILE = "metrics.jsonl"
IMAGES_FOLDER = "images"
TENSORBOARD_FOLDER = "tb"
HparamValue = bool | int | float | str


class RunLogger(Protocol):
    """The one interface every run logs through."""

    def scalar(self, tag: str, value: float, step: int) -> None:
        """One number at a step."""

    def image(self, tag: str, picture: Image.Image, step: int) -> None:
        """One picture at a step."""

    def histogram(self, tag: str, values: Tensor, step: int) -> None:
        """The distribution of some values at a step."""

    def hparams(self, params: Mapping[str, HparamValue], metrics: Mapping[str, float], name: str = "") -> None:
        """A run's (or a trial's, ``name``) hyperparameters with its final metrics, for comparing runs."""

    def close(self) -> None:
        """Flush and close everything the logger holds open."""


class JsonLinesLogger:
    """The plain-text backend: ``metrics.jsonl`` (one JSON object a line) and PNGs under ``images/``.

    ``purge_step`` (a resumed run's first new step) first drops the lines of steps from there on, which the run
    logged before it was stopped and will log again.
    """

    def __init__(self, folder: str | Path, purge_step: int | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / METRICS_FILE
        if purge_step is not None and path.is_file():
            kept = [line for line in _lines(path) if _step_of(line) < purge_step]
            atomic_write_bytes(path, "".join(line + "\n" for line in kept).encode())
        self._file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 (open for the logger's life)

    def _write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps({**record, "wall_time": time.time()}) + "\n")
        self._file.flush()

    def scalar(self, tag: str, value: float, step: int) -> None:
        number = float(value)
        self._write({"kind": "scalar", "step": step, "tag": tag, "value": number if math.isfinite(number) else None})

    def image(self, tag: str, picture: Image.Image, step: int) -> None:
        relative = Path(IMAGES_FOLDER) / f"{_file_safe(tag)}-step-{step:06d}.png"
        (self.folder / relative).parent.mkdir(parents=True, exist_ok=True)
        picture.convert("RGB").save(self.folder / relative)
        self._write({"kind": "image", "step": step, "tag": tag, "file": relative.as_posix()})

    def histogram(self, tag: str, values: Tensor, step: int) -> None:
        flat = values.detach().double().flatten().cpu()
        summary = {
            "count": len(flat),
            "mean": _finite(flat.mean()) if len(flat) else None,
            "std": _finite(flat.std()) if len(flat) > 1 else None,
            "min": _finite(flat.min()) if len(flat) else None,
            "max": _finite(flat.max()) if len(flat) else None,
        }
        self._write({"kind": "histogram", "step": step, "tag": tag, **summary})

    def hparams(self, params: Mapping[str, HparamValue], metrics: Mapping[str, float], name: str = "") -> None:
        finite = {key: _finite(torch.tensor(float(value))) for key, value in metrics.items()}
        self._write({"kind": "hparams", "name": name, "params": dict(params), "metrics": finite})

    def close(self) -> None:
        self._file.close()


class TensorBoardLogger:
    """TensorBoard event files under ``tb/`` (``purge_step`` drops events past a resumed run's checkpoint)."""

    def __init__(self, folder: str | Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imported here: tensorboard is slow to import

        self.folder = Path(folder)
        self._writer = SummaryWriter(str(self.folder), purge_step=purge_step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._writer.add_scalar(tag, value, step)

    def image(self, tag: str, picture: Image.Image, step: int) -> None:
        self._writer.add_image(tag, torch.from_numpy(np.array(picture.convert("RGB"))).permute(2, 0, 1), step)

    def histogram(self, tag: str, values: Tensor, step: int) -> None:
        self._writer.add_histogram(tag, values.detach().float().cpu(), step)

    def hparams(self, params: Mapping[str, HparamValue], metrics: Mapping[str, float], name: str = "") -> None:
        self._writer.add_hparams(dict(params), dict(metrics), run_name=name or ".")

    def close(self) -> None:
        self._writer.close()


class MultiLogger:
    """Every call goes to each backend in turn."""

    def __init__(self, backends: Sequence[RunLogger]) -> None:
        self.backends = list(backends)

    def scalar(self, tag: str, value: float, step: int) -> None:
        for backend in self.backends:
            backend.scalar(tag, value, step)

    def image(self, tag: str, picture: Image.Image, step: int) -> None:
        for backend in self.backends:
            backend.image(tag, picture, step)

    def histogram(self, tag: str, values: Tensor, step: int) -> None:
        for backend in self.backends:
            backend.histogram(tag, values, step)

    def hparams(self, params: Mapping[str, HparamValue], metrics: Mapping[str, float], name: str = "") -> None:
        for backend in self.backends:
            backend.hparams(params, metrics, name)

    def close(self) -> None:
        for backend in self.backends:
            backend.close()

    def __enter__(self) -> MultiLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_run_logger(
    folder: str | Path, *, purge_step: int | None = None, tensorboard: str = TENSORBOARD_FOLDER
) -> MultiLogger:
    """The logger of a run folder: TensorBoard under ``tb/`` (or ``tensorboard``) and ``metrics.jsonl`` (with
    ``images/``) beside it.

    The one place the backends are chosen. ``purge_step`` (a resumed run's first new step) drops TensorBoard
    events logged past the checkpoint the run resumes from; ``metrics.jsonl`` keeps every line, so its reader
    takes the last value of each (tag, step).
    """
    folder = Path(folder)
    return MultiLogger([TensorBoardLogger(folder / tensorboard, purge_step), JsonLinesLogger(folder, purge_step)])


def read_metrics(folder: str | Path, kind: str = "scalar") -> list[dict[str, Any]]:
    """The records of one kind in a run folder's ``metrics.jsonl`` (empty when it has none), in the order written."""
    path = Path(folder) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in _lines(path):
        record = _record(line)
        if record is not None and record.get("kind") == kind:
            records.append(record)
    return records


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def _record(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:  # a line cut short by a kill
        return None
    return record if isinstance(record, dict) else None


def _step_of(line: str) -> float:
    """A line's step; lines without one (hparams, damaged lines) count as step 0 and are kept."""
    record = _record(line)
    step = None if record is None else record.get("step")
    return step if isinstance(step, int) else 0


def hparam_value(value: Any) -> HparamValue:
    """A config value as TensorBoard's HParams take it: numbers, strings and booleans as they are, else JSON."""
    return value if isinstance(value, (bool, int, float, str)) else json.dumps(value)


def _finite(value: Tensor) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _file_safe(tag: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", tag).strip("_") or "image"
