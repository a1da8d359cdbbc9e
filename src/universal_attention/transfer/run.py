"""A transfer run in its own folder: several start points through one protocol, logged and saved as they finish.

What ``uattn transfer`` runs: the folder is claimed like a meta-train run's (marker written first, locked while the
run writes, refused when uattn did not make it or another process holds it), the resolved config is saved as
``config.yaml``, every finished run is logged (TensorBoard under ``tb/``, ``metrics.jsonl``), and ``results.json``
(:func:`~universal_attention.transfer.report.transfer_report`) is rewritten after every start point, so a stopped
run keeps the start points it finished. With ``save_model`` each start point's model of one run (see ``on_model`` of
:func:`~universal_attention.transfer.protocol.transfer_evaluate`) is saved in ``models/`` as a checkpoint as soon as
that start point is done, before ``results.json`` names it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import write_result
from ..config import RANDOM, ExperimentConfig, save_config
from ..devices import resolve_device
from ..errors import CheckpointError, ModelError
from ..models.attention_resnet import AttentionResNet50
from ..reports.build import report_after_run
from ..runs.checkpoint import experiment_of, read_metadata, resolve_checkpoint, save_checkpoint
from ..runs.folder import claim_folder, prepare_run_folder
from ..runs.loading import IMAGENET, LoadedModel, image_size_for
from ..runs.loggers import RunLogger, open_run_logger
from .protocol import model_shots_for, transfer_evaluate
from .report import transfer_report
from .results import TransferResult, TransferRun

RESULTS_FILE = "results.json"
MODELS_FOLDER = "models"
Start = AttentionResNet50 | str | Path


def run_tag(start: str, run: TransferRun) -> str:
    """The log tag of one run: ``<start>/<attention>/shots-<n>/seed-<s>-draw-<d>``."""
    return f"{start}/{run.attention}/shots-{run.shots}/seed-{run.seed}-draw-{run.draw}"


def log_run(logger: RunLogger, start: str, run: TransferRun) -> None:
    """A finished run's training loss curve (by tenth of its steps) and its test top-1 (at its last step)."""
    tag = run_tag(start, run)
    for index, loss in enumerate(run.train_loss):
        logger.scalar(f"{tag}/train_loss", loss, index)
    logger.scalar(f"{tag}/test_top1", run.top1, run.steps)


def model_file_name(start: str, taken: Collection[str] = ()) -> str:
    """The file a start point's model is saved as: its name with every character but letters, digits, ``.``, ``_``
    and ``-`` replaced, none of ``._-`` at either end (never a hidden file, no doubled ``.safetensors``), numbered
    when ``taken`` holds it already."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", start).removesuffix(".safetensors").strip("._-") or "model"
    name, number = f"{stem}.safetensors", 1
    while name in taken:
        number += 1
        name = f"{stem}-{number}.safetensors"
    return name


def start_image_size(start: nn.Module | LoadedModel | str | Path, image_size: int | None) -> int:
    """The image size a start point transfers at (as :func:`transfer_evaluate` picks it): ``image_size`` when set,
    else the size of the checkpoint's run, else the default."""
    if image_size is not None:
        return image_size
    if isinstance(start, LoadedModel):
        return image_size_for(start.experiment)
    if isinstance(start, nn.Module) or str(start) in (RANDOM, IMAGENET):
        return image_size_for(None)
    path = resolve_checkpoint(start)
    return image_size_for(experiment_of(read_metadata(path), path))


class ModelSaver:
    """Holds the one model a start point hands over and saves it in ``<out>/models`` (``transfer_run(save_model)``).

    Attributes:
        saved: start name -> the saved file, relative to the folder (``models/<name>.safetensors``).
    """

    def __init__(self, out: Path, config: ExperimentConfig) -> None:
        self.out, self.config = out, config
        self.saved: dict[str, str] = {}
        self._held: tuple[str, TransferRun, AttentionResNet50] | None = None

    def hold(self, start: str, run: TransferRun, model: AttentionResNet50) -> None:
        """Keep ``model`` (of ``run`` of ``start``) until :meth:`save`."""
        self._held = (start, run, model)

    def save(self, start: Start, result: TransferResult) -> Path:
        """Save the held model of ``start`` (whose transfer gave ``result``) atomically; returns the file.

        Raises:
            CheckpointError: no model is held, or it cannot be saved (non-finite weights).
        """
        held, self._held = self._held, None
        if held is None:
            raise CheckpointError(f"no model of {result.start} was handed over to save")
        name, run, model = held
        size = start_image_size(start, self.config.transfer.image_size)
        experiment = self.config.updated(model=model.config, data=self.config.data.updated(image_size=size))
        transfer = {
            "target": result.target,
            "start": name,
            "shots": run.shots,
            "seed": run.seed,
            "draw": run.draw,
            "attention": run.attention,
            "top1": run.top1,
            "mode": result.mode,
        }
        file = model_file_name(name, {Path(saved).name for saved in self.saved.values()})
        path = save_checkpoint(self.out / MODELS_FOLDER / file, model, experiment, extra={"transfer": transfer})
        self.saved[name] = f"{MODELS_FOLDER}/{file}"
        return path


def transfer_run(
    starts: Sequence[Start],
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    baselines: Sequence[str] = (),
    overwrite: bool = False,
    device: str = "auto",
    on_run: Callable[[str, TransferRun], None] | None = None,
    on_message: Callable[[str], None] = print,
    save_model: bool = False,
    model_shots: int | str | None = None,
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
        on_message: where one-line notes go (an ImageNet baseline that cannot be had is skipped with one; so is
            a model that cannot be saved).
        save_model: save every start point's model of one run (``on_model`` of :func:`transfer_evaluate`) as
            ``models/<start>.safetensors`` (start name made file-safe), written atomically as soon as the start
            point is done: a checkpoint whose run config has the model's own config and ``data.image_size`` of
            the transfer (so ``load_checkpoint``, ``uattn visualize --ckpt`` and ``uattn transfer --ckpt`` take
            it) and whose ``extra["transfer"]`` holds target, start, shots, seed, draw, attention, top1 and mode.
            The report then has ``models``: start name -> file, relative to ``out_dir``.
        model_shots: the shots setting whose model is saved (default: the largest number of shots, else the
            last setting of ``config.transfer.shots_per_class``); only read with ``save_model``.

    Returns:
        The report saved in ``results.json`` (``report.md`` and its figures are written beside it).

    Raises:
        ConfigError: with ``save_model``, a ``model_shots`` not in ``config.transfer.shots_per_class`` (refused
            before the folder is touched).
        RunFolderError: ``out_dir`` is not ours, is another kind of folder, is in use, or holds a transfer
            already (without ``overwrite``).
    """
    out = Path(out_dir)
    run_device = resolve_device(device)
    saver = None
    if save_model:
        model_shots_for(config.transfer.shots_per_class, model_shots)
        saver = ModelSaver(out, config)
    results: list[TransferResult] = []
    with claim_folder(out, "transfer"):
        prepare_run_folder(out, overwrite, resumable=False)
        save_config(config, out / "config.yaml")
        with open_run_logger(out) as logger:
            _transfer_starts(
                starts, config, out, baselines, run_device, logger, on_run, on_message, results, saver, model_shots
            )
        report_after_run(out, on_message)
    return _report(results, baselines, saver)


def _report(results: Sequence[TransferResult], baselines: Sequence[str], saver: ModelSaver | None) -> dict[str, Any]:
    report = transfer_report(results, baselines)
    if saver is not None:
        report["models"] = dict(saver.saved)
    return report


def _transfer_starts(
    starts: Sequence[Start],
    config: ExperimentConfig,
    out: Path,
    baselines: Sequence[str],
    device: torch.device,
    logger: RunLogger,
    on_run: Callable[[str, TransferRun], None] | None,
    on_message: Callable[[str], None],
    results: list[TransferResult],
    saver: ModelSaver | None,
    model_shots: int | str | None,
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
                on_model=None if saver is None else saver.hold,
                model_shots=None if saver is None else model_shots,
            )
        except ModelError as error:
            if index == 0 or str(start) != IMAGENET:
                raise
            on_message(f"skipped the imagenet baseline: {error}")
            continue
        results.append(result)
        if saver is not None:
            try:
                saver.save(start, result)
            except CheckpointError as error:
                on_message(f"not saving the model of {result.start}: {error}")
        report = _report(results, baselines, saver)
        kept = f"{RESULTS_FILE} there keeps what it held" + (" (the starts before)" if index else "")
        write_result(out / RESULTS_FILE, json.dumps(report, indent=2).encode(), report, kept)
