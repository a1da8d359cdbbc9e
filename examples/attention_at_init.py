"""Whether attention can learn, before any training: every compatibility form's diagnostics at initialisation.

For each preset (its trunk, taps, attention sizes and image size) and each compatibility form, a seeded model
scores held-out synthetic source images, and per tap the script reports the share of ``tanh`` inputs beyond
``|2|`` (additive forms), the spread of the scores over locations, and the maps' entropy relative to uniform
(:func:`universal_attention.analysis.diagnostics.attention_diagnostics`). A form that starts saturated passes
little gradient to its location-dependent part; one with no score spread starts, and may stay, uniform.

Run: python examples/attention_at_init.py [--presets quickstart,paper] [--images 32] [--seed 0]
Last line: one JSON object {preset: {form: {tap: {"saturated": .., "score_spread": .., "entropy": ..}}}}.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

import torch

from universal_attention import AttentionResNet50, load_config
from universal_attention.analysis.diagnostics import attention_diagnostics
from universal_attention.data.registry import get_dataset
from universal_attention.data.samples import fixed_subset, read_samples

FORMS = ("additive", "additive_norm", "dot", "parametrised")


def source_images(preset: str, count: int) -> torch.Tensor:
    """``count`` held-out images of every synthetic source of the quickstart, at the preset's image size."""
    config = load_config(preset="quickstart")
    size = load_config(preset=preset).data.image_size
    batches = []
    for name in config.data.sources:
        dataset = get_dataset(name, "test", image_size=size)
        batches.append(read_samples(dataset, fixed_subset(len(dataset), count))[0])
    return torch.cat(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="quickstart,paper")
    parser.add_argument("--images", type=int, default=32, help="held-out images per source task")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    figures: dict[str, dict] = {}
    for preset in args.presets.split(","):
        images = source_images(preset, args.images)
        figures[preset] = {}
        for form in FORMS:
            config = load_config(preset=preset, overrides=[f"model.compatibility={form}"])
            torch.manual_seed(args.seed)
            model = AttentionResNet50(config.model)
            taps = attention_diagnostics(model, images)
            figures[preset][form] = {tap: asdict(values) for tap, values in taps.items()}
            for tap, values in taps.items():
                saturated = "-" if values.saturated is None else f"{values.saturated:.3f}"
                print(
                    f"{preset:10s} {form:13s} {tap:9s} saturated {saturated:>5s}  score spread "
                    f"{values.score_spread:.3f}  entropy {values.entropy:.4f}",
                    flush=True,
                )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
