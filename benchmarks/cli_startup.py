"""How long the command line takes to start: ``uattn --help`` and ``uattn --version`` against ``python -c pass``
(the interpreter alone) and ``python -c "import torch"`` (what every command paid before its imports were lazy).

Each command runs ``--repeats`` times in a fresh interpreter, interleaved so that a busy moment of the machine falls
on all of them alike; the median wall time of each counts. The last line printed is one JSON object:
``cli_help_seconds``, ``cli_version_seconds``, ``python_seconds``, ``torch_import_seconds`` and
``cli_help_over_python_seconds`` (the help's cost beyond the interpreter's own start).

Run: python benchmarks/cli_startup.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python_seconds": [sys.executable, "-c", "pass"],
    "cli_help_seconds": [sys.executable, "-m", "universal_attention", "--help"],
    "cli_version_seconds": [sys.executable, "-m", "universal_attention", "--version"],
    "torch_import_seconds": [sys.executable, "-c", "import torch"],
}


def wall_seconds(command: list[str]) -> float:
    """Wall time of one run of ``command`` (which must succeed)."""
    begin = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    for command in COMMANDS.values():  # warm the file-system cache: the first start reads every file from disk
        wall_seconds(command)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            times[name].append(wall_seconds(command))
    figures = {name: round(statistics.median(values), 3) for name, values in times.items()}
    figures["cli_help_over_python_seconds"] = round(figures["cli_help_seconds"] - figures["python_seconds"], 3)
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.3f} s over {len(values)} runs")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
