"""Run and search folders are ours alone: a marker, a lock, refusing to overwrite, resume checks, checkpoints.

A folder uattn writes a run (``uattn meta-train``), a search (``uattn tune``), a transfer (``uattn transfer``)
or an attention report (``uattn evaluate-attention``) into carries a marker file, ``.uattn-run`` (JSON: kind,
created, library version), written before anything else. Nothing is ever deleted or replaced in a folder without
it: a folder holding such files but no marker is refused (a copied ``trials.json`` or checkpoint proves nothing),
and the line says how to mark one by hand. While a process writes there it holds an exclusive ``flock`` on the
marker, so a second process on the same folder is refused with one line. Temporaries of writes that were killed
are removed when the folder is next claimed.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import distributed
from .._version import __version__
from ..atomic import create_exclusive, make_folder, remove_temporaries
from ..config import ExperimentConfig, load_config
from ..errors import RunFolderError, UattnError
from .checkpoint import step_checkpoints

MARKER = ".uattn-run"
KINDS = {
    "run": "uattn meta-train",
    "search": "uattn tune",
    "transfer": "uattn transfer",
    "attention": "uattn evaluate-attention",
}
REPORT_ENTRIES = ("report.md", "figures")
"""The report of a run or search (:mod:`universal_attention.reports`): written last, rebuilt by ``uattn report``."""
RUN_ENTRIES = (
    "checkpoints",
    "tb",
    "config.yaml",
    "results.json",
    "compare",
    "metrics.jsonl",
    "images",
    "models",
    *REPORT_ENTRIES,
)
"""What a run (or a transfer: ``models`` holds the models ``uattn transfer --save-model`` keeps) may hold."""
SEARCH_ENTRIES = ("trials.json", "best.yaml", "hparams", *REPORT_ENTRIES)
ATTENTION_ENTRIES = ("attention_report.json", "attention_examples.png")
RESUME_OVERRIDES = ("reptile.inner_lr", "reptile.outer_lr")
"""Keys a run may change when it is resumed: lowering a learning rate is the way on after a non-finite loss."""


class FolderClaim:
    """This process's exclusive claim on a run or search folder: the open marker, locked.

    Use it as a context manager or call :meth:`release`; the lock also ends with the process.
    """

    def __init__(self, folder: Path, kind: str, descriptor: int) -> None:
        self.folder, self.kind, self._descriptor = folder, kind, descriptor

    def release(self) -> None:
        """Let other processes claim the folder."""
        if self._descriptor >= 0:
            os.close(self._descriptor)
            self._descriptor = -1

    def __enter__(self) -> FolderClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _entries_of_ours(folder: Path) -> list[str]:
    """Names in ``folder`` that a run or a search would manage (and might replace or delete)."""
    if not folder.is_dir():
        return []
    names = [
        name for name in dict.fromkeys((*RUN_ENTRIES, *SEARCH_ENTRIES, *ATTENTION_ENTRIES)) if (folder / name).exists()
    ]
    return names + sorted(path.name for path in folder.glob("trial-*"))


def _read_kind(marker: Path) -> str:
    try:
        kind = json.loads(marker.read_text())["kind"]
    except (OSError, ValueError, KeyError, TypeError):
        kind = None
    if kind not in KINDS:
        raise RunFolderError(
            f"{marker} is not a marker uattn wrote (no run or search kind in it); choose another --out"
        )
    return kind


def folder_kind(folder: str | Path) -> str:
    """The kind of folder uattn made ``folder`` as (a key of :data:`KINDS`), from its marker.

    Raises:
        RunFolderError: ``folder`` has no marker uattn wrote.
    """
    marker = Path(folder) / MARKER
    if not marker.is_file():
        raise RunFolderError(f"{folder} is not a folder uattn made (no {MARKER} in it); give the --out of a uattn run")
    return _read_kind(marker)


def claim_folder(folder: str | Path, kind: str) -> FolderClaim:
    """Make ``folder`` ours (its marker written first) and lock it for this process.

    Args:
        folder: the folder; created, each new level fsynced into its parent, if missing.
        kind: one of :data:`KINDS`.

    Raises:
        RunFolderError: the folder holds files a command of ours writes but no marker (uattn did not make it,
            or it is a folder of version 0.1: the line says how to mark it), is a folder of another kind, or
            another process holds its lock.
        WriteError: the system refused to create the folder or its marker (a read-only or full disk).
    """
    folder = Path(folder)
    marker = folder / MARKER
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"{folder} is a file, not a folder; choose another --out")
    if not os.path.lexists(marker):
        found = _entries_of_ours(folder)
        if found:
            stamp_by_hand = json.dumps({"kind": kind})
            raise RunFolderError(
                f"{folder} holds {found[0]} but no {MARKER} marker, so uattn did not make it and "
                f"nothing there is replaced or deleted; choose another --out (to go on with a {kind} folder "
                f"that uattn 0.1 made, mark it first: echo '{stamp_by_hand}' > {marker})"
            )
        make_folder(folder)
        stamp = {
            "kind": kind,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "library_version": __version__,
        }
        create_exclusive(marker, (json.dumps(stamp, indent=2) + "\n").encode())
    try:
        descriptor = os.open(marker, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as error:
        raise RunFolderError(f"{marker} cannot be opened ({error.strerror}); choose another --out") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise RunFolderError(
            f"{folder} is in use by another uattn process (it holds the lock on {MARKER}); wait for it "
            "to finish or choose another --out"
        ) from None
    found_kind = _read_kind(marker)
    if found_kind != kind:
        os.close(descriptor)
        raise RunFolderError(
            f"{folder} is a {found_kind} folder of `{KINDS[found_kind]}`, not a {kind} folder; choose another --out"
        )
    for subfolder in (folder, folder / "checkpoints", folder / "models"):
        remove_temporaries(subfolder)
    return FolderClaim(folder, kind, descriptor)


@contextmanager
def holding_run_folder(folder: Path, *, main: bool) -> Iterator[None]:
    """The main process claims the run folder for the block; every process learns whether it could, so that
    no process waits for a main process that gave up."""
    claim: FolderClaim | None = None
    error: UattnError | None = None
    if main:
        try:
            claim = claim_folder(folder, "run")
        except UattnError as refused:
            error = refused
    if distributed.all_reduce_count(float(error is not None)) > 0:
        raise error or RunFolderError(f"the main process could not claim the run folder {folder}; see its message")
    try:
        yield
    finally:
        if claim is not None:
            claim.release()


def prepare_run_folder(out_dir: Path, overwrite: bool, *, resumable: bool = True) -> None:
    """Refuse to run into an existing run unless ``overwrite``; with it, remove the old run's files.

    ``resumable``: whether the refusal offers ``--resume`` (meta-training) or not (a transfer). Only call it
    while holding the folder's claim: it deletes nothing in a folder without our marker.
    """
    if not (out_dir / MARKER).is_file():
        raise RunFolderError(f"{out_dir} has no {MARKER} marker; nothing there is replaced")
    if (out_dir / "config.yaml").exists() or (out_dir / "checkpoints").exists():
        if not overwrite:
            resume = "continue it with --resume, " if resumable else ""
            raise RunFolderError(
                f"run folder {out_dir} already holds a run; {resume}choose another --out, or pass --overwrite "
                "to replace it"
            )
        for name in RUN_ENTRIES:
            path = out_dir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


def differing_keys(first: ExperimentConfig, second: ExperimentConfig) -> list[str]:
    """Dotted keys whose values differ between two configs."""
    one, two = first.to_flat_dict(), second.to_flat_dict()
    return sorted(key for key in one.keys() | two.keys() if one.get(key) != two.get(key))


def resume_changes(out_dir: Path, config: ExperimentConfig) -> dict[str, tuple[Any, Any]]:
    """What resuming the run in ``out_dir`` with ``config`` changes: ``{key: (saved, new)}``, only keys of
    :data:`RESUME_OVERRIDES`.

    Raises:
        ConfigError: the folder has no readable ``config.yaml``, or the configs differ in any other key.
    """
    if not (out_dir / "config.yaml").is_file():
        raise RunFolderError(f"cannot resume {out_dir}: no config.yaml there (is it a run folder?)")
    saved = load_config(config_file=out_dir / "config.yaml")
    changed = differing_keys(saved, config)
    refused = [key for key in changed if key not in RESUME_OVERRIDES]
    if refused:
        raise RunFolderError(
            f"cannot resume {out_dir}: the config differs in {', '.join(refused)}; resume with the run's "
            f"own config (only {' and '.join(RESUME_OVERRIDES)} may change) or start a new run"
        )
    saved_values, new_values = saved.to_flat_dict(), config.to_flat_dict()
    return {key: (saved_values[key], new_values[key]) for key in changed}


def readable_checkpoints(folder: Path) -> list[Path]:
    """A run's step checkpoints, newest (highest step) first (readability is checked when each is loaded)."""
    return step_checkpoints(folder)


def remove_old_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest step checkpoints of a run (by step number)."""
    for old in step_checkpoints(folder)[keep:]:
        old.unlink(missing_ok=True)
