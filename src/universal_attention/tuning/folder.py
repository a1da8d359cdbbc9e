"""A search folder's own files: ``trials.json`` and the ``trial-NNN`` folders.

``trials.json`` is read back and checked; the trial folders are made one by one, and tidied when the search runs
again.

Everything read here comes from a file, so it is checked before it is used: every key a trial entry needs,
and a ``trial`` field that must name a ``trial-NNN`` folder directly inside the search folder.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..atomic import fsync_folder
from ..config import validate_config
from ..errors import RunFolderError
from ..runs.folder import MARKER, differing_keys
from .trials import doc_from_json

TRIALS_FORMAT = "universal-attention-trials"
TRIALS_VERSION = 1
TRIAL_NAME = re.compile(r"trial-\d{3,9}", re.ASCII)
_STATUSES = ("ok", "fail")


def new_trial_dir(out: Path) -> Path:
    """Create the first free ``trial-NNN`` folder (atomic, so concurrent trials never share one)."""
    number = 0
    while True:
        path = out / f"trial-{number:03d}"
        try:
            path.mkdir()
        except FileExistsError:
            number += 1
            continue
        fsync_folder(out)
        return path


def _entry_problem(entry: Any) -> str | None:
    """What is wrong with one trial entry of ``trials.json``, or None."""
    if not isinstance(entry, dict):
        return "not a JSON object"
    result = entry.get("result")
    if type(entry.get("tid")) is not int:
        return "no whole-number 'tid'"
    if not isinstance(result, dict) or result.get("status") not in _STATUSES:
        return "no 'result' with a status of ok or fail"
    if "trial" in result and not (isinstance(result["trial"], str) and TRIAL_NAME.fullmatch(result["trial"])):
        return f"its 'trial' {result['trial']!r} is not a trial-NNN folder inside the search folder"
    if not isinstance(result.get("params", {}), dict):
        return "its 'params' is not a JSON object"
    required = ("top1", "loss") if result["status"] == "ok" else ()  # a NaN score would win the search
    for key in (*required, "seconds"):
        if (key in required or key in result) and not _finite_number(result.get(key)):
            return f"its '{key}' {result.get(key)!r} is not a finite number"
    try:
        doc_from_json(entry)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        return f"hyperopt cannot read it ({type(error).__name__}: {error})"
    return None


def _finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _search_problem(search: Any) -> str | None:
    if not isinstance(search, dict):
        return "'search' is not a JSON object"
    for key, kind in (("space", dict), ("steps_per_trial", int), ("base_config", dict)):
        if not isinstance(search.get(key), kind):
            return f"'search' has no {key}"
    return None


def read_trials(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``search`` settings and the checked trial entries of a ``trials.json``.

    Raises:
        RunFolderError: the file is unreadable, lacks a key or names a folder outside the search.
    """
    problem = None
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        problem = str(error)
    else:
        if not isinstance(saved, dict) or saved.get("format") != TRIALS_FORMAT:
            problem = f"not a {TRIALS_FORMAT} file"
        elif not isinstance(saved.get("trials"), list):
            problem = "no list of trials"
        else:
            problem = _search_problem(saved.get("search")) or next(
                (
                    f"trial entry {index}: {found}"
                    for index, entry in enumerate(saved["trials"])
                    if (found := _entry_problem(entry))
                ),
                None,
            )
    if problem is not None:
        raise RunFolderError(f"{path} is not a readable trials file ({problem}); move it away or choose another --out")
    return saved["search"], saved["trials"]


def load_trials(path: Path, search: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The checked trial entries of an earlier run of the same search (none when ``path`` is missing).

    Raises:
        RunFolderError: the file is unreadable, lacks a key, names a folder outside the search, or holds another
            search (space, steps per trial or base config).
    """
    if not path.is_file():
        return []
    old, entries = read_trials(path)
    advice = f"continue {path.parent} with the same settings or choose another --out"
    if old["space"] != search["space"]:
        raise RunFolderError(f"{path.parent} holds a search over another space ({', '.join(old['space'])}); {advice}")
    objective = old.get("objective", "target")  # files from before the objective existed: target
    if objective != search["objective"]:
        raise RunFolderError(f"{path.parent} holds a search of the {objective} objective; {advice}")
    if old["steps_per_trial"] != search["steps_per_trial"]:
        raise RunFolderError(f"{path.parent} holds a search with {old['steps_per_trial']} steps per trial; {advice}")
    changed = differing_keys(validate_config(old["base_config"]), validate_config(search["base_config"]))
    if changed:
        raise RunFolderError(f"{path.parent} holds a search whose config differs in {', '.join(changed)}; {advice}")
    return entries


def remove_unrecorded(out: Path, entries: list[dict[str, Any]], on_message: Callable[[str], None]) -> None:
    """Delete the folders of trials interrupted before they finished, and nothing else.

    A ``trial-NNN`` folder no entry owns is removed only when it is ours (it carries the run marker, or is
    empty) and unfinished (no ``results.json``); a finished trial that ``trials.json`` missed, and any folder
    uattn did not make, stay.
    """
    owned = {entry["result"].get("trial") for entry in entries}
    for path in sorted(out.glob("trial-*")):
        if path.name in owned or not TRIAL_NAME.fullmatch(path.name) or path.is_symlink() or not path.is_dir():
            continue
        if (path / "results.json").exists():
            on_message(
                f"kept {path.name}: it finished but trials.json does not list it (the search stopped while "
                "recording it); its trial runs again"
            )
        elif not any(path.iterdir()):
            path.rmdir()
        elif not (path / MARKER).is_file():
            on_message(f"left {path.name} alone: it has no {MARKER} marker, so uattn did not make it")
        else:
            shutil.rmtree(path)
            on_message(f"removed {path.name}: its trial was interrupted before it finished; it runs again")
