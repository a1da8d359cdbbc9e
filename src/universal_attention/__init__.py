"""The public API of universal-attention: every name a user imports, loaded lightly.

universal-attention asks whether a network can learn where to look, and whether that helps it learn new tasks
faster. Every entry point the docs use imports from here::

    from universal_attention import AttentionResNet50, ModelConfig, load_checkpoint, meta_train, tune

The import is light: every name but the version and the error types loads its module on first access, so
``import universal_attention`` loads no torch, and hyperopt, tensorboard, scipy and pyspark load only where they
are used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    ImageError,
    ModelError,
    RunFolderError,
    TrainingError,
    UattnError,
    UnsavedResultError,
    WriteError,
)

if TYPE_CHECKING:
    from .analysis.diagnostics import SourceCheck, TapDiagnostics, attention_diagnostics, source_check
    from .analysis.evaluate import AttentionReport, evaluate_attention
    from .analysis.files import Visualization, visualize_attention
    from .analysis.maps import attention_maps
    from .analysis.pictures import attention_grid, overlay
    from .config import (
        DataConfig,
        ExperimentConfig,
        ModelConfig,
        ReptileConfig,
        SamplerConfig,
        TrainConfig,
        TransferConfig,
        TuneConfig,
        load_config,
    )
    from .data.registry import get_dataset
    from .meta.reptile import Reptile, Task
    from .meta.sampler import TaskSampler
    from .meta.training import MetaTrainResult, meta_train
    from .models.attention_resnet import AttentionOutput, AttentionResNet50
    from .runs.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from .transfer.protocol import transfer_evaluate
    from .transfer.report import transfer_report
    from .transfer.results import TransferResult
    from .tuning.search import TrialRecord, TuneResult, tune

_LAZY = {
    **dict.fromkeys(("SourceCheck", "TapDiagnostics", "attention_diagnostics", "source_check"), "analysis.diagnostics"),
    **dict.fromkeys(("AttentionReport", "evaluate_attention"), "analysis.evaluate"),
    **dict.fromkeys(("Visualization", "visualize_attention"), "analysis.files"),
    "attention_maps": "analysis.maps",
    **dict.fromkeys(("attention_grid", "overlay"), "analysis.pictures"),
    **dict.fromkeys(
        (
            "DataConfig",
            "ExperimentConfig",
            "ModelConfig",
            "ReptileConfig",
            "SamplerConfig",
            "TrainConfig",
            "TransferConfig",
            "TuneConfig",
            "load_config",
        ),
        "config",
    ),
    "get_dataset": "data.registry",
    **dict.fromkeys(("Reptile", "Task"), "meta.reptile"),
    "TaskSampler": "meta.sampler",
    **dict.fromkeys(("MetaTrainResult", "meta_train"), "meta.training"),
    **dict.fromkeys(("AttentionOutput", "AttentionResNet50"), "models.attention_resnet"),
    **dict.fromkeys(("Checkpoint", "load_checkpoint", "save_checkpoint"), "runs.checkpoint"),
    "transfer_evaluate": "transfer.protocol",
    "transfer_report": "transfer.report",
    "TransferResult": "transfer.results",
    **dict.fromkeys(("tune", "TuneResult", "TrialRecord"), "tuning.search"),
}
"""Every public name but the version and the errors, with the module it lives in: loaded on first access
(PEP 562), so that importing the package (and ``uattn --help``) loads no torch."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AttentionOutput",
    "AttentionReport",
    "AttentionResNet50",
    "Checkpoint",
    "CheckpointError",
    "ConfigError",
    "DataConfig",
    "DatasetError",
    "ExperimentConfig",
    "ImageError",
    "MetaTrainResult",
    "ModelConfig",
    "ModelError",
    "Reptile",
    "ReptileConfig",
    "RunFolderError",
    "SamplerConfig",
    "SourceCheck",
    "TapDiagnostics",
    "Task",
    "TaskSampler",
    "TrainConfig",
    "TrainingError",
    "TransferConfig",
    "TransferResult",
    "TrialRecord",
    "TuneConfig",
    "TuneResult",
    "UattnError",
    "UnsavedResultError",
    "Visualization",
    "WriteError",
    "__version__",
    "attention_diagnostics",
    "attention_grid",
    "attention_maps",
    "evaluate_attention",
    "get_dataset",
    "load_checkpoint",
    "load_config",
    "meta_train",
    "overlay",
    "save_checkpoint",
    "source_check",
    "transfer_evaluate",
    "transfer_report",
    "tune",
    "visualize_attention",
]
