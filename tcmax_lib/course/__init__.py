"""Running and publishing the series, not taught by it: notebook set-up (`notebook`), FULL results and the
README's generated tables (`results`), the Colab badges, committed-figure cells and HTML site (`book`),
executing the notebooks (`series`) and the `tcmax` command line (`cli`).

Nothing outside this package imports it (tests/test_layout.py checks this), so a reader of the library's
teaching code never needs to open it.
"""
