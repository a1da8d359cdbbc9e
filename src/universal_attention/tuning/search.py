"""Hyperparameter search with hyperopt: resumable, and parallel on Spark.

Every trial takes the base config, sets the sampled values (dotted keys) and ``train.max_steps =
steps_per_trial``, meta-trains in its own run folder ``<out>/trial-NNN`` (``config.yaml``, ``tb/``,
``checkpoints/`` until scored), then transfers the final meta weights to ``data.target`` with
``config.transfer``; the objective is minus that target top-1 (the random-init baseline of the final
comparison is skipped: it does not depend on the searched values). With ``tune.objective: sources`` a trial
is scored without transfer, by the mean top-1 of the held-out images of every source that has masks. A
trial that raises, or ends with a non-finite accuracy, is recorded with status ``fail`` and its error, and the
search goes on.

The search folder is ours alone (see :mod:`universal_attention.runs.folder`): it carries a marker, this process
holds its lock while it searches, and only trial folders of ours that never finished are ever removed.
``<out>/trials.json`` (hyperopt's trial documents as JSON, no pickle) is rewritten atomically after every
trial; running the same search again rebuilds hyperopt's ``Trials`` from it, so the sampler sees the old
results, and runs only the trials still missing. At the end: ``best.yaml`` (a whole ExperimentConfig
with the best values and the base run length) and a TensorBoard HParams view in ``<out>/hparams``.

With ``parallel > 1`` the trials run on Spark through hyperopt's ``SparkTrials``: an embedded
``local[N]`` Spark by default, or a cluster at ``spark_master`` (the out folder must then be on storage
every worker sees).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import shutil
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hyperopt import Trials, atpe, fmin, rand, tpe
from hyperopt.base import STATUS_FAIL, STATUS_OK
from hyperopt.exceptions import AllTrialsFailed

from ..atomic import atomic_write_bytes
from ..config import ExperimentConfig, TuneConfig, save_config, set_dotted, validate_config
from ..errors import ConfigError, UattnError, WriteError
from ..meta.training import check_datasets, masked_sources, meta_train
from ..reports.build import report_after_run
from ..runs.folder import claim_folder
from ..runs.loggers import IMAGES_FOLDER, METRICS_FILE, hparam_value, open_run_logger
from ..transfer.protocol import protocol_for, transfer_evaluate
from .folder import TRIALS_FORMAT, TRIALS_VERSION, load_trials, new_trial_dir, remove_unrecorded
from .space import Distribution, hyperopt_space, search_space, space_to_dict
from .trials import Recorder, RecordingTrials, doc_from_json, doc_to_json, plain

ALGORITHMS = {"tpe": tpe.suggest, "atpe": atpe.suggest, "rand": rand.suggest}

__all__ = ["TrialRecord", "TuneResult", "tune"]


@dataclass
class TrialRecord:
    """One finished trial as ``trials.json`` holds it.

    Attributes:
        tid: hyperopt's trial id (the order trials were proposed in).
        status: ``"ok"`` or ``"fail"``.
        top1: the objective's top-1 (None when it failed): the target top-1 after the trial's meta-training and
            transfer, or under ``objective: sources`` the mean held-out source top-1.
        params: the sampled values by dotted key.
        run_dir: the trial's run folder (None when it failed before one was made).
        error: why it failed (one line).
        seconds: wall time of the trial.
    """

    tid: int
    status: str
    top1: float | None
    params: dict[str, Any]
    run_dir: Path | None
    error: str | None
    seconds: float


@dataclass
class TuneResult:
    """What :func:`tune` returns.

    Attributes:
        out_dir: the search folder.
        trials: every finished trial, by tid.
        best: the trial with the highest objective top-1 (None when every trial failed).
        best_config: the base config with the best values (what ``best.yaml`` holds).
        new_trials: how many trials this call ran (the rest came from ``trials.json``).
    """

    out_dir: Path
    trials: list[TrialRecord]
    best: TrialRecord | None
    best_config: ExperimentConfig | None
    new_trials: int

    @property
    def best_config_path(self) -> Path | None:
        """``<out>/best.yaml`` when a trial succeeded."""
        return self.out_dir / "best.yaml" if self.best_config is not None else None

    def ranked(self) -> list[TrialRecord]:
        """Trials best first: successful ones by descending top-1, then the failed ones."""
        return sorted(self.trials, key=lambda t: (t.top1 is None, -(t.top1 or 0.0), t.tid))


@dataclass
class _Objective:
    """The trial function hyperopt minimises; plain data only, so Spark can ship it to its workers."""

    base: dict[str, Any]
    out_dir: str
    threads: int | None
    keep_checkpoints: bool
    objective: str = "target"

    def __call__(self, params: dict[str, Any]) -> dict[str, Any]:
        begin = time.time()
        params = plain(params)
        run_dir = new_trial_dir(Path(self.out_dir))
        result: dict[str, Any] = {"status": STATUS_FAIL, "params": params, "trial": run_dir.name, "started": begin}
        try:
            top1 = self._run(params, run_dir)
        except WriteError:  # a full or read-only disk fails every trial after it: the search stops
            raise
        except Exception as error:  # recorded, and the search goes on
            result["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
            atomic_write_bytes(run_dir / "error.txt", traceback.format_exc().encode())
        else:
            if math.isfinite(top1):
                result.update(status=STATUS_OK, loss=-top1, top1=top1)
            else:
                result["error"] = f"{self.objective} top-1 is {top1}"
        result.update(finished=time.time(), seconds=time.time() - begin)
        return result

    def _run(self, params: dict[str, Any], run_dir: Path) -> float:
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        tree = copy.deepcopy(self.base)
        for key, value in params.items():
            set_dotted(tree, key, value)
        config = validate_config(tree)
        run = meta_train(config, run_dir, on_message=lambda text: None)
        if run.interrupted:
            raise KeyboardInterrupt
        if run.final_checkpoint is None:
            raise UattnError("the trial's meta-training wrote no checkpoint")
        if self.objective == "sources":
            return self._finish(run_dir, sources_top1(run.comparison), {"sources": run.comparison["sources"]}, params)
        transfer = transfer_evaluate(
            run.final_checkpoint,
            config.data.target,
            protocol_for(config),
            data_root=config.data.data_root,
            device=config.train.device,
        )
        top1 = transfer.cell(config.transfer.shots_per_class[-1], config.transfer.attention[0]).top1
        return self._finish(run_dir, top1, {"target": config.data.target, "transfer": transfer.to_dict()}, params)

    def _finish(self, run_dir: Path, top1: float, details: dict[str, Any], params: dict[str, Any]) -> float:
        """Write the trial's ``results.json``, drop its checkpoints unless kept, and return its score."""
        results = {"objective": self.objective, "top1": top1, "params": params, **details}
        atomic_write_bytes(run_dir / "results.json", json.dumps(results, indent=2).encode())
        if not self.keep_checkpoints:
            shutil.rmtree(run_dir / "checkpoints")  # a ResNet50 and its optimiser state: 100-300 MB a trial
        return top1


def sources_top1(comparison: Mapping[str, Any]) -> float:
    """The ``sources`` objective: the mean top-1 over the held-out source checks of a meta-train run's results.

    Raises:
        ConfigError: the run checked no source (none of its sources has object masks).
    """
    checks = comparison.get("sources") or {}
    if not checks:
        raise ConfigError("the run checked no source: none of its sources has object masks")
    return sum(check["top1"] for check in checks.values()) / len(checks)


def trial_record(entry: Mapping[str, Any], out: Path) -> TrialRecord:
    """A ``trials.json`` entry (checked by :func:`~universal_attention.tuning.folder.read_trials`) as a record."""
    result = entry["result"]
    return TrialRecord(
        tid=entry["tid"],
        status=result["status"],
        top1=result.get("top1"),
        params=result.get("params", {}),
        run_dir=out / result["trial"] if "trial" in result else None,
        error=result.get("error"),
        seconds=result.get("seconds", 0.0),
    )


def _check_algorithm(algo: str) -> None:
    """ATPE ranks its candidates with lightgbm and scikit-learn models, which hyperopt does not install."""
    if algo == "atpe":
        try:
            import lightgbm  # noqa: F401
            import sklearn  # noqa: F401
        except ImportError:
            raise ConfigError(
                "algo 'atpe' needs lightgbm and scikit-learn: "
                'pip install "universal-attention[atpe]" (or use --algo tpe)'
            ) from None


@contextmanager
def _spark_trials(tune_config: TuneConfig) -> Iterator[Trials]:
    """SparkTrials on an embedded ``local[N]`` Spark (or ``spark_master``); stops a Spark it started."""
    try:
        from hyperopt.spark import SparkTrials
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError('parallel trials need pyspark: pip install "universal-attention[spark]"') from None
    # Spark's Python workers must run this interpreter, or they cannot import what it has installed
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    started_here = SparkSession.getActiveSession() is None
    master = tune_config.spark_master or f"local[{tune_config.parallel}]"
    try:
        spark = (
            SparkSession.builder.master(master)
            .appName("uattn-tune")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
    except Exception as error:
        raise UattnError(
            f"could not start Spark at {master} (Java 17 or newer must be installed): "
            f"{str(error).strip().splitlines()[0]}"
        ) from None
    spark.sparkContext.setLogLevel("ERROR")

    class RecordingSparkTrials(Recorder, SparkTrials):
        """SparkTrials that report every finished trial."""

    spark_logger = logging.getLogger("hyperopt-spark")
    level = spark_logger.level
    spark_logger.setLevel(logging.WARNING)  # its INFO lines would interleave with our progress
    try:
        with warnings.catch_warnings():
            # pyspark 4 warns on every trial thread hyperopt starts without a session: nothing is lost here
            warnings.filterwarnings("ignore", "Spark session is not provided", UserWarning)
            yield RecordingSparkTrials(parallelism=tune_config.parallel, spark_session=spark)
    finally:
        spark_logger.setLevel(level)
        if started_here:
            spark.stop()


def _log_trials(out: Path, records: list[TrialRecord], objective: str) -> None:
    """Rewrite the search's log from its trials: per trial (step = trial id) the scalar ``tune/<objective>_top1``
    and one HParams entry, in TensorBoard (``<out>/hparams``) and ``<out>/metrics.jsonl``."""
    for name in ("hparams", METRICS_FILE, IMAGES_FOLDER):
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    with open_run_logger(out, tensorboard="hparams") as logger:
        for record in records:
            values = {key: hparam_value(value) for key, value in record.params.items()}
            values["status"] = record.status
            top1 = math.nan if record.top1 is None else record.top1
            tag = f"tune/{objective}_top1"
            logger.scalar(tag, top1, record.tid)
            logger.hparams(values, {tag: top1}, name=f"trial-{record.tid:03d}")


def tune(
    config: ExperimentConfig,
    tune_config: TuneConfig | None = None,
    out_dir: str | Path | None = None,
    *,
    on_trial: Callable[[TrialRecord, int], None] | None = None,
    on_message: Callable[[str], None] = print,
) -> TuneResult:
    """Search hyperparameters of ``config`` with hyperopt, continuing an earlier run of the same search.

    Args:
        config: the base run; its ``data.target`` and ``transfer`` settings define the ``target`` objective.
        tune_config: algorithm, ``max_evals``, ``steps_per_trial``, space, fixed values, parallelism
            (default: ``config.tune``).
        out_dir: the search folder (default ``runs/tune-<config.name>``).
        on_trial: called on the driver after every finished trial with ``(record, trials finished)``.
        on_message: where one-line notes go (default: print).

    Returns:
        A :class:`TuneResult`; the trials are also in ``<out>/trials.json``, the best config in
        ``<out>/best.yaml``.

    Raises:
        ConfigError: an unknown key, a malformed space, a missing optional dependency, the ``sources`` objective
            with no source that has masks, or an out folder
            holding a different search, files uattn did not write, or in use by another process.
        DatasetError: a dataset of the base config is unknown or not on disk (before anything is written).
        UattnError: Spark could not be started (parallel trials).
    """
    tune_config = config.tune if tune_config is None else tune_config
    _check_algorithm(tune_config.algo)
    space = search_space(tune_config.space, tune_config.fix)
    base = config.to_dict()
    base.pop("tune")
    for key, value in tune_config.fix.items():
        set_dotted(base, key, value)
    check_datasets(validate_config(base))
    if tune_config.objective == "sources" and not masked_sources(validate_config(base)):
        raise ConfigError(
            "tune.objective=sources scores the held-out images of sources with object masks, and none of "
            f"{', '.join(config.data.sources)} has them (the synthetic tasks, oxford_pets and cub200 do); "
            "use tune.objective=target"
        )
    search = {
        "space": space_to_dict(space),
        "steps_per_trial": tune_config.steps_per_trial,
        "objective": tune_config.objective,
        "base_config": base,
    }
    out = Path(out_dir or f"runs/tune-{config.name}").resolve()
    with claim_folder(out, "search"):
        return _search_in_folder(out, config, tune_config, base, search, space, on_trial, on_message)


def _search_in_folder(
    out: Path,
    config: ExperimentConfig,
    tune_config: TuneConfig,
    base: dict[str, Any],
    search: dict[str, Any],
    space: Mapping[str, Distribution],
    on_trial: Callable[[TrialRecord, int], None] | None,
    on_message: Callable[[str], None],
) -> TuneResult:
    """:func:`tune` while this process holds the search folder."""
    entries = load_trials(out / "trials.json", search)
    remove_unrecorded(out, entries, on_message)
    known = len(entries)
    if tune_config.max_evals > known:
        entries = _search(out, search, space, tune_config, entries, on_trial)
    elif known:
        on_message(f"{out} already holds {known} trials (max_evals {tune_config.max_evals}); nothing to run")
    result = TuneResult(
        out_dir=out,
        trials=[trial_record(entry, out) for entry in entries],
        best=None,
        best_config=None,
        new_trials=len(entries) - known,
    )
    _log_trials(out, result.trials, tune_config.objective)
    result.best = next((record for record in result.ranked() if record.status == STATUS_OK), None)
    if result.best is not None:
        tree = copy.deepcopy(base)
        for key, value in result.best.params.items():
            set_dotted(tree, key, value)
        tree["name"] = f"{config.name}-best"
        tree["tune"] = tune_config.model_dump(mode="json")
        result.best_config = validate_config(tree)
        save_config(result.best_config, out / "best.yaml")
    report_after_run(out, on_message)
    return result


def _search(
    out: Path,
    search: dict[str, Any],
    space: Mapping[str, Distribution],
    tune_config: TuneConfig,
    entries: list[dict[str, Any]],
    on_trial: Callable[[TrialRecord, int], None] | None,
) -> list[dict[str, Any]]:
    """Run hyperopt until ``max_evals`` trials exist, saving ``trials.json`` after each; returns all entries."""
    expressions = hyperopt_space(space)
    trial_base = copy.deepcopy(search["base_config"])
    set_dotted(trial_base, "train.max_steps", tune_config.steps_per_trial)
    set_dotted(trial_base, "train.final_comparison", False)
    trial_base["tune"] = tune_config.model_dump(mode="json")
    parallel = tune_config.parallel > 1 or tune_config.spark_master is not None
    threads = (
        max(1, (os.cpu_count() or 1) // tune_config.parallel) if parallel and not tune_config.spark_master else None
    )
    objective = _Objective(
        base=trial_base,
        out_dir=str(out),
        threads=threads,
        keep_checkpoints=tune_config.keep_checkpoints,
        objective=tune_config.objective,
    )
    saved = {"entries": list(entries)}

    def on_finished(docs: list[dict[str, Any]], new: list[int]) -> None:
        saved["entries"] = sorted((doc_to_json(doc, expressions) for doc in docs), key=lambda e: e["tid"])
        document = {"format": TRIALS_FORMAT, "version": TRIALS_VERSION, "search": search, "trials": saved["entries"]}
        try:
            atomic_write_bytes(out / "trials.json", json.dumps(document, indent=2).encode())
        except WriteError as error:
            raise WriteError(
                f"{error}; every finished trial is kept in its trial folder; free space and rerun the same "
                "command to continue the search"
            ) from error
        if on_trial is not None:
            by_tid = {entry["tid"]: entry for entry in saved["entries"]}
            for count, tid in enumerate(new, start=len(saved["entries"]) - len(new) + 1):
                on_trial(trial_record(by_tid[tid], out), count)

    with _spark_trials(tune_config) if parallel else nullcontext(RecordingTrials()) as trials:
        trials.insert_trial_docs([doc_from_json(entry) for entry in entries])
        trials.refresh()
        trials.recorded = frozenset(trials.tids)
        trials.on_finished = on_finished
        with contextlib.suppress(AllTrialsFailed):  # recorded like any other outcome; tune() reports it
            fmin(
                objective,
                expressions,
                algo=ALGORITHMS[tune_config.algo],
                max_evals=tune_config.max_evals,
                trials=trials,
                rstate=np.random.default_rng([tune_config.seed, len(entries)]),
                max_queue_len=tune_config.parallel,
                verbose=False,
                show_progressbar=False,
                return_argmin=False,
            )
        trials.refresh()  # a Spark trial's result can land just after hyperopt's last refresh
    return saved["entries"]
