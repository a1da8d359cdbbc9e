"""Shared fixtures: fake copies of every official dataset layout (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fake_datasets import make_all, write_image, write_odd_images


@pytest.fixture(scope="session")
def fake_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding tiny fake copies of all eight real datasets (see ``fake_datasets.py``)."""
    return make_all(tmp_path_factory.mktemp("data"))


@pytest.fixture
def single_thread():
    """Tiny models run fastest on one thread, and then do not fight other processes for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def odd_folder(tmp_path: Path) -> Path:
    """A ``<class>/<image>`` tree: class ``odd`` holds one file of every odd kind, ``plain`` two normal JPEGs."""
    write_odd_images(tmp_path / "tree" / "odd")
    for n in range(2):
        write_image(tmp_path / "tree" / "plain" / f"plain_{n}.jpg", seed=n)
    return tmp_path / "tree"
