"""Draw meta-training tasks from source datasets: whole datasets as tasks, or N-way K-shot episodes.

Randomness and resume: the sampler owns one ``torch.Generator`` seeded with ``config.seed``. Each
:meth:`TaskSampler.sample` call draws, per task, the dataset (and for episodes the classes and images)
plus a seed for a generator private to that task. A task's batches are drawn lazily, and only from its
private generator, so they do not depend on when or in which order tasks are consumed, and the sampler's
state after a ``sample`` call (:meth:`TaskSampler.state_dict`) is all that an exact resume needs: after
:meth:`TaskSampler.load_state_dict` the following tasks, and all their batches, are identical to those of
a sampler that was never interrupted.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from typing import TypedDict

import torch
from torch import Tensor

from ..config import SamplerConfig
from ..data.augment import augment_batch
from ..data.samples import ImageDataset, dataset_labels, read_samples
from ..errors import ConfigError, DatasetError
from .reptile import Task

Batch = tuple[Tensor, ...]  # (images, labels) or, for masked datasets, (images, labels, masks)


class SamplerState(TypedDict):
    """What an exact resume needs: the generator's state (uint8 tensor) and the number of tasks drawn so far."""

    generator: Tensor
    tasks_sampled: int


class _Source:
    """One dataset with its labels as a tensor and fast batch reading."""

    def __init__(self, name: str, dataset: ImageDataset) -> None:
        self.name = name
        self.dataset = dataset
        self.labels = dataset_labels(dataset)
        self.num_classes = len(dataset.classes)

    def __len__(self) -> int:
        return len(self.labels)

    def images(self, indices: Tensor) -> Tensor:
        """uint8 [len(indices), 3, S, S]: sliced from ``.images`` when the dataset has it (a cache)."""
        return read_samples(self.dataset, indices, name=self.name)[0]

    def images_and_masks(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """Images and their object masks ``[len(indices), S, S]`` (the dataset must yield masks)."""
        images, masks = read_samples(self.dataset, indices, with_masks=True, name=self.name)
        assert masks is not None  # read_samples returns masks when asked
        return images, masks

    def eligible_classes(self, needed: int) -> list[Tensor]:
        """Index tensors of the classes that have at least ``needed`` images."""
        per_class = [torch.nonzero(self.labels == c).flatten() for c in range(self.num_classes)]
        return [indices for indices in per_class if len(indices) >= needed]


class TaskSampler:
    """Seeded, resumable source of Reptile tasks.

    Modes (``config.mode``):

    - ``"dataset"``: each dataset is one task over all its classes (the original experiment). A task is
      ``Task(name=<dataset key>, batches=<endless random batches of config.batch_size>,
      num_classes=len(ds.classes))``; batches walk a fresh shuffle of the dataset, one pass after another.
    - ``"episodic"``: an N-way K-shot task from one dataset: ``n_way`` classes having at least
      ``k_shot + query_shots`` images, labels remapped to 0..n_way-1 in a random order. ``batches`` cycle
      over the support set (``k_shot`` images per class; the whole set when it fits ``batch_size``, else
      shuffled chunks of ``batch_size``) and ``query`` holds ``query_shots`` other images per class. The
      task's name is the dataset key, so a model keeps one ``n_way``-way head per dataset.

    Datasets are picked uniformly or proportionally to their size (``config.task_weighting``). Datasets
    with ``.images`` (a :class:`~universal_attention.data.cache.CachedDataset`) are sliced as tensors;
    others are read item by item and must yield images of one size.

    Args:
        datasets: dataset key -> dataset following the dataset protocol.
        config: sampling mode, batch size, weighting, episode shape and seed.
        augment: apply :func:`~universal_attention.data.augment.augment_batch` to every batch, driven by
            the task's own generator.
        shuffle_labels: give every dataset task its labels in a new random order (what heads that are reset
            for every task need; episodes always have a random order).
        masked: keys of datasets (built with masks) whose batches carry the object masks,
            ``(images, labels, masks)``: what attention supervision trains on (dataset mode, no augmentation).

    Raises:
        DatasetError: no datasets, or one with fewer images (or, in episodic mode, fewer classes with
            enough images) than a task needs.
        ConfigError: masked batches asked for with augmentation or in episodic mode.
    """

    def __init__(
        self,
        datasets: Mapping[str, ImageDataset],
        config: SamplerConfig,
        *,
        augment: bool = False,
        shuffle_labels: bool = False,
        masked: Collection[str] = (),
    ) -> None:
        if not datasets:
            raise DatasetError("the task sampler needs at least one dataset; none were given")
        if masked and (augment or config.mode != "dataset"):
            raise ConfigError(
                "batches with object masks (train.attention_supervision) need sampler.mode: dataset and "
                "data.augment: false (augmentation moves the image, not its mask)"
            )
        self.masked = set(masked)
        self.config = config
        self.augment = augment
        self.shuffle_labels = shuffle_labels
        self._sources = [_Source(name, dataset) for name, dataset in datasets.items()]
        self._classes = [self._check(source) for source in self._sources]
        sizes = torch.tensor([len(source) for source in self._sources], dtype=torch.float64)
        self._weights = sizes if config.task_weighting == "size" else torch.ones_like(sizes)
        self._generator = torch.Generator().manual_seed(config.seed)
        self._tasks_sampled = 0

    def _check(self, source: _Source) -> list[Tensor]:
        """The source's eligible classes in episodic mode; raise when it cannot fill a task."""
        config = self.config
        if config.mode == "dataset":
            if len(source) < config.batch_size:
                raise DatasetError(
                    f"dataset '{source.name}' has {len(source)} images, fewer than one batch of "
                    f"{config.batch_size}; lower sampler.batch_size or drop the dataset"
                )
            return []
        shots = config.k_shot + config.query_shots
        classes = source.eligible_classes(shots)
        if len(classes) < config.n_way:
            raise DatasetError(
                f"dataset '{source.name}' has {len(classes)} classes with at least {shots} images "
                f"(k_shot {config.k_shot} + query_shots {config.query_shots}); n_way {config.n_way} needs "
                f"{config.n_way}"
            )
        return classes

    @property
    def tasks_sampled(self) -> int:
        """Number of tasks drawn so far (restored by :meth:`load_state_dict`)."""
        return self._tasks_sampled

    def sample(self, n: int) -> list[Task]:
        """Draw ``n`` tasks (see the class docstring for what a task holds in each mode)."""
        tasks = []
        for _ in range(n):
            index = int(torch.multinomial(self._weights, 1, generator=self._generator))
            if self.config.mode == "dataset":
                tasks.append(self._dataset_task(self._sources[index]))
            else:
                tasks.append(self._episode(self._sources[index], self._classes[index]))
            self._tasks_sampled += 1
        return tasks

    def _task_generator(self) -> torch.Generator:
        """A generator private to one task, seeded from the sampler's generator."""
        seed = int(torch.randint(2**62, (1,), generator=self._generator))
        return torch.Generator().manual_seed(seed)

    def _dataset_task(self, source: _Source) -> Task:
        order = torch.arange(source.num_classes)
        if self.shuffle_labels:
            order = torch.randperm(source.num_classes, generator=self._generator)

        def read(indices: Tensor) -> Batch:
            if source.name in self.masked:
                images, masks = source.images_and_masks(indices)
                return images, order[source.labels[indices]], masks
            return source.images(indices), order[source.labels[indices]]

        return Task(
            name=source.name,
            batches=self._batches(len(source), read, self._task_generator()),
            num_classes=source.num_classes,
        )

    def _episode(self, source: _Source, classes: list[Tensor]) -> Task:
        config = self.config
        chosen = torch.randperm(len(classes), generator=self._generator)[: config.n_way].tolist()
        support, query = [], []
        for c in chosen:
            picked = classes[c][torch.randperm(len(classes[c]), generator=self._generator)]
            support.append(picked[: config.k_shot])
            query.append(picked[config.k_shot : config.k_shot + config.query_shots])
        support_images = source.images(torch.cat(support))
        support_labels = torch.arange(config.n_way).repeat_interleave(config.k_shot)
        query_labels = torch.arange(config.n_way).repeat_interleave(config.query_shots)

        def read(indices: Tensor) -> Batch:
            return support_images[indices], support_labels[indices]

        return Task(
            name=source.name,
            batches=self._batches(len(support_labels), read, self._task_generator()),
            num_classes=config.n_way,
            query=(source.images(torch.cat(query)), query_labels),
        )

    def _batches(self, total: int, read: Callable[[Tensor], Batch], generator: torch.Generator) -> Iterator[Batch]:
        """Endless batches of ``read(indices)`` over ``range(total)``: one shuffled pass after another (the
        last partial batch of a pass is dropped); a set no bigger than a batch is yielded whole each time."""
        size = min(self.config.batch_size, total)
        while True:
            order = torch.randperm(total, generator=generator)
            for start in range(0, total - size + 1, size):
                batch = read(order[start : start + size])
                if self.augment:
                    batch = (augment_batch(batch[0], generator), *batch[1:])
                yield batch

    def state_dict(self) -> SamplerState:
        """The sampler's position: generator state (uint8 tensor) and the number of tasks sampled so far."""
        return {"generator": self._generator.get_state(), "tasks_sampled": self._tasks_sampled}

    def load_state_dict(self, state: SamplerState) -> None:
        """Continue exactly where the sampler that produced ``state`` (via :meth:`state_dict`) stopped."""
        self._generator.set_state(state["generator"])
        self._tasks_sampled = int(state["tasks_sampled"])
