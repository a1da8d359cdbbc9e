"""ImageNet weights come only as torchvision publishes them: hash-checked, and never unpickled as code."""

import hashlib
import pickle
from pathlib import Path

import pytest
import torch
import torchvision

from universal_attention import AttentionResNet50, ModelConfig
from universal_attention.errors import ModelError
from universal_attention.models.pretrained import hub_state_dict


class Planted:
    """A pickle that runs code when it is loaded: it creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return Path.touch, (self.path,)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    return tmp_path / "hub" / "checkpoints"


def test_a_file_planted_in_the_hub_folder_is_never_run(hub, tmp_path):
    name = Path(torchvision.models.ResNet50_Weights.IMAGENET1K_V2.url).name
    (hub / name).write_bytes(pickle.dumps(Planted(tmp_path / "ran"), protocol=2))
    with pytest.raises(ModelError) as caught:
        AttentionResNet50(ModelConfig(backbone_weights="imagenet", alignment_size=8, query_size=8))
    assert not (tmp_path / "ran").exists()
    message = str(caught.value)
    assert "is not the file torchvision publishes" in message and ".safetensors" in message
    assert "place" not in message


def test_the_published_file_loads_and_a_pickle_with_the_right_hash_still_cannot_run(hub, tmp_path):
    genuine = hub / "genuine.tmp"
    torch.save({"conv1.weight": torch.ones(2)}, genuine)
    prefix = hashlib.sha256(genuine.read_bytes()).hexdigest()[:8]
    genuine.rename(hub / f"tiny-{prefix}.pth")
    assert torch.equal(hub_state_dict(f"https://example.invalid/tiny-{prefix}.pth")["conv1.weight"], torch.ones(2))
    planted = pickle.dumps(Planted(tmp_path / "ran"), protocol=2)
    prefix = hashlib.sha256(planted).hexdigest()[:8]
    (hub / f"evil-{prefix}.pth").write_bytes(planted)
    with pytest.raises(ModelError, match="holds more than a state dict of tensors"):
        hub_state_dict(f"https://example.invalid/evil-{prefix}.pth")
    assert not (tmp_path / "ran").exists()
