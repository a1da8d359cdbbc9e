"""The built-in synthetic tasks: dataset protocol, determinism, masks, and no label in the background."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from universal_attention.data.synthetic import (
    _NEW_HUES,
    _REACH,
    SOURCE_TASKS,
    TARGET_TASKS,
    TASK_CLASSES,
    TASKS,
    SyntheticTaskDataset,
    _background,
    _footprint,
    _sample_objects,
    marker_place,
)
from universal_attention.errors import DatasetError

CHANCE = 0.25  # every task has 4 balanced classes


def test_task_family_has_the_named_source_and_held_out_tasks():
    assert SOURCE_TASKS == ("colour", "texture", "size")
    assert TARGET_TASKS == ("orientation", "glyph", "hue")
    assert TASKS == SOURCE_TASKS + TARGET_TASKS + ("shape",)


@pytest.mark.parametrize("task", TASKS)
def test_every_image_holds_each_value_of_the_asked_property_once(task):
    for label in range(4):
        rng = np.random.default_rng(label)
        target, *decoys = _sample_objects(rng, 64, task, label)
        if task == "orientation":
            values = [round(math.degrees(obj.angle) / 45) % 4 for obj in (target, *decoys)]
        elif task == "hue":
            hues = [float(_rgb_to_hue(obj.colour)) for obj in (target, *decoys)]
            values = [min(range(4), key=lambda k: abs((hue - _NEW_HUES[k] + 180) % 360 - 180)) for hue in hues]
        else:
            values = [obj.props[task] for obj in (target, *decoys)]
        assert values[0] == label and sorted(values) == [0, 1, 2, 3]
        quarters = {(obj.cx >= 32, obj.cy >= 32) for obj in (target, *decoys)}
        assert len(quarters) == 4  # one object in each quarter of the image


def _rgb_to_hue(rgb):
    r, g, b = (float(c) / 255 for c in rgb)
    high, low = max(r, g, b), min(r, g, b)
    if high == r:
        return (60 * (g - b) / (high - low)) % 360
    if high == g:
        return 60 * (b - r) / (high - low) + 120
    return 60 * (r - g) / (high - low) + 240


@pytest.mark.parametrize("size", [32, 64, 128])
def test_the_same_marker_sits_at_the_same_gap_beside_every_target(size):
    ds = SyntheticTaskDataset("size", image_size=size, with_masks=True, length=24)
    radius, gap = max(1.5, 0.04 * size), max(1.0, 0.02 * size)
    for index in range(len(ds)):
        image, mask = ds.draw(index)
        rng = np.random.default_rng([*ds._key, index + 1])
        _background(rng, size)
        target, *_ = _sample_objects(rng, size, "size", ds.labels[index])
        x, y, marker = marker_place(target, size, rng.uniform(0, 2 * math.pi))
        assert marker == radius and radius <= x <= size - radius and radius <= y <= size - radius
        ys, xs = torch.nonzero(mask, as_tuple=True)
        nearest = torch.sqrt((xs + 0.5 - x) ** 2 + (ys + 0.5 - y) ** 2).min()
        assert radius + gap - 1.5 <= nearest <= radius + gap + 1.5
        centre = image[:, int(y), int(x)]
        assert centre.tolist() in ([0, 0, 0], [255, 255, 255])


def brute_force_marker_place(obj, size, angle):
    """marker_place by its definition: every pixel of the object measured from every step of every direction."""
    footprint = _footprint(obj, size)
    inside, y0, x0 = footprint.inside, footprint.y0, footprint.x0
    rows, columns = np.nonzero(inside)
    pixels = np.stack([columns + x0 + 0.5, rows + y0 + 0.5], axis=1)
    radius = max(1.5, 0.04 * size)
    clearance = radius + max(1.0, 0.02 * size)
    reach = 2 * obj.radius * obj.stretch * _REACH[obj.props["shape"]] + 2 * clearance
    steps = np.arange(0.0, reach, 0.25, dtype=np.float32)
    for turn in range(8):
        direction = angle + turn * math.pi / 4
        xs, ys = obj.cx + math.cos(direction) * steps, obj.cy + math.sin(direction) * steps
        nearest = np.sqrt(((pixels[None, :, 0] - xs[:, None]) ** 2 + (pixels[None, :, 1] - ys[:, None]) ** 2).min(1))
        first = int(np.argmax(nearest >= clearance))
        x, y = float(xs[first]), float(ys[first])
        if radius <= x <= size - radius and radius <= y <= size - radius:
            break
    return x, y, radius


@pytest.mark.parametrize("size", [32, 64, 128])
def test_marker_place_measures_edge_pixels_only_and_finds_what_every_pixel_gives(size):
    rng = np.random.default_rng(size)
    for task in ("size", "orientation", "shape"):
        for label in range(4):
            for obj in _sample_objects(rng, size, task, label):
                angle = rng.uniform(0, 2 * math.pi)
                assert marker_place(obj, size, angle) == brute_force_marker_place(obj, size, angle)


@pytest.mark.parametrize("task", TASKS)
def test_every_task_has_four_readable_classes(task):
    classes = SyntheticTaskDataset(task, length=4).classes
    assert classes == list(TASK_CLASSES[task])
    assert len(set(classes)) == 4 and all(name.isprintable() and name for name in classes)


@pytest.mark.parametrize("task", TASKS)
def test_items_are_uint8_images_int_labels_and_binary_masks(task):
    image, label, mask = SyntheticTaskDataset(task, image_size=32, with_masks=True, length=4)[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32)
    assert isinstance(label, int) and 0 <= label < 4
    assert mask.dtype == torch.uint8 and mask.shape == (32, 32)
    assert set(mask.unique().tolist()) == {0, 1}


def test_without_masks_items_are_image_label_pairs():
    item = SyntheticTaskDataset("colour", image_size=32, length=4)[1]
    assert len(item) == 2


@pytest.mark.parametrize("size", [16, 17, 50, 128])
def test_any_image_size_from_16_is_drawn_directly(size):
    image, _, mask = SyntheticTaskDataset("shape", image_size=size, with_masks=True, length=2)[0]
    assert image.shape == (3, size, size) and mask.shape == (size, size) and mask.sum() > 0


def test_the_same_index_gives_the_same_image_whatever_was_read_before():
    first = SyntheticTaskDataset("texture", image_size=32, length=8)
    again = SyntheticTaskDataset("texture", image_size=32, length=8)
    forward = [first[index][0] for index in range(8)]
    backward = [again[index][0] for index in reversed(range(8))]
    assert all(torch.equal(image, other) for image, other in zip(forward, reversed(backward)))
    assert torch.equal(first[3][0], forward[3])  # read again, after the other images


def test_seeds_splits_and_tasks_give_different_images():
    base = SyntheticTaskDataset("size", image_size=32, length=8)[0][0]
    for other in (
        SyntheticTaskDataset("size", image_size=32, length=8, seed=1),
        SyntheticTaskDataset("size", "test", image_size=32, length=8),
        SyntheticTaskDataset("colour", image_size=32, length=8),
    ):
        assert not torch.equal(base, other[0][0])


def test_val_and_validation_mean_the_test_split():
    test = SyntheticTaskDataset("glyph", "test", image_size=32, length=8)
    for name in ("val", "validation"):
        other = SyntheticTaskDataset("glyph", name, image_size=32, length=8)
        assert other.split == "test" and torch.equal(test[5][0], other[5][0])


def test_default_lengths_and_length_override():
    assert len(SyntheticTaskDataset("shape")) == 4000
    assert len(SyntheticTaskDataset("shape", "test")) == 1000
    assert len(SyntheticTaskDataset("shape", length=10)) == 10


def test_labels_are_known_without_drawing_and_balanced():
    ds = SyntheticTaskDataset("glyph", image_size=32, length=40)
    assert [ds[i][1] for i in range(len(ds))] == ds.labels
    assert sorted(ds.labels.count(k) for k in range(4)) == [10, 10, 10, 10]


def test_the_mask_marks_the_target_which_is_drawn_on_top_and_removable():
    ds = SyntheticTaskDataset("colour", image_size=48, length=30)
    for i in range(len(ds)):
        image, mask = ds.draw(i)
        background, same_mask = ds.draw(i, with_object=False)
        changed = (image != background).any(0)
        assert torch.equal(mask, same_mask)
        assert changed[mask > 0].float().mean() > 0.9  # the target covers what lies under it
        assert changed.sum() > 2 * mask.sum()  # and there are three decoys besides


def test_size_classes_give_growing_object_areas():
    ds = SyntheticTaskDataset("size", image_size=64, with_masks=True, length=40)
    areas = [[] for _ in ds.classes]
    for _, label, mask in ds:
        areas[label].append(mask.sum().item())
    means = [sum(a) / len(a) for a in areas]
    assert means == sorted(means) and means[0] * 2 < means[-1]


def test_orientation_objects_are_elongated_along_their_label():
    ds = SyntheticTaskDataset("orientation", image_size=64, with_masks=True, length=20)
    for _, label, mask in ds:
        ys, xs = torch.nonzero(mask, as_tuple=True)
        x, y = xs.float() - xs.float().mean(), ys.float().mean() - ys.float()  # y points up
        xx, yy, xy = (x * x).mean(), (y * y).mean(), (x * y).mean()
        axis = math.degrees(0.5 * math.atan2(2 * xy, xx - yy)) % 180
        error = abs((axis - 45 * label + 90) % 180 - 90)
        spread = torch.linalg.eigvalsh(torch.tensor([[xx, xy], [xy, yy]]))
        assert error < 15 and spread[1] > 2 * spread[0], (label, axis)


def test_unknown_task_names_every_valid_task_on_one_line():
    with pytest.raises(DatasetError) as caught:
        SyntheticTaskDataset("colours")
    message = str(caught.value)
    assert "colours" in message and "\n" not in message
    assert all(task in message for task in TASKS)


@pytest.mark.parametrize("kwargs", [{"split": "dev"}, {"image_size": 8}, {"length": 0}, {"seed": -1}])
def test_bad_arguments_raise_dataset_error(kwargs):
    with pytest.raises(DatasetError):
        SyntheticTaskDataset("shape", **kwargs)


def test_index_past_the_end_raises_index_error():
    with pytest.raises(IndexError):
        SyntheticTaskDataset("shape", length=3)[3]


def test_fingerprint_follows_task_split_seed_length_and_size():
    fingerprint = SyntheticTaskDataset("shape", length=5).fingerprint()
    assert fingerprint == SyntheticTaskDataset("shape", length=5).fingerprint()
    others = [
        SyntheticTaskDataset("colour", length=5),
        SyntheticTaskDataset("shape", "test", length=5),
        SyntheticTaskDataset("shape", seed=2, length=5),
        SyntheticTaskDataset("shape", length=6),
        SyntheticTaskDataset("shape", image_size=32, length=5),
    ]
    assert all(other.fingerprint() != fingerprint for other in others)


def _features(images: torch.Tensor) -> torch.Tensor:
    """A joint 4x4x4 RGB histogram and an 8x8 thumbnail of each image."""
    x = images.float() / 255
    bins = (x * 3.999).long()
    codes = (bins[:, 0] * 16 + bins[:, 1] * 4 + bins[:, 2]).flatten(1)
    hist = torch.zeros(len(x), 64).scatter_add_(1, codes, torch.ones(codes.shape)) / codes.shape[1]
    return torch.cat([hist, F.adaptive_avg_pool2d(x, 8).flatten(1)], 1)


def _held_out_accuracy(task: str, with_object: bool) -> float:
    """Accuracy on 200 test images of a ridge-regression classifier fitted on 400 training images."""
    data = []
    for split, length in (("train", 400), ("test", 200)):
        ds = SyntheticTaskDataset(task, split, image_size=32, length=length)
        images = torch.stack([ds.draw(i, with_object=with_object)[0] for i in range(length)])
        data.append((_features(images), torch.tensor(ds.labels)))
    return _ridge_accuracy(*data)


def _ridge_accuracy(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor]) -> float:
    (x_train, y_train), (x_test, y_test) = train, test
    mean, std = x_train.mean(0), x_train.std(0) + 1e-3
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    targets = F.one_hot(y_train, 4).float() - 0.25
    gram = x_train.T @ x_train + 10.0 * torch.eye(x_train.shape[1])
    weight = torch.linalg.solve(gram, x_train.T @ targets)
    return ((x_test @ weight).argmax(1) == y_test).float().mean().item()


@pytest.mark.parametrize("task", TASKS)
def test_the_label_cannot_be_predicted_from_the_background_alone(task):
    assert _held_out_accuracy(task, with_object=False) < CHANCE + 0.1


@pytest.mark.parametrize("task", TASKS)
def test_global_statistics_of_the_full_images_do_not_give_the_label(task):
    assert _held_out_accuracy(task, with_object=True) < CHANCE + 0.1


def test_the_same_classifier_reads_a_label_that_global_statistics_do_give():
    # A check that the classifier works: the target's hue is the label, and a lone target would give it away.
    data = []
    for split, length in (("train", 400), ("test", 200)):
        ds = SyntheticTaskDataset("colour", split, image_size=32, length=length, with_masks=True)
        images = torch.stack([torch.where(mask.bool(), image, 0) for image, _, mask in (ds[i] for i in range(length))])
        data.append((_features(images), torch.tensor(ds.labels)))
    assert _ridge_accuracy(*data) > CHANCE + 0.3


def test_kept_images_are_copies_and_the_memo_stops_at_its_room(monkeypatch):
    import universal_attention.data.synthetic as synthetic

    monkeypatch.setattr(synthetic, "_MEMO", synthetic._Memo())  # an empty memo for this test alone
    monkeypatch.setattr(synthetic, "MEMO_BYTES", 2 * 4 * 32 * 32)  # room for two 32 px images with masks
    dataset = SyntheticTaskDataset("colour", image_size=32, length=4)
    image, mask = dataset.draw(0)
    painted = image.clone()
    image.zero_()
    mask.zero_()
    assert torch.equal(dataset.draw(0)[0], painted)  # a caller's change does not reach the kept image
    for index in range(4):
        dataset.draw(index)
    assert len(synthetic._MEMO.items) == 2 and synthetic._MEMO.bytes == 2 * 4 * 32 * 32
    synthetic.forget_painted_images()
    fresh = SyntheticTaskDataset("colour", image_size=32, length=4)
    assert torch.equal(dataset.draw(3)[0], fresh.draw(3)[0])  # painted again beyond the room, the same image


def test_a_dataset_made_again_reads_the_images_the_first_one_painted(monkeypatch):
    import universal_attention.data.synthetic as synthetic

    monkeypatch.setattr(synthetic, "_MEMO", synthetic._Memo())
    painted = []
    draw = SyntheticTaskDataset._draw
    monkeypatch.setattr(SyntheticTaskDataset, "_draw", lambda self, i, obj: painted.append(i) or draw(self, i, obj))
    first = [SyntheticTaskDataset("size", image_size=24, length=6).draw(i) for i in range(6)]
    again = [SyntheticTaskDataset("size", image_size=24, length=6).draw(i) for i in range(6)]
    assert painted == list(range(6))  # the second dataset painted nothing
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    for other in ({"seed": 1}, {"length": 7}, {"image_size": 25}, {"split": "test"}):
        options = {"image_size": 24, "length": 6, **other}
        task = SyntheticTaskDataset("size", options.pop("split", "train"), **options)
        task.draw(0)
        assert painted[-1] == 0 and len(painted) > 6, other  # any other parameter paints its own image
        painted.clear()
        painted.extend(range(6))
    without = SyntheticTaskDataset("size", image_size=24, length=6)
    without.draw(2, with_object=False)
    assert painted[-1] == 2 and len(painted) == 7  # without its objects is another image
    synthetic.forget_painted_images()
    SyntheticTaskDataset("size", image_size=24, length=6).draw(4)
    assert painted[-1] == 4 and len(painted) == 8
