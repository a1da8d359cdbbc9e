"""``python -m universal_attention.cli``: the ``uattn`` command line, as ``torchrun -m`` starts it."""

from . import main

main(prog_name="uattn")
