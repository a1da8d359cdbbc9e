"""A transfer run in its own folder: several start points through one protocol, logged and saved as they finish.

What ``uattn transfer`` runs: the folder is claimed like a meta-train run's (marker written first, locked while the
run writes, refused when uattn did not make it or another process holds it), the resolved config is saved as
``config.yaml``, every finished run is logged (TensorBoard under ``tb/``, ``metrics.jsonl``), and ``results.json``
(:func:`~universal_attention.transfer.report.transfer_report`) is rewritten after every start point, so a stopped
run keeps the start points it finished.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_result
from ..config import ExperimentConfig, save_config
from ..devices import resolve_device
from ..errors import ModelError
from ..models.attention_resnet import AttentionResNet50
from ..runs.folder import claim_folder, prepare_run_folder
from ..runs.loading import IMAGENET
from ..runs.loggers import RunLogger, open_run_logger
from .protocol import transfer_evaluate
from .report import transfer_report
from .results import TransferResult, TransferRun

RESULTS_FILE = "results.json"


def run_tag(start: str, run: TransferRun) -> str:
    """The log tag of one run: ``<start>/<attention>/shots-<n>/seed-<s>-draw-<d>``."""
    return f"{start}/{run.attention}/shots-{run.shots}/seed-{run.seed}-draw-{run.draw}"


def log_run(logger: RunLogger, start: str, run: TransferRun) -> None:
    """A finished run's training loss curve (by tenth of its steps) and its test top-1 (at its last step)."""
    tag = run_tag(start, run)
    for index, loss in enumerate(run.train_loss):
        logger.scalar(f"{tag}/train_loss", loss, index)
    logger.scalar(f"{tag}/test_top1", run.top1, run.steps)


def transfer_run(
    starts: Sequence[AttentionResNet50 | str | Path],
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    baselines: Sequence[str] = (),
    overwrite: bool = False,
    device: str = "auto",
    on_run: Callable[[str, TransferRun], None] | None = None,
    on_message: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Transfer every start point to ``config.data.target`` with the protocol ``config.transfer``, in ``out_dir``.

    Args:
        starts: checkpoints, run folders, models, ``"random"`` or ``"imagenet"``; the first is the one under test.
        config: the run: ``transfer`` (the protocol), ``data.target`` and ``data.data_root``, and ``model`` (the
            architecture of ``"random"``/``"imagenet"`` starts).
        out_dir: the transfer's folder (``config.yaml``, ``results.json``, ``tb/``, ``metrics.jsonl``).
        baselines: start names the others are compared with, run for run (paired differences).
        overwrite: replace a transfer that ``out_dir`` already holds (else it is refused).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        on_run: called after every run with the start point's name and the run.
        on_message: where one-line notes go (an ImageNet baseline that cannot be had is skipped with one).

    Returns:
        The report saved in ``results.json``.

    Raises:
        RunFolderError: ``out_dir`` is not ours, is another kind of folder, is in use, or holds a transfer
            already (without ``overwrite``).
    """
    out = Path(out_dir)
    run_device = resolve_device(device)
    results: list[TransferResult] = []
    with claim_folder(out, "transfer"):
        prepare_run_folder(out, overwrite, resumable=False)
        save_config(config, out / "config.yaml")
        with open_run_logger(out) as logger:
            _transfer_starts(starts, config, out, baselines, run_device, logger, on_run, on_message, results)
    return transfer_report(results, baselines)


def _transfer_starts(
    starts: Sequence[AttentionResNet50 | str | Path],
    config: ExperimentConfig,
    out: Path,
    baselines: Sequence[str],
    device: torch.device,
    logger: RunLogger,
    on_run: Callable[[str, TransferRun], None] | None,
    on_message: Callable[[str], None],
    results: list[TransferResult],
) -> None:
    """:func:`transfer_run` while this process holds the folder: ``results`` grows by each finished start."""
    for index, start in enumerate(starts):

        def finished(name: str, run: TransferRun) -> None:
            log_run(logger, name, run)
            if on_run is not None:
                on_run(name, run)

        try:
            result = transfer_evaluate(
                start,
                config.data.target,
                config.transfer,
                model_config=config.model,
                data_root=config.data.data_root,
                device=device,
                on_run=finished,
            )
        except ModelError as error:
            if index == 0 or str(start) != IMAGENET:
                raise
            on_message(f"skipped the imagenet baseline: {error}")
            continue
        results.append(result)
        report = transfer_report(results, baselines)
        kept = f"{RESULTS_FILE} there keeps what it held" + (" (the starts before)" if index else "")
        write_result(out / RESULTS_FILE, json.dumps(report, indent=2).encode(), report, kept)
