"""Every run writes report.md with its figures, and ``uattn report FOLDER`` rebuilds it from the folder alone."""

import json
import shutil
import sys

import pytest
from click.testing import CliRunner
from PIL import Image
from test_meta_train import TINY

from universal_attention.cli import main
from universal_attention.reports import write_report
from universal_attention.reports.build import curve_panel, report_after_run
from universal_attention.reports.tables import delta_text, markdown_table

pytest.importorskip("matplotlib")
MISSING = 'the report\'s figures need matplotlib: pip install "universal-attention[report]"'


def invoke(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args])


def with_overrides(args, overrides):
    return [*args, *(part for override in overrides for part in ("--set", override))]


def png_size(path):
    with Image.open(path) as picture:
        picture.verify()
    with Image.open(path) as picture:
        return picture.size


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports") / "run"
    result = invoke(*with_overrides(["meta-train", "--preset", "quickstart", "--out", out], TINY))
    assert result.exit_code == 0, result.output
    assert f"report: {out / 'report.md'}" in result.output
    return out


@pytest.fixture(scope="module")
def transfer(run):
    out = run.parent / "transfer"
    args = ["transfer", "--ckpt", run, "--shots", "1,2", "--steps", "1", "--seeds", "2", "--draws", "1"]
    args += ["--attention", "learned,uniform,oracle", "--baseline", "random", "--out", out]
    result = invoke(*args, "--set", "transfer.max_test_images=8", "--set", "transfer.batch_size=4")
    assert result.exit_code == 0, result.output
    return out


def test_a_meta_train_run_reports_its_curves_comparison_and_attention_grid(run):
    text = (run / "report.md").read_text()
    assert "![loss, top-1 and attention against meta-steps](figures/curves.png)" in text
    for heading in (
        "## Held-out source images",
        "final comparison",
        "## Paired differences in top-1",
        "## Stage seconds",
    ):
        assert heading in text
    assert "| meta_trained |" in text and "| random_init |" in text
    picture = next(line for line in text.splitlines() if line.startswith("![attention/watched"))
    assert (run / picture.split("(")[1].rstrip(")")).is_file()
    width, height = png_size(run / "figures" / "curves.png")
    assert width > 400 and height > 300


def test_a_transfer_reports_top1_against_shots_cells_differences_and_the_oracle_fraction(transfer):
    text = (transfer / "report.md").read_text()
    assert "![top-1 against shots per class, 95 % CI](figures/top1_vs_shots.png)" in text
    for heading in ("## Cells", "## Paired differences in top-1", "## Oracle fraction"):
        assert heading in text
    rows = [line for line in text.split("## Cells")[1].split("##")[0].splitlines() if line.startswith("| run ")]
    assert len(rows) == 3 * 2  # three controls x two shots settings of the start point under test
    assert png_size(transfer / "figures" / "top1_vs_shots.png")[0] > 400


def test_uattn_report_rebuilds_the_same_report_from_the_folder_alone(run, transfer, tmp_path):
    for folder in (run, transfer):
        copy = tmp_path / folder.name
        shutil.copytree(folder, copy)
        before = (copy / "report.md").read_text()
        (copy / "report.md").unlink()
        shutil.rmtree(copy / "figures")
        result = invoke("report", copy)
        assert result.exit_code == 0, result.output
        assert result.output.strip() == f"wrote {copy / 'report.md'} (1 figure(s))"
        assert (copy / "report.md").read_text() == before.replace(str(folder), str(copy))
        assert png_size(next((copy / "figures").glob("*.png")))[0] > 0


def test_a_search_reports_every_trial_and_the_best_parameters(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("reptile.inner_lr: {type: loguniform, low: 0.0001, high: 0.1}\n")
    out = tmp_path / "search"
    args = ["tune", "--preset", "quickstart", "--space", space, "--max-evals", "2", "--steps-per-trial", "1"]
    result = invoke(*with_overrides([*args, "--out", out], [*TINY, "train.eval_every=0", "train.image_log_every=0"]))
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    assert "![target top-1 per trial](figures/trials.png)" in text
    assert text.count("| trial-00") == 2 and "## Best trial: `trial-00" in text and "reptile.inner_lr" in text
    assert png_size(out / "figures" / "trials.png")[0] > 300


def test_without_matplotlib_the_report_has_its_tables_and_names_the_extra(run, tmp_path, monkeypatch):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "figures")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # its import fails, as when it is not installed
    notes = []
    path = report_after_run(copy, notes.append)
    text = path.read_text()
    assert "## Held-out source images" in text and not (copy / "figures").exists()
    assert f"not drawn ({MISSING})" in text
    assert notes == [f"report {path} without figures: {MISSING}"]


def test_report_refuses_folders_it_cannot_report_in_one_line(run, tmp_path):
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    result = invoke("report", stranger)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert (
        result.output.strip()
        == f"error: {stranger} is not a folder uattn made (no .uattn-run in it); give the --out of a uattn run"
    )
    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    (damaged / "results.json").write_text('{"sources": ')
    result = invoke("report", damaged)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "results.json is not readable JSON" in result.output


def test_train_report_false_leaves_the_report_to_uattn_report(tmp_path):
    out = tmp_path / "run"
    overrides = [*TINY, "train.report=false", "train.final_comparison=false"]
    result = invoke(*with_overrides(["meta-train", "--preset", "quickstart", "--out", out], overrides))
    assert result.exit_code == 0, result.output
    assert not (out / "report.md").exists() and "report:" not in result.output
    assert invoke("report", out).exit_code == 0 and (out / "report.md").is_file()


def test_an_unfinished_run_reports_what_it_logged(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "results.json").unlink()
    text = write_report(copy).path.read_text()
    assert "No `results.json`: the run has not finished" in text and "figures/curves.png" in text


def test_logged_tags_find_their_panels():
    assert curve_panel("meta/loss") == ("meta-training loss", "all tasks")
    assert curve_panel("meta/accuracy/synthetic/size") == ("meta-training top-1", "synthetic/size")
    assert curve_panel("sources/synthetic/colour/top1") == ("held-out source top-1", "synthetic/colour")
    assert curve_panel("sources/synthetic/colour/relative_to_area/layer4") == (
        "source attention mass/area at layer4",
        "synthetic/colour",
    )
    assert curve_panel("attention/saturated/layer1.0") == ("saturated tanh inputs", "layer1.0")
    assert curve_panel("meta/images_per_s") is None and curve_panel("final/random_init/top1") is None


def test_tables_escape_markup_and_mark_only_resolved_differences():
    table = markdown_table(["class"], [["<img src=x onerror=alert(1)>|a\nb"]])
    assert "<img" not in table and "&lt;img src=x onerror=alert(1)&gt;\\|a\\nb" in table
    assert delta_text({"delta_top1": 0.05, "ci": [0.01, 0.09]}).endswith("*")
    assert not delta_text({"delta_top1": 0.05, "ci": [-0.01, 0.09]}).endswith("*")
    assert delta_text({"delta_top1": 0.0, "ci": [float("nan"), float("nan")]}) == "+0.000 -"


def test_attention_folders_are_not_reported(tmp_path):
    folder = tmp_path / "attention"
    folder.mkdir()
    (folder / ".uattn-run").write_text(json.dumps({"kind": "attention"}))
    result = invoke("report", folder)
    assert result.exit_code == 2 and "whose own files are its report" in result.output
