"""Start points compared on the target task: the periodic check during meta-training and the final comparison.

The periodic check is a short transfer of the current weights; the final comparison sets the meta-trained model
beside a random init (and trained baselines), run for run."""

from __future__ import annotations

import time
from typing import Any

import torch

from ..analysis.evaluate import attention_in_mask
from ..config import ExperimentConfig
from ..data.registry import get_dataset, masks_available
from ..data.samples import ImageDataset
from ..models.attention_resnet import AttentionResNet50
from ..transfer.protocol import protocol_for, transfer_evaluate
from ..transfer.report import paired_comparisons
from ..transfer.results import TransferResult


def quick_transfer(
    model: AttentionResNet50 | str,
    config: ExperimentConfig,
    device: torch.device,
    target: tuple[ImageDataset, ImageDataset] | None = None,
) -> TransferResult:
    """The short periodic transfer check: one seed, one draw, learned attention, the first shots setting,
    ``train.eval_test_images`` test images, and ``train.eval_mode``: ``train.eval_steps`` finetuning steps, or
    the linear probe on frozen features.

    ``target``: the target's ``(train, test)`` datasets, opened once by the caller (e.g. through the cache), so
    that a check every few hundred steps does not decode the target again; default: opened by name.
    """
    short = protocol_for(config).updated(
        mode=config.train.eval_mode,
        steps=config.train.eval_steps,
        seeds=1,
        draws=1,
        attention=("learned",),
        shots_per_class=config.transfer.shots_per_class[:1],
        max_test_images=config.train.eval_test_images,
    )
    return transfer_evaluate(
        model,
        target or config.data.target,
        short,
        model_config=config.model,
        data_root=config.data.data_root,
        device=device,
    )


def compare_start_points(
    model: AttentionResNet50,
    config: ExperimentConfig,
    device: torch.device,
    baselines: dict[str, AttentionResNet50] | None = None,
) -> dict[str, Any]:
    """Transfer accuracy and attention on the target's objects: the meta-trained model vs a random init (and
    any other ``baselines``, e.g. ``{"joint": model}``).

    Every start point gets the same protocol (``config.transfer``) and budget, run for run (same seeds, shot
    draws and new-head initialisations), so differences are paired: ``comparisons`` holds the meta-trained
    model against each baseline. Attention is measured on the start points themselves (before any
    finetuning), on target test images that have object masks.
    """
    comparison: dict[str, Any] = {"target": config.data.target}
    masked = None
    if masks_available(config.data.target, config.data.data_root):
        masked = get_dataset(
            config.data.target, "test", root=config.data.data_root, image_size=config.data.image_size, with_masks=True
        )
    torch.manual_seed(config.train.seed)
    starts = {
        "meta_trained": model,
        "random_init": AttentionResNet50(config.model).to_device(device),
        **(baselines or {}),
    }
    results = []
    shots, control = config.transfer.shots_per_class[-1], config.transfer.attention[0]
    seconds = {"transfer": 0.0, "attention": 0.0}
    for key, start in starts.items():
        start.to_device(device)
        clock = time.perf_counter()
        result = transfer_evaluate(
            start,
            config.data.target,
            protocol_for(config),
            model_config=config.model,
            data_root=config.data.data_root,
            device=device,
            label=key,
        )
        seconds["transfer"] += time.perf_counter() - clock
        results.append(result)
        cell = result.cell(shots, control)
        entry: dict[str, Any] = {
            "top1": cell.top1,
            "top1_std": cell.top1_std,
            "top1_ci": list(cell.top1_ci),
            "runs": cell.runs,
            "transfer": result.to_dict(),
            "attention_in_mask": None,
        }
        if masked is not None:
            clock = time.perf_counter()
            mass = attention_in_mask(start, masked, limit=config.train.eval_test_images, device=device)
            seconds["attention"] += time.perf_counter() - clock
            entry.update(attention_in_mask=mass.mean_mass(), attention=mass.to_dict())
        comparison[key] = entry
    comparison["stage_seconds"] = seconds
    comparison["comparisons"] = [
        entry
        for entry in paired_comparisons(results, [key for key in starts if key != "meta_trained"])
        if entry["start"] == "meta_trained"
    ]
    return comparison
