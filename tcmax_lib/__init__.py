"""tcmax_lib: helper library of the TCMax tutorial series (MINE -> TCNE -> TCMax).

Typical notebook use::

    import tcmax_lib as tl
    tl.setup_notebook("01_mutual_information_and_mine", seed=0)
    FAST = tl.resolve_fast(None)

Library use: ``from tcmax_lib.losses import tcmax_loss``. The package mirrors the course: `info` holds
chapters 01-02 (closed forms, bounds, critics, estimator training), `methods` one file per training
method (chapters 03, 04, 07), `course` the machinery that runs and publishes the series (not taught by
it). Importing the package is light: the names below are resolved on first use (PEP 562), so
``import tcmax_lib.losses`` pulls in neither matplotlib nor pandas.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "COLORS": "plotting",
    "check": "course.exercises",
    "savefig": "plotting",
    "set_style": "plotting",
    "setup_notebook": "course.notebook",
    "load_metrics": "runtime",
    "load_results": "course.results",
    "pick_device": "runtime",
    "pick_precision": "runtime",
    "record": "runtime",
    "repo_root": "runtime",
    "resolve_fast": "runtime",
    "seed_everything": "runtime",
    "seeded": "runtime",
}
_SUBMODULES = {"course", "data", "diagnostics", "distributed", "experiments", "hardware", "info", "layers", "losses",
               "methods", "models", "plotting", "resnet", "runtime", "train"}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    """Import the defining module on first access of a public name or submodule."""
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'tcmax_lib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
