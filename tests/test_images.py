"""Decoding odd image files to RGB, and resizing images and masks to squares."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from universal_attention.data.images import load_label_map, load_rgb, read_image, resize_and_crop, resize_and_crop_mask

from fake_datasets import HEIGHT, WIDTH, write_image, write_odd_images

CONVERTIBLE = ("truncated", "grayscale", "rgba", "sixteen_bit", "cmyk", "palette")


@pytest.fixture
def odd(tmp_path):
    return write_odd_images(tmp_path)


def test_plain_jpeg_is_uint8_rgb_at_original_size_with_no_note(tmp_path):
    write_image(tmp_path / "a.jpg", seed=0)
    image, note = read_image(tmp_path / "a.jpg")
    assert image.dtype == torch.uint8 and image.shape == (3, HEIGHT, WIDTH)
    assert note == ""


@pytest.mark.parametrize("kind", CONVERTIBLE)
def test_odd_but_decodable_files_become_rgb_with_a_note(odd, kind):
    image, note = read_image(odd[kind])
    assert image.dtype == torch.uint8 and image.shape == (3, HEIGHT, WIDTH)
    assert note


def test_one_pixel_image_is_read_and_noted_as_tiny(odd):
    image, note = read_image(odd["tiny"])
    assert image.shape == (3, 1, 1)
    assert image[:, 0, 0].tolist() == [200, 30, 30]
    assert "tiny" in note


@pytest.mark.parametrize("kind, note", [("text", "not an image"), ("header_only", "unreadable")])
def test_unreadable_files_give_none_and_say_why(odd, kind, note):
    image, why = read_image(odd[kind])
    assert image is None
    assert why.startswith(note)


def test_missing_file_gives_none(tmp_path):
    assert read_image(tmp_path / "nothing.jpg") == (None, "missing")
    assert load_rgb(tmp_path / "nothing.jpg") is None


def test_truncated_retry_leaves_pillow_strict_afterwards(odd):
    read_image(odd["truncated"])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_sixteen_bit_png_is_scaled_to_eight_bits_not_clipped(tmp_path):
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    image = load_rgb(tmp_path / "deep.png")
    assert image[0, 0].tolist() == [0, 100, 255]
    assert torch.equal(image[0], image[2])


def test_transparent_pixels_become_white(tmp_path):
    pixels = np.zeros((2, 2, 4), dtype=np.uint8)
    pixels[0, 0] = (10, 20, 30, 255)
    Image.fromarray(pixels, mode="RGBA").save(tmp_path / "alpha.png")
    image = load_rgb(tmp_path / "alpha.png")
    assert image[:, 0, 0].tolist() == [10, 20, 30]
    assert image[:, 1, 1].tolist() == [255, 255, 255]


def test_draft_size_decodes_a_big_jpeg_smaller_but_not_below_the_size(tmp_path):
    Image.new("RGB", (400, 300), (50, 100, 150)).save(tmp_path / "big.jpg")
    image = load_rgb(tmp_path / "big.jpg", draft_size=64)
    assert 64 <= min(image.shape[1:]) < 300


def test_label_map_keeps_raw_values_and_palette_indices(tmp_path):
    values = np.array([[0, 1, 150]], dtype=np.uint8)
    Image.fromarray(values, mode="L").save(tmp_path / "map.png")
    palette = Image.fromarray(values, mode="L").convert("P")
    palette.putpalette([255, 0, 0] * 256)
    palette.save(tmp_path / "palette.png")
    assert load_label_map(tmp_path / "map.png").tolist() == [[0, 1, 150]]
    assert load_label_map(tmp_path / "palette.png").tolist() == [[0, 1, 150]]


def test_resize_and_crop_scales_shorter_side_then_takes_the_centre():
    image = torch.zeros(3, 20, 40, dtype=torch.uint8)
    image[:, :, 10:30] = 255  # the centre square of a 2:1 image
    square = resize_and_crop(image, 10)
    assert square.shape == (3, 10, 10) and square.dtype == torch.uint8
    assert int(square[:, :, 1:-1].min()) == 255  # only the edge columns blend with the dark sides
    assert int(square.min()) > 127


def test_resize_and_crop_mask_stays_binary_and_aligned_with_the_image():
    mask = torch.zeros(20, 40, dtype=torch.uint8)
    mask[:, 10:30] = 1
    square = resize_and_crop_mask(mask, 10)
    assert square.shape == (10, 10)
    assert square.unique().tolist() == [1]
    assert resize_and_crop_mask(torch.tensor([[0, 7], [7, 0]], dtype=torch.uint8), 4).unique().tolist() == [0, 7]


@pytest.mark.parametrize(("orientation", "red_corner"), [(6, "top right"), (8, "bottom left")])
def test_a_photo_with_an_exif_orientation_is_decoded_upright(tmp_path, orientation, red_corner):
    """Stored 200 x 100 with the red block top left; shown upright (100 x 200) as every viewer shows it."""
    stored = Image.new("RGB", (200, 100), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 40, 40))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"phone-{orientation}.jpg"
    stored.save(path, quality=95, exif=exif)
    image, _ = read_image(path)
    assert tuple(image.shape) == (3, 200, 100)
    corners = {"top left": image[:, 5, 5], "top right": image[:, 5, -5], "bottom left": image[:, -5, 5]}
    reds = [name for name, pixel in corners.items() if pixel[0] > 200 and pixel[2] < 60]
    assert reds == [red_corner]
