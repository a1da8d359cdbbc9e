import sys

import matplotlib
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from universal_attention import AttentionResNet50, save_checkpoint
from universal_attention.analysis import pictures
from universal_attention.analysis.pictures import attention_grid, colorize, colour_table, overlay
from universal_attention.cli import attention_cmds, main
from universal_attention.errors import ConfigError

from small import SMALL


def _matplotlib_table(name):
    return matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255


@pytest.fixture
def cleared_cache():
    colour_table.cache_clear()
    yield
    colour_table.cache_clear()


def test_the_default_table_is_inferno_to_within_one_level():
    table = colour_table()
    assert table.shape == (256, 3) and table.dtype == np.uint8
    assert tuple(table[0]) == (0, 0, 4) and tuple(table[-1]) == (252, 255, 164)
    assert np.abs(table.astype(float) - _matplotlib_table("inferno")).max() <= 1
    assert attention_cmds.DEFAULT_CMAP == pictures.DEFAULT_CMAP == "inferno"


def test_colorize_looks_values_up_in_the_table():
    table = colour_table()
    values = np.array([[0.0, 1.0], [-3.0, 7.0]])
    assert colorize(values).shape == (2, 2, 3)
    ends = [table[0].tolist(), table[255].tolist()]
    assert colorize(values).tolist() == [ends, ends]
    assert colorize(np.array(0.5)).tolist() == table[128].tolist()  # numpy rounds 127.5 half to even: 128


def test_other_maps_come_from_matplotlib():
    values = np.linspace(0, 1, 256)
    viridis = colorize(values, cmap="viridis")
    assert np.abs(viridis.astype(float) - _matplotlib_table("viridis")).max() <= 0.5
    assert not np.array_equal(viridis, colorize(values))
    assert colour_table("viridis") is colour_table("viridis")  # cached


def test_overlay_and_grid_take_the_colour_map():
    image = torch.zeros(3, 4, 4, dtype=torch.uint8)
    top = overlay(image, torch.ones(4, 4), alpha=1.0, cmap="gray").getpixel((0, 0))
    assert top == (255, 255, 255)
    images = torch.zeros(1, 3, 16, 16, dtype=torch.uint8)
    maps = {"a": torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))}
    default = np.asarray(attention_grid(images, maps, scale="shared"))
    gray = np.asarray(attention_grid(images, maps, scale="shared", cmap="gray"))
    assert default.shape == gray.shape and not np.array_equal(default, gray)


def test_without_matplotlib_only_other_maps_fail_with_the_fix(monkeypatch, cleared_cache):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert colorize(np.array(1.0)).tolist() == [252, 255, 164]
    with pytest.raises(ConfigError) as error:
        colorize(np.array(1.0), cmap="viridis")
    message = str(error.value)
    assert message == '--cmap viridis needs matplotlib: pip install "universal-attention[report]"'
    assert "\n" not in message


def test_an_unknown_map_names_it_and_valid_ones():
    with pytest.raises(ConfigError, match="nosuchmap.*inferno.*viridis.*magma.*gray") as error:
        colour_table("nosuchmap")
    assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", AttentionResNet50(SMALL))


def _visualize(checkpoint, photo, out, *args):
    arguments = ["visualize", str(photo), "--ckpt", str(checkpoint), "--image-size", "32", "-o", str(out), *args]
    return CliRunner().invoke(main, arguments)


def test_the_cli_draws_in_the_colour_map_asked_for(checkpoint, tmp_path):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (120, 80, 40)).save(photo)
    default = _visualize(checkpoint, photo, tmp_path / "default.png")
    assert default.exit_code == 0, default.output
    viridis = _visualize(checkpoint, photo, tmp_path / "viridis.png", "--cmap", "viridis")
    assert viridis.exit_code == 0, viridis.output
    with Image.open(tmp_path / "default.png") as first, Image.open(tmp_path / "viridis.png") as second:
        assert first.size == second.size
        assert not np.array_equal(np.asarray(first.convert("RGB")), np.asarray(second.convert("RGB")))


def test_the_cli_rejects_an_unknown_colour_map_in_one_line(checkpoint, tmp_path):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (120, 80, 40)).save(photo)
    result = _visualize(checkpoint, photo, tmp_path / "v.png", "--cmap", "nosuchmap")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "nosuchmap" in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "v.png").exists()


def test_the_cli_help_names_the_option():
    result = CliRunner().invoke(main, ["visualize", "--help"])
    assert result.exit_code == 0 and "--cmap" in result.output and "matplotlib" in result.output
