"""The synthetic source tasks need *where*: told where the target is, a network learns them; left to pool
the whole image, the same network with the same budget stays near chance.

A small convolutional network stands in for the ResNet50 here so that the check fits in the test suite; the
same comparison with the attention ResNet50 (oracle attention against ``model.attention: false``) is
``examples/needs_where.py``, with its figures in docs/datasets.md.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from universal_attention.data.synthetic import SOURCE_TASKS, SyntheticTaskDataset

STEPS, BATCH, TRAIN, TEST = 300, 16, 2000, 400


def encoder() -> nn.Module:
    def block(inputs: int, outputs: int, stride: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU())

    return nn.Sequential(block(3, 16, 2), block(16, 32, 2), block(32, 32, 1), block(32, 64, 1))


def pooled(features: torch.Tensor, masks: torch.Tensor, oracle: bool) -> torch.Tensor:
    """Average features over the whole image, or (oracle) over the target's mask."""
    if not oracle:
        return features.mean(dim=(2, 3))
    weights = F.adaptive_avg_pool2d(masks[:, None], features.shape[-2:])
    return (features * weights).sum(dim=(2, 3)) / weights.sum(dim=(2, 3)).clamp_min(1e-6)


def split(task: str, name: str, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dataset = SyntheticTaskDataset(task, name, image_size=64, with_masks=True, length=length)
    images, labels, masks = zip(*(dataset[index] for index in range(length)))
    return torch.stack(images).float() / 255, torch.tensor(labels), torch.stack(masks).float()


def trained_top1(train, test, oracle: bool) -> float:
    torch.manual_seed(0)
    body, head = encoder(), nn.Linear(64, 4)
    optimizer = torch.optim.Adam([*body.parameters(), *head.parameters()], lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    images, labels, masks = train
    for _ in range(STEPS):
        batch = torch.randint(0, len(labels), (BATCH,), generator=generator)
        loss = F.cross_entropy(head(pooled(body(images[batch]), masks[batch], oracle)), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    body.eval()
    with torch.no_grad():
        images, labels, masks = test
        return float((head(pooled(body(images), masks, oracle)).argmax(1) == labels).float().mean())


@pytest.mark.slow
@pytest.mark.parametrize("task", SOURCE_TASKS)
def test_pooling_on_the_target_learns_the_task_and_pooling_everything_does_not(task):
    train, test = split(task, "train", TRAIN), split(task, "test", TEST)
    told, blind = trained_top1(train, test, oracle=True), trained_top1(train, test, oracle=False)
    print(f"{task}: pooled on the target {told:.3f}, pooled over the whole image {blind:.3f}")
    assert told - blind >= 0.3, (told, blind)
