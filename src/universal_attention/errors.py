"""Every error type the library raises on bad input.

Every message is one line that names the thing that is wrong and what would fix it; the CLI prints
it in red and exits with code 2 (tracebacks only with ``uattn --debug``).
"""


class UattnError(Exception):
    """Base class of every error caused by bad input (configs, files, datasets, checkpoints)."""


class ConfigError(UattnError):
    """A config key or value is wrong: names the dotted key and what is allowed."""


class CheckpointError(UattnError):
    """A checkpoint is missing, truncated, or not a universal-attention checkpoint."""


class DatasetError(UattnError):
    """A dataset is missing, unknown, or unusable: names the expected folder layout."""


class ModelError(UattnError):
    """A model is asked for something it does not have (an unknown head or tap layer)."""


class ImageError(UattnError):
    """An image file given by the user is missing or cannot be decoded."""


class TrainingError(UattnError):
    """Training cannot go on (a non-finite loss or weights, no tasks, tasks the processes disagree on, a resume
    with another number of processes); names what works instead."""


class RunFolderError(UattnError):
    """A run or search folder cannot be used: uattn did not make it, another process holds it, it is of another
    kind or already holds a run; names the folder and the way on (another ``--out``, ``--resume``)."""


class WriteError(UattnError, OSError):
    """A file could not be written (a full disk, a read-only or forbidden folder): names the path, the reason
    and what was kept. It is an ``OSError`` too, so code that handles the system's refusals catches it."""


class UnsavedResultError(WriteError):
    """A finished result could not be written where it belongs; ``result`` holds it (so a caller can still show
    it) and ``fallback`` the file it was saved to instead, when a safe place was found (else ``None``)."""

    def __init__(self, message: str, result: object, fallback: str | None) -> None:
        super().__init__(message)
        self.result, self.fallback = result, fallback
