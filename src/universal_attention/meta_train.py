"""The meta-training run: datasets -> TaskSampler -> AttentionResNet50 -> Reptile, from one ExperimentConfig.

A run folder holds ``config.yaml`` (written first), ``checkpoints/step-NNNNNN.safetensors`` (the last
``train.keep_last`` plus ``best.safetensors`` by target accuracy), ``tb/`` (TensorBoard) and
``results.json`` (the final comparison of the meta-trained model with a random init).

Runs survive: every checkpoint carries the Reptile, sampler and RNG states, so ``resume=True`` continues
to the same tensors as an uninterrupted run; Ctrl-C or SIGTERM finishes the current meta-step, saves and
stops; a non-finite loss stops the run before anything is saved, leaving the last good checkpoint newest.
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
from torch.utils.data import Dataset
from torch.utils.tensorboard import SummaryWriter

from . import distributed
from .checkpoint import atomic_write_bytes, checkpoint_name, load_checkpoint, save_checkpoint
from .config import ExperimentConfig, load_config, save_config
from .data.registry import get_dataset
from .errors import CheckpointError, ConfigError, UattnError
from .model import AttentionResNet50
from .reptile import Reptile
from .run_folder import differing_keys, prepare_run_folder, readable_checkpoints
from .run_report import compare_with_random, log_attention, quick_transfer
from .sampler import TaskSampler

SYNTHETIC = "synthetic/"
WATCHED_IMAGES = 6


class TrainingError(UattnError):
    """Meta-training cannot go on (a non-finite loss)."""


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


def source_dataset(name: str, split: str, config: ExperimentConfig) -> Dataset:
    """A dataset at the run's image size, read through the pre-resized cache for real datasets."""
    root, size = config.data.data_root, config.data.image_size
    if config.data.cache and not name.startswith(SYNTHETIC):
        from .data.cache import cached_dataset

        return cached_dataset(name, split, root=root, image_size=size)
    return get_dataset(name, split, root=root, image_size=size)


@contextmanager
def stop_requests() -> Iterator[dict[str, bool]]:
    """While active, SIGINT/SIGTERM set ``flag["stop"]`` instead of killing; a second Ctrl-C interrupts at once."""
    flag = {"stop": False}
    previous = {}

    def request(signum: int, frame: Any) -> None:
        if flag["stop"] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag["stop"] = True

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
        sampler_config = config.sampler.model_copy(update={"seed": config.sampler.seed + 1000 * info.rank})
        self.sources = {name: source_dataset(name, "train", config) for name in config.data.sources}
        self.sampler = TaskSampler(self.sources, sampler_config, augment=config.data.augment)
        torch.manual_seed(config.train.seed)
        self.model = AttentionResNet50(config.model)
        for name, dataset in self.sources.items():
            classes = config.sampler.n_way if config.sampler.mode == "episodic" else len(dataset.classes)
            self.model.add_head(name, classes)
        self.model.to_device(info.device)
        self.reptile = Reptile(self.model, config.reptile, total_steps=config.train.max_steps)
        self.best_top1 = -math.inf
        self.target_top1 = float("nan")

    def state(self) -> dict[str, torch.Tensor]:
        """Reptile, sampler (every process's) and RNG states, as tensors."""
        state = {f"reptile.{key}": value for key, value in self.reptile.state_dict().items()}
        sampler_state = self.sampler.state_dict()
        generators = [sampler_state["generator"]]
        if distributed.is_distributed():
            local = sampler_state["generator"].to(self.info.device)
            gathered = [torch.empty_like(local) for _ in range(self.info.world_size)]
            torch.distributed.all_gather(gathered, local)
            generators = [generator.cpu() for generator in gathered]
        for rank, generator in enumerate(generators):
            state[f"sampler.rank{rank}.generator"] = generator
        state["sampler.tasks_sampled"] = torch.tensor(sampler_state["tasks_sampled"])
        state["rng.torch"] = torch.get_rng_state()
        state["run.best_top1"] = torch.tensor(self.best_top1, dtype=torch.float64)
        state["run.target_top1"] = torch.tensor(self.target_top1, dtype=torch.float64)
        return state

    def restore(self, path: Path) -> int:
        """Load a checkpoint of this run and return its step."""
        loaded = load_checkpoint(path)
        self.model.load_state_dict(loaded.model.state_dict())
        state = loaded.state
        ranks = sum(1 for key in state if key.startswith("sampler.rank"))
        if ranks != self.info.world_size:
            raise ConfigError(f"{path} was written by a run of {ranks} process(es); resume it with the same number "
                              f"(this run has {self.info.world_size})")
        self.reptile.load_state_dict({key[len("reptile."):]: value for key, value in state.items()
                                      if key.startswith("reptile.")})
        self.sampler.load_state_dict({"generator": state[f"sampler.rank{self.info.rank}.generator"],
                                      "tasks_sampled": int(state["sampler.tasks_sampled"])})
        torch.set_rng_state(state["rng.torch"])
        self.best_top1 = float(state["run.best_top1"])
        self.target_top1 = float(state["run.target_top1"])
        return loaded.step

    def save(self, step: int, extra: dict[str, Any]) -> Path | None:
        """Write ``step-N.safetensors`` (main process only) and keep the newest ``keep_last``."""
        state = self.state()  # every process takes part in the gather
        if not self.info.is_main:
            return None
        folder = self.out / "checkpoints"
        path = save_checkpoint(folder / checkpoint_name(step), self.model, self.config, step=step, extra=extra,
                               state=state)
        for old in sorted(folder.glob("step-*.safetensors"))[: -self.config.train.keep_last]:
            old.unlink()
        return path

    def offer_best(self, step: int, top1: float) -> None:
        if top1 > self.best_top1:
            self.best_top1 = top1
            save_checkpoint(self.out / "checkpoints" / "best.safetensors", self.model, self.config, step=step,
                            extra={"target_top1": top1})


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
        ConfigError: the run folder holds another run (or a different config with ``resume``).
        TrainingError: the loss became non-finite.
    """
    info = distributed.init_distributed(config.train.device)
    out = Path(out_dir)
    if resume:
        saved = load_config(config_file=out / "config.yaml")
        changed = differing_keys(saved, config)
        if changed:
            raise ConfigError(f"cannot resume {out}: the config differs in {', '.join(changed)}; resume with the "
                              "run's own config (no --preset/--config/--set) or start a new run")
    elif info.is_main:
        prepare_run_folder(out, overwrite)
        save_config(config, out / "config.yaml")
    distributed.barrier()
    begin = time.perf_counter()
    run = _Run(config, out, info)
    start = resume_step(run, on_message) if resume else 0
    watched_set = get_dataset(config.data.target, "test", root=config.data.data_root,
                              image_size=config.data.image_size)
    watched = torch.stack([watched_set[i][0] for i in range(min(WATCHED_IMAGES, len(watched_set)))])
    images_seen, meta_seconds, last_path, step, interrupted = 0, 0.0, None, start, False
    writer_context = SummaryWriter(str(out / "tb"), purge_step=start + 1) if info.is_main else nullcontext()
    with writer_context as writer, stop_requests() as stop:
        for step in range(start + 1, config.train.max_steps + 1):
            metrics = run.reptile.meta_step(run.sampler.sample(config.reptile.meta_batch_size))
            finite = distributed.all_reduce_count(float(math.isfinite(metrics["loss"])))
            if finite < info.world_size:
                raise TrainingError(f"non-finite loss at step {step}; stopped without saving, so the newest "
                                    f"checkpoint in {out / 'checkpoints'} is the last good one; lower "
                                    "reptile.inner_lr or reptile.outer_lr and resume")
            images = config.reptile.inner_steps * config.sampler.batch_size * config.reptile.meta_batch_size
            images_seen += images * info.world_size
            meta_seconds += metrics["seconds"]
            metrics["images_per_s"] = images * info.world_size / metrics["seconds"]
            if info.is_main:
                _log_step(run, writer, step, metrics, watched)
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
        seconds = time.perf_counter() - begin
        comparison: dict[str, Any] = {}
        if info.is_main and not interrupted and config.train.final_comparison:
            on_message(f"meta-training done: {step} steps in {seconds:.0f} s; comparing with a random init on "
                       f"{config.data.target}")
            comparison = compare_with_random(run.model, config, info.device)
            for key in ("meta_trained", "random_init"):
                writer.add_scalar(f"final/{key}/top1", comparison[key]["top1"], step)
            atomic_write_bytes(out / "results.json", json.dumps(comparison, indent=2).encode())
    distributed.barrier()
    return MetaTrainResult(out_dir=out, steps=step, final_checkpoint=last_path, seconds=seconds,
                           images_per_second=images_seen / max(meta_seconds, 1e-9), comparison=comparison,
                           interrupted=interrupted)


def _log_step(run: _Run, writer: SummaryWriter, step: int, metrics: dict[str, float], watched: torch.Tensor) -> None:
    """TensorBoard scalars, attention pictures and the periodic target check (main process)."""
    train = run.config.train
    if step % train.log_every == 0 or step == 1:
        for key, value in metrics.items():
            writer.add_scalar(f"meta/{key}", value, step)
    if train.image_log_every and (step % train.image_log_every == 0 or step == 1):
        log_attention(writer, run.model, watched.to(run.info.device), step)
    if train.eval_every and step % train.eval_every == 0:
        run.target_top1 = quick_transfer(run.model, run.config, run.info.device).cells[0].top1
        metrics["target_top1"] = run.target_top1
        writer.add_scalar("target/top1", run.target_top1, step)
        run.offer_best(step, run.target_top1)
