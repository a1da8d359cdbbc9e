"""Trial documents of :func:`~universal_attention.tune`: hyperopt's record of each trial as plain JSON.

Each record (sampled values, result, state) goes to and from JSON, which is how ``trials.json`` stores it and how a
search resumes; the hyperopt ``Trials`` here report every trial as it finishes.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from hyperopt import Trials, space_eval
from hyperopt.base import JOB_STATE_DONE, JOB_STATE_ERROR, STATUS_FAIL, STATUS_OK


def plain(value: Any) -> Any:
    """numpy scalars -> Python values, recursively (JSON and YAML take only these)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


class Recorder:
    """Mixin for hyperopt's Trials: ``refresh()`` (run after every trial) reports newly finished trials."""

    on_finished: Callable[[list[dict[str, Any]], list[int]], None] | None = None
    recorded: frozenset[int] = frozenset()

    def refresh(self) -> None:
        super().refresh()  # type: ignore[misc]
        if self.on_finished is None:
            return
        # a Spark task thread sets the state before the result: wait for both
        finished = [
            doc
            for doc in self._dynamic_trials  # type: ignore[attr-defined]
            if doc["state"] == JOB_STATE_ERROR
            or (doc["state"] == JOB_STATE_DONE and doc["result"]["status"] in (STATUS_OK, STATUS_FAIL))
        ]
        tids = frozenset(doc["tid"] for doc in finished)
        if tids != self.recorded:
            new = sorted(tids - self.recorded)
            self.recorded = tids
            self.on_finished(finished, new)


class RecordingTrials(Recorder, Trials):
    """Serial trials that report every finished one."""


def doc_to_json(doc: Mapping[str, Any], space: Mapping[str, Any]) -> dict[str, Any]:
    """A finished hyperopt trial document as JSON; a Spark-level error becomes a failed result."""
    misc = doc["misc"]
    vals = {key: plain(list(values)) for key, values in misc["vals"].items()}
    result = plain(dict(doc["result"]))
    if doc["state"] == JOB_STATE_ERROR:  # the Spark task itself failed, e.g. its Python worker died
        kind, trace = (list(misc.get("error") or ()) + ["", None])[:2]
        lines = (trace or "").strip().splitlines()
        name = str(kind).split("'")[1].rsplit(".", 1)[-1] if "'" in str(kind) else str(kind)
        point = {key: values[0] for key, values in vals.items() if values}
        result = {
            "status": STATUS_FAIL,
            "params": plain(space_eval(space, point)),
            "error": lines[-1] if lines else f"the trial's Spark task failed ({name}); see Spark's log above",
        }
    stamp = {
        key: doc[key].isoformat() if isinstance(doc.get(key), datetime.datetime) else None
        for key in ("book_time", "refresh_time")
    }
    return {
        "tid": doc["tid"],
        "state": JOB_STATE_DONE,
        "spec": None,
        "result": result,
        "misc": {
            "tid": doc["tid"],
            "cmd": list(misc.get("cmd") or ()),
            "workdir": None,
            "idxs": {key: [doc["tid"]] if values else [] for key, values in vals.items()},
            "vals": vals,
        },
        "exp_key": None,
        "owner": None,
        "version": doc.get("version", 0),
        **stamp,
    }


def doc_from_json(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`doc_to_json`: a document hyperopt's Trials accepts."""
    doc = copy.deepcopy(dict(entry))
    doc["misc"]["cmd"] = tuple(doc["misc"]["cmd"])
    for key in ("book_time", "refresh_time"):
        doc[key] = datetime.datetime.fromisoformat(doc[key]) if doc[key] else None
    return doc
