"""Reptile meta-learning (Nichol, Achiam & Schulman 2018) over any ``nn.Module``.

Every meta-step starts each task from the meta weights, takes ``inner_steps`` optimiser steps on the
task's batches, and moves the meta weights toward the adapted weights averaged over the step's tasks
(batched Reptile). Between steps the model's shared parameters *are* the meta weights, so the model can
be evaluated or checkpointed at any time.

Task-specific parameters (by default everything under ``model.heads``) are trained in the inner loop and
kept per task across steps (``heads: persistent``) or zeroed before every task (``heads: reset``, the Reptile
paper's protocol with a new label order per task); they are never averaged into the meta weights. The inner
optimiser starts every task in a new optimiser's state (``inner_state: reset``: one optimiser, zeroed before each
task) or carries its state (Adam's moments) across tasks (``inner_state: keep``). ``algorithm: joint`` is the
baseline that Reptile has to beat: the same tasks and batches, one optimiser step per batch, and no meta-update
(the weights simply carry on). Batch-norm running statistics are estimates rather than learned weights: each
task starts from the meta statistics and, after the step, the meta statistics become the mean of the tasks'
adapted statistics.

Under ``torchrun`` every process adapts to its own tasks and the sums of adapted weights are all-reduced,
which is batched Reptile over all processes' tasks. Heads stay identical on every process: a head adapted
on one or more processes becomes the mean of those adaptations everywhere (so every task's head must exist
on every process before the first step; ``meta_train`` creates them all up front).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ReptileConfig
from ..distributed import all_reduce_count, all_reduce_sum_, is_distributed
from ..errors import ConfigError, TrainingError
from ..optim import adam

LossFn = Callable[[nn.Module, tuple[Tensor, ...], "Task"], Tensor]


@dataclass
class Task:
    """One task to adapt to: a name (it selects the model's head) and an iterator of batches.

    Args:
        name: task name, e.g. ``"synthetic/colour"`` or ``"cub200"``; heads are kept per name.
        batches: yields ``(images, labels)`` batches (``(images, labels, masks)`` for attention supervision);
            Reptile draws ``inner_steps`` of them.
        num_classes: number of classes, used to create the task's head on first sight.
        query: an optional held-out ``(images, labels)`` set (episodic tasks) to measure adaptation.
    """

    name: str
    batches: Iterator[tuple[Tensor, ...]]
    num_classes: int | None = None
    query: tuple[Tensor, Tensor] | None = None


def prefetched(batches: Iterator[tuple[Tensor, ...]], count: int, depth: int = 2) -> Iterator[tuple[Tensor, ...]]:
    """The next ``count`` items of ``batches``, read by a background thread up to ``depth`` items ahead.

    Reading a batch (decoding, drawing a synthetic image, augmenting) then overlaps the training step on the
    batch before it. Items come in their own order, so results do not change; an error raised while reading is
    raised here, at the item it stopped. The thread ends with the ``count``-th item, or soon after the caller
    stops early.
    """
    ready: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def read() -> None:
        for _ in range(count):
            try:
                item: tuple[bool, Any] = (True, next(batches))
            except BaseException as error:  # handed to the caller, who raises it
                item = (False, error)
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set() or not item[0]:
                return

    reader = threading.Thread(target=read, name="uattn-prefetch", daemon=True)
    reader.start()
    try:
        for _ in range(count):
            ok, item = ready.get()
            if not ok:
                raise item
            yield item
    finally:
        stop.set()
        reader.join()


def a_core_is_free(device: torch.device) -> bool:
    """Whether a thread that reads batches has a core of its own beside training on ``device``: the model
    trains on a GPU, or this process may run on more CPU cores than torch's intra-op threads use."""
    if device.type != "cpu":
        return True
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cores > torch.get_num_threads()


def heads_are_task_specific(name: str) -> bool:
    """Default split: parameters under ``heads.`` belong to one task, everything else is meta-learned."""
    return name.startswith("heads.")


def cross_entropy_loss(model: nn.Module, batch: tuple[Tensor, ...], task: Task) -> Tensor:
    """Default loss: cross-entropy of the task's head, ``model(images, task.name).logits``."""
    images, labels = batch[0], batch[1]
    return F.cross_entropy(model(images, task.name).logits, labels)


class Reptile:
    """Reptile over any module.

    Args:
        model: the network; build it (and move it to its device) before wrapping it.
        config: inner/outer optimiser settings.
        loss_fn: ``loss_fn(model, batch, task) -> loss``; default :func:`cross_entropy_loss`.
        total_steps: length of the run, needed when ``config.anneal`` is set (the outer step size
            decays linearly from ``outer_lr`` to 0 over it).
        is_task_parameter: ``name -> bool`` for parameters kept per task; default: under ``heads.``.

    Example:
        >>> reptile = Reptile(model, ReptileConfig(inner_steps=5))
        >>> metrics = reptile.meta_step(sampler.sample(1))
    """

    def __init__(
        self,
        model: nn.Module,
        config: ReptileConfig | None = None,
        *,
        loss_fn: LossFn | None = None,
        total_steps: int | None = None,
        is_task_parameter: Callable[[str], bool] = heads_are_task_specific,
    ) -> None:
        self.model = model
        self.config = config or ReptileConfig()
        self.loss_fn = loss_fn or cross_entropy_loss
        if self.config.anneal and not total_steps:
            raise ConfigError("reptile.anneal needs the run length: pass total_steps (train.max_steps)")
        self.total_steps = total_steps
        self.is_task_parameter = is_task_parameter
        named = [(name, p) for name, p in model.named_parameters() if not is_task_parameter(name)]
        self.meta_names = [name for name, _ in named]
        self.shared: list[Tensor] = [p for _, p in named]
        self.meta = [p.detach().clone() for p in self.shared]
        self.buffers = [b for _, b in model.named_buffers() if b.is_floating_point()]
        self.meta_buffers = [b.detach().clone() for b in self.buffers]
        self.keeps_inner_state = self.config.inner_state == "keep" or self.config.algorithm == "joint"
        self.inner_optimizer: torch.optim.Optimizer | None = None  # the kept one (inner_state: keep)
        self._reset_optimizer: torch.optim.Optimizer | None = None  # handed out zeroed (inner_state: reset)
        if self.config.algorithm == "joint" and is_distributed():
            raise ConfigError("reptile.algorithm=joint runs in one process; run the joint baseline without torchrun")
        self.step = 0
        self.outer_optimizer = None
        if self.config.outer_optimizer == "adam":
            self.outer_optimizer = adam(self.meta, lr=self.config.outer_lr, betas=(self.config.outer_beta1, 0.999))

    def outer_step_size(self) -> float:
        """The outer step size (SGD) or learning rate (Adam) of the next meta-step."""
        if not self.config.anneal or not self.total_steps:  # anneal always comes with total_steps (see __init__)
            return self.config.outer_lr
        return self.config.outer_lr * max(0.0, 1.0 - self.step / self.total_steps)

    def _ensure_head(self, task: Task) -> None:
        model: Any = self.model  # heads are built by models that have them (has_head, add_head: AttentionResNet50)
        if hasattr(model, "has_head") and not model.has_head(task.name):
            if task.num_classes is None:
                raise TrainingError(f"task '{task.name}' is new and has no num_classes to build its head")
            model.add_head(task.name, task.num_classes)

    def _new_inner_optimizer(self, parameters: Sequence[nn.Parameter]) -> torch.optim.Optimizer:
        if self.config.inner_optimizer == "adam":
            # beta1 = 0, as Nichol et al.: momentum does not carry across the few inner steps.
            return adam(parameters, lr=self.config.inner_lr, betas=(0.0, 0.999))
        return torch.optim.SGD(parameters, lr=self.config.inner_lr)

    def _task_optimizer(self) -> torch.optim.Optimizer:
        """The next task's inner optimiser, holding every trainable parameter (a new head is added to it).

        ``inner_state: keep`` carries the one optimiser's state on. ``reset`` hands out the same optimiser with
        its state zeroed, which is the state of a new one (Adam's moments and step count at zero), so that no
        task allocates and fills the moments' memory again."""
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = self.inner_optimizer if self.keeps_inner_state else self._reset_optimizer
        if optimizer is None:
            optimizer = self._new_inner_optimizer(parameters)
        else:
            known = {id(p) for group in optimizer.param_groups for p in group["params"]}
            unseen = [p for p in parameters if id(p) not in known]
            if unseen:
                optimizer.add_param_group({"params": unseen})
        if self.keeps_inner_state:
            self.inner_optimizer = optimizer
        else:
            self._reset_optimizer = optimizer
            state = [value for entry in optimizer.state.values() for value in entry.values() if torch.is_tensor(value)]
            if state:
                torch._foreach_zero_(state)
        return optimizer

    @torch.no_grad()
    def _reset_heads(self) -> None:
        """Zero every task-specific parameter: the task starts from a fresh head."""
        heads = list(self._task_parameters().values())
        if heads:
            torch._foreach_zero_(heads)

    def adapt(self, task: Task, steps: int | None = None) -> dict[str, float]:
        """Train the model on ``task`` for ``steps`` (default ``inner_steps``) from its current weights.

        Returns the mean loss (and accuracy, for the default loss) over those steps.
        """
        self._ensure_head(task)
        if self.config.heads == "reset":
            self._reset_heads()
        self.model.train()
        optimizer = self._task_optimizer()
        device = self.shared[0].device if self.shared else next(self.model.parameters()).device
        losses, correct, seen = [], 0, 0
        count = steps or self.config.inner_steps
        prefetch = self.config.prefetch
        if prefetch == "auto":
            prefetch = a_core_is_free(device)
        batches = prefetched(task.batches, count) if prefetch else (next(task.batches) for _ in range(count))
        for host_batch in batches:
            batch = tuple(t.to(device, non_blocking=True) for t in host_batch)
            optimizer.zero_grad(set_to_none=True)
            if self.loss_fn is cross_entropy_loss:
                logits = self.model(batch[0], task.name).logits
                loss = F.cross_entropy(logits, batch[1])
                correct += int((logits.argmax(dim=1) == batch[1]).sum())
                seen += len(batch[1])
            else:
                loss = self.loss_fn(self.model, batch, task)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        metrics = {"loss": float(torch.stack(losses).mean())}
        if seen:
            metrics["accuracy"] = correct / seen
        return metrics

    @torch.no_grad()
    def _load_meta(self) -> None:
        if self.shared:
            torch._foreach_copy_(self.shared, self.meta)
        if self.buffers:
            torch._foreach_copy_(self.buffers, self.meta_buffers)

    def meta_step(self, tasks: Sequence[Task]) -> dict[str, float]:
        """One Reptile step over ``tasks`` (``meta_batch_size`` of them, usually).

        Returns:
            ``loss`` and ``accuracy`` (means over tasks and inner steps), per-task ``loss/<task>`` and
            ``accuracy/<task>``, the ``outer_lr`` used and ``seconds``.
        """
        if not tasks:
            raise TrainingError("meta_step needs at least one task")
        if self.config.algorithm == "joint":
            return self._joint_step(tasks)
        start = time.perf_counter()
        distributed = is_distributed()
        heads_before = self._task_parameters(clone=True) if distributed else {}
        metrics: dict[str, float] = {}
        per_task = []
        adapted_sum: list[Tensor] = []
        buffer_sum: list[Tensor] = []
        single = len(tasks) == 1 and not distributed
        for task in tasks:
            self._load_meta()
            result = self.adapt(task)
            per_task.append(result)
            for key, value in result.items():
                metrics[f"{key}/{task.name}"] = value
            if not single:  # one task needs no sum: its adapted weights are the model's own
                self._accumulate(adapted_sum, [p.detach() for p in self.shared])
                self._accumulate(buffer_sum, self.buffers)
        count: float = len(tasks)
        if distributed:
            with torch.no_grad():
                all_reduce_sum_(adapted_sum + buffer_sum)
                count = all_reduce_count(count)
                self._sync_task_parameters(heads_before)
        step_size = self.outer_step_size()
        if single:
            self._outer_update([p.detach() for p in self.shared], list(self.buffers), step_size)
        else:
            with torch.no_grad():
                torch._foreach_div_(adapted_sum, count)
                if buffer_sum:
                    torch._foreach_div_(buffer_sum, count)
            self._outer_update(adapted_sum, buffer_sum, step_size)
        self.step += 1
        for key in per_task[0]:
            metrics[key] = sum(result[key] for result in per_task if key in result) / len(per_task)
        metrics["outer_lr"] = step_size
        metrics["seconds"] = time.perf_counter() - start
        return metrics

    def _joint_step(self, tasks: Sequence[Task]) -> dict[str, float]:
        """Joint training: the tasks' batches in turn, one optimiser step each, no meta-update."""
        start = time.perf_counter()
        metrics: dict[str, float] = {}
        per_task = []
        for task in tasks:
            result = self.adapt(task)
            per_task.append(result)
            metrics.update({f"{key}/{task.name}": value for key, value in result.items()})
        with torch.no_grad():  # the meta weights follow the model, so state_dict and resume see the same weights
            if self.shared:
                torch._foreach_copy_(self.meta, [p.detach() for p in self.shared])
            if self.buffers:
                torch._foreach_copy_(self.meta_buffers, self.buffers)
        self.step += 1
        for key in per_task[0]:
            metrics[key] = sum(result[key] for result in per_task if key in result) / len(per_task)
        metrics["outer_lr"] = 1.0  # the weights move all the way to the adapted ones
        metrics["seconds"] = time.perf_counter() - start
        return metrics

    def _task_parameters(self, clone: bool = False) -> dict[str, Tensor]:
        return {
            name: (p.detach().clone() if clone else p)
            for name, p in self.model.named_parameters()
            if self.is_task_parameter(name)
        }

    @torch.no_grad()
    def _sync_task_parameters(self, before: dict[str, Tensor]) -> None:
        """Make every process's heads equal: each adapted head becomes the mean of its adaptations."""
        current = self._task_parameters()
        if all_reduce_count(len(current)) != len(current) * torch.distributed.get_world_size():
            raise TrainingError(
                "processes hold different task heads; create every task's head before the first distributed meta-step"
            )
        names = sorted(current)
        touched = [float(not torch.equal(current[name], before[name])) for name in names]
        values = [current[name].detach() * flag for name, flag in zip(names, touched)]
        weights = torch.tensor(touched, device=values[0].device if values else None)
        all_reduce_sum_(values + [weights])
        for name, value, weight in zip(names, values, weights.tolist()):
            if weight > 0:
                current[name].copy_(value / weight)

    @staticmethod
    @torch.no_grad()
    def _accumulate(total: list[Tensor], values: list[Tensor]) -> None:
        """``total += values``, starting ``total`` as a copy of the first values."""
        if not values:
            return
        if total:
            torch._foreach_add_(total, values)
        else:
            total.extend(value.clone() for value in values)

    @torch.no_grad()
    def _outer_update(self, adapted: list[Tensor], adapted_buffers: list[Tensor], step_size: float) -> None:
        """Move the meta weights toward the mean ``adapted`` weights, then load them into the model."""
        if self.outer_optimizer is None:
            if self.meta:
                torch._foreach_lerp_(self.meta, adapted, step_size)  # meta += step_size * (adapted - meta)
        else:
            # Adam is fed (meta - adapted) as the gradient, so it steps toward the adapted weights.
            gradients = torch._foreach_sub(self.meta, adapted)
            for parameter, gradient in zip(self.meta, gradients):
                parameter.grad = gradient
            for group in self.outer_optimizer.param_groups:
                group["lr"] = step_size
            self.outer_optimizer.step()
            for parameter in self.meta:
                parameter.grad = None
        if self.meta_buffers:
            torch._foreach_copy_(self.meta_buffers, adapted_buffers)
        self._load_meta()

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors needed to continue exactly (with the model's own weights): the step, the outer optimiser's
        state and, when it is kept across tasks, the inner optimiser's."""
        state = {"step": torch.tensor(self.step, dtype=torch.int64)}
        if self.outer_optimizer is not None:
            for index, parameter in enumerate(self.meta):
                for key, value in self.outer_optimizer.state.get(parameter, {}).items():
                    state[f"outer.{index}.{key}"] = torch.as_tensor(value).clone()
        if self.inner_optimizer is not None:
            for index, parameter in enumerate(self.model.parameters()):
                for key, value in self.inner_optimizer.state.get(parameter, {}).items():
                    state[f"inner.{index}.{key}"] = torch.as_tensor(value).clone()
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore :meth:`state_dict` output; the meta weights are re-read from the model's parameters."""
        self.step = int(state["step"])
        with torch.no_grad():
            torch._foreach_copy_(self.meta, [p.detach() for p in self.shared])
            if self.buffers:
                torch._foreach_copy_(self.meta_buffers, self.buffers)
        if self.outer_optimizer is not None:
            _load_optimizer_state(self.outer_optimizer, self.meta, state, "outer")
        if self.keeps_inner_state and any(key.startswith("inner.") for key in state):
            _load_optimizer_state(self._task_optimizer(), list(self.model.parameters()), state, "inner")


def _load_optimizer_state(
    optimizer: torch.optim.Optimizer, parameters: Sequence[Tensor], state: dict[str, Tensor], prefix: str
) -> None:
    """Put ``<prefix>.<parameter index>.<key>`` tensors back as ``optimizer``'s per-parameter state."""
    optimizer.state.clear()
    for index, parameter in enumerate(parameters):
        entries = {key.split(".", 2)[2]: value for key, value in state.items() if key.startswith(f"{prefix}.{index}.")}
        if entries:
            optimizer.state[parameter] = {
                key: value.to(parameter.device) if key != "step" else value.clone() for key, value in entries.items()
            }
