"""The figures of a run's report, drawn with matplotlib (the ``report`` extra) and saved as PNG.

matplotlib is imported only here and only when a figure is drawn; :func:`figure_class` says in one line which
extra installs it. Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot, no global state), so
drawing works in threads and without a display.

- :func:`curves_figure`: one panel per measure, one line per series, against the step.
- :func:`shots_figure`: top-1 against shots per class with 95 % CI bars, one line per start point.
- :func:`trials_figure`: a search's objective per trial and the best so far.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import atomic_write_bytes
from ..errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

EXTRA = 'pip install "universal-attention[report]"'
"""What installs matplotlib, the one package the figures need."""
PALETTE = ("#c82828", "#285ac8", "#2a9d4b", "#e68c14", "#9b4dca", "#6e6e6e", "#17a2b8", "#8c564b")
"""Line colours in order of the series (colour-blind tolerant enough for eight lines)."""

Series = Sequence[tuple[float, float]]
"""``(step, value)`` points of one line."""


def figure_class() -> type[Figure]:
    """matplotlib's ``Figure``.

    Raises:
        ConfigError: matplotlib is not installed (the message names the extra that installs it).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError(f"the report's figures need matplotlib: {EXTRA}") from None
    return Figure


def save_png(figure: Figure, path: Path) -> Path:
    """Write ``figure`` to ``path`` as a PNG, atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def colour_of(index: int) -> str:
    """The palette's colour of the ``index``-th series."""
    return PALETTE[index % len(PALETTE)]


def curves_figure(panels: Mapping[str, Mapping[str, Series]], xlabel: str = "meta-step", columns: int = 3) -> Figure:
    """One panel per title of ``panels``, one line per label of its series (``(step, value)`` points)."""
    rows = max(1, math.ceil(len(panels) / columns))
    width = min(columns, max(1, len(panels)))
    figure = figure_class()(figsize=(4.2 * width, 3.0 * rows))
    _fixed_margins(figure, rows, width)
    axes = figure.subplots(rows, width, squeeze=False)
    for index, (title, series) in enumerate(panels.items()):
        axis = axes[index // width][index % width]
        for number, (label, points) in enumerate(series.items()):
            steps, values = zip(*points) if points else ((), ())
            axis.plot(
                steps,
                values,
                color=colour_of(number),
                label=label,
                linewidth=1.2,
                marker="." if len(points) < 20 else None,
            )
        axis.set(title=title, xlabel=xlabel)
        if 1 < len(series) <= 8:
            axis.legend(fontsize="x-small")
    for index in range(len(panels), rows * width):
        axes[index // width][index % width].set_visible(False)
    return figure


def shots_figure(
    panels: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    starts: Sequence[str] | None = None,
    colours: Mapping[str, str] | None = None,
    chance: float | None = None,
    ylabel: str = "top-1 [95 % CI]",
) -> Figure:
    """Top-1 against shots per class, one panel per title of ``panels``, one line per start point.

    Args:
        panels: per panel, the cells to draw (dicts with ``start``, ``shots``, ``top1`` and ``top1_ci``, as
            ``results.json["cells"]`` holds them); shots settings are placed in their order of appearance.
        starts: the start points in the order they are drawn (default: their order in the cells).
        colours: a colour per start point (default: the palette in order).
        chance: a dotted line at chance level.
        ylabel: the y axis' label.
    """
    every = [cell for cells in panels.values() for cell in cells]
    order = list(starts) if starts is not None else list(dict.fromkeys(str(cell["start"]) for cell in every))
    shots = list(dict.fromkeys(cell["shots"] for cell in every))
    figure = figure_class()(figsize=(0.8 + 3.4 * max(1, len(panels)), 3.6), layout="constrained")
    axes = figure.subplots(1, max(1, len(panels)), sharey=True, squeeze=False)[0]
    for axis, (title, cells) in zip(axes, panels.items()):
        for row, start in enumerate(order):
            mine = {cell["shots"]: cell for cell in cells if cell["start"] == start}
            drawn = [s for s in shots if s in mine]
            if not drawn:
                continue
            means = [mine[s]["top1"] for s in drawn]
            low = [_finite_or(mine[s]["top1_ci"][0], mine[s]["top1"]) for s in drawn]
            high = [_finite_or(mine[s]["top1_ci"][1], mine[s]["top1"]) for s in drawn]
            offset = (row - (len(order) - 1) / 2) * 0.07  # bars side by side
            axis.errorbar(
                [shots.index(s) + offset for s in drawn],
                means,
                yerr=[[m - lo for m, lo in zip(means, low)], [hi - m for m, hi in zip(means, high)]],
                color=(colours or {}).get(start, colour_of(row)),
                label=start,
                marker="o",
                markersize=3,
                capsize=2,
                linewidth=1.2,
            )
        if chance is not None:
            axis.axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance")
        axis.set_xticks(range(len(shots)), [str(s) for s in shots])
        axis.set(title=title, xlabel="shots per class", ylim=(0, 1))
    axes[0].set_ylabel(ylabel)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 7))
    return figure


def trials_figure(objectives: Sequence[float | None], objective: str = "top-1") -> Figure:
    """A search's objective per trial (failed trials as crosses at the bottom) and the best so far."""
    figure = figure_class()(figsize=(6.0, 3.4), layout="constrained")
    axis = figure.subplots()
    done = [(index, value) for index, value in enumerate(objectives) if value is not None]
    failed = [index for index, value in enumerate(objectives) if value is None]
    if done:
        axis.plot(*zip(*done), "o", color=PALETTE[1], markersize=4, label="trial")
        best, running = -math.inf, []
        for index, value in done:
            best = max(best, value)
            running.append((index, best))
        axis.step(*zip(*running), where="post", color=PALETTE[0], linewidth=1.2, label="best so far")
    if failed:
        axis.plot(failed, [0.0] * len(failed), "x", color=PALETTE[5], label="failed")
    axis.set(xlabel="trial", ylabel=objective, title=f"{objective} per trial")
    axis.legend(fontsize="small")
    return figure


def _fixed_margins(figure: Figure, rows: int, columns: int) -> None:
    """Room for titles, tick labels and axis labels, set in inches: a grid of panels laid out this way draws
    in about half the time of matplotlib's constrained layout, which measures every tick label first."""
    width, height = figure.get_size_inches()
    left, right, top, bottom, across, down = 0.7, 0.15, 0.35, 0.5, 0.75, 0.8  # inches
    panel_width = (width - left - right - across * (columns - 1)) / columns
    panel_height = (height - top - bottom - down * (rows - 1)) / rows
    figure.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        top=1 - top / height,
        bottom=bottom / height,
        wspace=across / panel_width,
        hspace=down / panel_height,
    )


def _finite_or(value: float | None, fallback: float) -> float:
    """A CI end to draw: ``fallback`` (no bar) where the interval is undefined (one run)."""
    return value if value is not None and math.isfinite(value) else fallback
