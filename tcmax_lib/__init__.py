"""tcmax_lib: helper library of the TCMax tutorial series (MINE -> TCNE -> TCMax).

Typical notebook use::

    import tcmax_lib as tl
    tl.setup_notebook("01_mutual_information_and_mine", seed=0)
    FAST = tl.resolve_fast(None)

Library use: ``from tcmax_lib.losses import tcmax_loss``.
"""

from .plotting import COLORS, savefig, set_style
from .runtime import (
           load_metrics,
           pick_device,
           record,
           repo_root,
           resolve_fast,
           seed_everything,
           setup_notebook,
)

__version__ = "0.1.0"
__all__ = [
           "COLORS",
           "__version__",
           "load_metrics",
           "pick_device",
           "record",
           "repo_root",
           "resolve_fast",
           "savefig",
           "seed_everything",
           "set_style",
           "setup_notebook",
]
