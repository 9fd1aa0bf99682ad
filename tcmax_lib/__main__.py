"""`python -m tcmax_lib ...` runs the `tcmax` command line (see `cli`)."""

from .course.cli import main

main()
