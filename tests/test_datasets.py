"""Every dataset reads its official layout (fake copies from fake_datasets.py) through get_dataset."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

from universal_attention.data.ade20k import ade20k_classes
from universal_attention.data.preview import OUTLINE, sample_grid
from universal_attention.data.registry import (
    dataset_names,
    describe_datasets,
    get_dataset,
    masks_available,
    resolve_data_root,
    splits,
)
from universal_attention.data.torchvision_sets import caltech101_split
from universal_attention.errors import DatasetError

from fake_datasets import BOX, HEIGHT, WIDTH, make_cub200

REAL = ("caltech101", "flowers102", "oxford_pets", "imagenette", "cub200", "stanford_dogs", "beans", "ade20k")
# name -> (images per split, number of classes) of the fake copies
EXPECTED = {
    "caltech101": ({"train": 90, "test": 15}, 3),
    "flowers102": ({"train": 6, "val": 6, "test": 6}, 102),
    "oxford_pets": ({"train": 9, "test": 6}, 3),
    "imagenette": ({"train": 9, "val": 6}, 3),
    "cub200": ({"train": 6, "test": 6}, 3),
    "stanford_dogs": ({"train": 9, "test": 6}, 3),
    "beans": ({"train": 9, "val": 9, "test": 9}, 3),
    "ade20k": ({"train": 3, "val": 2}, 2),
}
LEFT, TOP, RIGHT, BOTTOM = BOX


@pytest.mark.parametrize("name", REAL)
def test_each_dataset_has_its_official_splits_and_classes(fake_data_root, name):
    lengths, classes = EXPECTED[name]
    assert splits(name) == list(lengths)
    for split, length in lengths.items():
        dataset = get_dataset(name, split, root=fake_data_root)
        assert len(dataset) == length == len(dataset.labels)
        assert len(dataset.classes) == classes


@pytest.mark.parametrize("name", REAL)
def test_items_are_uint8_rgb_at_original_size_with_the_listed_label(fake_data_root, name):
    dataset = get_dataset(name, "train", root=fake_data_root)
    image, label = dataset[len(dataset) - 1]
    assert image.dtype == torch.uint8 and image.shape == (3, HEIGHT, WIDTH)
    assert isinstance(label, int) and label == dataset.labels[-1]


@pytest.mark.parametrize("name", REAL)
def test_image_size_resizes_and_centre_crops_to_a_square(fake_data_root, name):
    image, _ = get_dataset(name, "train", root=fake_data_root, image_size=24)[0]
    assert image.shape == (3, 24, 24)


def test_class_names_follow_each_official_index(fake_data_root):
    def classes(name):
        return get_dataset(name, root=fake_data_root).classes

    assert classes("oxford_pets") == ["Abyssinian", "Bengal", "American Bulldog"]
    assert classes("imagenette") == ["tench", "English springer", "chain saw"]
    assert classes("cub200") == ["Black footed Albatross", "Laysan Albatross", "Sooty Albatross"]
    assert classes("stanford_dogs") == ["Chihuahua", "Japanese spaniel", "Maltese dog"]
    assert classes("flowers102")[:2] == ["pink primrose", "hard-leaved pocket orchid"]
    assert classes("ade20k") == ["bathroom", "kitchen"]


def test_labels_match_the_folder_each_image_lives_in(fake_data_root):
    for name in ("caltech101", "stanford_dogs", "cub200", "imagenette", "beans"):
        dataset = get_dataset(name, "train", root=fake_data_root)
        folders = [path.parent.name for path in dataset.files]
        assert len({(folder, label) for folder, label in zip(folders, dataset.labels)}) == len(set(folders)) == 3


def test_split_aliases_are_accepted(fake_data_root):
    assert get_dataset("beans", "validation", root=fake_data_root).split == "val"
    assert get_dataset("oxford_pets", "trainval", root=fake_data_root).split == "train"
    assert get_dataset("imagenette", "test", root=fake_data_root).split == "val"
    assert get_dataset("ade20k", "training", root=fake_data_root).split == "train"


def test_unknown_split_is_one_line_listing_valid_splits(fake_data_root):
    with pytest.raises(DatasetError, match=r"^caltech101 has no split 'val'; valid splits: train, test$"):
        get_dataset("caltech101", "val", root=fake_data_root)


def test_unknown_name_lists_every_valid_name():
    with pytest.raises(DatasetError) as error:
        get_dataset("cifar10")
    message = str(error.value)
    assert "\n" not in message
    assert all(name in message for name in (*REAL, "synthetic/shape", "folder:<path>"))


def test_dataset_names_cover_real_and_synthetic_datasets():
    names = dataset_names()
    assert set(REAL) <= set(names)
    assert "synthetic/colour" in names and "synthetic/orientation" in names


@pytest.mark.parametrize("name", REAL)
def test_missing_dataset_is_one_line_naming_the_expected_folder(tmp_path, name):
    with pytest.raises(DatasetError) as error:
        get_dataset(name, root=tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{name} not found: expected {tmp_path}/")
    assert "unpack" in message and "--data-root" in message and "UATTN_DATA_ROOT" in message


def test_missing_dataset_message_names_the_exact_path_expected(tmp_path):
    with pytest.raises(DatasetError) as error:
        get_dataset("caltech101", root=tmp_path)
    assert f"expected {tmp_path}/caltech101/101_ObjectCategories/<class>/image_NNNN.jpg;" in str(error.value)


def test_a_partly_unpacked_dataset_names_the_missing_file(tmp_path):
    (tmp_path / "flowers-102" / "jpg").mkdir(parents=True)
    with pytest.raises(DatasetError, match="missing .*imagelabels.mat"):
        get_dataset("flowers102", root=tmp_path)


def test_data_root_comes_from_argument_then_environment_then_cwd(tmp_path, monkeypatch):
    monkeypatch.setenv("UATTN_DATA_ROOT", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_root() == tmp_path / "env"
    monkeypatch.delenv("UATTN_DATA_ROOT")
    monkeypatch.chdir(tmp_path)
    assert resolve_data_root() == tmp_path / "data"


def test_caltech101_takes_30_seeded_training_images_per_class(fake_data_root):
    train = get_dataset("caltech101", "train", root=fake_data_root)
    test = get_dataset("caltech101", "test", root=fake_data_root)
    assert sorted(train.labels) == [c for c in range(3) for _ in range(30)]
    assert sorted(test.labels) == [c for c in range(3) for _ in range(5)]
    assert not set(train.files) & set(test.files)
    assert get_dataset("caltech101", "train", root=fake_data_root).files == train.files


def test_caltech101_drops_background_google(fake_data_root):
    dataset = get_dataset("caltech101", "test", root=fake_data_root)
    assert "BACKGROUND_Google" not in dataset.classes
    assert all("BACKGROUND_Google" not in str(path) for path in dataset.files)


def test_caltech101_split_is_reproducible_disjoint_and_per_class():
    files = [f"c{c}/image_{n:04d}.jpg" for c in range(2) for n in range(40)]
    labels = [c for c in range(2) for _ in range(40)]
    train, test = caltech101_split(files, labels)
    assert (train, test) == caltech101_split(files, labels)
    assert sorted(train + test) == list(range(80)) and not set(train) & set(test)
    assert [labels[i] for i in train].count(0) == 30 == [labels[i] for i in train].count(1)
    assert caltech101_split(files, labels, seed=1)[0] != train


def test_caltech101_split_of_a_class_does_not_depend_on_other_classes():
    files = [f"a/image_{n:04d}.jpg" for n in range(40)]
    alone, _ = caltech101_split(files, [0] * 40)
    together, _ = caltech101_split([*files, "b/image_0001.jpg"], [0] * 40 + [1])
    assert together[:30] == alone


def test_pet_masks_count_the_border_as_pet(fake_data_root):
    image, _, mask = get_dataset("oxford_pets", root=fake_data_root, with_masks=True)[0]
    assert mask.dtype == torch.uint8 and mask.shape == image.shape[1:]
    assert int(mask.sum()) == (RIGHT - LEFT + 2) * (BOTTOM - TOP + 2)  # box plus its 1-px border ring
    assert mask[0, 0] == 0 and mask[TOP, LEFT] == 1 and mask[TOP - 1, LEFT - 1] == 1


def test_cub_masks_threshold_the_soft_segmentation(fake_data_root):
    _, _, mask = get_dataset("cub200", "test", root=fake_data_root, with_masks=True)[0]
    assert mask.unique().tolist() == [0, 1]
    assert int(mask.sum()) == (RIGHT - LEFT) * (BOTTOM - TOP)  # the ring of 100 is below the threshold


def test_ade20k_mask_is_the_class_map(fake_data_root):
    _, _, mask = get_dataset("ade20k", "val", root=fake_data_root, with_masks=True)[0]
    assert mask.unique().tolist() == [1, 13]
    assert ade20k_classes()[13 - 1].name == "person" and ade20k_classes()[1 - 1].name == "wall"


def test_masks_are_resized_and_cropped_with_the_image(fake_data_root):
    image, _, mask = get_dataset("oxford_pets", root=fake_data_root, image_size=16, with_masks=True)[0]
    assert image.shape == (3, 16, 16) and mask.shape == (16, 16)
    assert set(mask.unique().tolist()) == {0, 1}


def test_synthetic_tasks_come_through_the_registry_with_masks():
    image, label, mask = get_dataset("synthetic/colour", "test", with_masks=True)[0]
    assert image.shape == (3, 64, 64) and mask.shape == (64, 64) and isinstance(label, int)


def test_masks_on_a_dataset_without_them_name_the_datasets_that_have_them(fake_data_root):
    with pytest.raises(DatasetError, match=r"^beans has no masks; datasets with masks: oxford_pets, cub200, ade20k"):
        get_dataset("beans", root=fake_data_root, with_masks=True)


def test_cub_without_segmentations_asks_for_them(tmp_path):
    make_cub200(tmp_path, per_class=2, segmentations=False)
    assert len(get_dataset("cub200", root=tmp_path)) == 3
    with pytest.raises(DatasetError, match="cub200 masks not found: expected .*segmentations/<class>/<image>.png"):
        get_dataset("cub200", root=tmp_path, with_masks=True)
    assert not masks_available("cub200", tmp_path)
    assert next(info for info in describe_datasets(tmp_path) if info.name == "cub200").masks.endswith("(not found)")


def test_masks_available_needs_masks_on_disk(fake_data_root):
    assert masks_available("oxford_pets", fake_data_root) and masks_available("cub200", fake_data_root)
    assert masks_available("synthetic/size")
    assert not masks_available("beans", fake_data_root)


def test_ade20k_classes_have_stuff_flags():
    classes = ade20k_classes()
    assert len(classes) == 150
    stuff = {c.name for c in classes if c.is_stuff}
    assert len(stuff) == 35
    assert {"wall", "floor", "ceiling", "sky", "road", "grass", "sea"} <= stuff
    assert not {"person", "car", "chair", "bed"} & stuff


def test_folder_dataset_uses_split_subfolders_when_present(fake_data_root):
    beans = fake_data_root / "beans"
    assert splits(f"folder:{beans}") == ["train", "val", "test"]
    assert len(get_dataset(f"folder:{beans}", "validation")) == 9
    whole = get_dataset(f"folder:{beans / 'train'}")
    assert whole.classes == ["angular_leaf_spot", "bean_rust", "healthy"] and len(whole) == 9
    with pytest.raises(DatasetError, match="only split 'train'"):
        get_dataset(f"folder:{beans / 'train'}", "test")


def test_odd_files_are_converted_or_skipped_and_counted(odd_folder):
    dataset = get_dataset(f"folder:{odd_folder}", image_size=16)
    with pytest.warns(UserWarning, match="skipped unreadable"):
        items = [dataset[i] for i in range(len(dataset))]
    assert len(items) == len(dataset) == 11
    assert all(image.shape == (3, 16, 16) for image, _ in items)
    assert dataset.skipped == 2
    odd = dataset.classes.index("odd")
    assert all(label == odd for (_, label), listed in zip(items, dataset.labels) if listed == odd)


def test_a_skipped_file_is_counted_once_and_warned_about_once(odd_folder):
    dataset = get_dataset(f"folder:{odd_folder}")
    text = next(i for i, path in enumerate(dataset.files) if path.name == "text.jpg")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            dataset[text]
    assert dataset.skipped == 1 and len(caught) == 1


def test_verify_lists_converted_and_unreadable_files(odd_folder):
    report = get_dataset(f"folder:{odd_folder}").verify()
    assert report.total == 11
    assert sorted(issue.path.name for issue in report.unreadable) == ["header_only.jpg", "text.jpg"]
    assert len(report.converted) == 7


def test_a_dataset_with_no_readable_file_raises_one_line(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_text("not an image")
    dataset = get_dataset(f"folder:{tmp_path}")
    with pytest.warns(UserWarning), pytest.raises(DatasetError, match="none of its 1 files is readable"):
        dataset[0]


def test_fingerprint_changes_only_when_files_change(tmp_path):
    make_cub200(tmp_path, per_class=2, segmentations=False)
    first = get_dataset("cub200", root=tmp_path).fingerprint()
    assert get_dataset("cub200", root=tmp_path).fingerprint() == first
    index = tmp_path / "CUB_200_2011" / "classes.txt"
    os.utime(index, ns=(1, 1))
    assert get_dataset("cub200", root=tmp_path).fingerprint() != first


def test_describe_datasets_reports_found_and_missing(fake_data_root, tmp_path):
    found = {info.name: info for info in describe_datasets(fake_data_root)}
    assert all(found[name].found for name in REAL)
    assert found["caltech101"].images == {"train": 90, "test": 15} and found["caltech101"].classes == 3
    assert found["synthetic/shape"].found
    missing = {info.name: info for info in describe_datasets(tmp_path)}
    assert not any(missing[name].found for name in REAL)
    assert missing["cub200"].problem.startswith("cub200 not found")
    assert missing["cub200"].expected.startswith(f"{tmp_path}/CUB_200_2011/{{images/<class>/*.jpg, images.txt")


def test_sample_grid_captions_every_tile_and_outlines_masks(fake_data_root):
    dataset = get_dataset("cub200", root=fake_data_root, with_masks=True)
    sheet = sample_grid(dataset, 4, tile=32)
    assert sheet.size == (64, 2 * (32 + 14))
    assert OUTLINE in {colour for _, colour in sheet.getcolors(10_000)}
    pixels = np.asarray(sheet)
    for caption_top in (32, 2 * 32 + 14):
        for left in (0, 32):
            assert (pixels[caption_top : caption_top + 14, left : left + 32] < 100).any()
