import json
import os
from urllib.parse import unquote

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from universal_attention import AttentionResNet50, ModelConfig, load_checkpoint, load_config, save_checkpoint
from universal_attention.errors import CheckpointError
from universal_attention.runs.checkpoint import KEYED_MODULES, checkpoint_name, resolve_checkpoint, tensors_digest

from small import SMALL

IMAGES = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = AttentionResNet50(
        ModelConfig(trunk="resnet10", compatibility="dot", alignment_size=32, query_size=64), num_classes=3
    )
    model.add_head("synthetic/colour", 4)
    model.eval()
    path = save_checkpoint(
        tmp_path / "run" / "step-000007.safetensors",
        model,
        load_config(preset="quickstart"),
        step=7,
        extra={"top1": 0.5},
        state={"outer/exp_avg_sq": torch.arange(4.0)},
    )
    return model, path


def format_1_key(name: str) -> str:
    """The key 0.1 (checkpoint format 1) wrote for a state-dict key: U+00B7 where a head's or tap's name had a dot."""
    section, _, rest = name.partition(".")
    if section not in KEYED_MODULES:
        return name
    key, _, tail = rest.partition(".")
    return f"{section}.{unquote(key).replace('.', chr(0xB7))}.{tail}"


def test_every_state_dict_key_is_ascii_and_names_with_dots_keep_apart():
    model = AttentionResNet50(SMALL)
    for task in ("v1.5", "v1%2E5", "café"):
        model.add_head(task, 2)
    assert all(name.isascii() for name in model.state_dict())
    assert len(model.heads) == 3 and "attention_blocks.layer2%2E0.vector.weight" in model.state_dict()


def test_a_checkpoint_written_by_0_1_with_middle_dots_in_its_keys_still_loads(saved, tmp_path):
    model, path = saved
    model.add_head("task.v2", 2)
    save_checkpoint(path, model, step=7)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {format_1_key(name): handle.get_tensor(name) for name in handle.keys()}
    assert {"attention_blocks.layer2\u00b70.project_features.weight", "heads.task\u00b7v2.weight"} <= tensors.keys()
    old = tmp_path / "written-by-0.1.safetensors"
    save_file(tensors, str(old), metadata=metadata | {"format_version": "1", "tensors_sha256": tensors_digest(tensors)})
    loaded = load_checkpoint(old)
    assert loaded.verified and loaded.model.head_classes == model.head_classes
    expected = model.state_dict()
    assert loaded.model.state_dict().keys() == expected.keys()
    assert all(torch.equal(value, expected[name]) for name, value in loaded.model.state_dict().items())


def test_a_checkpoint_of_format_2_records_no_trunk_and_loads_as_resnet50(tmp_path):
    torch.manual_seed(0)
    model = AttentionResNet50(ModelConfig(alignment_size=8, query_size=8, compatibility="additive"), num_classes=2)
    run = load_config(preset="paper", overrides=["model.compatibility=additive"])
    path = save_checkpoint(tmp_path / "new.safetensors", model, run, step=3)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    model_config = json.loads(metadata["model_config"])
    experiment = json.loads(metadata["experiment_config"])
    assert model_config.pop("trunk") == "resnet50" and experiment["model"].pop("trunk") == "resnet50"
    del model_config["compatibility"], experiment["model"]["compatibility"]  # a hand-made file: its time's default
    old = {"model_config": json.dumps(model_config), "experiment_config": json.dumps(experiment)}
    save_file(tensors, str(tmp_path / "format-2.safetensors"), metadata=metadata | old | {"format_version": "2"})
    loaded = load_checkpoint(tmp_path / "format-2.safetensors")
    assert loaded.config.trunk == "resnet50" and loaded.experiment.model.trunk == "resnet50"
    assert loaded.config.compatibility == "additive" == loaded.experiment.model.compatibility
    assert all(torch.equal(value, model.state_dict()[name]) for name, value in loaded.model.state_dict().items())


def test_round_trip_gives_identical_outputs_from_the_file_alone(saved):
    model, path = saved
    loaded = load_checkpoint(path)
    loaded.model.eval()
    with torch.no_grad():
        for task in (None, "synthetic/colour"):
            expected, actual = model(IMAGES, task), loaded.model(IMAGES, task)
            assert torch.equal(expected.logits, actual.logits)
            for name in expected.attention:
                assert torch.equal(expected.attention[name], actual.attention[name])
    assert loaded.config == model.config
    assert loaded.step == 7
    assert loaded.metadata["top1"] == 0.5
    assert loaded.experiment.name == "quickstart"
    assert torch.equal(loaded.state["outer/exp_avg_sq"], torch.arange(4.0))
    assert loaded.model.head_classes == {"default": 3, "synthetic/colour": 4}


def test_write_is_atomic_and_leaves_no_temporary_files(saved):
    _, path = saved
    assert sorted(os.listdir(path.parent)) == ["step-000007.safetensors"]


def test_run_folder_resolves_to_newest_step(saved, tmp_path):
    model, path = saved
    save_checkpoint(path.parent / checkpoint_name(20), model, step=20)
    save_checkpoint(path.parent / checkpoint_name(3), model, step=3)
    assert resolve_checkpoint(path.parent).name == "step-000020.safetensors"
    assert load_checkpoint(path.parent).step == 20


def test_truncated_checkpoint_is_one_line(saved, tmp_path):
    _, path = saved
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.safetensors is not a readable safetensors checkpoint"):
        load_checkpoint(truncated)


def test_foreign_safetensors_file_says_what_it_is(tmp_path):
    foreign = tmp_path / "resnet.safetensors"
    save_file({"conv1.weight": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a universal-attention checkpoint"):
        load_checkpoint(foreign)


def test_not_a_safetensors_file(tmp_path):
    text = tmp_path / "notes.safetensors"
    text.write_text("these are notes")
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        load_checkpoint(text)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="missing.safetensors not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("config", [ModelConfig(), {"name": "x"}, "quickstart"])
def test_saving_with_a_wrong_config_type_is_refused_and_writes_nothing(tmp_path, config):
    model = AttentionResNet50(SMALL)
    with pytest.raises(CheckpointError, match=f"takes the run's ExperimentConfig or None, got {type(config).__name__}"):
        save_checkpoint(tmp_path / "c.safetensors", model, config)
    assert list(tmp_path.iterdir()) == []


def test_saving_something_that_is_not_the_model_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="needs an AttentionResNet50, got Linear"):
        save_checkpoint(tmp_path / "c.safetensors", torch.nn.Linear(2, 2))
    assert list(tmp_path.iterdir()) == []


def test_class_names_travel_with_the_model_and_files_without_them_still_load(tmp_path):
    from click.testing import CliRunner

    from universal_attention.cli import main

    from faults import rewrite_checkpoint

    model = AttentionResNet50(SMALL)
    model.add_head("pets", 3, ["abyssinian", "beagle", "two\nlines"])
    model.add_head("plain", 2)
    path = save_checkpoint(tmp_path / "named.safetensors", model)
    assert load_checkpoint(path).model.class_names == {"pets": ["abyssinian", "beagle", "two\nlines"]}
    shown = CliRunner().invoke(main, ["info", str(path)])
    assert shown.exit_code == 0 and "abyssinian, beagle" in shown.output
    as_json = json.loads(CliRunner().invoke(main, ["info", str(path), "--json"]).output)
    assert as_json["class_names"]["pets"][1] == "beagle"
    older = rewrite_checkpoint(path, tmp_path / "older.safetensors", drop=("class_names",))
    assert load_checkpoint(older).model.class_names == {}
    for damaged in ({"pets": ["one"]}, {"nope": ["a"]}, ["pets"]):
        crafted = rewrite_checkpoint(path, tmp_path / "damaged.safetensors", class_names=damaged)
        with pytest.raises(CheckpointError, match="class_names"):
            load_checkpoint(crafted)
    with pytest.raises(Exception, match="3 classes but 2 class names"):
        model.add_head("pets", 3, ["a", "b"])
