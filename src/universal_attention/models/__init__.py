"""The attention network: AttentionResNet50, its attention blocks and controls, trunks, pretrained weights."""
