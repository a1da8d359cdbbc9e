"""Attention diagnostics and the positive control: the instrument's checks on the mechanism itself."""

import json

import pytest
import torch
from click.testing import CliRunner

from universal_attention import AttentionResNet50, load_config
from universal_attention.analysis.diagnostics import (
    attention_diagnostics,
    attention_gradient_norms,
    read_held_out,
    relative_entropy,
    source_check,
)
from universal_attention.cli import main
from universal_attention.data.registry import get_dataset
from universal_attention.meta.supervision import attention_supervision_loss, mask_targets
from universal_attention.runs.loggers import read_metrics

from small import SMALL, SMALL_OVERRIDES, SMALL_TAPS

IMAGES = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_relative_entropy_is_one_for_uniform_maps_and_zero_for_a_point():
    uniform = torch.full((1, 1, 4, 4), 1 / 16)
    point = torch.zeros(1, 1, 4, 4)
    point[0, 0, 1, 2] = 1
    torch.testing.assert_close(relative_entropy(torch.cat([uniform, point])), torch.tensor([1.0, 0.0]))


@pytest.mark.parametrize("form", ["additive", "additive_norm", "dot", "parametrised", "query_free"])
def test_every_form_reports_entropy_spread_and_saturation_where_it_has_tanh(form):
    torch.manual_seed(0)
    model = AttentionResNet50(SMALL.updated(compatibility=form))
    diagnostics = attention_diagnostics(model, IMAGES)
    assert list(diagnostics) == model.taps
    for values in diagnostics.values():
        assert 0 <= values.entropy <= 1 + 1e-6 and values.score_spread >= 0
        assert (values.saturated is None) == (form not in ("additive", "additive_norm"))


def test_the_original_form_saturates_where_its_inputs_are_large_and_the_normalised_form_does_not():
    torch.manual_seed(0)
    original = AttentionResNet50(SMALL.updated(alignment_size=64, query_size=64, compatibility="additive"))
    torch.manual_seed(0)
    normalised = AttentionResNet50(SMALL.updated(alignment_size=64, query_size=64, compatibility="additive_norm"))
    for model in (original, normalised):
        with torch.no_grad():  # scale the features up: what a deep trunk's magnitudes do
            model.backbone.layer1[0].bn2.weight.mul_(30)
    saturated = {
        name: attention_diagnostics(model, IMAGES)["layer1.0"].saturated
        for name, model in (("original", original), ("normalised", normalised))
    }
    assert saturated["original"] > 0.5 and saturated["normalised"] < 0.2


@pytest.mark.parametrize("preset", ["quickstart", "paper"])
def test_the_default_compatibility_is_not_saturated_at_initialisation_on_both_presets(preset):
    """The seed's additive form starts with 0.65-0.88 of its tanh inputs beyond |2| on these presets; the
    default must not (the preset's own trunk, taps, attention sizes and image size; held-out synthetic images)."""
    config = load_config(preset=preset)
    assert config.model.compatibility == "additive_norm"
    images = torch.cat(
        [
            read_held_out(get_dataset(name, "test", image_size=config.data.image_size, with_masks=True), 4).images
            for name in ("synthetic/colour", "synthetic/texture", "synthetic/size")
        ]
    )
    torch.manual_seed(0)
    diagnostics = attention_diagnostics(AttentionResNet50(config.model), images)
    assert list(diagnostics) == list(config.model.tap_layers())
    assert all(values.saturated is not None and values.saturated <= 0.2 for values in diagnostics.values())


def test_the_gradient_of_the_last_backward_reaches_every_attention_block():
    model = AttentionResNet50(SMALL, num_classes=2)
    assert set(attention_gradient_norms(model).values()) == {0.0}  # no backward yet
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    model(images).logits.sum().backward()  # at 64 px every tap has more than one location (a 1 x 1 map cannot learn)
    norms = attention_gradient_norms(model)
    assert list(norms) == model.taps and all(value > 0 for value in norms.values())


def test_mask_targets_are_each_cell_s_share_of_the_object():
    masks = torch.zeros(1, 8, 8)
    masks[0, :4, :2] = 1
    cover = mask_targets(masks, torch.zeros(1, 1, 2, 2))
    torch.testing.assert_close(cover, torch.tensor([[[[0.5, 0.0], [0.0, 0.0]]]]))


def test_the_supervision_loss_is_least_for_the_mask_s_own_map():
    masks = torch.zeros(2, 8, 8)
    masks[:, 2:6, 2:6] = 1
    on_object = mask_targets(masks, torch.zeros(2, 1, 4, 4))
    on_object = on_object / on_object.sum(dim=(2, 3), keepdim=True)
    uniform = torch.full((2, 1, 4, 4), 1 / 16)
    assert attention_supervision_loss({"t": on_object}, masks) < attention_supervision_loss({"t": uniform}, masks)
    empty = torch.zeros(2, 8, 8)
    assert float(attention_supervision_loss({"t": uniform}, empty)) == 0.0  # no object: nothing to pull toward


def test_attention_told_where_moves_the_maps_onto_the_object():
    dataset = get_dataset("synthetic/size", "train", image_size=32, with_masks=True)
    held_out = read_held_out(dataset, 32)
    torch.manual_seed(0)
    model = AttentionResNet50(SMALL, num_classes=4)
    model.add_head("synthetic/size", 4)
    before = source_check(model, held_out, "synthetic/size").relative_to_area
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(30):
        out = model(held_out.images, "synthetic/size")
        loss = attention_supervision_loss(out.attention, held_out.masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = source_check(model, held_out, "synthetic/size").relative_to_area
    assert all(after[tap] > before[tap] for tap in ("layer1.0", "layer2.0")), (before, after)
    assert after["layer2.0"] > 1.5


RUN = [
    *SMALL_OVERRIDES,
    "data.image_size=32",
    "data.sources=[synthetic/colour, synthetic/size]",
    "sampler.batch_size=4",
    "reptile.inner_steps=1",
    "train.max_steps=2",
    "train.log_every=1",
    "train.eval_every=2",
    "train.eval_steps=1",
    "train.eval_test_images=8",
    "train.image_log_every=0",
    "train.source_images=8",
    "transfer.steps=1",
    "transfer.draws=1",
    "transfer.batch_size=4",
    "transfer.shots_per_class=[2]",
    "transfer.max_test_images=8",
]


@pytest.mark.slow
def test_a_run_logs_diagnostics_reports_its_sources_and_trains_the_supervised_control(tmp_path):
    out = tmp_path / "run"
    args = ["meta-train", "--preset", "quickstart", "--out", str(out), "--compare", "random,supervised"]
    for override in RUN:
        args += ["--set", override]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    supervised = load_config(config_file=out / "compare" / "supervised" / "config.yaml")
    assert supervised.train.attention_supervision == 1.0
    results = json.loads((out / "results.json").read_text())
    assert 0 <= results["supervised"]["top1"] <= 1
    assert [c["baseline"] for c in results["comparisons"]] == ["random_init", "supervised"]
    sources = results["sources"]
    assert set(sources) == {"synthetic/colour", "synthetic/size"}
    for entry in sources.values():
        assert 0 <= entry["top1"] <= 1
        assert set(entry["attention"]["relative_to_area"]) == set(entry["attention"]["entropy"]) == set(SMALL_TAPS)
    assert "held-out source images" in result.output and "mass/area" in result.output
    tags = {record["tag"] for record in read_metrics(out)}
    for measure in ("entropy", "score_spread", "saturated", "gradient_norm"):
        assert f"attention/{measure}/layer2.0" in tags
    assert "sources/synthetic/size/relative_to_area/layer2.0" in tags
