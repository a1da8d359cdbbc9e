"""Reptile on your own module: the sine-wave regression of Nichol et al. (2018) with a small MLP.

Every task is a sine wave with its own amplitude and phase; the network sees 10 points of a new wave and
must fit the whole curve after a few gradient steps. Reptile learns an initialisation from which that works.
Nothing here is specific to images or to AttentionResNet50: any ``nn.Module`` and any ``loss_fn`` will do.

Run: python examples/reptile_sine.py   (about 20 seconds on a laptop CPU)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from universal_attention import Reptile, ReptileConfig, Task


def sine_task(generator: torch.Generator, points: int = 10) -> tuple[Task, tuple[torch.Tensor, torch.Tensor]]:
    """A random sine wave: a task yielding batches of ``points`` samples, and a dense test grid."""
    amplitude = 0.1 + 4.9 * torch.rand(1, generator=generator)
    phase = math.pi * torch.rand(1, generator=generator)

    def batches():
        while True:
            x = 10 * torch.rand(points, 1, generator=generator) - 5
            yield x, amplitude * torch.sin(x + phase)

    grid = torch.linspace(-5, 5, 100).unsqueeze(1)
    return Task("sine", batches()), (grid, amplitude * torch.sin(grid + phase))


def mse_loss(model: nn.Module, batch: tuple[torch.Tensor, ...], task: Task) -> torch.Tensor:
    """The user's own loss: mean squared error of the regression."""
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def make_model() -> nn.Module:
    return nn.Sequential(nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))


def adapted_error(model: nn.Module, generator: torch.Generator, tasks: int = 20, steps: int = 16) -> float:
    """Mean test MSE on new waves after ``steps`` SGD steps on 10 points each (the model is restored)."""
    start = {name: value.clone() for name, value in model.state_dict().items()}
    errors = []
    for _ in range(tasks):
        task, (grid, truth) = sine_task(generator)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.02)
        batch = next(task.batches)
        for _ in range(steps):
            optimizer.zero_grad()
            mse_loss(model, batch, task).backward()
            optimizer.step()
        with torch.no_grad():
            errors.append(nn.functional.mse_loss(model(grid), truth).item())
        model.load_state_dict(start)
    return sum(errors) / len(errors)


def main() -> None:
    torch.manual_seed(0)
    model = make_model()
    scratch = make_model()
    scratch.load_state_dict(model.state_dict())
    steps = 3000
    config = ReptileConfig(
        inner_steps=5, inner_lr=0.02, inner_optimizer="sgd", outer_optimizer="sgd", outer_lr=0.1, anneal=True
    )
    reptile = Reptile(model, config, loss_fn=mse_loss, total_steps=steps)
    generator = torch.Generator().manual_seed(1)
    for step in range(1, steps + 1):
        task, _ = sine_task(generator)
        metrics = reptile.meta_step([task])
        if step % 1000 == 0:
            print(f"meta-step {step}: inner loss {metrics['loss']:.3f}")
    meta_error = adapted_error(model, torch.Generator().manual_seed(2))
    scratch_error = adapted_error(scratch, torch.Generator().manual_seed(2))
    print(
        f"test MSE after 16 steps on 10 points of a new wave: Reptile init {meta_error:.3f}, "
        f"random init {scratch_error:.3f}"
    )


if __name__ == "__main__":
    main()
