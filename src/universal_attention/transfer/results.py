"""Transfer results: one run, one cell of runs (means, sample standard deviations, t intervals), one start point."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConfigError
from .stats import mean_ci


@dataclass
class TransferRun:
    """One (attention, shots, seed, draw) run.

    ``steps`` is the number of optimiser steps it took (linear probes: L-BFGS iterations of the final fit);
    ``train_top1`` is its final accuracy on its own training shots (underfitting shows here);
    ``train_loss`` the mean loss of each tenth of its steps.
    """

    attention: str
    shots: int | str
    seed: int
    draw: int
    steps: int
    train_top1: float
    top1: float
    top5: float
    mean_per_class: float
    train_loss: list[float]
    train_size: int
    test_size: int
    seconds: float


@dataclass
class TransferCell:
    """Every run of one (attention, shots) setting: means, sample standard deviations and 95 % t intervals."""

    attention: str
    shots: int | str
    runs: int
    top1: float
    top1_std: float
    top1_ci: tuple[float, float]
    top5: float
    top5_std: float
    mean_per_class: float
    mean_per_class_std: float
    train_top1: float
    steps: int


@dataclass
class TransferResult:
    """What :func:`transfer_evaluate` returns for one start point; ``to_json()`` for ``results.json``."""

    start: str
    target: str
    mode: str
    num_classes: int
    runs: list[TransferRun]
    cells: list[TransferCell]
    wall_seconds: float
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict."""
        return asdict(self)

    def to_json(self) -> str:
        """The result as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)

    def cell(self, shots: int | str, attention: str = "learned") -> TransferCell:
        """The cell of one shots setting and attention control."""
        for entry in self.cells:
            if entry.shots == shots and entry.attention == attention:
                return entry
        raise KeyError(f"no cell for shots {shots!r} with attention {attention!r}")

    def paired_top1(self, shots: int | str, attention: str) -> dict[tuple[int, int], float]:
        """Top-1 of every run of a cell, keyed by (seed, draw)."""
        return {
            (run.seed, run.draw): run.top1 for run in self.runs if run.shots == shots and run.attention == attention
        }


def merge_results(results: Sequence[TransferResult]) -> TransferResult:
    """One start point's results from several calls (e.g. one per training seed) as one result: every run,
    and cells over all of them. The results must share start, target and mode."""
    first = results[0]
    if any((r.start, r.target, r.mode) != (first.start, first.target, first.mode) for r in results):
        raise ConfigError("merge_results needs results of one start point, target and mode")
    runs = [run for result in results for run in result.runs]
    settings = list(dict.fromkeys((run.attention, run.shots) for run in runs))
    cells = [
        summarise_cell(control, shots, [r for r in runs if (r.attention, r.shots) == (control, shots)])
        for control, shots in settings
    ]
    return TransferResult(
        start=first.start,
        target=first.target,
        mode=first.mode,
        num_classes=first.num_classes,
        runs=runs,
        cells=cells,
        wall_seconds=sum(r.wall_seconds for r in results),
        config=first.config,
    )


def summarise_cell(control: str, shots: int | str, runs: list[TransferRun]) -> TransferCell:
    """Mean, sample standard deviation and t interval of the runs of one (attention, shots) setting."""
    top1, top1_std, top1_ci = mean_ci([run.top1 for run in runs])
    top5, top5_std, _ = mean_ci([run.top5 for run in runs])
    per_class, per_class_std, _ = mean_ci([run.mean_per_class for run in runs])
    return TransferCell(
        attention=control,
        shots=shots,
        runs=len(runs),
        top1=top1,
        top1_std=top1_std,
        top1_ci=top1_ci,
        top5=top5,
        top5_std=top5_std,
        mean_per_class=per_class,
        mean_per_class_std=per_class_std,
        train_top1=mean_ci([r.train_top1 for r in runs])[0],
        steps=max(run.steps for run in runs),
    )
