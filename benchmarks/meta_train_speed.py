"""Meta-training speed against the same model's plain training speed, and peak memory.

Runs ``meta_train`` on the quickstart preset with its own schedule (periodic target check, attention pictures,
checkpoints, TensorBoard scalars; no final comparison) for ``--steps`` meta-steps, by default one period of the
target check, so that every periodic cost is in the run in its proper share. The model's plain training speed
is measured in the same process, before and after the run (their mean, so that a slow spell of the machine
hits both sides; a first measurement, slow while the process warms up, is thrown away): the same model, batch
size, image size and inner optimiser, on a batch already in memory.

- ``meta_train_vs_model``: meta-training images/s over the whole run (start-up, sampler, Reptile's copies,
  logging, checkpoints, pictures and periodic checks included) / plain training images/s. Target >= 0.95.
- ``meta_step_img_per_s``: images/s inside the meta-steps alone; ``outside_meta_steps_share``: the share of the
  run's wall time spent outside them.
- ``target_check_seconds``: one periodic target check (``train.eval_steps`` finetuning steps and
  ``train.eval_test_images`` test images, timed again on the run's final model); ``target_checks_share``: the
  share of the run's wall time the run's checks took; ``meta_train_vs_model_without_checks``: the ratio with
  that time taken out. The checks are training by design (the quickstart's check finetunes on 800 images per
  8,000 meta-training images), so the first ratio cannot pass 0.95 while the checks cost more than 5 %.
- ``*_images_kept``: the same figures of a second, identical run in the same process, which reads the synthetic
  images the first run painted (they are kept for the process) instead of painting them: what the meta-training
  costs beside its data.

- ``prefetch``: whether the run's inner batches were read ahead by a background thread (``reptile.prefetch``;
  ``auto`` reads ahead only where a core is free for it). ``--threads 1`` leaves one core of a 2-core machine
  to the reading thread: the case ``auto`` prefetches for, measured on a small machine.

Run: python benchmarks/meta_train_speed.py [--steps 200] [--plain-steps 30] [--threads N] [--set KEY=VALUE ...]
Last line: {"meta_train_vs_model": .., "meta_train_img_per_s": .., "model_train_img_per_s": .., ...}
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from universal_attention import AttentionResNet50, ExperimentConfig, load_checkpoint, load_config, meta_train
from universal_attention.devices import resolve_device
from universal_attention.meta.comparison import quick_transfer
from universal_attention.meta.reptile import a_core_is_free
from universal_attention.optim import adam


def plain_training_images_per_second(
    config: ExperimentConfig, steps: int, device: torch.device, classes: int = 4
) -> float:
    """Images/s of plain training steps (forward, loss, backward, inner optimiser step) of the run's model."""
    torch.manual_seed(0)
    model = AttentionResNet50(config.model, num_classes=classes).to_device(device).train()
    optimizer = adam(model.parameters(), lr=config.reptile.inner_lr, betas=(0.0, 0.999))
    size, batch = config.data.image_size, config.sampler.batch_size
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
    labels = torch.randint(0, classes, (batch,), device=device)
    seconds = []
    for step in range(steps + 2):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images).logits, labels)
        loss.backward()
        optimizer.step()
        float(loss.detach())  # waits for the device, as the inner loop's logging does
        if step >= 2:  # warm-up
            seconds.append(time.perf_counter() - start)
    return batch / statistics.median(seconds)


def timed_run(config: ExperimentConfig, out: str) -> tuple[float, list[float], str]:
    """Meta-train ``config`` into ``out``: the run's wall seconds, each meta-step's seconds, its final checkpoint."""
    step_seconds: list[float] = []
    start = time.perf_counter()
    result = meta_train(
        config, out, on_message=lambda text: None, on_step=lambda step, metrics: step_seconds.append(metrics["seconds"])
    )
    return time.perf_counter() - start, step_seconds, str(result.final_checkpoint)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="meta-steps (default: the preset's eval_every)")
    parser.add_argument("--plain-steps", type=int, default=30, help="plain training steps before and after")
    parser.add_argument("--threads", type=int, default=None, help="torch's CPU threads (default: torch's own choice)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = load_config(preset="quickstart", overrides=args.overrides)
    steps = args.steps or preset.train.eval_every
    config = load_config(
        preset="quickstart", overrides=[*args.overrides, f"train.max_steps={steps}", "train.final_comparison=false"]
    )
    device = resolve_device(config.train.device)
    # The process's first model trains about 40 % slower for its first few dozen steps (measured: 132-149 img/s,
    # then 209-247 for every later measurement), so one measurement is thrown away before "before" is taken.
    plain_training_images_per_second(config, args.plain_steps, device)
    before = plain_training_images_per_second(config, args.plain_steps, device)
    with tempfile.TemporaryDirectory() as folder:
        wall, step_seconds, final_checkpoint = timed_run(config, f"{folder}/run")
        final = load_checkpoint(final_checkpoint).model
        kept_wall, kept_step_seconds, _ = timed_run(config, f"{folder}/again")
    clock = time.perf_counter()
    quick_transfer(final, config, device)
    check_seconds = time.perf_counter() - clock
    checks = steps // config.train.eval_every if config.train.eval_every else 0
    after = plain_training_images_per_second(config, args.plain_steps, device)
    per_step = config.reptile.inner_steps * config.sampler.batch_size * config.reptile.meta_batch_size
    meta_rate = steps * per_step / wall
    plain_rate = (before + after) / 2
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    prefix = "gpu_" if device.type == "cuda" else ""  # run_all holds GPU figures to their own targets
    print(
        json.dumps(
            {
                f"{prefix}meta_train_vs_model": round(meta_rate / plain_rate, 3),
                "meta_train_img_per_s": round(meta_rate, 1),
                "meta_train_vs_model_images_kept": round(steps * per_step / kept_wall / plain_rate, 3),
                "meta_steps_vs_model_images_kept": round(steps * per_step / sum(kept_step_seconds) / plain_rate, 3),
                "model_train_img_per_s": round(plain_rate, 1),
                "model_train_img_per_s_before_after": [round(before, 1), round(after, 1)],
                "meta_train_vs_model_without_checks": round(
                    steps * per_step / (wall - checks * check_seconds) / plain_rate, 3
                ),
                "meta_step_img_per_s": round(steps * per_step / sum(step_seconds), 1),
                "meta_steps_vs_model": round(steps * per_step / sum(step_seconds) / plain_rate, 3),
                "target_check_seconds": round(check_seconds, 1),
                "target_checks_share": round(checks * check_seconds / wall, 3),
                "outside_meta_steps_share": round(1 - sum(step_seconds) / wall, 3),
                "wall_seconds": round(wall, 1),
                "peak_rss_mb": round(peak_kb / 1024 if sys.platform != "darwin" else peak_kb / 2**20, 1),
                "device": str(device),
                "threads": torch.get_num_threads(),
                "prefetch": a_core_is_free(device) if config.reptile.prefetch == "auto" else config.reptile.prefetch,
                "trunk": config.model.trunk,
                "steps": steps,
                "image_size": config.data.image_size,
                "batch": config.sampler.batch_size,
                "inner_steps": config.reptile.inner_steps,
                "eval_every": config.train.eval_every,
                "image_log_every": config.train.image_log_every,
                "checkpoint_every": config.train.checkpoint_every,
            }
        )
    )


if __name__ == "__main__":
    main()
