"""Runs under torchrun that cannot hang or lose their end: a process-group timeout, no barrier around rank 0's
final comparison, SIGTERM during it leaves a results.json that says so, and every rank's RNG state survives."""

import json
import os
import signal
import time
from datetime import timedelta

import pytest
import torch

import universal_attention.meta.training as meta_train_module
from universal_attention import distributed, load_checkpoint, load_config, save_checkpoint
from universal_attention.distributed import DistributedInfo, init_distributed
from universal_attention.meta.training import _Run, meta_train

from small import SMALL_OVERRIDES

RUN = [
    *SMALL_OVERRIDES,
    "data.image_size=32",
    "data.sources=[synthetic/colour, synthetic/size]",
    "sampler.batch_size=4",
    "reptile.inner_steps=1",
    "train.max_steps=1",
    "train.eval_every=0",
    "train.checkpoint_every=1",
    "train.image_log_every=0",
]
pytestmark = pytest.mark.usefixtures("single_thread")
COMPARISON = {
    "target": "synthetic/orientation",
    "meta_trained": {"top1": 0.5},
    "random_init": {"top1": 0.25},
    "stage_seconds": {"transfer": 1.0, "attention": 0.5},
}


def quiet(text):
    return None


def test_the_process_group_is_joined_with_a_timeout(monkeypatch):
    joined = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **options: joined.update(options))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    assert init_distributed("cpu").rank == 1
    assert timedelta(0) < joined["timeout"] <= timedelta(hours=2)


@pytest.mark.slow
def test_no_rank_waits_in_a_barrier_while_rank_zero_compares(tmp_path, monkeypatch):
    events = []
    monkeypatch.setattr(distributed, "barrier", lambda: events.append("barrier"))
    monkeypatch.setattr(
        meta_train_module,
        "compare_start_points",
        lambda model, config, device, baselines: events.append("comparison") or COMPARISON,
    )
    meta_train(load_config(preset="quickstart", overrides=RUN), tmp_path / "run", on_message=quiet)
    assert "barrier" in events and events[-1] == "comparison"
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {key: saved[key] for key in ("target", "meta_trained", "random_init")} == {
        key: COMPARISON[key] for key in ("target", "meta_trained", "random_init")
    }
    assert set(saved["stage_seconds"]) == {"meta_train", "baselines", "transfer", "attention"}


@pytest.mark.slow
def test_sigterm_during_the_final_comparison_leaves_results_json_saying_so(tmp_path, monkeypatch):
    sent = []

    def comparison(model, config, device, baselines):
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        return COMPARISON

    monkeypatch.setattr(meta_train_module, "compare_start_points", comparison)
    messages = []
    result = meta_train(load_config(preset="quickstart", overrides=RUN), tmp_path / "run", on_message=messages.append)
    assert time.monotonic() - sent[0] < 20  # stopped at the signal, not after the comparison
    assert result.interrupted and load_checkpoint(tmp_path / "run").step == 1
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["interrupted"] and saved["redo"] == f"uattn transfer --ckpt {tmp_path / 'run'} --baseline random"
    assert any("final comparison" in message and "uattn transfer" in message for message in messages)


def test_every_ranks_random_state_is_saved_and_restored(tmp_path):
    config = load_config(preset="quickstart", overrides=RUN)
    run = _Run(config, tmp_path, DistributedInfo())
    state = run.state()
    assert torch.equal(state["rng.rank0.torch"], torch.get_rng_state())
    torch.manual_seed(1)
    rank_one = torch.get_rng_state()
    state.update({"rng.rank1.torch": rank_one, "sampler.rank1.generator": state["sampler.rank0.generator"].clone()})
    save_checkpoint(tmp_path / "two-ranks.safetensors", run.model, config, step=5, state=state)
    second = _Run(config, tmp_path, DistributedInfo(rank=1, world_size=2))
    torch.manual_seed(99)
    assert second.restore(tmp_path / "two-ranks.safetensors") == 5
    assert torch.equal(torch.get_rng_state(), rank_one)
