"""``report.md`` and its figures for a run folder, from the folder's own files.

:func:`write_report` reads what a finished (or stopped) ``uattn meta-train``, ``uattn transfer`` or ``uattn tune``
left in its folder (the marker's kind, ``config.yaml``, ``results.json``, ``metrics.jsonl``, ``trials.json``) and
writes ``report.md`` with its figures under ``figures/``:

- a meta-train run: loss, top-1 and attention curves against meta-steps, the held-out sources, the final
  comparison and its paired differences, the stage seconds and the last attention grid of the watched images;
- a transfer: top-1 against shots per attention control with 95 % CI bars, the cells, the paired differences,
  the oracle fraction and the models kept;
- a search: the objective per trial, the trials ranked and the best trial's parameters.

Without matplotlib the report is written all the same, with the tables and a line naming the extra that draws
the figures. The run commands call it last; ``uattn report FOLDER`` rebuilds it.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes
from ..errors import ConfigError, RunFolderError, UattnError
from ..runs.folder import KINDS, folder_kind
from ..runs.loggers import read_metrics
from . import figures
from .tables import cell_text, delta_text, interval, markdown_table, number

REPORT_FILE = "report.md"
FIGURES_FOLDER = "figures"
ALL_TASKS = "all tasks"
RESULTS_FILE = "results.json"


@dataclass
class Report:
    """A report being written: its markdown lines and the figures drawn so far.

    Attributes:
        folder: the run folder.
        lines: markdown lines of ``report.md``.
        figures: the PNG files written, relative to ``folder``.
        missing: why figures could not be drawn (matplotlib missing), or None.
    """

    folder: Path
    lines: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    missing: str | None = None

    @property
    def path(self) -> Path:
        """Where ``report.md`` goes."""
        return self.folder / REPORT_FILE

    def add(self, *lines: str) -> None:
        """Append markdown lines (each a paragraph, table or heading)."""
        self.lines.extend(lines)

    def figure(self, name: str, draw: Callable[[], Any], caption: str) -> None:
        """Draw a figure (``draw()`` returns a matplotlib Figure), save it as ``figures/<name>.png`` and link it;
        without matplotlib, note once which extra draws it."""
        if self.missing is None:
            try:
                drawn = draw()
            except ConfigError as error:
                self.missing = str(error)
            else:
                relative = f"{FIGURES_FOLDER}/{name}.png"
                figures.save_png(drawn, self.folder / relative)
                self.figures.append(relative)
                self.add(f"![{caption}]({relative})\n")
                return
        self.add(f"*{caption}: not drawn ({self.missing}).*\n")


def write_report(folder: str | Path) -> Report:
    """Write ``report.md`` (and ``figures/*.png``) for a run folder from its files alone.

    Returns:
        The :class:`Report` written: ``path``, the ``figures`` drawn, and ``missing`` (why figures were not drawn).

    Raises:
        RunFolderError: the folder is not a meta-train, transfer or tune folder of uattn, or a file the report
            needs is unreadable (the message names it).
    """
    out = Path(folder)
    kind = folder_kind(out)
    builders = {"run": _run_report, "transfer": _transfer_report, "search": _search_report}
    if kind not in builders:
        raise RunFolderError(
            f"{out} is a folder of `{KINDS[kind]}`, whose own files are its report; `uattn report` builds reports "
            "of meta-train, transfer and tune folders"
        )
    report = Report(out)
    builders[kind](report)
    atomic_write_bytes(report.path, ("\n".join(report.lines).rstrip() + "\n").encode("utf-8"))
    return report


def _json(path: Path) -> Any:
    """A JSON file of the folder, or None when it is missing."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RunFolderError(
            f"{path} is not readable JSON ({error}); the report needs it as the run wrote it"
        ) from None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _run_report(report: Report) -> None:
    out = report.folder
    results = _mapping(_json(out / RESULTS_FILE))
    report.add(f"# Meta-train run `{out.name}`\n", _config_line(out))
    if not results:
        report.add("No `results.json`: the run has not finished; what it logged so far is below.\n")
    _curves(report, read_metrics(out))
    sources = _mapping(results.get("sources"))
    if sources:
        taps = list(
            dict.fromkeys(
                tap
                for check in sources.values()
                for tap in _mapping(check.get("attention", {})).get("relative_to_area", {})
            )
        )
        rows = [
            [
                name,
                number(check.get("top1")),
                *(number(_mapping(check.get("attention")).get("relative_to_area", {}).get(tap), 2) for tap in taps),
            ]
            for name, check in sources.items()
            if isinstance(check, dict)
        ]
        report.add(
            "## Held-out source images\n",
            markdown_table(["source", "top-1", *(f"{tap} mass/area" for tap in taps)], rows),
        )
    starts = {
        key: value for key, value in results.items() if isinstance(value, dict) and "top1" in value and key != "sources"
    }
    if starts:
        _comparison(report, results, starts)
    stages = _mapping(results.get("stage_seconds"))
    if stages:
        total = sum(value for value in stages.values() if isinstance(value, (int, float)))
        report.add(
            "## Stage seconds\n",
            markdown_table(
                ["stage", "seconds"],
                [[name, number(float(value), 0)] for name, value in stages.items()]
                + [["total", number(float(total), 0)]],
            ),
        )
    pictures = [record for record in read_metrics(out, "image") if isinstance(record.get("file"), str)]
    if pictures:
        last = pictures[-1]
        if (
            (out / last["file"]).is_file()
            and not Path(last["file"]).is_absolute()
            and ".." not in Path(last["file"]).parts
        ):
            report.add(
                f"## Attention on the watched images (step {last.get('step')})\n",
                f"![{last.get('tag')} at step {last.get('step')}]({last['file']})\n",
            )


def _config_line(out: Path) -> str:
    """One line on what was run, from ``config.yaml`` (read as YAML, not validated: the report shows the file)."""
    import yaml

    path = out / "config.yaml"
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        config = None
    if not isinstance(config, dict):
        return "No readable `config.yaml` in the folder.\n"
    model, data, train = (_mapping(config.get(key)) for key in ("model", "data", "train"))
    sources = data.get("sources")
    return (
        f"Trunk `{model.get('trunk')}`, compatibility `{model.get('compatibility')}`, taps "
        f"{_listed(model.get('taps'), 'the trunk default')}; sources {_listed(sources)}; "
        f"target `{data.get('target')}`; {train.get('max_steps')} meta-steps at {data.get('image_size')} px "
        f"(the whole config: `config.yaml`).\n"
    )


def _listed(values: Any, otherwise: str = "-") -> str:
    return ", ".join(map(str, values)) if isinstance(values, list) and values else otherwise


def curve_panel(tag: str) -> tuple[str, str] | None:
    """The (panel, series) a logged scalar is drawn in, or None for tags the report leaves out."""
    parts = tag.split("/")
    if parts[0] == "meta" and len(parts) >= 2 and parts[1] in ("loss", "accuracy"):
        title = "meta-training loss" if parts[1] == "loss" else "meta-training top-1"
        return title, "/".join(parts[2:]) or ALL_TASKS
    if tag == "target/top1":
        return "periodic target check top-1", "target"
    if parts[0] == "sources" and len(parts) >= 3:
        if parts[-1] == "top1":
            return "held-out source top-1", "/".join(parts[1:-1])
        if len(parts) >= 5 and parts[-2] == "relative_to_area":
            return f"source attention mass/area at {parts[-1]}", "/".join(parts[1:-2])
    if (
        parts[0] == "attention"
        and len(parts) == 3
        and parts[1] in ("entropy", "saturated", "score_spread", "gradient_norm")
    ):
        titles = {
            "entropy": "map entropy / uniform",
            "saturated": "saturated tanh inputs",
            "score_spread": "score spread",
            "gradient_norm": "gradient norm at the attention",
        }
        return titles[parts[1]], parts[2]
    return None


def _curves(report: Report, records: Sequence[Mapping[str, Any]]) -> None:
    panels: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for record in records:
        tag, step, value = record.get("tag"), record.get("step"), record.get("value")
        placed = curve_panel(tag) if isinstance(tag, str) else None
        if placed and isinstance(step, int) and isinstance(value, (int, float)) and math.isfinite(value):
            panels[placed[0]][placed[1]][step] = float(value)  # the last value of a (tag, step) wins (resume)
    if not panels:
        return
    series = {
        title: {
            label: sorted(points.items()) for label, points in lines.items() if label != ALL_TASKS or len(lines) == 1
        }
        for title, lines in panels.items()
    }  # "all tasks" is the task of each step in turn: drawn only where no task has its own line
    report.add("## Curves\n")
    report.figure("curves", lambda: figures.curves_figure(series), "loss, top-1 and attention against meta-steps")


def _comparison(report: Report, results: Mapping[str, Any], starts: Mapping[str, Mapping[str, Any]]) -> None:
    taps = list(
        dict.fromkeys(
            tap for entry in starts.values() for tap in _mapping(entry.get("attention")).get("relative_to_area", {})
        )
    )
    rows = [
        [
            name,
            f"{number(entry.get('top1'))} ± {number(entry.get('top1_std'))}",
            interval(entry.get("top1_ci")),
            entry.get("runs", "-"),
            *(number(_mapping(entry.get("attention")).get("relative_to_area", {}).get(tap), 2) for tap in taps),
        ]
        for name, entry in starts.items()
    ]
    report.add(
        f"## Transfer to `{results.get('target')}`: final comparison\n",
        markdown_table(["start point", "top-1 ± std", "95 % CI", "runs", *(f"{tap} mass/area" for tap in taps)], rows),
        "mass/area: attention inside the target objects' masks over their share of the image; uniform scores 1.\n",
    )
    _differences(report, results.get("comparisons"))


def _differences(report: Report, comparisons: Any) -> None:
    entries = [entry for entry in comparisons or [] if isinstance(entry, dict) and "delta_top1" in entry]
    if not entries:
        return
    rows = [
        [e.get("start"), e.get("baseline"), e.get("attention"), e.get("shots"), e.get("pairs"), delta_text(e)]
        for e in entries
    ]
    report.add(
        "## Paired differences in top-1\n",
        markdown_table(["start", "baseline", "attention", "shots", "pairs", "difference [95 % CI]"], rows),
        "`*`: the interval excludes 0; without it the difference is not resolved.\n",
    )


def _transfer_report(report: Report) -> None:
    out = report.folder
    results = _mapping(_json(out / RESULTS_FILE))
    report.add(f"# Transfer `{out.name}`\n")
    cells = [
        cell
        for cell in results.get("cells") or []
        if isinstance(cell, dict) and {"start", "shots", "top1"} <= cell.keys()
    ]
    if not cells:
        report.add("No finished start point in `results.json` yet.\n")
        return
    classes = [
        entry.get("num_classes") for entry in _mapping(results.get("results")).values() if isinstance(entry, dict)
    ]
    chance = 1 / classes[0] if classes and isinstance(classes[0], int) and classes[0] > 0 else None
    report.add(
        f"Target `{results.get('target')}`, mode `{results.get('mode')}`; "
        f"{len({cell['start'] for cell in cells})} start point(s).\n"
    )
    controls = list(dict.fromkeys(str(cell.get("attention")) for cell in cells))
    panels = {
        f"attention: {control}": [cell for cell in cells if cell.get("attention") == control] for control in controls
    }
    report.figure(
        "top1_vs_shots", lambda: figures.shots_figure(panels, chance=chance), "top-1 against shots per class, 95 % CI"
    )
    rows = [
        [c["start"], c.get("attention"), c["shots"], c.get("runs"), cell_text(c), number(c.get("train_top1"))]
        for c in cells
    ]
    report.add(
        "## Cells\n",
        markdown_table(["start", "attention", "shots", "runs", "top-1 ± std [95 % CI]", "train top-1"], rows),
    )
    _differences(report, results.get("comparisons"))
    fractions = [entry for entry in results.get("oracle_fraction") or [] if isinstance(entry, dict)]
    if fractions:
        rows = [
            [
                e.get("start"),
                e.get("shots"),
                number(e.get("fraction"), 2),
                interval(e.get("ci"), 2),
                number(e.get("oracle_gain")),
            ]
            for e in fractions
        ]
        report.add(
            "## Oracle fraction\n",
            markdown_table(
                ["start", "shots", "(learned - uniform) / (oracle - uniform)", "95 % CI", "oracle gain"], rows
            ),
        )
    models = _mapping(results.get("models"))
    if models:
        report.add(
            "## Models kept\n",
            markdown_table(["start", "checkpoint"], [[start, f"`{file}`"] for start, file in models.items()]),
        )


def _search_report(report: Report) -> None:
    from ..tuning.folder import read_trials
    from ..tuning.search import trial_record

    out = report.folder
    report.add(f"# Search `{out.name}`\n")
    path = out / "trials.json"
    if not path.is_file():
        report.add("No `trials.json`: no trial has finished yet.\n")
        return
    search, entries = read_trials(path)
    records = sorted((trial_record(entry, out) for entry in entries), key=lambda record: record.tid)
    objective = "mean held-out source top-1" if search.get("objective") == "sources" else "target top-1"
    report.add(f"{len(records)} trial(s), {search.get('steps_per_trial')} meta-steps each, objective: {objective}.\n")
    report.figure(
        "trials", lambda: figures.trials_figure([r.top1 for r in records], objective), f"{objective} per trial"
    )
    keys = list(search.get("space") or {})
    ranked = sorted(records, key=lambda r: (r.top1 is None, -(r.top1 or 0.0), r.tid))
    rows = [
        [
            r.run_dir.name if r.run_dir else f"tid {r.tid}",
            number(r.top1),
            r.status,
            number(r.seconds, 0),
            *(_param(r.params.get(key)) for key in keys),
        ]
        for r in ranked
    ]
    report.add("## Trials, best first\n", markdown_table(["trial", objective, "status", "seconds", *keys], rows))
    best = next((r for r in ranked if r.top1 is not None), None)
    if best is not None:
        report.add(
            f"## Best trial: `{best.run_dir.name if best.run_dir else best.tid}`\n",
            markdown_table(["parameter", "value"], [[key, _param(value)] for key, value in best.params.items()]),
            "Its whole config is `best.yaml`: `uattn meta-train --config best.yaml`.\n",
        )


def _param(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else number(value)


def report_after_run(folder: Path, on_message: Callable[[str], None]) -> Path | None:
    """:func:`write_report` at the end of a run: the report's path, or None with a one-line note when it could not
    be written (the run's own files are never touched by a failed report)."""
    try:
        report = write_report(folder)
    except (UattnError, OSError) as error:
        on_message(f"report not written ({error}); rebuild it with `uattn report {folder}`")
        return None
    if report.missing is not None:
        on_message(f"report {report.path} without figures: {report.missing}")
    return report.path
