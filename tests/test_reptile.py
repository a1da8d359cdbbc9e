import itertools
import os

import pytest
import torch
from torch import nn

from universal_attention import AttentionResNet50, ReptileConfig
from universal_attention.errors import ConfigError
from universal_attention.meta.reptile import Reptile, Task

from small import SMALL


class Linear(nn.Module):
    """y = w . x with loss = y: the gradient of w is x, so SGD steps are easy to compute by hand."""

    def __init__(self, weights):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(weights))


def linear_loss(model, batch, task):
    return (model.w * batch[0]).sum()


def constant_task(x, name="t"):
    return Task(name, itertools.repeat((torch.tensor(x),)))


def test_sgd_outer_moves_meta_weights_by_exactly_the_step_size():
    model = Linear([1.0, 2.0])
    config = ReptileConfig(inner_steps=2, inner_lr=0.1, outer_optimizer="sgd", outer_lr=0.5)
    reptile = Reptile(model, config, loss_fn=linear_loss)
    reptile.meta_step([constant_task([1.0, -3.0])])
    # adapted = w - 2 * 0.1 * x = [0.8, 2.6]; meta = w + 0.5 * (adapted - w) = [0.9, 2.3]
    torch.testing.assert_close(model.w.detach(), torch.tensor([0.9, 2.3]))


def test_meta_batch_averages_the_adapted_weights():
    model = Linear([0.0, 0.0])
    config = ReptileConfig(inner_steps=1, inner_lr=1.0, outer_optimizer="sgd", outer_lr=1.0, meta_batch_size=2)
    reptile = Reptile(model, config, loss_fn=linear_loss)
    reptile.meta_step([constant_task([1.0, 0.0], "a"), constant_task([0.0, 3.0], "b")])
    # each task starts from the meta weights: adapted_a = [-1, 0], adapted_b = [0, -3]; mean = [-0.5, -1.5]
    torch.testing.assert_close(model.w.detach(), torch.tensor([-0.5, -1.5]))


def test_adam_outer_with_beta1_zero_matches_a_hand_computation():
    model = Linear([1.0, 1.0])
    config = ReptileConfig(inner_steps=1, inner_lr=0.1, outer_optimizer="adam", outer_lr=0.01, outer_beta1=0.0)
    reptile = Reptile(model, config, loss_fn=linear_loss)
    xs = [torch.tensor([1.0, -2.0]), torch.tensor([0.5, 4.0])]
    expected, v = torch.tensor([1.0, 1.0]), torch.zeros(2)
    for t, x in enumerate(xs, start=1):
        reptile.meta_step([constant_task(x.tolist())])
        gradient = 0.1 * x  # meta - adapted
        v = 0.999 * v + 0.001 * gradient**2
        v_hat = v / (1 - 0.999**t)
        expected = expected - 0.01 * gradient / (v_hat.sqrt() + 1e-8)  # beta1 = 0: m_hat is the gradient
        torch.testing.assert_close(model.w.detach(), expected)


def test_anneal_decays_outer_step_linearly_to_zero():
    model = Linear([0.0])
    config = ReptileConfig(inner_steps=1, inner_lr=1.0, outer_optimizer="sgd", outer_lr=1.0, anneal=True)
    reptile = Reptile(model, config, loss_fn=linear_loss, total_steps=4)
    sizes = [reptile.meta_step([constant_task([1.0])])["outer_lr"] for _ in range(4)]
    assert sizes == [1.0, 0.75, 0.5, 0.25]
    torch.testing.assert_close(model.w.detach(), torch.tensor([-2.5]))


def test_anneal_without_run_length_is_refused():
    with pytest.raises(ConfigError, match="total_steps"):
        Reptile(Linear([0.0]), ReptileConfig(anneal=True), loss_fn=linear_loss)


class TwoHeads(nn.Module):
    """A user's own module with per-task heads: Reptile treats ``heads.*`` as task-specific."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(3, 4)
        self.heads = nn.ModuleDict()

    def has_head(self, task):
        return task in self.heads

    def add_head(self, task, num_classes):
        self.heads[task] = nn.Linear(4, num_classes)

    def forward(self, x, task):
        return self.heads[task](torch.relu(self.body(x)))


def random_task(name, classes, seed):
    generator = torch.Generator().manual_seed(seed)

    def batches():
        while True:
            yield torch.randn(8, 3, generator=generator), torch.randint(0, classes, (8,), generator=generator)

    return Task(name, batches(), num_classes=classes)


def custom_loss(model, batch, task):
    return nn.functional.cross_entropy(model(batch[0], task.name), batch[1])


def test_heads_persist_per_task_and_are_not_averaged():
    torch.manual_seed(0)
    model = TwoHeads()
    config = ReptileConfig(inner_steps=3, inner_lr=0.1, outer_optimizer="sgd", outer_lr=1.0, meta_batch_size=2)
    reptile = Reptile(model, config, loss_fn=custom_loss)
    reptile.meta_step([random_task("a", 2, 1), random_task("b", 5, 2)])
    assert sorted(model.heads) == ["a", "b"]
    assert "heads.a.weight" not in reptile.meta_names
    head_a = model.heads["a"].weight.detach().clone()
    body = model.body.weight.detach().clone()
    reptile.meta_step([random_task("b", 5, 3)])
    assert torch.equal(model.heads["a"].weight, head_a)  # untouched by a step on task b
    assert not torch.equal(model.body.weight, body)


def test_adapted_head_is_kept_when_the_task_comes_back():
    torch.manual_seed(0)
    model = TwoHeads()
    reptile = Reptile(
        model, ReptileConfig(inner_steps=2, inner_lr=0.5, outer_optimizer="sgd", outer_lr=0.1), loss_fn=custom_loss
    )
    reptile.meta_step([random_task("a", 3, 1)])
    after_first = model.heads["a"].weight.detach().clone()
    reptile.meta_step([random_task("a", 3, 2)])
    assert not torch.equal(model.heads["a"].weight, after_first)  # trained further from where it ended


@pytest.mark.slow
def test_default_loss_on_attention_resnet_creates_heads_and_reports_accuracy():
    torch.manual_seed(0)
    model = AttentionResNet50(SMALL)
    reptile = Reptile(model, ReptileConfig(inner_steps=1, inner_optimizer="adam", inner_lr=1e-3))
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    task = Task("synthetic/colour", itertools.repeat((images, torch.tensor([0, 3]))), num_classes=4)
    metrics = reptile.meta_step([task])
    assert model.head_classes == {"synthetic/colour": 4}
    assert 0.0 <= metrics["accuracy/synthetic/colour"] <= 1.0
    assert metrics["loss"] > 0


MODES = [
    {},
    {"heads": "reset"},
    {"inner_state": "keep"},
    {"algorithm": "joint"},
    {"heads": "reset", "inner_state": "keep", "meta_batch_size": 2},
]


@pytest.mark.parametrize("mode", MODES, ids=lambda mode: ",".join(f"{k}={v}" for k, v in mode.items()) or "default")
def test_state_dict_continues_exactly(mode):
    def run(steps, interrupt_at=None):
        torch.manual_seed(0)
        model = TwoHeads()
        config = ReptileConfig(
            inner_steps=2, inner_lr=0.1, inner_optimizer="adam", outer_optimizer="adam", outer_lr=0.01, **mode
        )
        reptile = Reptile(model, config, loss_fn=custom_loss)
        for step in range(steps):
            if step == interrupt_at:
                saved_model = {k: v.clone() for k, v in model.state_dict().items()}
                saved = {k: v.clone() for k, v in reptile.state_dict().items()}
                model = TwoHeads()
                model.add_head("a", 3)
                model.load_state_dict(saved_model)
                reptile = Reptile(model, config, loss_fn=custom_loss)
                reptile.load_state_dict(saved)
            reptile.meta_step([random_task("a", 3, 10 * step + t) for t in range(config.meta_batch_size)])
        return model

    straight, resumed = run(4), run(4, interrupt_at=2)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


@pytest.mark.slow
def test_reptile_with_one_sgd_step_and_outer_step_one_is_joint_sgd_training():
    images = torch.randint(0, 256, (6, 4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 4, (6, 4), generator=torch.Generator().manual_seed(1))

    def train(**settings):
        torch.manual_seed(0)
        model = AttentionResNet50(SMALL)
        model.add_head("t", 4)
        config = ReptileConfig(
            inner_steps=1, inner_optimizer="sgd", inner_lr=0.05, outer_optimizer="sgd", outer_lr=1.0, **settings
        )
        reptile = Reptile(model, config)
        for step in range(3):
            batches = iter([(images[2 * step + k], labels[2 * step + k]) for k in range(2)])
            reptile.meta_step([Task("t", batches, num_classes=4)])
        return model.state_dict()

    reptile, joint = train(), train(algorithm="joint")
    assert reptile.keys() == joint.keys()
    for key in reptile:
        torch.testing.assert_close(reptile[key], joint[key], rtol=1e-6, atol=1e-6, msg=key)


def test_joint_training_takes_one_step_per_batch_and_no_meta_update():
    torch.manual_seed(0)
    model = Linear([1.0, 2.0])
    reptile = Reptile(model, ReptileConfig(algorithm="joint", inner_steps=3, inner_lr=0.1), loss_fn=linear_loss)
    reptile.meta_step([constant_task([1.0, -1.0]), constant_task([2.0, 0.0])])
    # Six SGD steps on gradients x: 3 x (1, -1) then 3 x (2, 0), lr 0.1, from (1, 2).
    torch.testing.assert_close(model.w.detach(), torch.tensor([1.0 - 0.3 - 0.6, 2.0 + 0.3]))


def test_reset_heads_start_every_task_from_zero():
    torch.manual_seed(0)
    model = TwoHeads()
    reptile = Reptile(model, ReptileConfig(heads="reset", inner_steps=1, inner_lr=1e-9), loss_fn=custom_loss)
    reptile.meta_step([random_task("a", 3, 1)])
    with torch.no_grad():
        model.heads["a"].weight.fill_(5.0)
    reptile.meta_step([random_task("a", 3, 2)])
    assert float(model.heads["a"].weight.detach().abs().max()) < 1e-6  # zeroed, then one step of lr 1e-9


def test_kept_inner_state_carries_adam_moments_across_tasks():
    torch.manual_seed(0)
    model = TwoHeads()
    reptile = Reptile(
        model,
        ReptileConfig(inner_state="keep", inner_optimizer="adam", inner_steps=2, meta_batch_size=2),
        loss_fn=custom_loss,
    )
    reptile.meta_step([random_task("a", 3, 1), random_task("b", 2, 2)])
    state = reptile.inner_optimizer.state[model.body.weight]
    assert int(state["step"]) == 4  # two tasks x two inner steps on the same optimiser
    assert any(key.startswith("inner.") for key in reptile.state_dict())


def test_joint_training_refuses_torchrun(monkeypatch):
    monkeypatch.setattr("universal_attention.meta.reptile.is_distributed", lambda: True)
    with pytest.raises(ConfigError, match="algorithm=joint runs in one process"):
        Reptile(Linear([0.0]), ReptileConfig(algorithm="joint"), loss_fn=linear_loss)


def test_prefetched_gives_the_items_in_order_and_reads_no_further():
    from universal_attention.meta.reptile import prefetched

    source = iter(range(10))
    assert list(prefetched(source, 4)) == [0, 1, 2, 3]
    assert next(source) == 4  # the reader stopped at the count: the task's next batch is still there


def test_prefetched_raises_a_reading_error_at_the_item_it_stopped():
    from universal_attention.meta.reptile import prefetched

    def batches():
        yield 1
        raise OSError("unreadable image")

    read = prefetched(batches(), 3)
    assert next(read) == 1
    with pytest.raises(OSError, match="unreadable image"):
        next(read)


def test_prefetch_changes_nothing_in_the_result():
    def run(prefetch: bool) -> list[torch.Tensor]:
        model = Linear([1.0, 2.0])
        config = ReptileConfig(inner_steps=3, inner_lr=0.1, outer_optimizer="sgd", outer_lr=0.5, prefetch=prefetch)
        reptile = Reptile(model, config, loss_fn=linear_loss)
        for step in range(3):
            xs = (torch.tensor([float(step + i), -1.0]) for i in itertools.count())
            reptile.meta_step([Task("t", ((x,) for x in xs))])
        return [model.w.detach().clone()]

    torch.testing.assert_close(run(True), run(False))


def test_auto_prefetch_reads_in_a_thread_only_where_a_core_is_free(monkeypatch):
    from universal_attention.meta import reptile as reptile_module

    readers = []

    def recording(batches, count, depth=2):
        readers.append(count)
        return (next(batches) for _ in range(count))

    monkeypatch.setattr(reptile_module, "prefetched", recording)
    model = Linear([1.0, 2.0])
    xs = (torch.tensor([float(i), -1.0]) for i in itertools.count())
    for free, setting, expected in [(True, "auto", [3]), (False, "auto", []), (False, True, [3]), (True, False, [])]:
        readers.clear()
        monkeypatch.setattr(reptile_module, "a_core_is_free", lambda device, free=free: free)
        config = ReptileConfig(inner_steps=3, inner_lr=0.1, outer_optimizer="sgd", prefetch=setting)
        Reptile(model, config, loss_fn=linear_loss).meta_step([Task("t", ((x,) for x in xs))])
        assert readers == expected, (free, setting)


def test_a_core_is_free_beside_a_gpu_or_when_torch_leaves_one(monkeypatch):
    from universal_attention.meta.reptile import a_core_is_free

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert not a_core_is_free(torch.device("cpu"))
    assert a_core_is_free(torch.device("cuda"))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert a_core_is_free(torch.device("cpu"))


def test_reset_inner_state_is_a_new_adam_for_every_task():
    """One optimiser zeroed before each task gives what a new Adam per task gives, new heads included."""

    def hand_written(model, tasks_per_step, config):
        meta = {name: p.detach().clone() for name, p in model.named_parameters() if not name.startswith("heads.")}
        for tasks in tasks_per_step:
            adapted = []
            for task in tasks:
                if not model.has_head(task.name):
                    model.add_head(task.name, task.num_classes)
                with torch.no_grad():
                    for name, p in model.named_parameters():
                        if name in meta:
                            p.copy_(meta[name])
                optimizer = torch.optim.Adam(model.parameters(), lr=config.inner_lr, betas=(0.0, 0.999))
                for _ in range(config.inner_steps):
                    optimizer.zero_grad(set_to_none=True)
                    custom_loss(model, next(task.batches), task).backward()
                    optimizer.step()
                adapted.append({name: p.detach().clone() for name, p in model.named_parameters() if name in meta})
            for name in meta:
                mean = sum(weights[name] for weights in adapted) / len(adapted)
                meta[name] = meta[name] + config.outer_lr * (mean - meta[name])
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name in meta:
                        p.copy_(meta[name])
        return model.state_dict()

    def steps():
        return [[random_task("a", 3, 1), random_task("b", 2, 2)], [random_task("c", 4, 3), random_task("a", 3, 4)]]

    config = ReptileConfig(
        inner_steps=3, inner_optimizer="adam", inner_lr=0.05, outer_optimizer="sgd", outer_lr=0.5, meta_batch_size=2
    )
    torch.manual_seed(0)
    model = TwoHeads()
    reptile = Reptile(model, config, loss_fn=custom_loss)
    for tasks in steps():
        reptile.meta_step(tasks)
    # a reset state is not part of the run's state
    assert reptile.inner_optimizer is None and "inner." not in "".join(reptile.state_dict())
    torch.manual_seed(0)
    expected = hand_written(TwoHeads(), steps(), config)
    assert model.state_dict().keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=1e-6, atol=1e-7, msg=key)
