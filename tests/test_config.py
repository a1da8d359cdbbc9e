import json

import pytest

from universal_attention.config import PRESETS, ExperimentConfig, load_config, parse_override
from universal_attention.errors import ConfigError


def test_defaults_reproduce_the_original_experiment():
    config = ExperimentConfig()
    assert config.data.image_size == 128
    assert config.sampler.batch_size == 64
    assert (config.model.alignment_size, config.model.query_size) == (256, 512)
    assert (config.reptile.inner_steps, config.reptile.inner_lr, config.reptile.inner_optimizer) == (5, 1e-2, "sgd")
    assert (config.reptile.outer_optimizer, config.reptile.outer_lr, config.reptile.outer_beta1) == ("adam", 1e-3, 0.0)
    assert config.transfer.lr == 1e-4
    assert config.data.target == "caltech101"
    assert len(config.data.sources) == 6


def test_every_preset_validates():
    for name in PRESETS:
        assert load_config(preset=name).name == name


def test_quickstart_uses_synthetic_tasks_only():
    config = load_config(preset="quickstart")
    assert all(name.startswith("synthetic/") for name in config.data.sources)
    assert config.data.target.startswith("synthetic/")
    assert config.data.target not in config.data.sources


def test_dotted_override_is_typed():
    config = load_config(
        overrides=["reptile.inner_steps=8", "model.attention=off", "transfer.shots_per_class=[1,5,all]"]
    )
    assert config.reptile.inner_steps == 8
    assert config.model.attention is False
    assert config.transfer.shots_per_class == (1, 5, "all")


def test_file_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("reptile:\n  inner_steps: 3\n  inner_lr: 0.5\n")
    config = load_config(preset="quickstart", config_file=path, overrides=["reptile.inner_lr=0.25"])
    assert config.reptile.inner_steps == 3
    assert config.reptile.inner_lr == 0.25
    assert config.data.image_size == 64  # from the preset


def test_json_config_file(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"model": {"compatibility": "dot"}}))
    assert load_config(config_file=path).model.compatibility == "dot"


def test_resolved_yaml_round_trips(tmp_path):
    config = load_config(preset="quickstart", overrides=["sampler.seed=7"])
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    assert load_config(config_file=path) == config


@pytest.mark.parametrize(
    "override, expected",
    [
        ("reptile.inner_stepz=3", "unknown key 'reptile.inner_stepz': reptile has algorithm, heads, inner_steps"),
        ("nope.x=1", "unknown key 'nope.x': the config has name, model"),
        ("reptile.outer_optimizer=rmsprop", "reptile.outer_optimizer: Input should be 'sgd' or 'adam'"),
        ("reptile.inner_steps=0", "reptile.inner_steps: Input should be greater than or equal to 1"),
        ("model=1", "key 'model' is a section"),
        ("inner_steps", "must look like key=value"),
    ],
)
def test_bad_override_names_key_and_allowed_values(override, expected):
    with pytest.raises(ConfigError) as error:
        load_config(overrides=[override])
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def test_unknown_key_in_file_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  compat: dot\n")
    with pytest.raises(ConfigError, match=r"unknown key 'model.compat': model has trunk, taps, compatibility"):
        load_config(config_file=path)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(config_file=tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(config_file=bad)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="choose one of: paper, quickstart"):
        load_config(preset="fast")


def test_override_value_parsed_as_yaml():
    assert parse_override("data.target=folder:/tmp/x") == ("data.target", "folder:/tmp/x")
    assert parse_override("reptile.inner_lr=1e-3") == ("reptile.inner_lr", 1e-3)
