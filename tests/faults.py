"""Fault injection for the survival tests: fail the N-th file-system step, and crafted checkpoints.

``FailAt(n)`` patches the ``os`` functions a write goes through (``open``, ``write``, ``fsync``, ``replace``)
so that the ``n``-th call raises ``OSError(EIO)``, as a full disk or a dying drive would; running an
operation with ``n = 1, 2, ...`` until it completes fails it once at every step it takes.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

STEPS = ("open", "write", "fsync", "replace")


class FailAt:
    """Raise ``OSError(EIO)`` at the ``n``-th call of any of :data:`STEPS` while active (a context manager)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.calls = 0
        self.failed: str | None = None
        self._real = {name: getattr(os, name) for name in STEPS}

    def _wrap(self, name: str):
        real = self._real[name]

        def step(*args, **kwargs):
            self.calls += 1
            if self.calls == self.n:
                self.failed = name
                raise OSError(errno.EIO, f"injected failure at {name}")
            return real(*args, **kwargs)

        return step

    def __enter__(self) -> FailAt:
        for name in STEPS:
            setattr(os, name, self._wrap(name))
        return self

    def __exit__(self, *exc) -> None:
        for name, real in self._real.items():
            setattr(os, name, real)


def fail_every_step(operation, check) -> list[str]:
    """Run ``operation()`` failing at step 1, 2, ... until it completes, calling ``check()`` after each failure.

    ``operation`` must let the injected ``OSError`` out (an error swallowed would hide a half-done write).
    Returns the steps that were failed, in order.
    """
    failed = []
    while True:
        with FailAt(len(failed) + 1) as fault:
            try:
                operation()
            except OSError as error:
                assert fault.failed is not None and "injected failure" in str(error), error
                failed.append(fault.failed)
        if fault.failed is None:
            return failed
        check()


def temporaries(folder: Path) -> list[str]:
    """Names in ``folder`` (recursively) that look like temporary files of a write."""
    return sorted(
        str(path.relative_to(folder))
        for path in Path(folder).rglob("*")
        if ".tmp" in path.name or path.name.endswith(".tmp")
    )


def rewrite_checkpoint(source: Path, target: Path, *, drop: tuple[str, ...] = (), tensors=None, **metadata) -> Path:
    """Copy a checkpoint with changed metadata (JSON values are dumped) and optionally changed tensors."""
    with safe_open(str(source), framework="pt") as handle:
        stored = dict(handle.metadata())
        contents = {name: handle.get_tensor(name).clone() for name in handle.keys()}
    for key in drop:
        stored.pop(key, None)
    for key, value in metadata.items():
        stored[key] = value if isinstance(value, str) else json.dumps(value)
    contents.update(tensors or {})
    save_file(contents, str(target), metadata=stored)
    return target
