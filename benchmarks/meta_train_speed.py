"""End-to-end meta-training speed and peak memory of the quickstart config.

Runs ``meta_train`` on the quickstart preset for a few meta-steps (no periodic evaluation, no pictures, no
final comparison) in a temporary run folder, and reports inner-loop images per second (time spent in
meta-steps), images per second over the whole run (start-up, data, checkpoints included) and the process's
peak resident memory.

Run: python benchmarks/meta_train_speed.py [--steps 20]
Last line: {"meta_train_img_per_s": .., "end_to_end_img_per_s": .., "peak_rss_mb": .., ...}
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time

from universal_attention import load_config, meta_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    config = load_config(
        preset="quickstart",
        overrides=[
            f"train.max_steps={args.steps}",
            "train.eval_every=0",
            "train.image_log_every=0",
            "train.final_comparison=false",
            f"train.checkpoint_every={args.steps}",
        ],
    )
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        result = meta_train(config, f"{folder}/run", on_message=lambda text: None)
        wall = time.perf_counter() - start
    images = args.steps * config.reptile.inner_steps * config.sampler.batch_size * config.reptile.meta_batch_size
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    print(
        json.dumps(
            {
                "meta_train_img_per_s": round(result.images_per_second, 1),
                "end_to_end_img_per_s": round(images / wall, 1),
                "peak_rss_mb": round(peak_kb / 1024 if sys.platform != "darwin" else peak_kb / 2**20, 1),
                "steps": args.steps,
                "image_size": config.data.image_size,
                "batch": config.sampler.batch_size,
                "inner_steps": config.reptile.inner_steps,
            }
        )
    )


if __name__ == "__main__":
    main()
