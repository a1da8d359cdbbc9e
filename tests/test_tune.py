"""uattn tune: tiny searches on synthetic tasks (trials.json, best.yaml, failures, resume, --fix, Spark)."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from hyperopt import tpe
from hyperopt.base import JOB_STATE_DONE, JOB_STATE_ERROR, Domain
from hyperopt.pyll import stochastic

from universal_attention import load_config, tune
from universal_attention.cli import main
from universal_attention.errors import ConfigError
from universal_attention.runs.loggers import read_metrics
from universal_attention.tuning.space import hyperopt_space, parse_space, search_space
from universal_attention.tuning.trials import RecordingTrials, doc_from_json, doc_to_json

from small import SMALL_OVERRIDES

TINY = [
    *SMALL_OVERRIDES,
    "train.report=false",  # each trial's own report; the search's report is written all the same
    "data.image_size=32",
    "data.sources=[synthetic/colour, synthetic/size]",
    "sampler.batch_size=4",
    "reptile.inner_steps=1",
    "train.max_steps=2",
    "train.eval_every=0",
    "train.image_log_every=0",
    "transfer.steps=1",
    "transfer.draws=1",
    "transfer.batch_size=4",
    "transfer.shots_per_class=[2]",
    "transfer.max_test_images=8",
]
SPACE = {
    "model.alignment_size": {"type": "quniform", "low": 4, "high": 16},
    "model.query_size": {"type": "quniform", "low": 4, "high": 16},
    "reptile.inner_steps": {"type": "quniform", "low": 1, "high": 3},
    "reptile.inner_lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
}


def tune_args(out, space_file, max_evals, *extra):
    args = [
        "tune",
        "--preset",
        "quickstart",
        "--space",
        str(space_file),
        "--steps-per-trial",
        "1",
        "--max-evals",
        str(max_evals),
        "--fix",
        "reptile.inner_steps=2",
        "--out",
        str(out),
        *extra,
    ]
    for override in TINY:
        args += ["--set", override]
    return args


def invoke(args):
    return CliRunner().invoke(main, args)


def trials_of(out):
    return json.loads((out / "trials.json").read_text())["trials"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and then do not fight other processes for the cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """Three trials, the second of which crashes; the first call stops at two, the same command again adds one."""
    root = tmp_path_factory.mktemp("tune")
    space = root / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    out = root / "search"
    import universal_attention.tuning.search as tune_module

    real_meta_train = tune_module.meta_train

    def crashing_in_trial_001(config, out_dir, **kwargs):
        if Path(out_dir).name == "trial-001":
            raise RuntimeError("simulated crash in trial-001")
        return real_meta_train(config, out_dir, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tune_module, "meta_train", crashing_in_trial_001)
        first = invoke(tune_args(out, space, 2))
        after_first = trials_of(out)
        second = invoke(tune_args(out, space, 3))
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    return SimpleNamespace(out=out, space=space, first=first.output, second=second.output, after_first=after_first)


@pytest.mark.slow
def test_trials_json_holds_every_trial_with_its_score_and_values(search):
    document = json.loads((search.out / "trials.json").read_text())
    assert document["format"] == "universal-attention-trials"
    trials = document["trials"]
    assert [trial["tid"] for trial in trials] == [0, 1, 2]
    for trial in trials:
        assert set(trial["result"]["params"]) == {"model.alignment_size", "model.query_size", "reptile.inner_lr"}
        assert set(trial["misc"]["vals"]) == set(trial["result"]["params"])
    for trial in (trials[0], trials[2]):
        result = trial["result"]
        assert result["status"] == "ok" and 0 <= result["top1"] <= 1 and result["loss"] == -result["top1"]
        run = search.out / result["trial"]
        assert json.loads((run / "results.json").read_text())["top1"] == result["top1"]
        assert any((run / "tb").iterdir())
        assert not (run / "checkpoints").exists()  # deleted once the trial is scored


@pytest.mark.slow
def test_a_failing_trial_is_recorded_and_the_search_goes_on(search):
    failed = trials_of(search.out)[1]["result"]
    assert failed["status"] == "fail"
    assert failed["error"] == "RuntimeError: simulated crash in trial-001"
    assert "simulated crash" in (search.out / "trial-001" / "error.txt").read_text()
    assert "trial-001 (2/2): failed: RuntimeError: simulated crash in trial-001" in search.first


@pytest.mark.slow
def test_running_again_adds_only_the_missing_trials(search):
    assert len(search.after_first) == 2
    assert trials_of(search.out)[:2] == search.after_first
    assert "trial-002 (3/3)" in search.second and "trial-000 (" not in search.second
    again = invoke(tune_args(search.out, search.space, 3))
    assert again.exit_code == 0, again.output
    assert "already holds 3 trials" in again.output
    assert sorted(path.name for path in search.out.glob("trial-*")) == ["trial-000", "trial-001", "trial-002"]


@pytest.mark.slow
def test_folders_of_trials_interrupted_before_they_finished_are_removed(search):
    (search.out / "trial-007").mkdir()
    shutil.copy(search.out / "trial-000" / ".uattn-run", search.out / "trial-007")  # a run folder of ours
    (search.out / "trial-007" / "config.yaml").write_text("name: interrupted\n")
    result = invoke(tune_args(search.out, search.space, 3))
    assert result.exit_code == 0, result.output
    assert "removed trial-007" in result.output and not (search.out / "trial-007").exists()


def test_a_search_where_every_trial_fails_says_so(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("data.image_size: {type: choice, options: [8]}\n")
    result = invoke(tune_args(tmp_path / "out", space, 2))
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: no trial succeeded")
    errors = [trial["result"]["error"] for trial in trials_of(tmp_path / "out")]
    assert errors == ["ConfigError: data.image_size: Input should be greater than or equal to 16 (got 8)"] * 2
    assert not (tmp_path / "out" / "best.yaml").exists()


@pytest.mark.slow
def test_fixed_keys_keep_their_value_and_sampled_sizes_are_ints(search):
    for name in ("trial-000", "trial-002"):
        config = yaml.safe_load((search.out / name / "config.yaml").read_text())
        assert config["reptile"]["inner_steps"] == 2
        assert config["train"]["max_steps"] == 1
        assert isinstance(config["model"]["alignment_size"], int) and 4 <= config["model"]["alignment_size"] <= 16


@pytest.mark.slow
def test_table_lists_trials_best_first_and_failures_last(search):
    ranked = sorted(
        (t for t in trials_of(search.out) if t["result"]["status"] == "ok"),
        key=lambda t: (-t["result"]["top1"], t["tid"]),
    )
    expected = [t["result"]["trial"] for t in ranked] + ["trial-001"]
    rows = [line.split("│")[1].strip() for line in search.second.splitlines() if line.startswith("│ trial-")]
    assert rows == expected


@pytest.mark.slow
def test_best_yaml_is_a_whole_config_that_meta_train_runs(search, tmp_path):
    best = min(
        (t for t in trials_of(search.out) if t["result"]["status"] == "ok"),
        key=lambda t: (-t["result"]["top1"], t["tid"]),
    )
    config = load_config(config_file=search.out / "best.yaml")
    assert config.model.alignment_size == best["result"]["params"]["model.alignment_size"]
    assert config.reptile.inner_lr == best["result"]["params"]["reptile.inner_lr"]
    assert config.reptile.inner_steps == 2
    assert config.train.max_steps == 2  # the base run length, not the trials' steps
    result = invoke(
        [
            "meta-train",
            "--config",
            str(search.out / "best.yaml"),
            "--max-steps",
            "1",
            "--set",
            "train.final_comparison=false",
            "--out",
            str(tmp_path / "best"),
        ]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "best" / "checkpoints" / "step-000001.safetensors").is_file()


@pytest.mark.slow
def test_hparams_view_has_one_run_per_trial(search):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = sorted(path.name for path in (search.out / "hparams").iterdir() if path.is_dir())
    assert runs == ["trial-000", "trial-001", "trial-002"]
    events = EventAccumulator(str(search.out / "hparams" / "trial-000")).Reload()
    assert "tune/target_top1" in events.Tags()["scalars"]
    assert events.PluginTagToContent("hparams")
    scored = {record["step"]: record["value"] for record in read_metrics(search.out)}
    assert sorted(scored) == [0, 1, 2] and len(read_metrics(search.out, kind="hparams")) == 3
    assert (search.out / "trial-000" / "metrics.jsonl").is_file()  # every trial is a run with its own record


@pytest.mark.slow
def test_resumed_trials_are_what_the_sampler_learns_from(search):
    entries = trials_of(search.out)
    trials = RecordingTrials()
    trials.insert_trial_docs([doc_from_json(entry) for entry in entries])
    trials.refresh()
    assert trials.losses() == [entry["result"].get("loss") for entry in entries]
    assert trials.new_trial_ids(1) == [3]
    domain = Domain(lambda params: 0.0, hyperopt_space(search_space(SPACE, {"reptile.inner_steps": 2})))
    proposed = tpe.suggest([3], domain, trials, seed=0, n_startup_jobs=2)  # past start-up: TPE models the results
    assert proposed[0]["tid"] == 3 and set(proposed[0]["misc"]["vals"]) == set(entries[0]["misc"]["vals"])


def test_a_trial_whose_spark_task_died_is_recorded_as_failed():
    space = hyperopt_space(parse_space({"reptile.inner_optimizer": {"type": "choice", "options": ["sgd", "adam"]}}))
    died = {
        "tid": 4,
        "state": JOB_STATE_ERROR,
        "spec": None,
        "result": {"status": "new"},
        "exp_key": None,
        "owner": None,
        "version": 0,
        "book_time": None,
        "refresh_time": None,
        "misc": {
            "tid": 4,
            "cmd": ("domain_attachment", "FMinIter_Domain"),
            "workdir": None,
            "idxs": {"reptile.inner_optimizer": [4]},
            "vals": {"reptile.inner_optimizer": [np.int64(1)]},
            "error": ("<class 'py4j.protocol.Py4JJavaError'>", None),
        },
    }
    entry = doc_to_json(died, space)
    assert entry["state"] == JOB_STATE_DONE
    assert entry["result"] == {
        "status": "fail",
        "params": {"reptile.inner_optimizer": "adam"},
        "error": "the trial's Spark task failed (Py4JJavaError); see Spark's log above",
    }
    assert json.loads(json.dumps(entry)) == entry


@pytest.mark.slow
def test_another_search_in_the_same_folder_is_refused(search):
    args = tune_args(search.out, search.space, 3)
    args[args.index("--steps-per-trial") + 1] = "2"
    result = invoke(args)
    assert result.exit_code == 2
    assert "holds a search with 1 steps per trial" in result.output


def test_the_default_space_is_the_originals_with_int_sizes():
    space = search_space(None, {})
    assert list(space) == [
        "model.alignment_size",
        "model.query_size",
        "reptile.inner_steps",
        "reptile.inner_lr",
        "reptile.outer_lr",
    ]
    point = stochastic.sample(hyperopt_space(space), rng=np.random.default_rng(0))
    assert all(
        isinstance(point[key], int) for key in ("model.alignment_size", "model.query_size", "reptile.inner_steps")
    )
    assert 4 <= point["model.alignment_size"] <= 1024 and 2 <= point["reptile.inner_steps"] <= 15
    assert 1e-5 <= point["reptile.inner_lr"] <= 1e-1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fix", "model.nope=1"], "error: unknown key 'model.nope': model has trunk, taps,"),
        (
            ["--set", "tune.space={reptile.inner_lr: {type: loguniform, low: 0, high: 1}}"],
            "error: space entry 'reptile.inner_lr': loguniform bounds must be positive",
        ),
    ],
)
def test_bad_keys_and_spaces_are_one_line_errors(tmp_path, extra, message):
    args = ["tune", "--preset", "quickstart", "--out", str(tmp_path / "out"), *extra]
    result = invoke(args)
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and result.output.startswith(message)


def test_an_unknown_key_in_a_space_file_is_named(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("reptile.inner_lrr: {type: uniform, low: 0.1, high: 0.2}\n")
    result = invoke(["tune", "--space", str(space), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.output.startswith("error: unknown key 'reptile.inner_lrr': reptile has algorithm, heads, inner_steps")


def test_atpe_without_its_extra_names_the_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "lightgbm", None)
    config = load_config(preset="quickstart")
    with pytest.raises(ConfigError, match=r'pip install "universal-attention\[atpe\]"'):
        tune(config, config.tune.updated(algo="atpe"))


@pytest.mark.slow
def test_parallel_trials_run_at_once_on_spark_and_resume(tmp_path):
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java")
    space = tmp_path / "space.yaml"
    # a 100000-shot transfer cannot be drawn from the tiny target: those trials fail after meta-training
    space.write_text(
        yaml.safe_dump(
            {
                "model.alignment_size": {"type": "quniform", "low": 4, "high": 16},
                "transfer.shots_per_class": {"type": "choice", "options": [[2], [100000]]},
            }
        )
    )
    out = tmp_path / "search"
    seed = ["--set", "tune.seed=0"]  # trials 0 and 1 draw 2 shots, trial 2 draws 100000
    serial = invoke(tune_args(out, space, 1, *seed))
    assert serial.exit_code == 0, serial.output
    first = trials_of(out)
    parallel = invoke(tune_args(out, space, 3, "--parallel", "2", "--set", "tune.keep_checkpoints=true", *seed))
    assert parallel.exit_code == 0, parallel.output
    trials = trials_of(out)
    assert [trial["tid"] for trial in trials] == [0, 1, 2]
    assert trials[:1] == first
    new = [trial["result"] for trial in trials[1:]]
    assert max(result["started"] for result in new) < min(result["finished"] for result in new)
    for result in new:
        failing = result["params"]["transfer.shots_per_class"] == [100000]
        assert result["status"] == ("fail" if failing else "ok")
        if failing:
            assert result["error"].startswith("DatasetError: shots_per_class 100000 is more")
        else:
            assert (out / result["trial"] / "checkpoints" / "step-000001.safetensors").is_file()
    assert {result["status"] for result in new} == {"ok", "fail"}


@pytest.mark.slow
def test_the_sources_objective_scores_held_out_source_images_without_transfer(tmp_path, monkeypatch):
    import universal_attention.tuning.search as tune_module

    def no_transfer(*args, **kwargs):
        raise AssertionError("the sources objective must not transfer")

    monkeypatch.setattr(tune_module, "transfer_evaluate", no_transfer)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"reptile.inner_lr": SPACE["reptile.inner_lr"]}))
    args = tune_args(tmp_path / "out", space, 2, "--objective", "sources", "--set", "train.source_images=4")
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert "sources top-1" in result.output
    for trial in trials_of(tmp_path / "out"):
        saved = json.loads((tmp_path / "out" / trial["result"]["trial"] / "results.json").read_text())
        assert saved["objective"] == "sources" and set(saved["sources"]) == {"synthetic/colour", "synthetic/size"}
        mean = sum(check["top1"] for check in saved["sources"].values()) / 2
        assert trial["result"]["top1"] == pytest.approx(mean) == saved["top1"]
    assert {record["tag"] for record in read_metrics(tmp_path / "out")} == {"tune/sources_top1"}
    args[args.index("sources")] = "target"  # the same folder under the other objective is another search
    again = invoke(args)
    assert again.exit_code == 2 and "holds a search of the sources objective" in again.output


def test_the_sources_objective_needs_a_source_with_masks(tmp_path, monkeypatch):
    monkeypatch.setattr("universal_attention.tuning.search.masked_sources", lambda config: [])
    config = load_config(preset="quickstart")
    with pytest.raises(ConfigError, match="none of synthetic/colour, synthetic/texture, synthetic/size has them"):
        tune(config, config.tune.updated(objective="sources"), tmp_path / "out")
    assert not (tmp_path / "out").exists()
