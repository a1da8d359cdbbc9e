"""The public API of universal-attention: every name a user imports, loaded lightly.

universal-attention asks whether a network can learn where to look, and whether that helps it learn new tasks
faster. Every entry point the docs use imports from here::

    from universal_attention import AttentionResNet50, ModelConfig, load_checkpoint, meta_train, tune

The import is light: hyperopt, tensorboard, scipy and pyspark load only where they are used (``tune`` and
its result types load hyperopt on first access).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .attention_eval import AttentionReport, evaluate_attention
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
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
from .errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    ImageError,
    ModelError,
    TrainingError,
    UattnError,
)
from .meta_training import MetaTrainResult, meta_train
from .model import AttentionOutput, AttentionResNet50
from .reptile import Reptile, Task
from .sampler import TaskSampler
from .transfer import TransferResult, transfer_evaluate, transfer_report
from .visualize import attention_grid, attention_maps, overlay
from .visualize_files import Visualization, visualize_attention

if TYPE_CHECKING:
    from .tune_search import TrialRecord, TuneResult, tune

_LAZY = {"tune": "tune_search", "TuneResult": "tune_search", "TrialRecord": "tune_search"}
"""Public names whose module imports hyperopt: loaded on first access (PEP 562)."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    "SamplerConfig",
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
    "Visualization",
    "__version__",
    "attention_grid",
    "attention_maps",
    "evaluate_attention",
    "get_dataset",
    "load_checkpoint",
    "load_config",
    "meta_train",
    "overlay",
    "save_checkpoint",
    "transfer_evaluate",
    "transfer_report",
    "tune",
    "visualize_attention",
]
