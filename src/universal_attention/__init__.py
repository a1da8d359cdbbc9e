"""universal-attention: can a network learn where to look, and does it help it learn new tasks faster?

Public API::

    from universal_attention import AttentionResNet50, ModelConfig, load_checkpoint
"""

from ._version import __version__
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
from .errors import CheckpointError, ConfigError, DatasetError, ModelError, UattnError
from .model import AttentionOutput, AttentionResNet50
from .reptile import Reptile, Task
from .sampler import TaskSampler
from .transfer import TransferResult, transfer_evaluate

__all__ = [
    "AttentionOutput",
    "AttentionResNet50",
    "Checkpoint",
    "CheckpointError",
    "ConfigError",
    "DataConfig",
    "DatasetError",
    "ExperimentConfig",
    "ModelConfig",
    "ModelError",
    "Reptile",
    "ReptileConfig",
    "SamplerConfig",
    "Task",
    "TaskSampler",
    "TrainConfig",
    "TransferResult",
    "TransferConfig",
    "TuneConfig",
    "UattnError",
    "__version__",
    "load_checkpoint",
    "load_config",
    "save_checkpoint",
    "transfer_evaluate",
]
