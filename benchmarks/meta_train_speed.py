"""Meta-training speed against the same model's plain training speed, and peak memory.

Runs ``meta_train`` on the quickstart preset with its own schedule (periodic target check, attention pictures,
checkpoints, TensorBoard scalars; no final comparison) for ``--steps`` meta-steps, by default one period of the
target check, so that every periodic cost is in the run in its proper share. The model's plain training speed
is measured during the run: every ``--plain-every`` meta-steps (and once at the end) the run pauses for a burst
of ``--plain-burst`` plain training steps (the burst's first step, slower while caches refill, untimed) of the
same model, batch size, image size and inner optimiser, on a batch already in memory. A slow spell of the
machine then hits both sides alike; the pauses are taken out of the run's time. A first measurement, slow while
the process warms up, is thrown away before the run.

- ``meta_train_vs_model``: meta-training images/s over the whole run (start-up, sampler, Reptile's copies,
  logging, checkpoints, pictures and periodic checks included) / plain training images/s (the median step of the
  run's bursts). Target >= 0.95. ``model_train_img_per_s_spread``: the slowest and fastest burst, what the
  machine's own noise was during the runs.
- ``meta_step_img_per_s``: images/s inside the meta-steps alone; ``outside_meta_steps_share``: the share of the
  run's wall time spent outside them.
- ``target_check_seconds``: one periodic target check (``train.eval_steps`` finetuning steps and
  ``train.eval_test_images`` test images, timed again on the run's final model); ``target_checks_share``: the
  share of the run's wall time the run's checks took; ``meta_train_vs_model_without_checks``: the ratio with
  that time taken out. The checks are training by design (the quickstart's check finetunes on 800 images per
  16,000 meta-training images), so the first ratio cannot pass 0.95 while the checks cost more than 5 %.
- ``*_images_kept``: the same figures of a second, identical run in the same process (against its own bursts),
  which reads the synthetic images the first run painted (they are kept for the process) instead of painting
  them: what the meta-training costs beside its data.

- ``prefetch``: whether the run's inner batches were read ahead by a background thread (``reptile.prefetch``;
  ``auto`` reads ahead only where a core is free for it). ``--threads 1`` leaves one core of a 2-core machine
  to the reading thread: the case ``auto`` prefetches for, measured on a small machine.

Run: python benchmarks/meta_train_speed.py [--steps 200] [--plain-every 10] [--plain-burst 3] [--threads N]
[--set KEY=VALUE ...]
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
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from universal_attention import AttentionResNet50, ExperimentConfig, load_checkpoint, load_config, meta_train
from universal_attention.devices import resolve_device
from universal_attention.meta.comparison import quick_transfer
from universal_attention.meta.reptile import a_core_is_free
from universal_attention.optim import adam


class PlainSteps:
    """Plain training steps (forward, loss, backward, inner optimiser step) of the run's model on one batch kept
    in memory: the model's own training speed, measured in bursts beside a run."""

    def __init__(self, config: ExperimentConfig, device: torch.device, classes: int = 4) -> None:
        torch.manual_seed(0)
        self.model = AttentionResNet50(config.model, num_classes=classes).to_device(device).train()
        self.optimizer = adam(self.model.parameters(), lr=config.reptile.inner_lr, betas=(0.0, 0.999))
        size, self.batch = config.data.image_size, config.sampler.batch_size
        self.images = torch.randint(0, 256, (self.batch, 3, size, size), dtype=torch.uint8, device=device)
        self.labels = torch.randint(0, classes, (self.batch,), device=device)

    def burst(self, steps: int) -> list[float]:
        """The seconds of ``steps`` timed steps, after one untimed step."""
        seconds = []
        for step in range(steps + 1):
            start = time.perf_counter()
            self.optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(self.model(self.images).logits, self.labels)
            loss.backward()
            self.optimizer.step()
            float(loss.detach())  # waits for the device, as the inner loop's logging does
            if step:
                seconds.append(time.perf_counter() - start)
        return seconds


@dataclass
class TimedRun:
    """One meta-training run: its wall seconds without the plain bursts, each meta-step's seconds, each burst's
    step seconds, and its final checkpoint."""

    wall: float
    step_seconds: list[float]
    bursts: list[list[float]]
    final_checkpoint: str

    def plain_rate(self, batch: int) -> float:
        """Plain training images/s: the median step over every burst of the run."""
        return batch / statistics.median([seconds for burst in self.bursts for seconds in burst])


def timed_run(config: ExperimentConfig, out: str, plain: PlainSteps, every: int, burst: int) -> TimedRun:
    """Meta-train ``config`` into ``out``, pausing every ``every`` meta-steps (and at the end) for a plain burst."""
    step_seconds: list[float] = []
    bursts: list[list[float]] = []
    paused = 0.0

    def on_step(step: int, metrics: dict[str, float]) -> None:
        nonlocal paused
        step_seconds.append(metrics["seconds"])
        if step % every == 0:
            clock = time.perf_counter()
            bursts.append(plain.burst(burst))
            paused += time.perf_counter() - clock

    start = time.perf_counter()
    result = meta_train(config, out, on_message=lambda text: None, on_step=on_step)
    wall = time.perf_counter() - start - paused
    if len(step_seconds) % every:  # the run's last stretch gets its burst too
        bursts.append(plain.burst(burst))
    return TimedRun(wall, step_seconds, bursts, str(result.final_checkpoint))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="meta-steps (default: the preset's eval_every)")
    parser.add_argument("--plain-every", type=int, default=10, help="meta-steps between plain bursts")
    parser.add_argument("--plain-burst", type=int, default=3, help="timed plain training steps per burst")
    parser.add_argument("--threads", type=int, default=None, help="torch's CPU threads (default: torch's own choice)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)"
    )
    args = parser.parse_args()
    if args.plain_every < 1 or args.plain_burst < 1:
        parser.error("--plain-every and --plain-burst must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = load_config(preset="quickstart", overrides=args.overrides)
    steps = args.steps or preset.train.eval_every
    config = load_config(
        preset="quickstart", overrides=[*args.overrides, f"train.max_steps={steps}", "train.final_comparison=false"]
    )
    device = resolve_device(config.train.device)
    plain = PlainSteps(config, device)
    # The process's first model trains about 40 % slower for its first few dozen steps (measured: 132-149 img/s,
    # then 209-247 for every later measurement), so a first burst is thrown away.
    plain.burst(30)
    with tempfile.TemporaryDirectory() as folder:
        first = timed_run(config, f"{folder}/run", plain, args.plain_every, args.plain_burst)
        final = load_checkpoint(first.final_checkpoint).model
        kept = timed_run(config, f"{folder}/again", plain, args.plain_every, args.plain_burst)
    clock = time.perf_counter()
    quick_transfer(final, config, device)
    check_seconds = time.perf_counter() - clock
    checks = steps // config.train.eval_every if config.train.eval_every else 0
    batch = config.sampler.batch_size
    per_step = config.reptile.inner_steps * batch * config.reptile.meta_batch_size
    images = steps * per_step
    plain_rate, kept_plain_rate = first.plain_rate(batch), kept.plain_rate(batch)
    burst_rates = [batch / statistics.median(burst) for run in (first, kept) for burst in run.bursts]
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    prefix = "gpu_" if device.type == "cuda" else ""  # run_all holds GPU figures to their own targets
    print(
        json.dumps(
            {
                f"{prefix}meta_train_vs_model": round(images / first.wall / plain_rate, 3),
                "meta_train_img_per_s": round(images / first.wall, 1),
                "meta_train_vs_model_images_kept": round(images / kept.wall / kept_plain_rate, 3),
                "meta_steps_vs_model_images_kept": round(images / sum(kept.step_seconds) / kept_plain_rate, 3),
                "model_train_img_per_s": round(plain_rate, 1),
                "model_train_img_per_s_images_kept": round(kept_plain_rate, 1),
                "model_train_img_per_s_spread": [round(min(burst_rates), 1), round(max(burst_rates), 1)],
                "plain_bursts": len(first.bursts) + len(kept.bursts),
                "meta_train_vs_model_without_checks": round(
                    images / (first.wall - checks * check_seconds) / plain_rate, 3
                ),
                "meta_step_img_per_s": round(images / sum(first.step_seconds), 1),
                "meta_steps_vs_model": round(images / sum(first.step_seconds) / plain_rate, 3),
                "target_check_seconds": round(check_seconds, 1),
                "target_checks_share": round(checks * check_seconds / first.wall, 3),
                "outside_meta_steps_share": round(1 - sum(first.step_seconds) / first.wall, 3),
                "wall_seconds": round(first.wall, 1),
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
