"""Markdown tables and the number formats of a run's report (and of the study's summary)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..data.preview import printable


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; cells are made printable on one line, with ``|`` and markup escaped (a class
    name is data, never HTML)."""

    def cell(value: Any) -> str:
        text = printable(str(value)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(cell(name) for name in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def number(value: Any, digits: int = 3) -> str:
    """A float at ``digits`` decimals, ``-`` for a missing or undefined value, anything else as it is."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def interval(pair: Sequence[float] | None, digits: int = 3, signed: bool = False) -> str:
    """``[low, high]``; ``-`` when the interval is undefined (a single run)."""
    if not pair or any(value is None or not math.isfinite(value) for value in pair):
        return "-"
    sign = "+" if signed else ""
    return f"[{pair[0]:{sign}.{digits}f}, {pair[1]:{sign}.{digits}f}]"


def cell_text(cell: Mapping[str, Any]) -> str:
    """``mean ± std [low, high]`` of a transfer cell's top-1."""
    return f"{number(cell['top1'])} ± {number(cell['top1_std'])} {interval(cell.get('top1_ci'))}"


def resolved(pair: Sequence[float] | None) -> bool:
    """Whether an interval excludes 0 (a difference larger than its noise)."""
    if not pair or any(value is None or not math.isfinite(value) for value in pair):
        return False
    return not pair[0] <= 0 <= pair[1]


def delta_text(entry: Mapping[str, Any]) -> str:
    """``+d [low, high]`` of a paired difference, ``*`` when its interval excludes 0."""
    mark = " *" if resolved(entry.get("ci")) else ""
    return f"{entry['delta_top1']:+.3f} {interval(entry.get('ci'), signed=True)}{mark}"
