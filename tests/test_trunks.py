"""The trunk registry: one contract over every trunk, built on the meta device (no memory, no arithmetic), and the
small trunks end to end."""

import json
from pathlib import Path

import numpy
import pytest
import torch
import torchvision
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file

from universal_attention import AttentionResNet50, ModelConfig, load_checkpoint, load_config, save_checkpoint
from universal_attention.cli import main
from universal_attention.config import TRUNK_STAGES, default_taps, trunk_tap_names
from universal_attention.errors import ModelError
from universal_attention.models.trunks import block_channels, build_trunk, imagenet_url, list_trunks

from small import SMALL

IMAGES = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_the_registry_holds_the_resnet_family_and_a_small_trunk():
    assert list_trunks() == list(TRUNK_STAGES)
    assert {"resnet10", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"} <= set(list_trunks())
    assert {"wide_resnet50_2", "resnext50_32x4d"} <= set(list_trunks())


@pytest.mark.parametrize("name", list(TRUNK_STAGES))
def test_every_trunk_has_the_stages_and_taps_the_config_knows(name):
    with torch.device("meta"):
        trunk = build_trunk(name)
    assert tuple(len(getattr(trunk, f"layer{stage}")) for stage in (1, 2, 3, 4)) == TRUNK_STAGES[name]
    modules = dict(trunk.named_modules())
    assert all(tap in modules for tap in trunk_tap_names(name))
    assert set(default_taps(name)) <= set(trunk_tap_names(name))
    assert isinstance(trunk.fc, torch.nn.Identity)
    assert block_channels(trunk.layer4) == 512 * type(trunk.layer4[-1]).expansion  # what torchvision's fc reads


@pytest.mark.parametrize("name", [name for name in TRUNK_STAGES if name != "resnet10"])
def test_every_torchvision_trunk_s_state_dict_is_torchvision_s_own(name):
    with torch.device("meta"):
        ours = build_trunk(name).state_dict()
        theirs = getattr(torchvision.models, name)().state_dict()
    assert {key: value.shape for key, value in ours.items()} == {
        key: value.shape for key, value in theirs.items() if not key.startswith("fc.")
    }


def test_the_seed_s_taps_are_the_default_on_resnet50_and_follow_the_pattern_elsewhere():
    assert ModelConfig().tap_layers() == ("layer1.1", "layer2.2", "layer3.4", "layer4")
    assert ModelConfig(trunk="resnet18").tap_layers() == ("layer1.0", "layer2.0", "layer3.0", "layer4")
    assert ModelConfig(trunk="resnet101").tap_layers() == ("layer1.1", "layer2.2", "layer3.21", "layer4")


@pytest.mark.parametrize("name", ["resnet10", "resnet18"])
def test_a_small_trunk_gives_maps_on_its_own_taps_with_its_own_channels(name):
    torch.manual_seed(0)
    model = AttentionResNet50(SMALL.updated(trunk=name), num_classes=3)
    out = model(IMAGES)
    assert out.logits.shape == (2, 3)
    assert list(out.attention) == list(default_taps(name))
    assert out.features.shape == (2, 64 + 128 + 256 + 512)  # BasicBlock widths: no bn3 to read
    assert {tap: amap.shape[-1] for tap, amap in out.attention.items()} == {
        "layer1.0": 8,
        "layer2.0": 4,
        "layer3.0": 2,
        "layer4": 1,
    }


def test_a_checkpoint_round_trips_its_trunk(tmp_path):
    model = AttentionResNet50(SMALL.updated(trunk="resnet18"), num_classes=2).eval()
    path = save_checkpoint(tmp_path / "c.safetensors", model, step=1)
    loaded = load_checkpoint(path)
    assert loaded.config.trunk == "resnet18" and loaded.model.taps == model.taps
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.eval()(IMAGES).logits, model(IMAGES).logits)


def test_weights_of_another_trunk_are_refused_with_what_does_not_fit(tmp_path):
    path = tmp_path / "resnet18.safetensors"
    with torch.device("meta"):
        shapes = {key: value.shape for key, value in torchvision.models.resnet18().state_dict().items()}
    save_file({key: torch.zeros(shape) for key, shape in shapes.items()}, str(path))
    with pytest.raises(ModelError, match=r"do not fit trunk resnet10: \d+ key\(s\) not in the trunk .*resnet10 state"):
        AttentionResNet50(SMALL.updated(backbone_weights=str(path)))
    model = AttentionResNet50(SMALL.updated(trunk="resnet18", backbone_weights=str(path)))
    assert float(model.backbone.conv1.weight.detach().abs().sum()) == 0.0


def test_complex_weights_are_refused_rather_than_cast(tmp_path):
    with torch.device("meta"):
        shapes = {key: value.shape for key, value in build_trunk("resnet10").state_dict().items()}
    tensors = {key: torch.zeros(shape) for key, shape in shapes.items()}
    tensors["conv1.weight"] = torch.zeros(shapes["conv1.weight"], dtype=torch.complex64)
    save_file(tensors, str(tmp_path / "complex.safetensors"))
    with pytest.raises(ModelError, match="1 key\\(s\\) not real numbers \\(e.g. conv1.weight\\)"):
        AttentionResNet50(SMALL.updated(backbone_weights=str(tmp_path / "complex.safetensors")))


def test_imagenet_weights_come_per_trunk_and_the_small_trunk_has_none():
    assert Path(imagenet_url("resnet50")).name == Path(torchvision.models.ResNet50_Weights.IMAGENET1K_V2.url).name
    assert Path(imagenet_url("resnet18")).name == Path(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url).name
    with pytest.raises(ModelError, match="trunk resnet10 has no ImageNet weights"):
        AttentionResNet50(SMALL.updated(backbone_weights="imagenet"))


def test_uattn_config_trunks_lists_names_parameters_and_taps():
    result = CliRunner().invoke(main, ["config", "trunks", "--json"])
    assert result.exit_code == 0, result.output
    listed = {entry["name"]: entry for entry in json.loads(result.output)}
    assert list(listed) == list(TRUNK_STAGES)
    assert listed["resnet50"]["parameters"] == 23_508_032  # torchvision's ResNet50 without fc
    assert listed["resnet18"]["taps"][:3] == ["layer1.0", "layer1.1", "layer1"]
    assert listed["resnet10"]["imagenet"] is False
    table = CliRunner().invoke(main, ["config", "trunks"])
    assert table.exit_code == 0 and "resnext50_32x4d" in table.output and "23.5 M" in table.output


def test_an_unknown_trunk_is_one_line_naming_the_trunks():
    result = CliRunner().invoke(main, ["config", "show", "--set", "model.trunk=vgg16"])
    assert result.exit_code == 2
    assert "model.trunk: unknown trunk; choose one of resnet10, resnet18" in result.output


RESNET18_RUN = [
    "model.trunk=resnet18",
    "model.taps=[layer1.1, layer2.1, layer3.1]",
    "model.alignment_size=8",
    "model.query_size=8",
    "data.image_size=32",
    "data.sources=[synthetic/colour]",
    "sampler.batch_size=4",
    "reptile.inner_steps=1",
    "train.max_steps=1",
    "train.eval_every=0",
    "train.image_log_every=0",
    "train.final_comparison=false",
    "transfer.steps=1",
    "transfer.draws=1",
    "transfer.batch_size=4",
    "transfer.shots_per_class=[1]",
    "transfer.max_test_images=4",
]


def test_set_model_trunk_resnet18_works_through_every_command(tmp_path):
    overrides = [argument for override in RESNET18_RUN for argument in ("--set", override)]
    run = tmp_path / "run"

    def uattn(*args: object) -> str:
        result = CliRunner().invoke(main, [str(arg) for arg in args])
        assert result.exit_code == 0, result.output
        return result.output

    uattn("meta-train", "--preset", "quickstart", "--out", run, *overrides)
    checkpoint = load_checkpoint(run)
    assert checkpoint.config.trunk == "resnet18" and checkpoint.model.taps == ["layer1.1", "layer2.1", "layer3.1"]
    uattn("transfer", "--ckpt", run, "--out", tmp_path / "transfer")
    report = json.loads((tmp_path / "transfer" / "results.json").read_text())
    assert report["results"]["run"]["cells"][0]["steps"] == 1
    image = tmp_path / "photo.png"
    Image.fromarray(numpy.full((40, 30, 3), 128, dtype=numpy.uint8)).save(image)
    uattn("visualize", image, "--ckpt", run, "-o", tmp_path / "v.png")
    assert "layer3.1" in uattn("evaluate-attention", "--ckpt", run, "--limit", 4, "--json", "--out", tmp_path / "a")
    space = tmp_path / "space.yaml"
    space.write_text("reptile.inner_lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}\n")
    search = tmp_path / "search"
    uattn(
        "tune",
        "--preset",
        "quickstart",
        "--space",
        space,
        "--max-evals",
        1,
        "--steps-per-trial",
        1,
        "--out",
        search,
        *overrides,
    )
    assert load_config(config_file=search / "trial-000" / "config.yaml").model.trunk == "resnet18"
