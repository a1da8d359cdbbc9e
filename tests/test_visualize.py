import pytest
import torch
from PIL import Image
from safetensors import safe_open

from universal_attention import AttentionResNet50, ModelError
from universal_attention.analysis.files import (
    head_class_names,
    load_image_files,
    pick_head,
    top_predictions,
    visualize_attention,
)
from universal_attention.analysis.maps import COMBINED, attention_maps, combined_map
from universal_attention.analysis.pictures import attention_grid, overlay
from universal_attention.errors import ImageError
from universal_attention.runs.loading import random_model

from fake_datasets import write_odd_images
from small import SMALL

TINY = SMALL


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return AttentionResNet50(TINY, num_classes=3)


@pytest.fixture(scope="module")
def images():
    return torch.randint(0, 256, (2, 3, 48, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_maps_have_the_image_size_and_softmax_maps_sum_to_one(model, images):
    maps = attention_maps(model, images)
    assert list(maps) == list(TINY.tap_layers())
    for amap in maps.values():
        assert amap.shape == (2, 1, 48, 40)
        torch.testing.assert_close(amap.sum(dim=(2, 3)), torch.ones(2, 1))


def test_sigmoid_maps_keep_their_values_in_zero_to_one():
    model = AttentionResNet50(TINY.updated(normalisation="sigmoid"))
    for amap in attention_maps(model, torch.zeros(1, 3, 32, 32, dtype=torch.uint8)).values():
        assert float(amap.min()) >= 0 and float(amap.max()) <= 1


def test_layers_pick_and_order_the_maps_and_combined_sums_to_one(model, images):
    maps = attention_maps(model, images, layers=[COMBINED, "layer2.0"])
    assert list(maps) == [COMBINED, "layer2.0"]
    torch.testing.assert_close(maps[COMBINED].sum(dim=(2, 3)), torch.ones(2, 1))


def test_an_unknown_layer_names_the_model_s_taps(model, images):
    with pytest.raises(ModelError, match="unknown layer.*layer9.*choose from layer1.0, layer2.0"):
        attention_maps(model, images, layers=["layer9"])


def test_attention_maps_leaves_the_model_in_training_mode(model, images):
    model.train()
    attention_maps(model, images)
    assert model.training


def test_combined_map_weighs_every_map_equally():
    sharp = torch.zeros(1, 1, 2, 2)
    sharp[0, 0, 0, 0] = 5.0
    flat = torch.full((1, 1, 2, 2), 0.25)
    expected = torch.tensor([[[[0.625, 0.125], [0.125, 0.125]]]])
    torch.testing.assert_close(combined_map({"a": sharp, "b": flat}), expected)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
def test_overlay_of_any_pil_mode_is_rgb_of_the_image_size(mode):
    picture = Image.new(mode, (30, 20))
    result = overlay(picture, torch.rand(1, 5, 7))
    assert result.mode == "RGB" and result.size == (30, 20)


def test_overlay_alpha_zero_is_the_image_and_one_is_the_colormap():
    image = torch.full((3, 4, 4), 100, dtype=torch.uint8)
    amap = torch.ones(4, 4)
    assert overlay(image, amap, alpha=0.0).getpixel((0, 0)) == (100, 100, 100)
    assert overlay(image, amap, alpha=1.0).getpixel((0, 0)) == (252, 255, 164)  # the colormap's top


def test_grid_has_a_column_per_map_and_captions_add_lines(images):
    maps = {"a": torch.rand(2, 1, 48, 40), "b": torch.rand(2, 1, 48, 40)}
    plain = attention_grid(images, maps)
    assert plain.width == 3 * 40
    captioned = attention_grid(images, maps, captions=["one", "two\nlines"], title="t", cell_size=80)
    assert captioned.width == 3 * 80
    assert captioned.height > plain.height + 2 * 48


def test_image_files_of_odd_modes_load_as_square_rgb(tmp_path):
    paths = write_odd_images(tmp_path)
    kinds = ["grayscale", "rgba", "sixteen_bit", "cmyk", "palette", "tiny", "truncated"]
    loaded = load_image_files([paths[kind] for kind in kinds], 32)
    assert loaded.images.shape == (len(kinds), 3, 32, 32) and loaded.images.dtype == torch.uint8
    assert loaded.display.shape == (len(kinds), 3, 160, 160)  # small files are shown at least 160 px wide
    assert "converted from RGBA" in loaded.notes[1]


def test_a_folder_takes_its_readable_images_and_lists_the_rest(tmp_path):
    write_odd_images(tmp_path)
    loaded = load_image_files([tmp_path], 32, max_images=5)
    assert len(loaded.names) == 5
    assert sorted(loaded.names) == loaded.names
    assert len(loaded.skipped) == 4  # two unreadable files, two over max_images


def test_missing_and_unreadable_files_are_image_errors(tmp_path):
    paths = write_odd_images(tmp_path)
    with pytest.raises(ImageError, match="not found"):
        load_image_files([tmp_path / "nope.jpg"], 32)
    with pytest.raises(ImageError, match="cannot be read as an image"):
        load_image_files([paths["text"]], 32)


def test_head_choice_prefers_the_task_then_default_then_the_only_head():
    model = random_model(TINY)
    assert pick_head(model, None) is None
    model.add_head("synthetic/colour", 4)
    assert pick_head(model, None) == "synthetic/colour"
    model.add_head("other", 2)
    assert pick_head(model, None) is None
    assert pick_head(model, "other") == "other"
    model.add_head("default", 2)
    assert pick_head(model, None) == "default"
    with pytest.raises(ModelError, match="no head for task 'missing'"):
        pick_head(model, "missing")


def test_synthetic_heads_have_class_names_and_others_indices():
    assert head_class_names("synthetic/colour", 4) == ["red", "yellow", "green", "blue"]
    assert head_class_names("default", 2) == ["class 0", "class 1"]


def test_top_predictions_are_sorted_probabilities():
    top = top_predictions(torch.tensor([[0.0, 2.0, 1.0]]), ["a", "b", "c"], k=2)
    assert [name for name, _ in top[0]] == ["b", "a"] or [name for name, _ in top[0]] == ["b", "c"]
    assert top[0][0][1] > top[0][1][1] > 0


def test_visualize_attention_shows_predictions_and_saves_maps(model, images, tmp_path):
    result = visualize_attention(model, images, layers=["layer2.0", COMBINED])
    assert result.head == "default" and len(result.predictions) == 2
    assert result.picture.width == 3 * 160  # small images are shown at least 160 px wide
    path = result.save_maps(tmp_path / "maps.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        assert set(handle.keys()) == {
            "images",
            "maps/layer2.0",
            "maps/combined",
            *(f"native/{t}" for t in TINY.tap_layers()),
        }
        assert handle.get_tensor("maps/layer2.0").shape == (2, 1, 48, 40)


def test_random_models_are_the_same_every_time_and_leave_the_global_seed_alone():
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    first = random_model(TINY)
    assert torch.rand(1) == before
    torch.testing.assert_close(first.query.weight, random_model(TINY).query.weight)


def test_map_figures_are_relative_to_uniform():
    from universal_attention.analysis.pictures import map_figures

    assert map_figures(torch.ones(4, 4)) == pytest.approx((1.0, 1.0))
    one_hot = torch.zeros(4, 4)
    one_hot[1, 2] = 3.0
    assert map_figures(one_hot) == pytest.approx((16.0, 0.0))
    half = torch.ones(4, 4)
    half[:2] = 3.0  # three quarters of the mass on half the locations
    peak, entropy = map_figures(half)
    assert peak == pytest.approx(1.5) and 0.9 < entropy < 1.0


def test_a_shared_scale_shows_a_near_uniform_map_dim_and_adds_a_colour_bar():
    from universal_attention.analysis.pictures import colorize

    image = torch.zeros(3, 16, 16, dtype=torch.uint8)
    nearly_uniform = torch.ones(1, 16, 16)
    nearly_uniform[0, 0, 0] = 1.1
    stretched = overlay(image, nearly_uniform, alpha=1.0)
    shared = overlay(image, nearly_uniform, alpha=1.0, peak=4.0)
    # stretched to its own peak the flat part sits near the top of the colour range; on a shared scale up to
    # 4 x uniform it sits at a quarter
    assert stretched.getpixel((8, 8)) == tuple(colorize(torch.tensor(1 / 1.1).numpy()).tolist())
    assert shared.getpixel((8, 8)) == pytest.approx(tuple(colorize(torch.tensor(0.25).numpy()).tolist()), abs=2)
    images = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    maps = {"a": torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))}
    per_map = attention_grid(images, maps, annotate=True)
    with_bar = attention_grid(images, maps, annotate=True, scale="shared")
    assert with_bar.height > per_map.height and with_bar.width == per_map.width
    with pytest.raises(ValueError, match="per-map, shared"):
        attention_grid(images, maps, scale="log")


def test_visualize_annotates_every_panel_and_takes_the_shared_scale(model, tmp_path):
    from click.testing import CliRunner

    from universal_attention.analysis import pictures
    from universal_attention.cli import attention_cmds, main

    assert attention_cmds.SCALES == pictures.SCALES
    images = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    plain = visualize_attention(model, images, device="cpu").picture
    shared = visualize_attention(model, images, device="cpu", scale="shared").picture
    assert shared.height > plain.height
    path = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (120, 80, 40)).save(path)
    result = CliRunner().invoke(
        main, ["visualize", str(path), "--image-size", "32", "--scale", "shared", "-o", str(tmp_path / "v.png")]
    )
    assert result.exit_code == 0, result.output
