import json
import math

import pytest
import torch
from torch import nn

from universal_attention import AttentionResNet50, DatasetError, ModelError
from universal_attention.analysis.ade20k import class_masses
from universal_attention.analysis.evaluate import attention_in_mask, evaluate_attention, example_grid, mass_in_masks
from universal_attention.data.registry import get_dataset
from universal_attention.data.synthetic import SyntheticTaskDataset
from universal_attention.models.attention_resnet import AttentionOutput

from fake_datasets import make_cub200
from small import SMALL

TINY = SMALL
PERSON, WALL = 13, 1  # an "object" and a "stuff" SceneParse150 class


def quadrant(size: int = 8, corner: str = "top-left", value: int = 1) -> torch.Tensor:
    """A ``size x size`` uint8 map holding ``value`` in one quadrant."""
    grid = torch.zeros(size, size, dtype=torch.uint8)
    half = size // 2
    rows, cols = (slice(0, half), slice(0, half)) if corner == "top-left" else (slice(half, None), slice(half, None))
    grid[rows, cols] = value
    return grid


class LooksTopLeft(nn.Module):
    """A stand-in model whose one tap always puts all attention, evenly, on the top-left quadrant."""

    config = SMALL.updated(taps=("layer4",))

    def forward(self, images, task=None):
        amap = quadrant(images.shape[-1]).float()[None, None].expand(len(images), 1, -1, -1)
        return AttentionOutput(None, torch.zeros(len(images), 1), {"layer4": amap / amap.sum(dim=(2, 3), keepdim=True)})


class Items(torch.utils.data.Dataset):
    """``(image, label, mask)`` items with 8x8 black images and the given masks."""

    def __init__(self, masks, name="hand-made"):
        self.masks, self.name = masks, name

    def __len__(self):
        return len(self.masks)

    def __getitem__(self, index):
        return torch.zeros(3, 8, 8, dtype=torch.uint8), 0, self.masks[index]


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return AttentionResNet50(TINY)


def test_mass_and_pointing_game_on_a_hand_made_map():
    amap = torch.tensor([[[[0.5, 0.25], [0.25, 0.0]]]])
    share, hit = mass_in_masks(amap, torch.tensor([[[1, 0], [0, 0]]]))
    assert (float(share), float(hit)) == (0.5, 1.0)
    share, hit = mass_in_masks(amap, torch.tensor([[[0, 1], [1, 0]]]))
    assert (float(share), float(hit)) == (0.5, 0.0)


def test_maps_are_normalised_and_tied_maxima_split_the_hit():
    share, hit = mass_in_masks(torch.tensor([[[[2.0, 2.0], [0.0, 0.0]]]]), torch.tensor([[[1, 0], [0, 0]]]))
    assert (float(share), float(hit)) == (0.5, 0.5)


def test_uniform_attention_scores_the_mask_area():
    share, hit = mass_in_masks(torch.ones(1, 1, 4, 4), quadrant(4)[None])
    assert (float(share), float(hit)) == (0.25, 0.25)


def test_class_masses_split_attention_and_area_by_class():
    mass, area = class_masses(torch.tensor([[[[0.5, 0.5], [0.0, 0.0]]]]), torch.tensor([[[1, 2], [2, 0]]]), classes=3)
    assert mass.tolist() == [[0.0, 0.5, 0.5]]
    assert area.tolist() == [[0.25, 0.25, 0.5]]


def test_report_on_known_masks_gives_known_scores():
    empty = torch.zeros(8, 8, dtype=torch.uint8)
    dataset = Items([quadrant(corner="top-left"), quadrant(corner="bottom-right"), empty])
    report = evaluate_attention(LooksTopLeft(), dataset, baselines=("uniform",))
    assert (report.images, report.empty_masks, report.mask_area) == (3, 1, 0.25)
    model, uniform = report.starts["model"].layers, report.starts["uniform"].layers
    assert list(model) == ["layer4", "combined"]
    assert (model["layer4"].pointing_game, model["layer4"].mass_in_mask, model["layer4"].relative_to_area) == (
        0.5,
        0.5,
        2.0,
    )
    assert model["combined"] == model["layer4"]
    assert (uniform["layer4"].pointing_game, uniform["layer4"].relative_to_area) == (0.25, 1.0)


def test_class_maps_give_mass_per_class_and_the_stuff_object_split():
    person_on_wall = quadrant(value=PERSON) + (1 - quadrant()) * WALL
    report = evaluate_attention(LooksTopLeft(), Items([person_on_wall] * 2), baselines=("uniform",), class_maps=True)
    start = report.starts["model"]
    assert start.layers["layer4"].mass_in_mask == 1.0  # the object mask is the object classes' pixels
    regions = start.regions["layer4"]
    assert (regions["object"].mass, regions["object"].area, regions["object"].relative) == (1.0, 0.25, 4.0)
    assert (regions["stuff"].mass, regions["stuff"].area) == (0.0, 0.75)
    assert regions["unlabelled"].relative is None
    ranked = start.classes["layer4"]
    assert [(entry.name, entry.stuff, entry.images, entry.relative) for entry in ranked] == [
        ("person", False, 2, 4.0),
        ("wall", True, 2, 0.0),
    ]
    assert [entry.relative for entry in report.starts["uniform"].classes["layer4"]] == [1.0, 1.0]


def test_ade20k_layout_reports_classes_regions_and_baselines(fake_data_root, tiny_model):
    dataset = get_dataset("ade20k", "val", root=fake_data_root, image_size=32, with_masks=True)
    report = evaluate_attention(tiny_model, dataset, batch_size=1)
    assert report.class_maps and report.images == 2
    assert list(report.starts) == ["model", "random_init", "uniform"]
    for start in report.starts.values():
        assert {entry.name for entry in start.classes["combined"]} == {"person", "wall"}
        regions = start.regions["combined"]
        assert sum(region.mass for region in regions.values()) == pytest.approx(1.0)
        assert sum(region.area for region in regions.values()) == pytest.approx(1.0)
    assert report.starts["uniform"].regions["layer1.0"]["stuff"].relative == pytest.approx(1.0)
    assert json.loads(report.to_json())["starts"]["model"]["classes"]["combined"][0]["name"] in ("person", "wall")


def test_a_random_checkpoint_has_no_second_random_baseline():
    dataset = SyntheticTaskDataset("colour", "test", image_size=32, length=2, with_masks=True)
    report = evaluate_attention("random", dataset)
    assert list(report.starts) == ["model", "uniform"]
    assert report.starts["model"].label == "random init (untrained)"


def test_attention_in_mask_reports_every_tap(tiny_model):
    dataset = SyntheticTaskDataset("colour", "test", image_size=32, length=3, with_masks=True)
    mass = attention_in_mask(tiny_model, dataset, limit=2)
    assert list(mass.mass_in_mask) == list(TINY.tap_layers()) and mass.images == 2
    assert 0 <= mass.mean_mass() <= 1
    assert mass.to_dict()["mask_area"] == mass.mask_area


def test_example_grid_shows_every_tap_and_the_combined_map(tiny_model):
    dataset = SyntheticTaskDataset("colour", "test", image_size=32, length=3, with_masks=True)
    grid = example_grid(tiny_model, dataset, count=2)
    assert grid.width == (2 + len(TINY.tap_layers())) * 128


def test_a_dataset_without_masks_is_a_dataset_error(fake_data_root):
    with pytest.raises(DatasetError, match="yields no masks"):
        evaluate_attention(LooksTopLeft(), SyntheticTaskDataset("colour", "test", length=2), baselines=())
    with pytest.raises(DatasetError, match="beans has no masks"):
        evaluate_attention(LooksTopLeft(), "beans", data_root=fake_data_root, baselines=())


def test_masks_missing_on_disk_are_a_dataset_error(tmp_path):
    make_cub200(tmp_path, segmentations=False)
    with pytest.raises(DatasetError, match="cub200 masks not found"):
        evaluate_attention(LooksTopLeft(), "cub200", data_root=tmp_path, baselines=())


def test_a_model_without_attention_is_refused_but_attention_in_mask_stays_quiet():
    model = AttentionResNet50(TINY.updated(attention=False))
    dataset = SyntheticTaskDataset("colour", "test", image_size=32, length=2, with_masks=True)
    with pytest.raises(ModelError, match="no attention maps"):
        evaluate_attention(model, dataset)
    mass = attention_in_mask(model, dataset)
    assert mass.mass_in_mask == {} and math.isnan(mass.mean_mass())
