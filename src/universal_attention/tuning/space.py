"""Search spaces of :func:`~universal_attention.tune`: dotted config keys mapped to hyperopt distributions.

A space maps any dotted key of :class:`~universal_attention.config.ExperimentConfig` to a distribution,
the same in Python and in a ``--space`` YAML file::

    model.alignment_size: {type: quniform, low: 4, high: 1024}
    reptile.inner_lr: {type: loguniform, low: 1.0e-5, high: 1.0e-1}
    reptile.inner_optimizer: {type: choice, options: [sgd, adam]}

Bounds are in the parameter's own units (a loguniform's bounds are not logarithms). ``quniform`` and
``qloguniform`` round to multiples of ``q`` (default 1); with a whole-number ``q`` they give ints.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from hyperopt import hp
from hyperopt.pyll import Apply, scope
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from ..config import check_dotted_key, parse_text_file, validation_message
from ..errors import ConfigError

DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "model.alignment_size": {"type": "quniform", "low": 4, "high": 1024},
    "model.query_size": {"type": "quniform", "low": 4, "high": 1024},
    "reptile.inner_steps": {"type": "quniform", "low": 2, "high": 15},
    "reptile.inner_lr": {"type": "loguniform", "low": 1e-5, "high": 1e-1},
    "reptile.outer_lr": {"type": "loguniform", "low": 1e-5, "high": 1e-1},
}
"""The original search: alignment and query sizes, inner steps, both learning rates."""


class Distribution(BaseModel):
    """One searched parameter: a hyperopt distribution with bounds in the parameter's own units."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["uniform", "quniform", "loguniform", "qloguniform", "choice"]
    low: float | None = None
    high: float | None = None
    q: float | None = None
    options: list[Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Distribution:
        if self.type == "choice":
            if not self.options:
                raise ValueError("a choice needs a non-empty list of options")
            if self.low is not None or self.high is not None or self.q is not None:
                raise ValueError("a choice takes options, not low/high/q")
            return self
        if self.options is not None:
            raise ValueError(f"{self.type} takes low and high, not options")
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"{self.type} needs low < high")
        if self.type.startswith("q"):
            if self.q is not None and self.q <= 0:
                raise ValueError("q must be positive")
        elif self.q is not None:
            raise ValueError(f"{self.type} takes no q (use q{self.type})")
        if self.type.endswith("loguniform") and self.low <= 0:
            raise ValueError("loguniform bounds must be positive")
        return self

    @property
    def step(self) -> float:
        """The rounding step of a q-distribution (1 unless given)."""
        return 1.0 if self.q is None else self.q

    def to_hyperopt(self, label: str) -> Apply:
        """The hyperopt expression that samples this parameter under ``label``."""
        if self.type == "choice":
            return hp.choice(label, list(self.options or ()))
        low, high = float(self.low), float(self.high)  # type: ignore[arg-type]
        if self.type == "uniform":
            return hp.uniform(label, low, high)
        if self.type == "loguniform":
            return hp.loguniform(label, math.log(low), math.log(high))
        if self.type == "quniform":
            expression = hp.quniform(label, low, high, self.step)
        else:
            expression = hp.qloguniform(label, math.log(low), math.log(high), self.step)
        return scope.int(expression) if float(self.step).is_integer() else expression


def parse_space(space: Mapping[str, Any]) -> dict[str, Distribution]:
    """Validate a space mapping (dotted key -> distribution fields).

    Raises:
        ConfigError: an unknown key or a malformed distribution, in one line.
    """
    if not isinstance(space, Mapping) or not space:
        raise ConfigError(
            "a search space must map dotted config keys to distributions, e.g. "
            "reptile.inner_lr: {type: loguniform, low: 1.0e-5, high: 1.0e-1}"
        )
    parsed: dict[str, Distribution] = {}
    for key, fields in space.items():
        check_dotted_key(str(key))
        if isinstance(fields, Distribution):
            parsed[str(key)] = fields
            continue
        if not isinstance(fields, Mapping):
            raise ConfigError(f"space entry '{key}' must be a mapping such as {{type: uniform, low: 0, high: 1}}")
        try:
            parsed[str(key)] = Distribution.model_validate(dict(fields))
        except ValidationError as error:
            raise ConfigError(f"space entry '{key}': {validation_message(error, Distribution)}") from None
    return parsed


def search_space(space: Mapping[str, Any] | None, fix: Mapping[str, Any]) -> dict[str, Distribution]:
    """The space actually searched: ``space`` (default :data:`DEFAULT_SPACE`) less the fixed keys."""
    for key in fix:
        check_dotted_key(key)
    parsed = parse_space(DEFAULT_SPACE if space is None else space)
    left = {key: value for key, value in parsed.items() if key not in fix}
    if not left:
        raise ConfigError(f"nothing left to search: every key of the space is fixed ({', '.join(parsed)})")
    return left


def hyperopt_space(space: Mapping[str, Distribution]) -> dict[str, Apply]:
    """The hyperopt space: a dict of expressions labelled by their dotted keys."""
    return {key: distribution.to_hyperopt(key) for key, distribution in space.items()}


def space_to_dict(space: Mapping[str, Distribution]) -> dict[str, dict[str, Any]]:
    """JSON-compatible form of a parsed space (only the fields that were set)."""
    return {key: distribution.model_dump(exclude_none=True) for key, distribution in space.items()}


def read_space_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML space file (a mapping of dotted keys to distributions), not yet validated."""
    tree = parse_text_file(Path(path), "space file")
    if not isinstance(tree, dict):
        raise ConfigError(
            f"space file {path} must map dotted config keys to distributions, e.g. "
            "reptile.inner_lr: {type: loguniform, low: 1.0e-5, high: 1.0e-1}"
        )
    return tree
