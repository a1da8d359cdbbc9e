"""TaskSampler: dataset-as-task and N-way K-shot episodes, seeded and exactly resumable."""

from __future__ import annotations

import pytest
import torch

from universal_attention.config import SamplerConfig
from universal_attention.data.cache import CachedDataset
from universal_attention.data.synthetic import SyntheticTaskDataset
from universal_attention.errors import DatasetError
from universal_attention.meta.reptile import Task
from universal_attention.meta.sampler import TaskSampler

SIZE = 8


class IndexedDataset:
    """Dataset protocol over generated images whose first two pixels encode the item's index."""

    def __init__(self, labels: list[int], num_classes: int | None = None) -> None:
        self.labels = labels
        self.classes = [f"class{c}" for c in range(num_classes or max(labels) + 1)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = torch.full((3, SIZE, SIZE), 7, dtype=torch.uint8)
        image[0, 0, 0], image[1, 0, 0] = index % 256, index // 256
        return image, self.labels[index]

    def fingerprint(self) -> str:
        return f"indexed-{len(self)}"


def indices_of(images: torch.Tensor) -> list[int]:
    return (images[:, 0, 0, 0].long() + 256 * images[:, 1, 0, 0].long()).tolist()


def balanced(n: int, classes: int) -> IndexedDataset:
    return IndexedDataset([i % classes for i in range(n)])


def take(task: Task, n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [next(task.batches) for _ in range(n)]


def same_tasks(first: list[Task], second: list[Task]) -> bool:
    if [t.name for t in first] != [t.name for t in second]:
        return False
    for a, b in zip(first, second):
        for (images_a, labels_a), (images_b, labels_b) in zip(take(a), take(b)):
            if not (torch.equal(images_a, images_b) and torch.equal(labels_a, labels_b)):
                return False
    return True


def test_dataset_tasks_are_whole_datasets_with_uint8_batches():
    sampler = TaskSampler({"a": balanced(40, 4), "b": balanced(30, 3)}, SamplerConfig(batch_size=8))
    for task in sampler.sample(4):
        assert task.name in ("a", "b") and task.query is None
        assert task.num_classes == {"a": 4, "b": 3}[task.name]
        images, labels = next(task.batches)
        assert images.shape == (8, 3, SIZE, SIZE) and images.dtype == torch.uint8
        assert labels.dtype == torch.int64 and len(set(indices_of(images))) == 8
        source = balanced(40, 4) if task.name == "a" else balanced(30, 3)
        assert labels.tolist() == [source.labels[i] for i in indices_of(images)]


def test_dataset_batches_walk_the_whole_dataset_before_repeating():
    sampler = TaskSampler({"a": balanced(24, 2)}, SamplerConfig(batch_size=8))
    (task,) = sampler.sample(1)
    seen = [i for images, _ in take(task, 3) for i in indices_of(images)]
    assert sorted(seen) == list(range(24))


def test_same_seed_gives_identical_tasks_and_batches():
    datasets = {"a": balanced(40, 4), "b": balanced(60, 3)}
    config = SamplerConfig(batch_size=8, seed=5)
    assert same_tasks(TaskSampler(datasets, config).sample(4), TaskSampler(datasets, config).sample(4))
    other = TaskSampler(datasets, SamplerConfig(batch_size=8, seed=6)).sample(4)
    assert not same_tasks(TaskSampler(datasets, config).sample(4), other)


def test_size_weighting_picks_bigger_datasets_more_often():
    datasets = {"small": balanced(100, 2), "big": balanced(400, 2)}
    sized = TaskSampler(datasets, SamplerConfig(batch_size=8, task_weighting="size", seed=0)).sample(1000)
    uniform = TaskSampler(datasets, SamplerConfig(batch_size=8, seed=0)).sample(1000)
    assert 0.75 < sum(t.name == "big" for t in sized) / 1000 < 0.85
    assert 0.45 < sum(t.name == "big" for t in uniform) / 1000 < 0.55


def test_cached_datasets_give_the_same_batches_as_their_source():
    source = balanced(40, 4)
    images = torch.stack([source[i][0] for i in range(len(source))])
    cached = CachedDataset(images, torch.tensor(source.labels), source.classes, fingerprint="x")
    config = SamplerConfig(batch_size=8, seed=1)
    assert same_tasks(TaskSampler({"a": source}, config).sample(2), TaskSampler({"a": cached}, config).sample(2))


def test_augmented_batches_are_reproducible_and_keep_shape():
    datasets = {"a": balanced(40, 4)}
    config = SamplerConfig(batch_size=8, seed=2)
    first = TaskSampler(datasets, config, augment=True).sample(2)
    assert same_tasks(first, TaskSampler(datasets, config, augment=True).sample(2))
    (images, _), (plain, _) = next(first[0].batches), next(TaskSampler(datasets, config).sample(1)[0].batches)
    assert images.shape == plain.shape and images.dtype == torch.uint8


def test_episodes_remap_labels_and_keep_support_and_query_apart():
    dataset = balanced(120, 10)
    config = SamplerConfig(mode="episodic", n_way=3, k_shot=2, query_shots=4, batch_size=64)
    for task in TaskSampler({"d": dataset}, config).sample(5):
        assert task.name == "d" and task.num_classes == 3
        support, support_labels = next(task.batches)
        query, query_labels = task.query
        assert support.shape[0] == 6 and query.shape[0] == 12
        assert sorted(support_labels.tolist()) == [0, 0, 1, 1, 2, 2]
        assert sorted(query_labels.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
        assert not set(indices_of(support)) & set(indices_of(query))
        original = {}
        indices, labels = indices_of(support) + indices_of(query), support_labels.tolist() + query_labels.tolist()
        for index, label in zip(indices, labels):
            original.setdefault(label, set()).add(dataset.labels[index])
        assert all(len(classes) == 1 for classes in original.values())
        assert len(set.union(*original.values())) == 3


def test_episodes_only_use_classes_with_enough_images():
    labels = [0] * 10 + [1] * 10 + [2] * 3
    config = SamplerConfig(mode="episodic", n_way=2, k_shot=2, query_shots=2)
    dataset = IndexedDataset(labels)
    for task in TaskSampler({"d": dataset}, config).sample(10):
        assert all(dataset.labels[i] != 2 for i in indices_of(task.query[0]))


def test_big_support_sets_come_in_batch_size_chunks():
    config = SamplerConfig(mode="episodic", n_way=2, k_shot=4, query_shots=1, batch_size=4)
    (task,) = TaskSampler({"d": balanced(20, 2)}, config).sample(1)
    first, second = take(task, 2)
    assert first[0].shape[0] == 4
    assert len(set(indices_of(first[0])) | set(indices_of(second[0]))) == 8


def test_state_dict_resumes_exactly():
    datasets = {"a": balanced(40, 4), "b": balanced(60, 3)}
    for config in (SamplerConfig(batch_size=8, seed=3), SamplerConfig(mode="episodic", n_way=2, k_shot=2, seed=3)):
        uninterrupted = TaskSampler(datasets, config, augment=True)
        take(uninterrupted.sample(3)[0])
        state = uninterrupted.state_dict()
        assert all(isinstance(v, (torch.Tensor, int)) for v in state.values())
        resumed = TaskSampler(datasets, config, augment=True)
        resumed.load_state_dict({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()})
        assert resumed.tasks_sampled == 3
        assert same_tasks(uninterrupted.sample(3), resumed.sample(3))


def test_dataset_smaller_than_a_batch_is_a_one_line_error():
    with pytest.raises(DatasetError, match=r"'tiny' has 5 images, fewer than one batch of 8") as error:
        TaskSampler({"tiny": balanced(5, 2)}, SamplerConfig(batch_size=8))
    assert "\n" not in str(error.value)


def test_episodic_dataset_with_too_few_classes_is_an_error():
    config = SamplerConfig(mode="episodic", n_way=5, k_shot=2, query_shots=2)
    with pytest.raises(DatasetError, match=r"'d' has 3 classes with at least 4 images .* n_way 5"):
        TaskSampler({"d": balanced(30, 3)}, config)


def test_uncached_images_of_mixed_sizes_are_an_error():
    class Mixed(IndexedDataset):
        def __getitem__(self, index: int):
            return torch.zeros(3, 8 + index % 2, 8, dtype=torch.uint8), self.labels[index]

    (task,) = TaskSampler({"mixed": Mixed([0, 1] * 4)}, SamplerConfig(batch_size=4)).sample(1)
    with pytest.raises(DatasetError, match="'mixed' has images of different sizes"):
        next(task.batches)


def test_no_datasets_is_an_error():
    with pytest.raises(DatasetError, match="at least one dataset"):
        TaskSampler({}, SamplerConfig())


def test_shuffled_labels_give_each_task_its_own_label_order():
    dataset = SyntheticTaskDataset("colour", image_size=16, length=64)
    sampler = TaskSampler({"colour": dataset}, SamplerConfig(batch_size=64, seed=0), shuffle_labels=True)
    truth = torch.tensor(dataset.labels)
    drawn = [dataset[i][0] for i in range(64)]  # a synthetic image is drawn anew on every access: draw each once
    orders = []
    for task in sampler.sample(6):
        images, labels = next(task.batches)
        order = {}
        for image, label in zip(images, labels):
            index = next(i for i in range(64) if torch.equal(drawn[i], image))
            order[int(truth[index])] = int(label)
        assert sorted(order.values()) == sorted(order)  # a permutation of the classes
        orders.append(tuple(order[c] for c in sorted(order)))
    assert len(set(orders)) > 1
    plain = TaskSampler({"colour": dataset}, SamplerConfig(batch_size=64, seed=0))
    images, labels = next(plain.sample(1)[0].batches)
    assert all(
        int(label) == dataset.labels[next(i for i in range(64) if torch.equal(drawn[i], image))]
        for image, label in zip(images[:5], labels[:5])
    )
