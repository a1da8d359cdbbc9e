"""torchvision's ImageNet weights of a trunk, read safely: the published file only, never unpickled as code.

torch.hub keeps downloaded weights in ``<hub>/checkpoints/<name>``, where the name ends in the first hex digits
of the file's SHA-256 (``resnet50-11ad3fa6.pth``). The file is downloaded there when missing, then checked
against that hash whether it was downloaded or already there (torch.hub checks only what it downloads), and
read with ``torch.load(weights_only=True)``, which builds tensors and refuses anything else a pickle may hold.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import Tensor

from ..errors import ModelError
from .trunks import imagenet_url

SAFE_ALTERNATIVE = (
    "or set model.backbone_weights to a local .safetensors state dict of the trunk (made on a machine "
    "with network access, e.g. safetensors.torch.save_file(torchvision.models.resnet50(weights="
    "'DEFAULT').state_dict(), 'resnet50.safetensors'))"
)


def imagenet_state_dict(trunk: str = "resnet50") -> dict[str, Tensor]:
    """The state dict of torchvision's default ImageNet weights for ``trunk`` (``ResNet50_Weights.IMAGENET1K_V2``
    for the seed's ResNet50).

    Raises:
        ModelError: the trunk has no published weights, or the file cannot be downloaded, is not the published
            one, or holds more than tensors.
    """
    return hub_state_dict(imagenet_url(trunk))


def hub_state_dict(url: str) -> dict[str, Tensor]:
    """The state dict published at ``url`` (a file name ending ``-<sha256 prefix>.pth``), via torch.hub's cache."""
    name = url.rsplit("/", 1)[-1]
    match = torch.hub.HASH_REGEX.search(name)
    if match is None:
        raise ModelError(f"{url} does not name its SHA-256 in its file name, so it cannot be checked")
    prefix = match.group(1)
    path = Path(torch.hub.get_dir()) / "checkpoints" / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(path), hash_prefix=prefix, progress=False)
        except Exception as error:  # offline: URLError, OSError; a bad download: RuntimeError
            raise ModelError(
                f"could not download ImageNet weights from {url} ({type(error).__name__}); connect "
                f"to the network {SAFE_ALTERNATIVE}"
            ) from None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(prefix):
        raise ModelError(
            f"{path} is not the file torchvision publishes (its SHA-256 does not start with {prefix}); "
            f"delete it so that it is downloaded again, {SAFE_ALTERNATIVE}"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # an unpickling error: the file holds more than tensors
        raise ModelError(
            f"{path} holds more than a state dict of tensors ({type(error).__name__}); delete it {SAFE_ALTERNATIVE}"
        ) from None
    if not isinstance(state, dict):
        raise ModelError(f"{path} is not a state dict; delete it {SAFE_ALTERNATIVE}")
    return state
