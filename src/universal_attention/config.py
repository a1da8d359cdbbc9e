"""Run configuration: pydantic models, named presets, YAML/JSON files and dotted overrides.

One :class:`ExperimentConfig` describes a whole run. Its defaults reproduce the original experiment
(the ``paper`` preset); ``quickstart`` swaps the real datasets for the built-in synthetic tasks.
Resolution order: defaults -> preset -> config file -> ``--set key=value`` overrides, validated once.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from .errors import ConfigError

PAPER_SOURCES = ("beans", "cub200", "imagenette", "stanford_dogs", "oxford_pets", "flowers102")
DEFAULT_TAPS = ("layer1.1", "layer2.2", "layer3.4", "layer4")
TRUNK_STAGES: dict[str, tuple[int, int, int, int]] = {
    "resnet10": (1, 1, 1, 1),
    "resnet18": (2, 2, 2, 2),
    "resnet34": (3, 4, 6, 3),
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnet152": (3, 8, 36, 3),
    "wide_resnet50_2": (3, 4, 6, 3),
    "resnext50_32x4d": (3, 4, 6, 3),
}
"""Blocks per stage (``layer1`` .. ``layer4``) of every trunk :mod:`universal_attention.models.trunks` builds:
what tap names a config may use, known without building (or importing) the trunk."""


def trunk_tap_names(trunk: str) -> tuple[str, ...]:
    """Every tappable module name of a trunk: ``layerN.i`` for each block, then ``layerN`` (the stage's end)."""
    names: list[str] = []
    for stage, blocks in enumerate(TRUNK_STAGES[trunk], start=1):
        names += [f"layer{stage}.{index}" for index in range(blocks)] + [f"layer{stage}"]
    return tuple(names)


def default_taps(trunk: str) -> tuple[str, ...]:
    """The seed's tap pattern on any trunk: the second-to-last block of stages 1-3 (the only block where a stage has
    one) and the end of stage 4; on ResNet50 that is the seed's own ``layer1.1, layer2.2, layer3.4, layer4``."""
    stages = TRUNK_STAGES[trunk]
    return tuple(f"layer{stage}.{max(stages[stage - 1] - 2, 0)}" for stage in (1, 2, 3)) + ("layer4",)


_EXPONENT_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", re.ASCII)
MAX_WIDTH = 16_384  # attention sizes: a 10^9-wide projection would try to allocate terabytes
MAX_BATCH = 4_096
MAX_COUNT = 10_000  # classes per task, shots per class
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 1024  # image sides in pixels
RANDOM, IMAGENET = "random", "imagenet"  # the start points named instead of a checkpoint
DEFAULT_IMAGE_SIZE = 128  # the image side of a model that records none (a checkpoint without its run config)
DISPLAY_SIZE = 384  # default side of the pictures of image files (never more than the photo has)
MAX_SEED = 2**32 - 1  # what every generator takes (numpy's is the narrowest)
MAX_CONFIG_BYTES = 1_000_000
"""The largest config or space file read: every config written by uattn is a few kilobytes."""


_Self = TypeVar("_Self", bound="_Config")


Control = Literal["learned", "uniform", "oracle", "shuffled"]
"""Attention controls (see :mod:`universal_attention.models.controls`): the model's own maps and three
replacements."""
CONTROLS: tuple[str, ...] = get_args(Control)


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    def updated(self: _Self, **changes: Any) -> _Self:
        """A copy with ``changes`` applied, validated like any config (pydantic's ``model_copy(update=...)``
        checks nothing, so it could make a config that no file could hold).

        Raises:
            ConfigError: a changed field is unknown or its value is not allowed, in one line.
        """
        try:
            return self.model_validate({**dict(self), **changes})
        except ValidationError as error:
            raise ConfigError(validation_message(error, type(self), prefix=type(self).__name__)) from None


_Section = TypeVar("_Section", bound=_Config)


class ModelConfig(_Config):
    """The attention network: trunk, tap layers, compatibility function and normalisation.

    ``trunk`` names a torchvision ResNet (``resnet18`` .. ``resnet152``, ``wide_resnet50_2``, ``resnext50_32x4d``)
    or ``resnet10``, a small trunk (one BasicBlock per stage) for tests and CPU demos; ``uattn config trunks``
    lists them. ``taps``: module names of that trunk (``layerN`` or ``layerN.i``); ``None`` means the trunk's
    default taps (:func:`default_taps`), read with :meth:`tap_layers`.

    ``padding``: how the trunk's convolutions pad the image border. torchvision's ``zeros`` gives border
    cells features of their own, which attention maps can latch onto; ``replicate`` repeats the edge pixels
    instead (the weights are the same tensors either way, so a state dict moves between the two).
    """

    trunk: str = "resnet50"
    taps: tuple[str, ...] | None = Field(None, min_length=1)
    compatibility: Literal["additive", "additive_norm", "dot", "parametrised", "query_free"] = "additive_norm"
    normalisation: Literal["softmax", "sigmoid"] = "softmax"
    attention: bool = True
    padding: Literal["zeros", "replicate"] = "zeros"
    alignment_size: int = Field(256, ge=1, le=MAX_WIDTH)
    query_size: int = Field(512, ge=1, le=MAX_WIDTH)
    backbone_weights: str = "none"
    channels_last: bool = True
    bf16_autocast: bool = True

    @field_validator("backbone_weights")
    @classmethod
    def _weights_known(cls, value: str) -> str:
        if value in ("none", "imagenet") or value.endswith(".safetensors"):
            return value
        raise ValueError("must be 'none', 'imagenet' or a path to a .safetensors state dict")

    @field_validator("trunk")
    @classmethod
    def _trunk_known(cls, value: str) -> str:
        if value not in TRUNK_STAGES:
            raise ValueError(f"unknown trunk; choose one of {', '.join(TRUNK_STAGES)}")
        return value

    @field_validator("taps")
    @classmethod
    def _taps_of_trunk(cls, value: tuple[str, ...] | None, info: ValidationInfo) -> tuple[str, ...] | None:
        trunk = info.data.get("trunk")
        if value is None or trunk is None:  # no trunk: its own error is reported
            return value
        allowed = trunk_tap_names(trunk)
        unknown = [tap for tap in value if tap not in allowed]
        if unknown:
            raise ValueError(
                f"unknown tap layer(s) {', '.join(unknown)} for trunk {trunk}; choose from {', '.join(allowed)}"
            )
        return value

    def tap_layers(self) -> tuple[str, ...]:
        """The tap layers the model is built with: ``taps``, or the trunk's default taps when ``taps`` is ``None``."""
        return self.taps if self.taps is not None else default_taps(self.trunk)


class DataConfig(_Config):
    """Which datasets feed meta-training (sources) and transfer (target), and how images are prepared."""

    sources: tuple[str, ...] = Field(PAPER_SOURCES, min_length=1)
    target: str = "caltech101"
    data_root: str | None = None
    image_size: int = Field(128, ge=MIN_IMAGE_SIZE, le=MAX_IMAGE_SIZE)
    augment: bool = True
    cache: bool = True

    @field_validator("data_root")
    @classmethod
    def _root_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("is empty; give a folder, or leave it out for $UATTN_DATA_ROOT or ./data")
        return value


class SamplerConfig(_Config):
    """How tasks are drawn from the source datasets."""

    mode: Literal["dataset", "episodic"] = "dataset"
    batch_size: int = Field(64, ge=1, le=MAX_BATCH)
    task_weighting: Literal["uniform", "size"] = "uniform"
    n_way: int = Field(5, ge=2, le=MAX_COUNT)
    k_shot: int = Field(5, ge=1, le=MAX_COUNT)
    query_shots: int = Field(5, ge=1, le=MAX_COUNT)
    seed: int = Field(0, ge=0, le=MAX_SEED)


class ReptileConfig(_Config):
    """Reptile meta-learning (Nichol et al. 2018): inner adaptation and outer update.

    ``heads``: ``persistent`` keeps each task's head across meta-steps (the original experiment: a dataset is
    a task); ``reset`` starts every task from a fresh (zero) head with its labels in a new random order, as in
    the Reptile paper, so that the meta-learned weights practise what transfer does. ``inner_state``: ``reset``
    starts every task's inner optimiser from zeroed state; ``keep`` keeps its state (Adam's moments)
    across tasks. ``prefetch``: a background thread reads each task's next inner batch while the current one
    trains (the same batches in the same order); ``auto`` (the default) does so only where a core is free for
    it: the model trains on a GPU, or the process may run on more CPU cores than torch's threads use (on a CPU
    whose every core trains, the reading thread only slows the training threads down).
    ``algorithm``: ``joint`` is the fair baseline: the same sampler, heads, images and steps, one optimiser
    step per batch on weights that simply carry on (no meta-update).
    """

    algorithm: Literal["reptile", "joint"] = "reptile"
    heads: Literal["persistent", "reset"] = "persistent"
    inner_steps: int = Field(5, ge=1)
    inner_lr: float = Field(1e-2, gt=0)
    inner_optimizer: Literal["sgd", "adam"] = "sgd"
    inner_state: Literal["reset", "keep"] = "reset"
    outer_lr: float = Field(1e-3, gt=0)
    outer_optimizer: Literal["sgd", "adam"] = "adam"
    outer_beta1: float = Field(0.0, ge=0, lt=1)
    meta_batch_size: int = Field(1, ge=1, le=MAX_BATCH)
    anneal: bool = False
    prefetch: Literal["auto", True, False] = "auto"


class TransferConfig(_Config):
    """Transfer to a new task: a fresh head, then finetuning or a linear probe (the few-shot protocol).

    ``steps`` fixes every run's budget in optimiser steps, whatever the shots (``None``: ``epochs`` full
    passes, for full-dataset transfer). ``seeds`` x ``draws`` runs per cell; ``attention`` lists the controls
    run side by side (``learned`` is the model's own; ``uniform``, ``oracle`` and ``shuffled`` replace it, see
    :mod:`universal_attention.models.controls`). ``remove_object`` draws a synthetic target without its object:
    a control at which every start point must score chance.
    """

    mode: Literal["finetune", "linear"] = "finetune"
    lr: float = Field(1e-4, gt=0)
    head_lr: float | None = Field(None, gt=0)
    steps: int | None = Field(None, ge=1)
    epochs: int = Field(10, ge=1)
    schedule: Literal["constant", "cosine"] = "constant"
    batchnorm: Literal["train", "frozen"] = "train"
    head_init: Literal["zeros", "random", "prototypes"] = "random"
    batch_size: int = Field(64, ge=1, le=MAX_BATCH)
    image_size: int | None = Field(None, ge=MIN_IMAGE_SIZE, le=MAX_IMAGE_SIZE)
    shots_per_class: tuple[int | Literal["all"], ...] = ("all",)
    seeds: int = Field(1, ge=1)
    draws: int = Field(1, ge=1, le=1000)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    attention: tuple[Control, ...] = Field(("learned",), min_length=1)
    remove_object: bool = False
    max_test_images: int | None = Field(None, ge=1)

    @field_validator("shots_per_class")
    @classmethod
    def _positive_shots(cls, value: tuple[int | str, ...]) -> tuple[int | str, ...]:
        if any(isinstance(s, int) and s < 1 for s in value):
            raise ValueError("each entry must be a positive number of images per class or 'all'")
        return value

    @field_validator("attention")
    @classmethod
    def _distinct_controls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("each attention control may appear once")
        return value


class TuneConfig(_Config):
    """Hyperparameter search with hyperopt (see :func:`universal_attention.tune`).

    ``space`` maps dotted keys to distributions (None: the original's five parameters); ``fix`` holds
    dotted keys kept at one value. ``algo="atpe"`` (the original's) needs the ``atpe`` extra. ``parallel``
    above 1 runs that many trials at once on Spark (``spark_master``, default an embedded ``local[N]``).
    A trial's checkpoints are deleted once it is scored unless ``keep_checkpoints``. ``objective``: ``target``
    scores a trial by its target top-1 after transfer (``data.target``, ``transfer``); ``sources`` by the mean
    top-1 of the held-out source images (``train.source_images`` of every source with masks) after
    meta-training, with no transfer: whether a regime learns the sources at all.
    """

    algo: Literal["tpe", "atpe", "rand"] = "tpe"
    objective: Literal["target", "sources"] = "target"
    max_evals: int = Field(50, ge=1)
    steps_per_trial: int = Field(200, ge=1)
    space: dict[str, Any] | None = None
    fix: dict[str, Any] = Field(default_factory=dict)
    parallel: int = Field(1, ge=1)
    spark_master: str | None = None
    seed: int = Field(0, ge=0, le=MAX_SEED)
    keep_checkpoints: bool = False


class TrainConfig(_Config):
    """The meta-training loop: length, device, checkpoints, logging and the final comparison.

    ``compare`` names the baselines the meta-trained model is compared with at the end, run for run on the
    target: ``random`` (the same architecture, untrained), ``joint`` (the same run with
    ``reptile.algorithm: joint``, trained in ``<run>/compare/joint``) and ``supervised`` (the same run with
    attention told where, ``attention_supervision: 1``, in ``<run>/compare/supervised``: the positive control).

    ``attention_supervision``: the weight of an auxiliary loss pulling every tap's map toward the object mask on
    source batches that have masks (0 = off; :mod:`universal_attention.meta.supervision`). ``source_images``:
    held-out images of every source with masks, scored at every periodic check and at the end (top-1 of the
    source's head, attention relative to the object's area, map entropy; ``results.json["sources"]``).

    The periodic target check (every ``eval_every`` meta-steps) is a short transfer: ``eval_mode: finetune``
    trains a new head and the weights for ``eval_steps`` steps; ``linear`` fits the solved linear probe on frozen
    features (forward passes only). ``report``: write ``report.md`` and its figures at the end
    (:mod:`universal_attention.reports`; ``uattn report`` builds it later from the folder all the same).
    """

    max_steps: int = Field(2000, ge=1)
    device: str = "auto"
    checkpoint_every: int = Field(200, ge=1)
    keep_last: int = Field(3, ge=1)
    log_every: int = Field(10, ge=1)
    eval_every: int = Field(50, ge=0)
    eval_steps: int = Field(50, ge=1)
    eval_mode: Literal["finetune", "linear"] = "finetune"
    eval_test_images: int = Field(256, ge=1, le=100_000)
    image_log_every: int = Field(100, ge=0)
    final_comparison: bool = True
    report: bool = True
    compare: tuple[Literal["random", "joint", "supervised"], ...] = ("random",)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    attention_supervision: float = Field(0.0, ge=0)
    source_images: int = Field(32, ge=1, le=10_000)


class ExperimentConfig(_Config):
    """A whole run: what ``--config file.yaml`` holds and what every run folder saves."""

    name: str = "experiment"
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    reptile: ReptileConfig = Field(default_factory=ReptileConfig)
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        # the name becomes runs/<name> and runs/tune-<name>: a path in it would aim writes anywhere
        if not _FOLDER_NAME.fullmatch(value):
            raise ValueError(
                "must be a plain folder name: letters, digits, '.', '_' and '-', starting with a letter or digit"
            )
        return value

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (tuples become lists)."""
        return self.model_dump(mode="json")

    def to_flat_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` with dotted keys (``"reptile.inner_lr": 0.001``), the form ``--set`` takes."""

        def flatten(tree: dict[str, Any], prefix: str) -> dict[str, Any]:
            flat: dict[str, Any] = {}
            for key, value in tree.items():
                flat.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
            return flat

        return flatten(self.to_dict(), "")

    def to_yaml(self) -> str:
        """The resolved config as YAML, in field order."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"name": "paper"},
    "quickstart": {
        "name": "quickstart",
        # the small resnet10 trunk (its default taps layer1.0, layer2.0, layer3.0, layer4): on a 2-core CPU a
        # ResNet50 from scratch does not learn the sources within a demo budget; the paper preset stays ResNet50
        "model": {"trunk": "resnet10", "alignment_size": 64, "query_size": 128},
        "data": {
            "sources": ["synthetic/colour", "synthetic/texture", "synthetic/size"],
            "target": "synthetic/orientation",
            "image_size": 64,
            "augment": False,
            "cache": False,
        },
        "sampler": {"batch_size": 16},
        "reptile": {
            "inner_steps": 5,
            "inner_optimizer": "adam",
            "inner_lr": 1e-3,
            "outer_optimizer": "sgd",
            "outer_lr": 1.0,
            "anneal": True,
        },
        "transfer": {
            "lr": 3e-4,
            "head_lr": 1e-3,
            "steps": 40,
            "batch_size": 16,
            "shots_per_class": [80],
            "draws": 2,
            "max_test_images": 500,
        },
        "train": {
            "max_steps": 600,
            "checkpoint_every": 200,
            "eval_every": 200,
            "image_log_every": 200,
            "eval_test_images": 200,
            "source_images": 64,
        },
    },
}


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: mappings merge key by key, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _sections(model: type[BaseModel]) -> dict[str, type[BaseModel] | None]:
    """Field name -> nested config class (or None for a plain value)."""
    out: dict[str, type[BaseModel] | None] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        out[name] = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return out


def check_dotted_key(key: str, model: type[BaseModel] | None = None) -> None:
    """Raise :class:`ConfigError` unless ``key`` (e.g. ``reptile.inner_steps``) names a config field."""
    model = model or ExperimentConfig
    parts = key.split(".")
    for depth, part in enumerate(parts):
        sections = _sections(model)
        prefix = ".".join(parts[:depth]) or "the config"
        if part not in sections:
            raise ConfigError(f"unknown key '{key}': {prefix} has {', '.join(sections)}")
        nested = sections[part]
        if depth < len(parts) - 1:
            if nested is None:
                raise ConfigError(f"unknown key '{key}': '{'.'.join(parts[: depth + 1])}' is a value, not a section")
            model = nested
        elif nested is not None:
            raise ConfigError(f"key '{key}' is a section; set one of its fields: {', '.join(_sections(nested))}")


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value``; the value is read as YAML (``8`` -> int, ``off`` -> False, ``[1,5]`` -> list)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value, e.g. reptile.inner_steps=8")
    key, raw = text.split("=", 1)
    key = key.strip()
    check_dotted_key(key)
    try:
        value = safe_yaml(raw) if raw.strip() else ""
    except (yaml.YAMLError, RecursionError):
        value = raw
    if isinstance(value, str) and _EXPONENT_NUMBER.match(value):  # YAML 1.1 reads 1e-3 as a string
        value = float(value)
    return key, value


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set ``tree['a']['b'] = value`` for ``key='a.b'``, creating sections as needed."""
    *sections, leaf = key.split(".")
    node = tree
    for section in sections:
        node = node.setdefault(section, {})
    node[leaf] = value


def validation_message(error: ValidationError, model: type[BaseModel] | None = None, prefix: str = "") -> str:
    """A pydantic error as one line: the dotted key (after ``prefix``), the message, and the value given (an unknown
    key lists the keys its section has, when ``model``, the validated class, is given). The one formatter of
    validation errors, for configs, search spaces and checkpoint metadata alike."""
    first = error.errors()[0]
    parts = [str(part) for part in first["loc"] if not isinstance(part, int)]
    location = ".".join(([prefix] if prefix else []) + parts)
    if first["type"] == "extra_forbidden" and model is not None:
        section: type[BaseModel] = model
        for part in parts[:-1]:
            section = _sections(section).get(part) or section
        parent = ".".join(([prefix] if prefix else []) + parts[:-1]) or "the config"
        return f"unknown key '{location}': {parent} has {', '.join(section.model_fields)}"
    message = first["msg"].removeprefix("Value error, ")
    given = first.get("input")
    shown = "" if isinstance(given, dict) else f" (got {given!r})"
    return f"{location}: {message}{shown}" if location else f"{message}{shown}"


def validate_section(model: type[_Section], tree: Mapping[str, Any], prefix: str) -> _Section:
    """Build one config section, turning validation errors into one-line ConfigErrors keyed ``prefix.key``."""
    try:
        return model.model_validate(dict(tree))
    except ValidationError:
        validate_config({prefix: dict(tree)})  # raises with the dotted key named
        raise


def validate_config(tree: Mapping[str, Any]) -> ExperimentConfig:
    """Build an :class:`ExperimentConfig`, turning validation errors into one-line ConfigErrors."""
    try:
        return ExperimentConfig.model_validate(dict(tree))
    except ValidationError as error:
        raise ConfigError(validation_message(error, ExperimentConfig)) from None


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases: a few hundred bytes of nested ``*name`` references can expand to gigabytes."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("aliases (*name) are not allowed; write the values out")
        return super().compose_node(parent, index)


def safe_yaml(text: str) -> Any:
    """``yaml.safe_load`` without aliases (:class:`yaml.YAMLError` on one)."""
    return yaml.load(text, Loader=_NoAliasLoader)


def _read_text_file(path: Path, what: str) -> tuple[str, str]:
    """A small text file (a config, a search space) read whole, and its kind (``JSON`` or ``YAML``).

    Raises:
        ConfigError: it is missing or not a regular file, larger than :data:`MAX_CONFIG_BYTES`, or not text.
    """
    if not path.is_file():  # a FIFO or a device is not a file: reading it could block for ever
        hint = "; pass a YAML or JSON file written by 'uattn config show'" if what == "config file" else ""
        raise ConfigError(f"{what} {path} not found{hint}")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{what} {path} is {path.stat().st_size:,} bytes, more than a config can be ({MAX_CONFIG_BYTES:,})"
        )
    try:
        return path.read_text(encoding="utf-8"), "JSON" if path.suffix == ".json" else "YAML"
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not a text file (YAML or JSON)") from None


def parse_text_file(path: Path, what: str) -> Any:
    """The data in a small YAML or JSON file: no aliases, bounded size and nesting.

    Raises:
        ConfigError: see :func:`_read_text_file`; or it is not valid YAML/JSON, uses an alias, or nests too deeply.
    """
    text, kind = _read_text_file(path, what)
    try:
        return json.loads(text) if kind == "JSON" else safe_yaml(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"{what} {path} is not valid {kind}: {str(error).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(f"{what} {path} nests too deeply to be a config") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a dict (not yet validated)."""
    path = Path(path)
    tree = parse_text_file(path, "config file")
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of sections (model, data, ...), not {type(tree).__name__}"
        )
    return tree


def load_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: Iterable[str] = (),
    base: ExperimentConfig | None = None,
    values: Mapping[str, Any] | None = None,
) -> ExperimentConfig:
    """Resolve a config: defaults (or ``base``), then ``preset``, then ``config_file``, then overrides, then values.

    Args:
        preset: a name in :data:`PRESETS` (``paper``, ``quickstart``).
        config_file: a YAML/JSON file holding a (possibly partial) ExperimentConfig.
        overrides: dotted assignments such as ``"reptile.inner_steps=8"``.
        base: a resolved config to start from instead of the defaults (e.g. a checkpoint's own).
        values: dotted keys with values taken as they are, never read as YAML (what a command's own options
            give: ``--data-root '/d #1'`` is that path, ``'~'`` is not null).

    Raises:
        ConfigError: one line naming the wrong key or value and what is allowed.
    """
    tree: dict[str, Any] = base.to_dict() if base is not None else {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}")
        tree = _merge(tree, PRESETS[preset])
    if config_file is not None:
        tree = _merge(tree, read_config_file(config_file))
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(tree, key, value)
    for key, value in (values or {}).items():
        set_dotted(tree, key, value)
    return validate_config(tree)


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from .atomic import atomic_write_bytes

    atomic_write_bytes(Path(path), config.to_yaml().encode())
