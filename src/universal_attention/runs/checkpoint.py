"""Checkpoints: safetensors files that rebuild an AttentionResNet50 on their own, written atomically.

A checkpoint holds the model's state dict plus, in the safetensors metadata, the format name and
version, the library version, the resolved ``ModelConfig``, the heads (task -> classes), the step,
optionally the whole ``ExperimentConfig`` and JSON ``extra`` data. Extra tensors needed to resume a run
exactly (optimiser state, RNG states) are stored under the ``state/`` prefix. No pickle anywhere.

Format 3 records the trunk in the model config (``trunk``); files of formats 1 and 2 were all ResNet50 and load as
``resnet50``. Format 2 keys heads and attention blocks with
:func:`~universal_attention.models.attention_resnet.module_key` (ASCII); files of format 1 (0.1) put U+00B7 where
a name had a dot, and load with their keys mapped to format 2's.

A file is data, never instructions: every size it claims (heads, layer widths) must match the tensors it
holds before a model is built, a SHA-256 digest of the tensors (``tensors_sha256``, absent in files written
before 0.2) is checked on load, and weights must be finite, both when saving and when loading.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from .._version import __version__
from ..atomic import atomic_write_bytes
from ..config import ExperimentConfig, ModelConfig, validation_message
from ..errors import CheckpointError, UattnError
from ..models.attention_resnet import AttentionResNet50, module_key

FORMAT = "universal-attention-checkpoint"
FORMAT_VERSION = 3
FIRST_WITH_TRUNK = 3  # earlier files hold no trunk: every one of them is a ResNet50
OLD_TRUNK = "resnet50"
OLD_COMPATIBILITY = "additive"  # the default before format 3 (every file records it; this covers a hand-made one)
FORMAT_1_DOT = "\u00b7"  # what format 1 wrote for a dot in a head's or attention block's key
KEYED_MODULES = ("heads", "attention_blocks")
STATE_PREFIX = "state/"
DIGEST = "tensors_sha256"
_STEP_FILE = re.compile(r"^step-(\d+)\.safetensors$")
_WHOLE_NUMBER = re.compile(r"\d{1,18}", re.ASCII)


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        model: the rebuilt :class:`~universal_attention.AttentionResNet50` with its heads, on CPU.
        config: the model's config.
        step: the meta-training step the checkpoint was taken at.
        metadata: the ``extra`` JSON data saved with it (plus ``library_version``).
        experiment: the run's whole config, when it was saved with one.
        state: the extra tensors saved under ``state/`` (for exact resume).
        path: where it was read from.
        verified: whether the file carried a digest of its tensors (files of 0.2 and later) and it matched.
    """

    model: AttentionResNet50
    config: ModelConfig
    step: int
    metadata: dict[str, Any]
    experiment: ExperimentConfig | None = None
    state: dict[str, Tensor] = field(default_factory=dict)
    path: Path | None = None
    verified: bool = False


def tensors_digest(tensors: Mapping[str, Tensor]) -> str:
    """SHA-256 of every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]  # a buffer, untyped
    return digest.hexdigest()


def nonfinite_tensor(tensors: Mapping[str, Tensor]) -> str | None:
    """The name of the first floating-point tensor holding a NaN or an infinity, or None when all are finite."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def save_checkpoint(
    path: str | Path,
    model: AttentionResNet50,
    config: ExperimentConfig | None = None,
    *,
    step: int = 0,
    extra: dict[str, Any] | None = None,
    state: dict[str, Tensor] | None = None,
) -> Path:
    """Save ``model`` (an AttentionResNet50) atomically as a self-describing safetensors checkpoint.

    Args:
        path: target file (``.safetensors``); parent folders are created.
        model: the model; its ``config`` and heads go into the metadata.
        config: the whole run's config, saved too when given.
        step: meta-training step.
        extra: JSON-serialisable data (metrics, sampler counters, ...).
        state: extra tensors for exact resume, stored under ``state/<name>``.

    Returns:
        The path written.

    Raises:
        CheckpointError: ``model`` is not an AttentionResNet50 or ``config`` is not an ExperimentConfig
            (nothing is written then: loading could not rebuild the model from such a file).
    """
    if not isinstance(model, AttentionResNet50):
        raise CheckpointError(
            f"save_checkpoint needs an AttentionResNet50, got {type(model).__name__}; save other "
            "modules with safetensors.torch.save_file"
        )
    if config is not None and not isinstance(config, ExperimentConfig):
        raise CheckpointError(
            f"save_checkpoint(config=...) takes the run's ExperimentConfig or None, got "
            f"{type(config).__name__}; the model's own ModelConfig is saved from model.config"
        )
    path = Path(path)
    tensors = {name: value.detach().cpu().contiguous() for name, value in model.state_dict().items()}
    bad = nonfinite_tensor(tensors)
    if bad is not None:
        raise CheckpointError(
            f"not saving {path}: the model's {bad} holds non-finite values (NaN or infinity), "
            "and a checkpoint must be one a run can continue from"
        )
    for name, value in (state or {}).items():
        tensors[STATE_PREFIX + name] = value.detach().cpu().contiguous()
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "library_version": __version__,
        "model_config": model.config.model_dump_json(),
        "heads": json.dumps(model.head_classes),
        "class_names": json.dumps(model.class_names),
        "step": str(int(step)),
        "extra": json.dumps(extra or {}),
    }
    if config is not None:
        metadata["experiment_config"] = config.model_dump_json()
    metadata[DIGEST] = tensors_digest(tensors)
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata=metadata))
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the newest ``step-N.safetensors`` of a run folder or checkpoints folder."""
    path = Path(path)
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        candidates = step_checkpoints(folder)
        if not candidates:
            raise CheckpointError(f"no checkpoint in {folder}: expected step-NNNNNN.safetensors files there")
        return candidates[0]
    if not path.exists():
        raise CheckpointError(
            f"checkpoint {path} not found; give a .safetensors file written by uattn meta-train "
            "or save_checkpoint, or a run folder"
        )
    if not path.is_file():  # a FIFO, socket or device: opening it could block for ever
        raise CheckpointError(f"checkpoint {path} is not a regular file; give a .safetensors file or a run folder")
    return path


def step_checkpoints(folder: Path) -> list[Path]:
    """The ``step-N.safetensors`` regular files in ``folder``, highest step number first (not name order: past
    step 999999 the names grow a digit)."""
    if not folder.is_dir():
        return []
    numbered = [
        (int(match.group(1)), path)
        for path in folder.iterdir()
        if (match := _STEP_FILE.match(path.name)) and path.is_file()  # never a FIFO or a folder of that name
    ]
    return [path for _, path in sorted(numbered, reverse=True)]


def _whole_number(metadata: Mapping[str, str], key: str, path: Path) -> int:
    text = metadata.get(key, "0")
    if not _WHOLE_NUMBER.fullmatch(text):
        raise CheckpointError(
            f"{path} has damaged metadata: {key} is {text[:40]!r}, not a whole number; use an earlier checkpoint"
        )
    return int(text)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The raw metadata of a checkpoint file, after checking that it is one of ours."""
    path = resolve_checkpoint(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise CheckpointError(
            f"{path} is not a readable safetensors checkpoint (truncated or another format: "
            f"{error}); expected a file written by uattn meta-train or save_checkpoint"
        ) from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file but not a universal-attention checkpoint (no "
            f"'{FORMAT}' format in its metadata); a plain ResNet50 state dict goes in "
            "model.backbone_weights instead"
        )
    if _whole_number(metadata, "format_version", path) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {metadata['format_version']}, newer than this library "
            f"reads ({FORMAT_VERSION}); upgrade universal-attention"
        )
    return metadata


def _trunk_recorded(model_config: Any, metadata: Mapping[str, str], path: Path) -> Any:
    """A model config as JSON data, with the defaults of its time (``trunk: resnet50``, ``compatibility:
    additive``) where a file older than format 3 has none."""
    if isinstance(model_config, dict) and _whole_number(metadata, "format_version", path) < FIRST_WITH_TRUNK:
        return {"trunk": OLD_TRUNK, "compatibility": OLD_COMPATIBILITY, **model_config}
    return model_config


def experiment_of(metadata: Mapping[str, str], path: Path) -> ExperimentConfig | None:
    """The run config saved in a checkpoint's metadata (None when it was saved without one)."""
    if "experiment_config" not in metadata:
        return None
    try:
        tree = json.loads(metadata["experiment_config"])
        if isinstance(tree, dict) and "model" in tree:
            tree["model"] = _trunk_recorded(tree["model"], metadata, path)
        return ExperimentConfig.model_validate(tree)
    except ValidationError as error:
        raise CheckpointError(
            f"{path} has a damaged run config in its metadata ({validation_message(error)}); use an earlier checkpoint"
        ) from None
    except ValueError:
        raise CheckpointError(
            f"{path} has a damaged run config in its metadata (not JSON); use an earlier checkpoint"
        ) from None


def _heads(text: str, path: Path) -> dict[str, int]:
    heads = json.loads(text)
    if not isinstance(heads, dict) or not all(
        isinstance(task, str) and type(classes) is int and classes >= 1 for task, classes in heads.items()
    ):
        raise CheckpointError(
            f"{path} has damaged metadata: heads must map task names to class counts of at "
            "least 1; use an earlier checkpoint"
        )
    return heads


def _class_names(metadata: Mapping[str, str], heads: Mapping[str, int], path: Path) -> dict[str, list[str]]:
    """The heads' class names (files written before they were stored have none), each list as long as its head."""
    try:
        names = json.loads(metadata.get("class_names", "{}"))
    except ValueError:
        names = None
    if not isinstance(names, dict) or not all(
        task in heads
        and isinstance(values, list)
        and len(values) == heads[task]
        and all(isinstance(value, str) for value in values)
        for task, values in names.items()
    ):
        raise CheckpointError(
            f"{path} has damaged metadata: class_names must map heads to one name per class; use an earlier checkpoint"
        )
    return names


def _parse_metadata(metadata: Mapping[str, str], path: Path) -> tuple[ModelConfig, dict[str, int], dict[str, Any]]:
    """The model config, heads and extra data of a checkpoint, each checked."""
    try:
        model_config = ModelConfig.model_validate(_trunk_recorded(json.loads(metadata["model_config"]), metadata, path))
        heads = _heads(metadata["heads"], path)
        extra = json.loads(metadata.get("extra", "{}"))
    except ValidationError as error:
        raise CheckpointError(
            f"{path} has damaged metadata (model_config {validation_message(error)}); it cannot rebuild a model"
        ) from None
    except (KeyError, ValueError) as error:
        raise CheckpointError(
            f"{path} has damaged metadata ({type(error).__name__}: {error}); it cannot rebuild a model"
        ) from None
    if not isinstance(extra, dict):
        raise CheckpointError(f"{path} has damaged metadata: extra is not a JSON object")
    return model_config, heads, extra


def format_1_key(name: str) -> str:
    """A state-dict key of a format-1 file as format 2 writes it: the head or attention-block part (U+00B7 for a
    dot) re-keyed with :func:`~universal_attention.models.attention_resnet.module_key`; every other key is the same."""
    section, _, rest = name.partition(".")
    if section not in KEYED_MODULES:
        return name
    key, _, tail = rest.partition(".")
    return f"{section}.{module_key(key.replace(FORMAT_1_DOT, '.'))}.{tail}"


def _build(config: ModelConfig, heads: Mapping[str, int]) -> AttentionResNet50:
    model = AttentionResNet50(config.updated(backbone_weights="none"))
    for task, classes in heads.items():
        model.add_head(task, classes)
    return model


def _check_shapes(
    path: Path, config: ModelConfig, heads: Mapping[str, int], shapes: Mapping[str, list[int]]
) -> dict[str, torch.dtype]:
    """Refuse a file whose tensors are not the model its metadata describes, before anything is allocated: a
    size in the metadata (a head of 10^11 classes, an alignment layer of 10^9) is only believed when the file
    holds tensors of that size. Returns the dtype the model keeps each tensor in (see :func:`_check_kinds`)."""
    try:
        with torch.device("meta"):
            state = _build(config, heads).state_dict()
    except UattnError as error:
        raise CheckpointError(f"{path} describes a model this library cannot build: {error}") from None
    expected = {name: list(value.shape) for name, value in state.items()}
    for name in sorted(expected.keys() | shapes.keys()):
        if expected.get(name) != shapes.get(name):
            raise CheckpointError(
                f"{path} does not match its own model config: {name} is "
                f"{shapes.get(name, 'missing')} in the file but {expected.get(name, 'absent')} "
                "in the model it describes; use an earlier checkpoint"
            )
    return {name: value.dtype for name, value in state.items()}


def _check_kinds(path: Path, weights: Mapping[str, torch.Tensor], dtypes: Mapping[str, torch.dtype]) -> None:
    """Refuse a tensor that loading would silently change in kind: complex values (their imaginary part would be
    dropped), or floating-point values where the model keeps whole numbers and the reverse."""
    for name, value in weights.items():
        wanted = dtypes[name]
        if value.is_complex() or value.is_floating_point() != wanted.is_floating_point:
            raise CheckpointError(
                f"{path} holds {name} as {value.dtype} where the model keeps {wanted}; loading it would change "
                "its values, so the file is not a checkpoint this library wrote; use an earlier checkpoint"
            )


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint file (or the newest one in a run folder) and rebuild its model on CPU.

    Raises:
        CheckpointError: the file is missing, truncated, damaged (metadata, sizes, digest, non-finite
            weights), or not a universal-attention checkpoint.
    """
    path = resolve_checkpoint(path)
    metadata = read_metadata(path)
    step = _whole_number(metadata, "step", path)
    model_config, heads, extra = _parse_metadata(metadata, path)
    experiment = experiment_of(metadata, path)
    current_key = format_1_key if _whole_number(metadata, "format_version", path) < 2 else str
    try:
        with safe_open(str(path), framework="pt") as handle:
            names = list(handle.keys())
            dtypes = _check_shapes(
                path,
                model_config,
                heads,
                {
                    current_key(name): handle.get_slice(name).get_shape()
                    for name in names
                    if not name.startswith(STATE_PREFIX)
                },
            )
            tensors = {name: handle.get_tensor(name) for name in names}
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} is truncated or corrupt ({error}); use an earlier checkpoint") from None
    if DIGEST in metadata and tensors_digest(tensors) != metadata[DIGEST]:
        raise CheckpointError(
            f"{path} failed its content check: its tensors' SHA-256 differs from the one stored "
            "when it was written, so the file is damaged; use an earlier checkpoint"
        )
    state = {name[len(STATE_PREFIX) :]: value for name, value in tensors.items() if name.startswith(STATE_PREFIX)}
    weights = {current_key(name): value for name, value in tensors.items() if not name.startswith(STATE_PREFIX)}
    _check_kinds(path, weights, dtypes)
    bad = nonfinite_tensor(weights)
    if bad is not None:
        raise CheckpointError(
            f"{path} holds non-finite weights ({bad} has NaN or infinite values); use an earlier checkpoint"
        )
    model = _build(model_config, heads)
    model.load_state_dict(weights, strict=True)
    model.class_names = _class_names(metadata, heads, path)
    model.config = model_config
    extra["library_version"] = metadata.get("library_version")
    return Checkpoint(
        model=model,
        config=model_config,
        step=step,
        metadata=extra,
        experiment=experiment,
        state=state,
        path=path,
        verified=DIGEST in metadata,
    )


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint taken at ``step``: ``step-000200.safetensors``."""
    return f"step-{step:06d}.safetensors"


def parameter_count(model: torch.nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(parameter.numel() for parameter in model.parameters())
