"""``python -m universal_attention``: the ``uattn`` command line."""

from .cli import main

main(prog_name="uattn")
