import json

import numpy
import pytest
import skimage.data
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors import safe_open

from universal_attention import AttentionResNet50, load_config, save_checkpoint
from universal_attention.cli import main
from universal_attention.data.images import read_image, resize_and_crop

from fake_datasets import write_odd_images
from small import SMALL, SMALL_OVERRIDES

TINY = SMALL


def run(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny checkpoint with one synthetic head, saved with a quickstart-like run config."""
    torch.manual_seed(0)
    model = AttentionResNet50(TINY)
    model.add_head("synthetic/colour", 4)
    config = load_config(
        preset="quickstart",
        overrides=[
            "data.image_size=32",
            *SMALL_OVERRIDES,
            "data.target=synthetic/colour",
        ],
    )
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "step-000005.safetensors", model, config, step=5)


def test_visualize_without_a_checkpoint_uses_a_random_model_on_odd_images(tmp_path):
    write_odd_images(tmp_path / "odd")
    out = tmp_path / "out.png"
    result = run("visualize", tmp_path / "odd", "-o", out, "--image-size", 32)
    assert result.exit_code == 0, result.output
    assert "random init (untrained)" in result.output and "untrained" in result.output
    assert "skipped text.jpg: not an image" in result.output
    with Image.open(out) as picture:
        assert picture.mode == "RGB" and picture.width == 5 * 160  # image + 4 taps


def test_visualize_shows_predictions_and_saves_the_raw_maps(checkpoint, tmp_path):
    image = tmp_path / "gray16.png"
    Image.fromarray((torch.arange(40 * 30).reshape(30, 40) * 50).to(torch.int32).numpy().astype("uint16")).save(image)
    result = run(
        "visualize",
        image,
        "--ckpt",
        checkpoint,
        "-o",
        tmp_path / "v.png",
        "--layers",
        "layer2.0,combined",
        "--save-maps",
        tmp_path / "maps.safetensors",
    )
    assert result.exit_code == 0, result.output
    assert "step-000005.safetensors (step 5)" in result.output
    assert "gray16.png: " in result.output and any(name in result.output for name in ("red", "yellow", "green", "blue"))
    with safe_open(str(tmp_path / "maps.safetensors"), framework="pt") as handle:
        assert handle.get_tensor("maps/combined").shape == (1, 1, 160, 160)  # a 40 x 30 image, shown 160 px wide
        assert handle.get_tensor("native/layer2.0").shape == (1, 1, 4, 4)  # the model saw the checkpoint's 32 px


@pytest.mark.parametrize("size_args, side", [([], 300), (["--size", "256"], 256)])
def test_visualize_draws_a_photo_at_its_own_resolution(tmp_path, size_args, side):
    photo = tmp_path / "chelsea.jpg"
    Image.fromarray(skimage.data.chelsea()).save(photo, quality=95)  # a 451 x 300 cat
    out = tmp_path / "cat.png"
    result = run(
        "visualize", photo, "--image-size", 32, "-o", out, "--save-maps", tmp_path / "maps.safetensors", *size_args
    )
    assert result.exit_code == 0, result.output
    with safe_open(str(tmp_path / "maps.safetensors"), framework="pt") as handle:
        shown = handle.get_tensor("images")[0]
        assert handle.get_tensor("maps/layer2.2").shape == (1, 1, side, side)
        assert handle.get_tensor("native/layer2.2").shape == (1, 1, 4, 4)  # the model still sees 32 x 32
    expected = resize_and_crop(read_image(photo)[0], side)
    assert shown.shape == (3, side, side)
    assert (shown.float() - expected.float()).abs().mean() < 1.0  # the photo's pixels, not a blown-up thumbnail
    with Image.open(out) as picture:
        assert picture.width == 5 * side  # the photo and 4 taps, each panel `side` pixels wide
        panel = torch.from_numpy(numpy.array(picture.crop((0, 32, side, 32 + side)))).permute(2, 0, 1)
    sharpness = (panel[:, :, 1:].float() - panel[:, :, :-1].float()).abs().mean()
    blurry = resize_and_crop(resize_and_crop(expected, 32), side)
    assert sharpness > 2 * (blurry[:, :, 1:].float() - blurry[:, :, :-1].float()).abs().mean()


@pytest.mark.parametrize("problem", ["missing", "unreadable", "layer"])
def test_visualize_bad_input_is_one_line_and_exit_2(problem, tmp_path):
    paths = write_odd_images(tmp_path)
    args = {
        "missing": [tmp_path / "nope.jpg"],
        "unreadable": [paths["text"]],
        "layer": [paths["grayscale"], "--layers", "layer9"],
    }[problem]
    result = run("visualize", *args, "--image-size", 32, "-o", tmp_path / "x.png")
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("error: ")


def test_evaluate_attention_writes_report_and_examples(checkpoint, tmp_path):
    result = run("evaluate-attention", "--ckpt", checkpoint, "--limit", 3, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "attention on synthetic/colour objects" in result.output and "random init" in result.output
    report = json.loads((tmp_path / "attention_report.json").read_text())
    assert report["dataset"] == "synthetic/colour" and report["images"] == 3
    assert list(report["starts"]) == ["model", "random_init", "uniform"]
    with Image.open(tmp_path / "attention_examples.png") as picture:
        assert picture.width == 6 * 128


def test_evaluate_attention_on_ade20k_ranks_classes_and_splits_stuff(checkpoint, fake_data_root, tmp_path):
    result = run(
        "evaluate-attention",
        "--ckpt",
        checkpoint,
        "--dataset",
        "ade20k",
        "--split",
        "val",
        "--data-root",
        fake_data_root,
        "--no-baselines",
        "--out",
        tmp_path,
    )
    assert result.exit_code == 0, result.output
    assert "object vs stuff" in result.output
    assert "person" in result.output and "wall" in result.output


@pytest.mark.parametrize("args", [["--dataset", "beans"], []])
def test_evaluate_attention_needs_a_dataset_with_masks(args, fake_data_root, tmp_path):
    path = save_checkpoint(tmp_path / "plain.safetensors", AttentionResNet50(TINY))
    result = run("evaluate-attention", "--ckpt", path, *args, "--data-root", fake_data_root, "--out", tmp_path)
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1


def test_visualize_prints_the_class_names_a_checkpoint_carries(tmp_path):
    model = AttentionResNet50(TINY)
    model.add_head("pets", 3, ["abyssinian", "beagle", "chihuahua"])
    path = save_checkpoint(tmp_path / "pets.safetensors", model)
    image = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (120, 80, 40)).save(image)
    result = run("visualize", image, "--ckpt", path, "--image-size", 32, "-o", tmp_path / "v.png")
    assert result.exit_code == 0, result.output
    line = next(text for text in result.output.splitlines() if "photo.png: " in text)
    assert sum(name in line for name in ("abyssinian", "beagle", "chihuahua")) == 3 and "class 0" not in line
