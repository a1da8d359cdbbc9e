"""The quickstart as a user runs it: ``uattn meta-train --preset quickstart``, wall time and seconds per stage.

Runs the command in a fresh interpreter in a temporary folder (``--set KEY=VALUE`` passes overrides through) and
reads ``stage_seconds`` from the run's ``results.json``: meta-training, the baselines the final comparison trains,
transfer and attention measurement, and the rest of the wall time (start-up, held-out source checks, writing the
report and the files).

Run: python benchmarks/quickstart.py [--keep DIR] [--set KEY=VALUE ...]
Last line: {"quickstart_seconds": .., "quickstart_stage_meta_train_seconds": .., ...}
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)"
    )
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        out = args.keep or Path(folder) / "quickstart"
        command = [sys.executable, "-m", "universal_attention", "meta-train", "--preset", "quickstart"]
        command += ["--out", str(out), *(part for override in args.overrides for part in ("--set", override))]
        clock = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - clock
        results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    stages = results.get("stage_seconds", {})
    figures = {"quickstart_seconds": round(wall, 1)}
    figures.update({f"quickstart_stage_{name}_seconds": round(value, 1) for name, value in stages.items()})
    figures["quickstart_stage_other_seconds"] = round(wall - sum(stages.values()), 1)
    figures["target_top1"] = results.get("meta_trained", {}).get("top1")
    figures["random_init_top1"] = results.get("random_init", {}).get("top1")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
