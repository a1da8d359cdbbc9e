"""universal-attention: can a network learn where to look, and does it help it learn new tasks faster?

Public API::

    from universal_attention import AttentionResNet50, ModelConfig, load_checkpoint
"""

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
from .errors import CheckpointError, ConfigError, DatasetError, ImageError, ModelError, UattnError
from .model import AttentionOutput, AttentionResNet50
from .reptile import Reptile, Task
from .sampler import TaskSampler
from .transfer import TransferResult, transfer_evaluate
from .tune import TrialRecord, TuneResult
from .visualize import attention_grid, attention_maps, overlay
from .visualize_files import Visualization, visualize_attention

__all__ = [
    "AttentionReport",
    "AttentionOutput",
    "AttentionResNet50",
    "Checkpoint",
    "CheckpointError",
    "ConfigError",
    "DataConfig",
    "DatasetError",
    "ExperimentConfig",
    "ImageError",
    "ModelConfig",
    "ModelError",
    "Reptile",
    "ReptileConfig",
    "SamplerConfig",
    "Task",
    "TaskSampler",
    "TrainConfig",
    "TrialRecord",
    "TuneResult",
    "TransferResult",
    "TransferConfig",
    "TuneConfig",
    "UattnError",
    "Visualization",
    "__version__",
    "attention_grid",
    "attention_maps",
    "evaluate_attention",
    "load_checkpoint",
    "load_config",
    "overlay",
    "save_checkpoint",
    "transfer_evaluate",
    "visualize_attention",
]
