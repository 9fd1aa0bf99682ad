"""`python -m tcmax_lib ...` runs the `tcmax` command line (see `cli`)."""

from .cli import main

main()
