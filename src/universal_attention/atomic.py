"""Atomic file writes: the one way this library puts a file on disk.

A reader sees the old file or the whole new one, never a part: the bytes go to a fresh temporary file in the
target's folder (created by :func:`tempfile.mkstemp`, so with ``O_EXCL`` under an unpredictable name that a
planted symlink cannot redirect), which is fsynced, renamed over the target, and the folder fsynced so that
the rename survives a power cut. New folders are fsynced into their parents the same way.

A write killed halfway leaves a temporary named ``.<name>.tmp-<random>``; :func:`remove_temporaries` deletes
such leftovers when a folder is next opened for writing by the process that owns it. A write the system refuses
(a full disk, a read-only or forbidden folder) raises :class:`~universal_attention.errors.WriteError`, one line
naming the path; the file there before, if any, is unchanged.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import UnsavedResultError, WriteError

TEMPORARY_INFIX = ".tmp-"
_TEMPORARY = re.compile(r"^\..+\.tmp-[A-Za-z0-9_]+$")
_OLD_CACHE_TEMPORARY = re.compile(r"^\..+\.safetensors\.\d+-[0-9a-f]{8}\.tmp$")  # caches of version 0.1
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once at import: there is no way to read the umask without setting it


@contextmanager
def _refused_as_write_error(path: Path, kept: str) -> Iterator[None]:
    """Turn the system's refusal to write ``path`` (``OSError``) into one :class:`WriteError` line."""
    try:
        yield
    except WriteError:
        raise
    except OSError as error:
        raise WriteError(f"cannot write {path} ({error.strerror or error}); {kept}") from error


def fsync_folder(folder: Path) -> None:
    """Make the entries of ``folder`` (new files, renames, removals) durable."""
    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def make_folder(folder: str | Path) -> Path:
    """Create ``folder`` and any missing parents, each fsynced into its parent; returns the path."""
    folder = Path(folder)
    missing = []
    current = folder
    while not current.is_dir() and current.parent != current:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        with _refused_as_write_error(path, "nothing was written there"):
            try:
                path.mkdir()
            except FileExistsError:  # made meanwhile by another process, or a file in the way
                if not path.is_dir():
                    raise
            fsync_folder(path.parent)
    return folder


@contextmanager
def _temporary_beside(path: Path) -> Iterator[str]:
    """The name of a new, empty temporary file in ``path``'s folder, to be filled in the block; then it gets the
    mode of a new file (never more than the folder allows) and is fsynced. Removed again if the block raises."""
    make_folder(path.parent)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TEMPORARY_INFIX}")
    os.close(descriptor)
    try:
        yield temporary
        descriptor = os.open(temporary, os.O_RDONLY | os.O_NOFOLLOW)  # the writer may have made a new inode
        try:
            os.fchmod(descriptor, 0o666 & ~_UMASK & os.stat(path.parent).st_mode)  # mkstemp made it 0600
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_all(name: str, data: bytes) -> None:
    descriptor = os.open(name, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
    finally:
        os.close(descriptor)


def atomic_write_with(path: str | Path, write: Callable[[str], None]) -> None:
    """Replace ``path`` atomically with what ``write(temporary_name)`` writes there (for writers that take a file
    name, such as safetensors' ``save_file``, which streams a many-gigabyte cache without a copy in memory)."""
    path = Path(path)
    with _refused_as_write_error(path, "the file there before, if any, is unchanged"):
        with _temporary_beside(path) as temporary:
            write(temporary)
        try:
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        fsync_folder(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one, never a part."""
    atomic_write_with(path, lambda temporary: _write_all(temporary, data))


def create_exclusive(path: str | Path, data: bytes) -> bool:
    """Create ``path`` holding the whole of ``data`` unless something is already there; True if it was created.

    Two processes racing to create the same file both see one file, complete, written by one of them.
    """
    path = Path(path)
    with _refused_as_write_error(path, "nothing was written there"):
        with _temporary_beside(path) as temporary:
            _write_all(temporary, data)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        finally:
            Path(temporary).unlink(missing_ok=True)
        fsync_folder(path.parent)
    return True


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary left by a write of this library that did not finish."""
    return bool(_TEMPORARY.match(name) or _OLD_CACHE_TEMPORARY.match(name))


def remove_temporaries(folder: str | Path, stem: str = "") -> None:
    """Delete the temporaries of killed writes in ``folder`` (only those of targets starting with ``stem``).

    Call this only while no other process can be writing there (a run folder under its lock, a cache folder
    under its lock); it touches nothing but regular files named like this module's temporaries.
    """
    if not Path(folder).is_dir():
        return
    for entry in os.scandir(folder):
        if entry.name.startswith(f".{stem}") and is_temporary(entry.name) and entry.is_file(follow_symlinks=False):
            Path(entry.path).unlink(missing_ok=True)


def write_result(path: str | Path, data: bytes, result: object, kept: str) -> None:
    """Write a finished result's file; if the system refuses, save it in the temporary folder instead and raise
    :class:`UnsavedResultError` carrying ``result``, so that the caller can still show it.

    Args:
        path: where the result belongs (``results.json`` of a run).
        data: the file's bytes.
        result: what the caller returns when the write works (kept on the error).
        kept: what is safe on disk all the same, for the error's line ("the checkpoints are kept").
    """
    path = Path(path)
    try:
        atomic_write_bytes(path, data)
    except WriteError as error:
        fallback: str | None = None
        try:
            descriptor, fallback = tempfile.mkstemp(prefix=f"uattn-{path.stem}-", suffix=path.suffix)
            os.close(descriptor)
            _write_all(fallback, data)
            where = f"the result is saved to {fallback} instead"
        except OSError:
            if fallback is not None:
                Path(fallback).unlink(missing_ok=True)
            fallback, where = None, "no other place could take the result either"
        raise UnsavedResultError(f"{error}; {kept}; {where}", result, fallback) from error
