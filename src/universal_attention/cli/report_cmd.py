"""``uattn report FOLDER``: rebuild a run's ``report.md`` and its figures from the folder's files."""

from __future__ import annotations

from pathlib import Path

import click

from .output import make_console


@click.command("report")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def report_command(folder: Path) -> None:
    """Rebuild FOLDER's report.md and figures/*.png from its own files (results.json, metrics.jsonl,
    config.yaml, trials.json): a folder of `uattn meta-train`, `uattn transfer` or `uattn tune`, which write the
    report themselves when they finish. The figures need matplotlib (pip install "universal-attention[report]")."""
    from ..reports.build import write_report
    from ..runs.folder import claim_folder, folder_kind

    with claim_folder(folder, folder_kind(folder)):  # refused while a run still writes there
        report = write_report(folder)
    console = make_console()
    drawn = f"{len(report.figures)} figure(s)" if report.missing is None else f"no figures: {report.missing}"
    console.print(f"wrote {report.path} ({drawn})", highlight=False, soft_wrap=True)
