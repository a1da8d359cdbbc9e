"""The package itself: a light import, and a public API where every entry point is one import away."""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
from pathlib import Path

import universal_attention
from universal_attention import errors

PACKAGE = Path(universal_attention.__file__).parent
HEAVY = ("hyperopt", "tensorboard", "torch.utils.tensorboard", "scipy", "pyspark")
IMPORT_BUDGET = 0.3  # seconds on a machine where torch and torchvision import in REFERENCE_SECONDS
REFERENCE_SECONDS = 2.0


def run_python(code: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *options, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )


def cumulative_seconds(importtime: str, package: str) -> float:
    """The cumulative time ``python -X importtime`` reports for a top-level import of ``package``."""
    for line in importtime.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) == 3 and fields[2].rstrip() == f" {package}":
            return int(fields[1]) / 1e6
    raise AssertionError(f"-X importtime did not report {package}")


def test_the_import_loads_no_heavy_optional_module():
    loaded = run_python("import sys, universal_attention; print(' '.join(sorted(sys.modules)))").stdout.split()
    assert [name for name in HEAVY if name in loaded] == []


def test_the_import_costs_little_beside_torch_and_torchvision():
    """At most 0.3 s more than torch and torchvision alone, measured side by side in one process. The budget grows
    with the time torch and torchvision took, so that a slow or busy machine does not fail it; the best of two runs
    counts (one run can lose its core to another process)."""
    attempts = []
    for _ in range(2):
        report = run_python("import torch, torchvision; import universal_attention", "-X", "importtime").stderr
        ours = cumulative_seconds(report, "universal_attention")
        theirs = cumulative_seconds(report, "torch") + cumulative_seconds(report, "torchvision")
        budget = IMPORT_BUDGET * max(1.0, theirs / REFERENCE_SECONDS)
        attempts.append(f"{ours:.2f} s (budget {budget:.2f} s; torch and torchvision {theirs:.2f} s)")
        if ours <= budget:
            return
    raise AssertionError("import universal_attention took " + ", then ".join(attempts))


COMMAND_LINES = [
    ["--help"],
    ["--version"],
    ["config", "show", "--preset", "quickstart"],
    *(
        [*command, "--help"]
        for command in (
            ["meta-train"],
            ["transfer"],
            ["tune"],
            ["visualize"],
            ["evaluate-attention"],
            ["info"],
            ["config"],
            ["config", "trunks"],
            ["data"],
            ["data", "list"],
            ["data", "verify"],
            ["data", "show"],
            ["data", "prepare"],
        )
    ),
]
STARTUP = """
import json, sys
from universal_attention.cli import main
loaded = {}
for args in json.loads(sys.argv[1]):
    try:
        main(args, prog_name="uattn")
    except SystemExit as end:
        assert end.code in (0, None), (args, end.code)
    loaded[" ".join(args)] = [m for m in ("torch", "torchvision", "tensorboard") if m in sys.modules]
print(json.dumps(loaded))
"""


def test_the_command_line_starts_without_torch():
    """``uattn --help``, ``--version``, ``config show`` and every subcommand's ``--help`` load no torch,
    torchvision or tensorboard (commands import them when they run)."""
    result = subprocess.run(
        [sys.executable, "-c", STARTUP, json.dumps(COMMAND_LINES)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == {" ".join(args): [] for args in COMMAND_LINES}


def test_every_public_name_resolves_and_tune_loads_on_first_use():
    for name in universal_attention.__all__:
        assert getattr(universal_attention, name) is not None, name
    from universal_attention import meta_train, tune

    assert inspect.isfunction(tune) and inspect.isfunction(meta_train)
    assert issubclass(universal_attention.TrainingError, universal_attention.UattnError)


def test_every_error_type_is_public_and_a_uattn_error():
    defined = [name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, Exception)]
    assert set(defined) <= set(universal_attention.__all__)
    assert all(issubclass(getattr(errors, name), errors.UattnError) for name in defined)


def test_the_package_is_rooms_over_a_small_foundation():
    top_level = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(top_level) <= 10, top_level
    rooms = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert {"analysis", "cli", "data", "meta", "models", "runs", "transfer", "tuning"} <= rooms


def test_every_module_opens_with_a_one_line_summary_of_its_job():
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        summary = docstring.split("\n\n")[0] if docstring else ""
        if "\n" in summary or not summary.endswith("."):
            missing.append(str(path.relative_to(PACKAGE)))
    assert missing == [], "modules without a one-line summary (first docstring line, then a blank line or the end)"


def test_python_dash_m_runs_the_command_line():
    result = subprocess.run(
        [sys.executable, "-m", "universal_attention", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: uattn") and "meta-train" in result.stdout
