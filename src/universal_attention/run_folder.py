"""Run folders: refusing to overwrite a run, comparing configs on resume, finding readable checkpoints."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .config import ExperimentConfig
from .errors import ConfigError

RUN_ENTRIES = ("checkpoints", "tb", "config.yaml", "results.json")


def prepare_run_folder(out_dir: Path, overwrite: bool) -> None:
    """Refuse to run into an existing run unless ``overwrite``; with it, remove the old run's files."""
    if (out_dir / "config.yaml").exists() or (out_dir / "checkpoints").exists():
        if not overwrite:
            raise ConfigError(f"run folder {out_dir} already holds a run; continue it with --resume, choose another "
                              "--out, or pass --overwrite to replace it")
        for name in RUN_ENTRIES:
            path = out_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differing_keys(first: ExperimentConfig, second: ExperimentConfig) -> list[str]:
    """Dotted keys whose values differ between two configs."""
    one, two = _flatten(first.to_dict()), _flatten(second.to_dict())
    return sorted(key for key in one.keys() | two.keys() if one.get(key) != two.get(key))


def readable_checkpoints(folder: Path) -> list[Path]:
    """A run's step checkpoints, newest first (readability is checked when each is loaded)."""
    if not folder.is_dir():
        return []
    return sorted(folder.glob("step-*.safetensors"), reverse=True)
