"""The first call of every notebook: name it, seed it, apply the house plot style (notebook 00)."""

from __future__ import annotations

import re

import torch

from .. import plotting
from ..runtime import STATE, seed_everything


def setup_notebook(name: str, seed: int = 0) -> torch.Generator:
    """Name the running notebook (for metrics/figures), seed everything, apply the plot style (notebook 00).

    The name becomes a file name in the metrics folder, so it must be one: letters, digits, '_', '-' and '.',
    no folder and no '..' (a name like '../../x' would write outside it).
    """
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][\w.-]*", name) or ".." in name:
        raise ValueError(f"setup_notebook({name!r}): the name is a file name, e.g. '05_av_digits': letters, digits, "
                         "'_', '-' and '.', no folder separators and no '..'.")
    STATE.notebook = name
    plotting.set_style()
    try:  # inline PNG figures when running inside IPython (papermill, the grader, Jupyter)
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            shell.run_line_magic("matplotlib", "inline")
            shell.run_line_magic("config", "InlineBackend.figure_formats = ['png']")
    except ImportError:
        pass
    return seed_everything(seed)
