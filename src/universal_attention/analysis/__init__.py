"""Attention-map analysis: map maths, measures (pointing game, mass in mask, diagnostics), pictures, ADE20K."""
