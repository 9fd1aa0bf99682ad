"""The training methods of the series, one file each, and `make_method(name)` to build any of them.

Every method implements the interface in `base.py` (`Method`): joint training and unimodal training
(notebook 03), OGM-GE and TCMax (notebook 04), and the paper's other baselines AGM, MLA, MMPareto and
PMR (notebook 07). Each file's docstring names its paper, the official code it follows and where it
adapts.
"""

from __future__ import annotations

from .agm import AGM
from .base import Method
from .joint import Joint
from .mla import MLA
from .mmpareto import MMPareto
from .ogm_ge import OGMGE
from .pmr import PMR
from .tcmax import TCMax
from .unimodal import Unimodal

METHODS: dict[str, type[Method]] = {"joint": Joint, "unimodal": Unimodal, "ogm_ge": OGMGE, "agm": AGM, "mla": MLA,
                                    "mmpareto": MMPareto, "pmr": PMR, "tcmax": TCMax}


def make_method(name: str, **kwargs) -> Method:
    """Build a method by name: joint, unimodal, ogm_ge, agm, mla, mmpareto, pmr or tcmax (notebook 03)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(METHODS)}.")
    import dataclasses

    cls = METHODS[name]
    allowed = [f.name for f in dataclasses.fields(cls) if f.repr and f.name != "name"] if \
        dataclasses.is_dataclass(cls) else []
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"method {name!r} has no setting {unknown}; its settings are {allowed}.")
    return METHODS[name](**kwargs)
