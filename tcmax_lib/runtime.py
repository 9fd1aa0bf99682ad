"""Runtime helpers every notebook calls first: FAST/FULL mode, device choice, seeds, metrics (notebook 00).

Nothing here runs at import time and nothing here imports plotting: `notebook.setup_notebook` is the
one explicit entry point that also applies the plot style.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import hardware

# spellings accepted for FAST (the value answers "is this FAST mode?"); anything else is an error
_TRUE = {"1", "true", "yes", "on", "fast"}
_FALSE = {"0", "false", "no", "off", "full"}


@dataclass
class _State:
    """Per-process state of the running notebook (name and mode)."""

    notebook: str = "session"
    fast: bool | None = None
    device: str | None = None
    precision: str | None = None       # the notebook's policy (set by pick_device), for records
    precision_pref: str | None = None  # the notebook's PRECISION parameter, set by pick_device


STATE = _State()


def repo_root() -> Path:
    """Return the project root (folder holding pyproject.toml and tcmax_lib/), else the cwd (notebook 00)."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").exists() and (folder / "tcmax_lib").is_dir():
            return folder
    pkg_parent = Path(__file__).resolve().parent.parent
    if (pkg_parent / "pyproject.toml").exists():
        return pkg_parent
    return here


def _parse_bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{what}={value!r} is not understood; use True/False, 1/0, 'true'/'false' or 'fast'/'full' "
                     "(unset TCMAX_FAST means FAST).")


def resolve_fast(value: bool | str | int | None = None) -> bool:
    """Resolve FAST mode: an explicit value wins, None reads env TCMAX_FAST (unset: FAST). Notebook 00."""
    if value is None:
        env = os.environ.get("TCMAX_FAST")
        fast = True if env is None else _parse_bool(env, "TCMAX_FAST")
    else:
        fast = _parse_bool(value, "FAST")
    STATE.fast = fast
    return fast


def check_device(value: str | torch.device, name: str = "device") -> torch.device:
    """A torch.device this build and machine can use; an error with the fix otherwise (notebook 00)."""
    try:
        dev = torch.device(value)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{name}={value!r} is not a device name; use 'cpu', 'cuda', 'cuda:1' or 'mps'.") from exc
    if dev.type == "cuda":
        if not torch.backends.cuda.is_built():
            raise RuntimeError(f"{name}={value!r}: this torch build ({torch.__version__}) has no CUDA support; use "
                               "'cpu', or install a CUDA build of torch on a machine with an NVIDIA GPU.")
        if not torch.cuda.is_available():
            raise RuntimeError(f"{name}={value!r} asked for CUDA but torch sees no GPU; use 'cpu'.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"{name}={value!r}: torch sees {torch.cuda.device_count()} GPU(s); use 'cuda' or "
                               "an index below that.")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"{name}={value!r} asked for Apple MPS, which this machine or torch build does not "
                           "offer; use 'cpu'.")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{name}={value!r}: the series runs on 'cpu', 'cuda' or 'mps'.")
    return dev


def pick_device(pref: str = "auto", verbose: bool = True, precision: str | None = None) -> torch.device:
    """Pick a device: 'auto' prefers cuda > mps > cpu; an explicit name is checked and used (notebook 00).

    The one-line report also names the precision policy `pick_precision(device, precision)` chooses; a
    `precision` given here (a notebook's PRECISION parameter) becomes the default of every later
    `pick_precision(device)` call in this process, e.g. the trainer's.
    """
    pref = (pref or "auto").lower()
    if pref == "auto":
        if torch.cuda.is_available():
            device = torch.device("cuda")
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = torch.device("mps")
        else:
            device = torch.device("cpu")
    else:
        device = check_device(pref, "DEVICE")
    STATE.device = hardware.device_name(device)
    prec = pick_precision(device, precision)                          # validates before storing
    STATE.precision_pref, STATE.precision = precision, str(prec)      # the notebook's policy, for its records
    if verbose:
        print(f"device: {device} ({STATE.device}), torch {torch.__version__}, precision {prec}")
    return device


_PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class Precision:
    """Mixed-precision policy for one device: bf16 autocast or plain fp32, and why (notebook 01).

    Only the matmul/convolution work runs in bf16 under `autocast()`; callers upcast scores and logits
    with `.float()` before any bound, log-sum-exp, loss or metric.
    """

    device_type: str
    bf16: bool
    reason: str

    @property
    def name(self) -> str:
        """'bf16' or 'fp32'."""
        return "bf16" if self.bf16 else "fp32"

    def autocast(self) -> AbstractContextManager:
        """The autocast context of this policy (a no-op for fp32)."""
        return torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.bf16)

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"

    def unless_small(self, large: bool) -> Precision:
        """This policy, except that `auto` on a CPU falls back to fp32 for work without large matrix products.

        Measured on a 2-core AMX CPU (benchmarks/): bf16 ran the AV-digits CNNs 1.8x and the concat critic
        (K^2 = 4,096 rows a step) 1.9x as fast as fp32, but the toy MLPs and the separable critic (64 rows a
        step) slower, casts costing more than the small products gain. An explicit 'bf16' is honoured.
        Introduced in notebook 01.
        """
        if large or not self.bf16 or self.device_type != "cpu" or not self.reason.startswith("auto"):
            return self
        return Precision("cpu", False, "auto: matrix products too small for bf16 to pay off on this CPU")


def pick_precision(device: str | torch.device = "cpu", pref: str | None = None) -> Precision:
    """Choose bf16 autocast or fp32 for `device`: `pref` ('auto'/'fp32'/'bf16'), else the notebook's PRECISION
    parameter (given to `pick_device`), else env TCMAX_PRECISION, else auto.

    auto = bf16 on CUDA GPUs that support it and on CPUs with native bf16 matmuls (`hardware.cpu_bf16_support`),
    fp32 elsewhere (MPS, older CPUs). Introduced in notebook 01.
    """
    device = torch.device(device)
    source = "PRECISION"
    if pref is None and STATE.precision_pref is not None:
        pref = STATE.precision_pref
    if pref is None:
        pref, source = os.environ.get("TCMAX_PRECISION", "auto"), "TCMAX_PRECISION"
    pref = str(pref).strip().lower()
    if pref not in _PRECISIONS:
        raise ValueError(f"{source}={pref!r} is not a precision; use 'auto', 'fp32' or 'bf16'.")
    if device.type == "cuda":
        native = "bf16 tensor cores" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else None
    elif device.type == "cpu":
        native = hardware.cpu_bf16_support()
    else:
        native = None
        if pref == "bf16":
            raise ValueError(f"{source}='bf16' on {device.type}: this series runs bf16 autocast only on CPU and CUDA; "
                             "use 'auto' or 'fp32'.")
    if pref == "fp32":
        choice = Precision(device.type, False, f"{source}=fp32")
    elif pref == "bf16":
        why = f"{source}=bf16" + ("" if native else ", emulated: this CPU has no native bf16 matmul and runs slower")
        choice = Precision(device.type, True, why)
    elif native:
        choice = Precision(device.type, True, f"auto: {native}" + ("; small models stay fp32 (unless_small)"
                                                                   if device.type == "cpu" else ""))
    else:
        choice = Precision(device.type, False, f"auto: no native bf16 on {device.type}")
    return choice


def progress_off(progress: bool) -> bool | None:
    """tqdm's `disable` for a progress flag: True when off or when env TQDM_DISABLE is set, else None (nb 00).

    An explicit `disable=` argument would override tqdm's own TQDM_DISABLE; the test layers set it, and
    widget bars from long loops can flood a busy kernel's output channel (nbval waits only 5 s for output).
    """
    env = os.environ.get("TQDM_DISABLE", "").strip().lower()
    return True if not progress or env not in ("", "0", "false", "no") else None


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (CPU and CUDA); return a fresh torch.Generator with that seed (notebook 00)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block (e.g. building a model) under torch seed `seed` without touching the caller's RNG state.

    Introduced in notebook 03: model builders and the trainer take a seed argument and use this
    instead of reseeding the global generator behind the caller's back.
    """
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def metrics_dir() -> Path:
    """Folder where `record` writes JSON metrics (env TCMAX_METRICS_DIR or build/metrics) (notebook 00)."""
    env = os.environ.get("TCMAX_METRICS_DIR")
    return Path(env) if env else repo_root() / "build" / "metrics"


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    return value


def record(name: str, value: Any) -> None:
    """Store a named metric of the running notebook in build/metrics/<notebook>.json (notebook 00).

    The file is changed under its lock and replaced atomically (`files.update_json`), so two processes
    recording at once keep every key; a NaN or infinity is refused with the metric's name, before any write.
    """
    from .files import dumps_json, update_json

    folder = metrics_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{STATE.notebook}.json"
    value = _to_jsonable(value)
    dumps_json(value, f"tl.record({name!r})")                         # refuse a non-finite value first
    meta = {"_fast": STATE.fast, "_device": STATE.device, "_precision": STATE.precision, "_torch": torch.__version__}
    update_json(path, lambda data: {**data, name: value, **meta})


def load_metrics(notebook: str, folder: Path | None = None) -> dict:
    """Read the metrics a notebook recorded (used by the tests) (notebook 00)."""
    path = (folder or metrics_dir()) / f"{notebook}.json"
    if not path.exists():
        raise FileNotFoundError(f"no metrics at {path}: did the notebook call tl.setup_notebook and tl.record?")
    return json.loads(path.read_text())
