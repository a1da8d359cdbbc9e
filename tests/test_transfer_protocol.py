"""The few-shot protocol against a trained model: the linear probe works, and no label hides in the background."""

import math

import pytest
import torch

from universal_attention import TransferConfig, load_checkpoint, load_config, meta_train, transfer_evaluate
from universal_attention.transfer.linear_probe import _solve, fit_linear_probe

from small import SMALL_OVERRIDES

STEPS = 12
CHANCE = 0.25


@pytest.fixture(scope="module")
def meta_trained(tmp_path_factory):
    """A model meta-trained for a few Reptile steps on the synthetic colour task, at 48 px."""
    config = load_config(
        preset="quickstart",
        overrides=[
            *SMALL_OVERRIDES,
            "model.alignment_size=16",
            "model.query_size=16",
            "data.image_size=48",
            "data.sources=[synthetic/colour]",
            f"train.max_steps={STEPS}",
            f"train.checkpoint_every={STEPS}",
            "train.eval_every=0",
            "train.image_log_every=0",
            "train.final_comparison=false",
        ],
    )
    run = meta_train(config, tmp_path_factory.mktemp("runs") / "colour", on_message=lambda text: None)
    return load_checkpoint(run.final_checkpoint).model


@pytest.mark.slow
def test_the_linear_probe_reads_a_source_task_of_a_meta_trained_model(meta_trained):
    # Pooled on the target's mask (the oracle control), the features hold the target's colour: a probe that is
    # solved rather than trained for a few steps reads it off. (Finding the target alone is what the
    # meta-training would have to learn, which takes far longer than a test.)
    config = TransferConfig(
        mode="linear", shots_per_class=(20,), max_test_images=400, attention=("oracle",), image_size=48
    )
    result = transfer_evaluate(meta_trained, "synthetic/colour", config)
    assert result.cell(20, "oracle").top1 >= 0.9


@pytest.mark.parametrize("start", ["meta-trained", "random"])
@pytest.mark.slow
def test_without_its_object_the_target_is_at_chance_for_any_start(meta_trained, start):
    # no max_test_images: all 1,000 test images
    config = TransferConfig(mode="linear", shots_per_class=(20,), remove_object=True, image_size=48)
    model = meta_trained if start == "meta-trained" else "random"
    top1 = transfer_evaluate(model, "synthetic/orientation", config, model_config=meta_trained.config).cell(20).top1
    assert abs(top1 - CHANCE) < 3 * math.sqrt(CHANCE * (1 - CHANCE) / 1000)  # within 3 standard errors


def test_the_probe_solved_in_the_span_of_the_shots_is_the_full_solution():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(12, 40, generator=generator, dtype=torch.float64)
    labels = torch.arange(12) % 3
    probe = fit_linear_probe(features, labels, 3, l2=0.1)
    weight, bias, _ = _solve((features - probe.mean) / probe.std, labels, 3, 0.1)  # on all 40 dimensions
    torch.testing.assert_close(probe.weight, weight, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(probe.bias, bias, atol=1e-4, rtol=1e-4)


def test_cross_validation_needs_two_shots_per_class():
    features = torch.randn(6, 10, generator=torch.Generator().manual_seed(0))
    assert fit_linear_probe(features, torch.arange(6) % 6, 6).l2 == 0.1  # one shot per class: the default
    assert fit_linear_probe(features, torch.arange(6) % 3, 3).l2 in (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
