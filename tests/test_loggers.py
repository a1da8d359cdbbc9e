"""The logger interface: every backend takes the same calls, and metrics.jsonl reads back without TensorBoard."""

import json
import math

import torch
from PIL import Image

from universal_attention.runs.loggers import JsonLinesLogger, open_run_logger, read_metrics


def test_metrics_jsonl_holds_one_json_object_per_scalar(tmp_path):
    with open_run_logger(tmp_path) as logger:
        logger.scalar("meta/loss", 1.5, 1)
        logger.scalar("meta/loss", math.nan, 2)
        logger.histogram("entropy", torch.tensor([1.0, 2.0, 3.0]), 2)
        logger.image("attention/watched", Image.new("RGB", (4, 3), "red"), 2)
        logger.hparams({"reptile.inner_lr": 0.01}, {"final/top1": 0.5})
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["scalar", "scalar", "histogram", "image", "hparams"]
    assert {key: lines[0][key] for key in ("step", "tag", "value")} == {"step": 1, "tag": "meta/loss", "value": 1.5}
    assert lines[1]["value"] is None  # JSON has no NaN
    assert lines[2]["count"] == 3 and lines[2]["mean"] == 2.0 and lines[2]["max"] == 3.0
    with Image.open(tmp_path / lines[3]["file"]) as picture:
        assert picture.size == (4, 3)
    assert lines[4]["params"] == {"reptile.inner_lr": 0.01} and lines[4]["metrics"] == {"final/top1": 0.5}
    assert all(isinstance(line["wall_time"], float) for line in lines)
    assert any((tmp_path / "tb").iterdir())


def test_a_resumed_run_drops_the_lines_it_will_log_again(tmp_path):
    logger = JsonLinesLogger(tmp_path)
    for step in (1, 2, 3):
        logger.scalar("meta/loss", float(step), step)
    logger.close()
    (tmp_path / "metrics.jsonl").write_text((tmp_path / "metrics.jsonl").read_text() + '{"kind": "scal')  # a kill
    resumed = JsonLinesLogger(tmp_path, purge_step=3)
    resumed.scalar("meta/loss", 30.0, 3)
    resumed.close()
    assert [(r["step"], r["value"]) for r in read_metrics(tmp_path)] == [(1, 1.0), (2, 2.0), (3, 30.0)]


def test_reading_a_folder_without_metrics_gives_nothing(tmp_path):
    assert read_metrics(tmp_path) == []
