"""Runs three Reptile meta-steps on tasks 'a' and 'b', either in one process (meta_batch_size 2) or under
torchrun with two processes (each adapts to one of the tasks), and saves the resulting weights.

Usage: python tests/distributed_worker.py single OUT
       python -m torch.distributed.run --standalone --nproc_per_node 2 tests/distributed_worker.py ranks OUT
"""

import itertools
import sys

import torch
from safetensors.torch import save_file

from universal_attention import AttentionResNet50, Reptile, ReptileConfig, Task
from universal_attention.distributed import destroy, init_distributed

from small import SMALL


def tasks_of_step(step):
    tasks = []
    for index, name in enumerate(["a", "b"]):
        generator = torch.Generator().manual_seed(100 * step + index)
        images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=generator)
        labels = torch.randint(0, 3, (4,), generator=generator)
        tasks.append(Task(name, itertools.repeat((images, labels)), num_classes=3))
    return tasks


def build_model():
    torch.manual_seed(0)
    model = AttentionResNet50(SMALL)
    model.add_head("a", 3)
    model.add_head("b", 3)
    return model


def main():
    mode, out = sys.argv[1], sys.argv[2]
    model = build_model()
    if mode == "single":
        config = ReptileConfig(inner_steps=2, inner_lr=1e-2, outer_optimizer="sgd", outer_lr=0.5, meta_batch_size=2)
        reptile = Reptile(model, config)
        for step in range(3):
            reptile.meta_step(tasks_of_step(step))
        rank = 0
    else:
        rank = init_distributed("cpu").rank
        reptile = Reptile(model, ReptileConfig(inner_steps=2, inner_lr=1e-2, outer_optimizer="sgd", outer_lr=0.5))
        for step in range(3):
            reptile.meta_step([tasks_of_step(step)[rank]])
        destroy()
    if rank == 0:
        save_file({name: value.contiguous() for name, value in model.state_dict().items()}, out)


if __name__ == "__main__":
    main()
