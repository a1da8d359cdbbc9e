"""Start points side by side: paired differences with bootstrap intervals, the oracle fraction, the report dict."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from .results import TransferResult
from .stats import paired_bootstrap, ratio_bootstrap


def _paired(
    first: dict[tuple[int, int], float], second: dict[tuple[int, int], float]
) -> tuple[list[float], list[float]]:
    keys = sorted(first.keys() & second.keys())
    return [first[key] for key in keys], [second[key] for key in keys]


def paired_comparisons(results: Sequence[TransferResult], baselines: Sequence[str]) -> list[dict[str, Any]]:
    """Every start point against every baseline, per (attention, shots): the mean paired difference in top-1
    (same seed, draw and new-head init) with its 95 % bootstrap interval."""
    by_start = {result.start: result for result in results}
    comparisons = []
    for result in results:
        for baseline in baselines:
            if baseline == result.start or baseline not in by_start:
                continue
            for cell in result.cells:
                mine, theirs = _paired(
                    result.paired_top1(cell.shots, cell.attention),
                    by_start[baseline].paired_top1(cell.shots, cell.attention),
                )
                if not mine:
                    continue
                delta, interval = paired_bootstrap(mine, theirs)
                comparisons.append(
                    {
                        "start": result.start,
                        "baseline": baseline,
                        "attention": cell.attention,
                        "shots": cell.shots,
                        "pairs": len(mine),
                        "delta_top1": delta,
                        "ci": list(interval),
                    }
                )
    return comparisons


def oracle_fractions(result: TransferResult) -> list[dict[str, Any]]:
    """Per shots setting, where ``learned``, ``uniform`` and ``oracle`` all ran: (learned - uniform) /
    (oracle - uniform) over paired runs, with its 95 % bootstrap interval: the share of what perfect *where*
    is worth that the learned attention recovers."""
    controls = {cell.attention for cell in result.cells}
    if not {"learned", "uniform", "oracle"} <= controls:
        return []
    fractions = []
    for shots in dict.fromkeys(cell.shots for cell in result.cells):
        learned, uniform, oracle = (result.paired_top1(shots, name) for name in ("learned", "uniform", "oracle"))
        keys = sorted(learned.keys() & uniform.keys() & oracle.keys())
        values = [[table[key] for key in keys] for table in (learned, uniform, oracle)]
        fraction, interval = ratio_bootstrap((values[0], values[1]), (values[2], values[1]))
        fractions.append(
            {
                "start": result.start,
                "shots": shots,
                "fraction": fraction,
                "ci": list(interval),
                "oracle_gain": sum(values[2]) / len(keys) - sum(values[1]) / len(keys),
            }
        )
    return fractions


def transfer_report(results: Sequence[TransferResult], baselines: Sequence[str] = ()) -> dict[str, Any]:
    """Start points side by side, as ``uattn transfer`` saves them in ``results.json``: ``results`` (every
    start's runs and cells), ``cells`` (flat, with ``start``), ``comparisons`` (paired differences against each
    baseline) and ``oracle_fraction`` (where learned, uniform and oracle attention ran)."""
    return {
        "target": results[0].target if results else None,
        "mode": results[0].mode if results else None,
        "results": {result.start: result.to_dict() for result in results},
        "cells": [{"start": result.start, **asdict(cell)} for result in results for cell in result.cells],
        "comparisons": paired_comparisons(results, baselines),
        "oracle_fraction": [entry for result in results for entry in oracle_fractions(result)],
    }
