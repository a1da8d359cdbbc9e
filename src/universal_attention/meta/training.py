"""The meta-training run: datasets -> TaskSampler -> AttentionResNet50 -> Reptile, from one ExperimentConfig.

A run folder holds ``config.yaml`` (written first), ``checkpoints/step-NNNNNN.safetensors`` (the last
``train.keep_last`` plus ``best.safetensors`` by target accuracy), ``tb/`` (TensorBoard) and
``results.json`` (the final comparison of the meta-trained model with a random init).

Runs survive: every checkpoint carries the Reptile, sampler and RNG states, so ``resume=True`` continues
to the same tensors as an uninterrupted run; Ctrl-C or SIGTERM finishes the current meta-step, saves and
stops (during the final comparison: stops it and says so in ``results.json``); a non-finite loss or non-finite
weights stop the run before anything is saved, leaving the last good checkpoint newest. The main process holds
the run folder's lock for the whole run (:mod:`universal_attention.runs.folder`).
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import distributed
from ..analysis.diagnostics import (
    SourceCheck,
    attention_diagnostics,
    attention_gradient_norms,
    diagnostics_scalars,
    read_held_out,
    source_check,
    source_scalars,
)
from ..analysis.logged import log_attention
from ..atomic import write_result
from ..config import ExperimentConfig, load_config, save_config
from ..data.registry import SYNTHETIC_PREFIX, check_dataset, get_dataset, masks_available
from ..data.samples import ImageDataset
from ..errors import CheckpointError, RunFolderError, TrainingError, WriteError
from ..models.attention_resnet import AttentionResNet50
from ..reports.build import report_after_run
from ..runs.checkpoint import checkpoint_name, load_checkpoint, nonfinite_tensor, save_checkpoint
from ..runs.folder import (
    holding_run_folder,
    prepare_run_folder,
    readable_checkpoints,
    remove_old_checkpoints,
    resume_changes,
)
from ..runs.loggers import RunLogger, open_run_logger
from .comparison import compare_start_points, quick_transfer
from .reptile import Reptile
from .resume import foreign_keys, resume_state_problem
from .sampler import TaskSampler
from .supervision import supervised_loss

WATCHED_IMAGES = 6
DIAGNOSTIC_IMAGES = 8  # per masked source, every train.log_every steps


class StopRequested(BaseException):
    """SIGINT or SIGTERM arrived while the final comparison ran (a BaseException: nothing may swallow it)."""


@dataclass
class MetaTrainResult:
    """What :func:`meta_train` returns: where things went and the final comparison.

    ``seconds`` is the meta-training wall time (before the final comparison); ``images_per_second`` counts
    inner-loop training images over the time spent in meta-steps. ``interrupted`` is set when a signal
    stopped the run early (its checkpoint was saved).
    """

    out_dir: Path
    steps: int
    final_checkpoint: Path | None
    seconds: float
    images_per_second: float
    comparison: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False


def source_dataset(name: str, split: str, config: ExperimentConfig, *, with_masks: bool = False) -> ImageDataset:
    """A dataset at the run's image size, read through the pre-resized cache for real datasets."""
    root, size = config.data.data_root, config.data.image_size
    if config.data.cache and not name.startswith(SYNTHETIC_PREFIX):
        from ..data.cache import cached_dataset

        return cached_dataset(name, split, root=root, image_size=size, with_masks=with_masks)
    return get_dataset(name, split, root=root, image_size=size, with_masks=with_masks)


def masked_sources(config: ExperimentConfig) -> list[str]:
    """The sources whose object masks are on disk: held-out checks for every run, supervision where asked."""
    return [name for name in config.data.sources if masks_available(name, config.data.data_root)]


def check_datasets(config: ExperimentConfig) -> None:
    """Fail now if a source or the target dataset is unknown or not on disk (cheap: nothing is listed), so that
    nothing is written for a run that cannot start.

    Raises:
        DatasetError: the first dataset that cannot be opened.
    """
    for name, split in [*((source, "train") for source in config.data.sources), (config.data.target, "test")]:
        check_dataset(name, split, root=config.data.data_root)


@contextmanager
def stop_requests() -> Iterator[dict[str, bool]]:
    """While active, SIGINT/SIGTERM set ``flag["stop"]`` instead of killing; a second Ctrl-C interrupts at once.

    Once ``flag["raise"]`` is set, a signal raises :class:`StopRequested` instead (work that cannot stop between
    steps, such as the final comparison, is stopped where it is).
    """
    flag = {"stop": False, "raise": False}
    previous = {}

    def request(signum: int, frame: Any) -> None:
        if flag["stop"] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag["stop"] = True
        if flag["raise"]:
            raise StopRequested(signal.Signals(signum).name)

    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, request)
    except ValueError:  # not the main thread: signals stay as they are
        previous.clear()
    try:
        yield flag
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _Run:
    """The pieces of one meta-training run and the state that a checkpoint must carry."""

    def __init__(self, config: ExperimentConfig, out: Path, info: distributed.DistributedInfo) -> None:
        self.config, self.out, self.info = config, out, info
        sampler_config = config.sampler.updated(seed=config.sampler.seed + 1000 * info.rank)
        with_masks = masked_sources(config)
        supervised = with_masks if config.train.attention_supervision > 0 else []
        self.sources = {
            name: source_dataset(name, "train", config, with_masks=name in supervised) for name in config.data.sources
        }
        self.sampler = TaskSampler(
            self.sources,
            sampler_config,
            augment=config.data.augment,
            shuffle_labels=config.reptile.heads == "reset",
            masked=supervised,
        )
        self.held_out = {
            name: read_held_out(source_dataset(name, "test", config, with_masks=True), config.train.source_images)
            for name in with_masks
        }
        torch.manual_seed(config.train.seed)
        self.model = AttentionResNet50(config.model)
        for name, dataset in self.sources.items():
            if config.sampler.mode == "episodic":  # an episode's classes change from task to task: no names
                self.model.add_head(name, config.sampler.n_way)
            else:  # reset heads see their labels shuffled for every task: their outputs have no fixed names either
                names = None if config.reptile.heads == "reset" else dataset.classes
                self.model.add_head(name, len(dataset.classes), names)
        self.model.to_device(info.device)
        loss_fn = (
            supervised_loss(config.train.attention_supervision, config.model.normalisation) if supervised else None
        )
        self.reptile = Reptile(self.model, config.reptile, total_steps=config.train.max_steps, loss_fn=loss_fn)
        self.best_top1 = -math.inf
        self.target_top1 = float("nan")
        self._target: tuple[ImageDataset, ImageDataset] | None = None

    def source_checks(self) -> dict[str, SourceCheck]:
        """Every masked source's held-out check of the current weights (top-1, relative_to_area, entropy)."""
        return {name: source_check(self.model, held_out, name) for name, held_out in self.held_out.items()}

    def diagnostic_images(self) -> torch.Tensor | None:
        """The first images of every masked source's held-out set (the per-step diagnostics' batch)."""
        if not self.held_out:
            return None
        return torch.cat([held_out.images[:DIAGNOSTIC_IMAGES] for held_out in self.held_out.values()])

    def target(self) -> tuple[ImageDataset, ImageDataset]:
        """The target's ``(train, test)`` for the periodic checks: opened on first use, through the cache as the
        sources are, and kept."""
        if self._target is None:
            name = self.config.data.target
            self._target = (source_dataset(name, "train", self.config), source_dataset(name, "test", self.config))
        return self._target

    def state(self) -> dict[str, torch.Tensor]:
        """Reptile, sampler (every process's) and RNG states, as tensors."""
        state = {f"reptile.{key}": value for key, value in self.reptile.state_dict().items()}
        sampler_state = self.sampler.state_dict()
        per_process = {
            "sampler.rank{}.generator": sampler_state["generator"],
            "rng.rank{}.torch": torch.get_rng_state(),
        }
        if self.info.device.type == "cuda":
            per_process["rng.rank{}.cuda"] = torch.cuda.get_rng_state(self.info.device)
        for key, local in per_process.items():
            for rank, value in enumerate(self._gather(local)):
                state[key.format(rank)] = value
        state["sampler.tasks_sampled"] = torch.tensor(sampler_state["tasks_sampled"])
        state["rng.torch"] = state["rng.rank0.torch"].clone()  # the main process's, as checkpoints before 0.2 held
        state["run.best_top1"] = torch.tensor(self.best_top1, dtype=torch.float64)
        state["run.target_top1"] = torch.tensor(self.target_top1, dtype=torch.float64)
        return state

    def _gather(self, local: torch.Tensor) -> list[torch.Tensor]:
        """``local`` of every process, in rank order (``[local]`` in a single process)."""
        if not distributed.is_distributed():
            return [local]
        local = local.to(self.info.device)
        gathered = [torch.empty_like(local) for _ in range(self.info.world_size)]
        torch.distributed.all_gather(gathered, local)
        return [value.cpu() for value in gathered]

    def restore(self, path: Path) -> int:
        """Load a checkpoint of this run and return its step.

        Raises:
            RunFolderError: the checkpoint is another run's (its config differs; the keys are named).
            CheckpointError: it is unreadable or its resume state does not validate (the caller skips it).
            TrainingError: it was written by another number of processes.
        """
        loaded = load_checkpoint(path)
        foreign = foreign_keys(loaded.experiment, self.config)
        if foreign:
            raise RunFolderError(
                f"cannot resume {self.out}: {path.name} is not a checkpoint of this run (its config differs in "
                f"{', '.join(foreign)}); move it out of {path.parent} or start a new run"
            )
        state = loaded.state
        ranks = sum(1 for key in state if key.startswith("sampler.rank") and key.endswith(".generator"))
        if ranks != self.info.world_size:
            raise TrainingError(
                f"{path} was written by a run of {ranks} process(es); resume it with the same number "
                f"(this run has {self.info.world_size})"
            )
        problem = resume_state_problem(
            state,
            world_size=ranks,
            outer_shapes=[parameter.shape for parameter in self.reptile.meta],
            inner_shapes=[parameter.shape for parameter in self.model.parameters()],
        )
        if problem is not None:
            raise CheckpointError(f"its resume state does not validate: {problem}")
        self.model.load_state_dict(loaded.model.state_dict())
        self.reptile.load_state_dict(
            {key[len("reptile.") :]: value for key, value in state.items() if key.startswith("reptile.")}
        )
        self.sampler.load_state_dict(
            {
                "generator": state[f"sampler.rank{self.info.rank}.generator"],
                "tasks_sampled": int(state["sampler.tasks_sampled"]),
            }
        )
        rank = self.info.rank
        torch.set_rng_state(state.get(f"rng.rank{rank}.torch", state["rng.torch"]))  # only rng.torch before 0.2
        if f"rng.rank{rank}.cuda" in state and self.info.device.type == "cuda":
            torch.cuda.set_rng_state(state[f"rng.rank{rank}.cuda"], self.info.device)
        self.best_top1 = float(state["run.best_top1"])
        self.target_top1 = float(state["run.target_top1"])
        return loaded.step

    def save(self, step: int, extra: dict[str, Any]) -> Path | None:
        """Write ``step-N.safetensors`` (main process only) and keep the newest ``keep_last``."""
        bad = nonfinite_tensor(self.model.state_dict()) or nonfinite_tensor(self.reptile.state_dict())
        if bad is not None:  # every process stops: the weights are the same everywhere
            raise TrainingError(
                f"non-finite weights at step {step} ({bad}) although the loss was finite; " + self.advice()
            )
        state = self.state()  # every process takes part in the gather
        if not self.info.is_main:
            return None
        folder = self.out / "checkpoints"
        try:
            path = save_checkpoint(
                folder / checkpoint_name(step), self.model, self.config, step=step, extra=extra, state=state
            )
        except WriteError as error:
            newest = readable_checkpoints(folder)
            kept = f"the newest checkpoint, {newest[0].name}, is kept" if newest else "no checkpoint was kept yet"
            raise WriteError(
                f"{error}; the run stopped at step {step} and {kept}; free space (or make {folder} writable) and "
                f"continue with: uattn meta-train --out {self.out} --resume"
            ) from error
        remove_old_checkpoints(folder, self.config.train.keep_last)
        return path

    def advice(self) -> str:
        """What to do after the run stopped on non-finite numbers: a resume that is allowed and works."""
        return (
            f"stopped without saving, so the newest checkpoint in {self.out / 'checkpoints'} is the last good "
            f"one; continue from it with a lower learning rate: uattn meta-train --out {self.out} --resume --set "
            f"reptile.inner_lr={self.config.reptile.inner_lr / 2:g} (or lower reptile.outer_lr the same way)"
        )

    def offer_best(self, step: int, top1: float) -> None:
        if top1 > self.best_top1 and nonfinite_tensor(self.model.state_dict()) is None:
            self.best_top1 = top1
            save_checkpoint(
                self.out / "checkpoints" / "best.safetensors",
                self.model,
                self.config,
                step=step,
                extra={"target_top1": top1},
            )


def resume_step(run: _Run, on_message: Callable[[str], None]) -> int:
    """Restore the newest readable checkpoint of the run folder; a damaged newer one is skipped with a note."""
    for path in readable_checkpoints(run.out / "checkpoints"):
        try:
            return run.restore(path)
        except CheckpointError as error:
            on_message(f"warning: skipped {path.name}: {error}")
    on_message(f"no checkpoint in {run.out / 'checkpoints'} yet; starting from step 0")
    return 0


ProgressFn = Callable[[int, dict[str, float]], None]


def meta_train(
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    on_step: ProgressFn | None = None,
    on_message: Callable[[str], None] = print,
) -> MetaTrainResult:
    """Meta-train an AttentionResNet50 with Reptile as ``config`` says, writing a run folder.

    Args:
        config: the whole run (``train.max_steps``, ``train.device``, ... included).
        out_dir: the run folder.
        overwrite: replace a run already in ``out_dir``.
        resume: continue the run in ``out_dir`` from its newest readable checkpoint (same config required).
        on_step: called after every meta-step with ``(step, metrics)`` (progress bars).
        on_message: where one-line notes go (default: print).

    Returns:
        A :class:`MetaTrainResult`; the comparison with a random init is also in ``results.json``.

    Raises:
        ConfigError: the run folder holds another run, files uattn did not write, or is in use by another
            process; with ``resume``, a config that differs in more than the learning rates.
        DatasetError: a dataset is unknown or not on disk (found before anything is written).
        TrainingError: the loss or the weights became non-finite.
    """
    info = distributed.init_distributed(config.train.device)
    out = Path(out_dir)
    check_datasets(config)
    changes = resume_changes(out, config) if resume else {}
    with holding_run_folder(out, main=info.is_main):
        return _run_in_folder(
            config,
            out,
            info,
            overwrite=overwrite,
            resume=resume,
            changes=changes,
            on_step=on_step,
            on_message=on_message,
        )


def _run_in_folder(
    config: ExperimentConfig,
    out: Path,
    info: distributed.DistributedInfo,
    *,
    overwrite: bool,
    resume: bool,
    changes: dict[str, tuple[Any, Any]],
    on_step: ProgressFn | None,
    on_message: Callable[[str], None],
) -> MetaTrainResult:
    """:func:`meta_train` while the main process holds the run folder."""
    if info.is_main and not resume:
        prepare_run_folder(out, overwrite)
    if info.is_main and (changes or not resume):
        save_config(config, out / "config.yaml")
    for key, (before, after) in changes.items():
        on_message(f"resuming with {key} changed from {before} to {after}")
    distributed.barrier()
    begin = time.perf_counter()
    run = _Run(config, out, info)
    start = resume_step(run, on_message) if resume else 0
    watched_set = get_dataset(config.data.target, "test", root=config.data.data_root, image_size=config.data.image_size)
    watched = torch.stack([watched_set[i][0] for i in range(min(WATCHED_IMAGES, len(watched_set)))])
    images_seen, meta_seconds, last_path, step, interrupted = 0, 0.0, None, start, False
    # only the main process writes: the others have no logger
    logger_context = open_run_logger(out, purge_step=start + 1) if info.is_main else nullcontext(None)
    with logger_context as logger, stop_requests() as stop:
        for step in range(start + 1, config.train.max_steps + 1):
            metrics = run.reptile.meta_step(run.sampler.sample(config.reptile.meta_batch_size))
            finite = distributed.all_reduce_count(float(math.isfinite(metrics["loss"])))
            if finite < info.world_size:
                raise TrainingError(f"non-finite loss at step {step}; " + run.advice())
            images = config.reptile.inner_steps * config.sampler.batch_size * config.reptile.meta_batch_size
            images_seen += images * info.world_size
            meta_seconds += metrics["seconds"]
            metrics["images_per_s"] = images * info.world_size / metrics["seconds"]
            if logger is not None:
                _log_step(run, logger, step, metrics, watched)
            if step % config.train.checkpoint_every == 0 or step == config.train.max_steps:
                last_path = run.save(step, {"target_top1": run.target_top1})
            if on_step is not None:
                on_step(step, metrics)
            if distributed.all_reduce_count(float(stop["stop"])) > 0:
                if step % config.train.checkpoint_every != 0 and step != config.train.max_steps:
                    last_path = run.save(step, {"target_top1": run.target_top1, "interrupted": True})
                on_message(f"stopped at step {step} on request; saved {last_path}; continue with --resume")
                interrupted = True
                break
        distributed.barrier()  # every process is done; the others leave while the main process compares
        seconds = time.perf_counter() - begin
        comparison: dict[str, Any] = {}
        if logger is not None and not interrupted and run.held_out:
            comparison["sources"] = {name: check.to_dict() for name, check in run.source_checks().items()}
        if logger is not None and not interrupted and config.train.final_comparison:
            on_message(
                f"meta-training done: {step} steps in {seconds:.0f} s; comparing with a random init on "
                f"{config.data.target}"
            )
            try:
                stop["raise"] = True
                clock = time.perf_counter()
                baselines = train_baselines(config, out, on_message)
                trained = time.perf_counter() - clock
                comparison.update(compare_start_points(run.model, config, info.device, baselines))
                comparison["stage_seconds"] = {
                    "meta_train": seconds,
                    "baselines": trained,
                    **comparison["stage_seconds"],
                }
                stop["raise"] = False
                for key in ("meta_trained", "random_init", *baselines):
                    logger.scalar(f"final/{key}/top1", comparison[key]["top1"], step)
                logger.hparams(run_hparams(config), final_metrics(comparison))
            except StopRequested as stopped:
                stop["raise"] = False
                comparison, interrupted = {**comparison, **_stopped_comparison(out, str(stopped), on_message)}, True
        result = MetaTrainResult(
            out_dir=out,
            steps=step,
            final_checkpoint=last_path,
            seconds=seconds,
            images_per_second=images_seen / max(meta_seconds, 1e-9),
            comparison=comparison,
            interrupted=interrupted,
        )
        if logger is not None and comparison:
            kept = f"the checkpoints in {out / 'checkpoints'} are kept"
            write_result(out / "results.json", json.dumps(comparison, indent=2).encode(), result, kept)
        if logger is not None and config.train.report:
            report_after_run(out, on_message)
    return result


def _stopped_comparison(out: Path, signal_name: str, on_message: Callable[[str], None]) -> dict[str, Any]:
    """What ``results.json`` says when a signal stopped the final comparison: that, and how to redo it."""
    redo = f"uattn transfer --ckpt {out} --baseline random"
    on_message(f"{signal_name} stopped the final comparison; the checkpoints are saved; redo it with: {redo}")
    return {"interrupted": f"{signal_name} stopped the final comparison", "redo": redo}


def run_hparams(config: ExperimentConfig) -> dict[str, bool | int | float | str]:
    """The run's config as hyperparameters for TensorBoard's HParams tab: dotted keys, lists and nulls as text."""
    return {
        key: value if isinstance(value, bool | int | float | str) else json.dumps(value)
        for key, value in config.to_flat_dict().items()
    }


def final_metrics(comparison: dict[str, Any]) -> dict[str, float]:
    """The final comparison's figures that separate runs: every start point's target top-1 and every held-out
    source's top-1."""
    metrics = {
        f"final/{key}/top1": entry["top1"]
        for key, entry in comparison.items()
        if isinstance(entry, dict) and isinstance(entry.get("top1"), float)
    }
    for name, check in comparison.get("sources", {}).items():
        metrics[f"final/sources/{name}/top1"] = check["top1"]
    return metrics


BASELINE_OVERRIDES = {
    "joint": ["reptile.algorithm=joint"],
    "supervised": ["train.attention_supervision=1.0"],
}
"""What each trained baseline of ``train.compare`` changes in the run's config."""


def _trained_baselines(config: ExperimentConfig) -> list[str]:
    wanted: list[str] = [name for name in config.train.compare if name in BASELINE_OVERRIDES]
    if config.reptile.algorithm == "joint":  # the run is its own joint baseline
        wanted = [name for name in wanted if name != "joint"]
    if config.train.attention_supervision > 0:  # and its own supervised one
        wanted = [name for name in wanted if name != "supervised"]
    return wanted


def train_baselines(
    config: ExperimentConfig, out: Path, on_message: Callable[[str], None]
) -> dict[str, AttentionResNet50]:
    """The trained baselines ``train.compare`` asks for, each the same run with one change
    (:data:`BASELINE_OVERRIDES`), from the same initial weights, in ``<out>/compare/<name>`` (resumed if it was
    interrupted): ``joint`` (``reptile.algorithm: joint``) and ``supervised`` (attention told where)."""
    wanted = _trained_baselines(config)
    if not wanted:
        return {}
    if distributed.is_distributed():
        on_message("trained baselines run in one process; run them without torchrun (train.compare)")
        return {}
    models = {}
    for name in wanted:
        baseline = load_config(
            base=config,
            overrides=[
                *BASELINE_OVERRIDES[name],
                "train.final_comparison=false",
                "train.compare=[]",
                f"name={config.name}-{name}",
            ],
        )
        folder = out / "compare" / name
        on_message(f"training the {name} baseline in {folder}")
        result = meta_train(baseline, folder, resume=(folder / "config.yaml").exists(), on_message=on_message)
        if result.interrupted:  # its own signal handling saved it; the comparison cannot go on without it
            raise StopRequested(
                f"a signal stopped the {name} baseline (continue it with the same command and --resume)"
            )
        models[name] = load_checkpoint(folder).model
    return models


def _log_step(run: _Run, logger: RunLogger, step: int, metrics: dict[str, float], watched: torch.Tensor) -> None:
    """Scalars, attention pictures and the periodic target check (main process)."""
    train = run.config.train
    if step % train.log_every == 0 or step == 1:
        for key, value in metrics.items():
            logger.scalar(f"meta/{key}", value, step)
        images = run.diagnostic_images()
        if images is not None and run.model.config.attention:
            scalars = diagnostics_scalars(attention_diagnostics(run.model, images), attention_gradient_norms(run.model))
            for tag, value in scalars.items():
                logger.scalar(tag, value, step)
    if train.image_log_every and (step % train.image_log_every == 0 or step == 1):
        log_attention(logger, run.model, watched.to(run.info.device), step)
    if train.eval_every and step % train.eval_every == 0:
        run.target_top1 = quick_transfer(run.model, run.config, run.info.device, run.target()).cells[0].top1
        metrics["target_top1"] = run.target_top1
        logger.scalar("target/top1", run.target_top1, step)
        run.offer_best(step, run.target_top1)
        for tag, value in source_scalars(run.source_checks()).items():
            logger.scalar(tag, value, step)
