"""A store of finished trainings, so that an interrupted FULL run resumes where it stopped (notebook 00).

    RunStore(root)                      -> one folder of entries, one file per finished `fit`
    RunStore.key(model, ..., precision) -> the entry's name: a hash of what decides it (None: not storable)
    RunStore.load(key, model)           -> (model, history) of a stored training, or None
    RunStore.save(key, model, history, seconds) / save_diverged(key, message, seconds)
    active()                            -> the store named by env TCMAX_RUN_STORE, or None (the default)
    stored(model, ..., train_fn)        -> `fit`'s hook: the stored training, or train_fn()'s, then stored

A FULL run of notebook 07 trains a few hundred networks over hours; `tcmax series run --full` keeps every
finished training here (build/run-store), and a second run of the same notebook trains only what is missing.
An entry is found only when everything that decides its result is unchanged (`fingerprint`): the code a
training runs (the library's trainer, methods and models and what they import, and any class a notebook
defines; comments and docstrings aside), Python's and torch's versions, the device type and precision,
the method and its settings, the initial weights and architecture, the training and validation data, and
every training setting. A change to any of them is a new key, never a stale hit. Metrics are not stored:
a loaded training is measured again, so code that only measures or reads results may change freely.
Entries are written atomically (`files`), carry their own key, and a file that cannot be read is an error
naming it; nothing half-written is ever used.
Stored trainings keep their device, date and seconds, and a notebook records how many it loaded
(`summary`), so a resumed result says so.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .checks import TrainingDivergedError
from .fingerprint import NotStorable, class_code, describe, describe_method, library_fingerprint

ENV = "TCMAX_RUN_STORE"
FORMAT = 1


def _describe_split(split: Any) -> Any:
    return {"inputs": describe(list(split.inputs)), "y": describe(split.y), "extras": describe(dict(split.extras))}


class RunStore:
    """One folder of finished trainings, one file each, named by the hash of what decides them (notebook 00)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.loaded, self.trained, self.not_stored, self.loaded_seconds = 0, 0, 0, 0.0
        self.loaded_devices: dict[str, int] = {}

    def key(self, model: torch.nn.Module, method: Any, train: Any, val: Any, cfg: Any, precision: Any) -> str | None:
        """The entry name of this training, or None if one of its parts has no exact description."""
        settings = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in ("progress",)}
        settings["device"] = torch.device(cfg.device).type
        settings["precision"] = precision.name                # the resolved policy, not the preference
        try:
            parts = {"format": FORMAT, "library": library_fingerprint(), "torch": torch.__version__,
                     "method": describe_method(method), "architecture": repr(model),
                     "model_code": class_code({c for m in model.modules() for c in type(m).__mro__}),
                     "weights": describe(dict(model.state_dict())), "train": _describe_split(train),
                     "val": _describe_split(val), "config": describe(settings)}
        except NotStorable:
            return None
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def path(self, key: str) -> Path:
        """Where the entry `key` lives."""
        return self.root / key[:2] / f"{key}.pt"

    def load(self, key: str, model: torch.nn.Module) -> tuple[torch.nn.Module, pd.DataFrame] | None:
        """The stored training `key` into `model` (its best-validation weights) and its history; None if absent.

        A stored divergence is raised again as `TrainingDivergedError`, with its original message.
        """
        path = self.path(key)
        if not path.exists():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            info = json.loads(entry["info"])
        except Exception as exc:                              # unreadable: never trained around silently
            raise RuntimeError(f"run store entry {path} cannot be read ({type(exc).__name__}: {exc}); delete it "
                               f"(or the folder {self.root}) and run again to retrain it.") from exc
        if info.get("key") != key:
            raise RuntimeError(f"run store entry {path} holds key {info.get('key')!r}, not its file name's: it was "
                               "copied or renamed. Delete it and run again.")
        self.loaded += 1
        self.loaded_seconds += float(info["seconds"])
        self.loaded_devices[info["device"]] = self.loaded_devices.get(info["device"], 0) + 1
        if info.get("diverged"):
            raise TrainingDivergedError(info["diverged"])
        model.load_state_dict(entry["state"])
        model.eval()                                          # as `fit` leaves it: evaluated last
        history = pd.DataFrame(json.loads(entry["history"]))
        return model, history

    def _write(self, key: str, info: dict, state: dict, history: str) -> None:
        from .files import write_atomically

        info = {"key": key, "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "device": _device_label(), "torch": torch.__version__, **info}
        path = self.path(key)
        entry = {"info": json.dumps(info), "state": state, "history": history}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, lambda tmp: torch.save(entry, tmp))    # whole, or nothing at all
        except (OSError, RuntimeError) as exc:   # the training is done and sound: keep it, say what the store lost
            self.not_stored += 1
            why = "no space left on its disk" if getattr(exc, "errno", None) == errno.ENOSPC else \
                f"{type(exc).__name__}: {exc}"
            warnings.warn(f"run store: this training was not stored ({why}). The run goes on "
                          f"with it, but a resumed run will train it again: free space in {self.root} or fix its "
                          "permissions, or run with --no-run-store.", RuntimeWarning, stacklevel=4)
            return
        self.trained += 1

    def save(self, key: str, model: torch.nn.Module, history: pd.DataFrame, seconds: float) -> None:
        """Store a finished training: its best-validation weights and its history (exact floats)."""
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        self._write(key, {"seconds": round(seconds, 3), "diverged": None}, state,
                    json.dumps(history.to_dict(orient="list")))

    def save_diverged(self, key: str, message: str, seconds: float) -> None:
        """Store that this training diverged (a rate grid counts it; a resumed run must not retrain it)."""
        self._write(key, {"seconds": round(seconds, 3), "diverged": message}, {}, "{}")

    def summary(self) -> dict:
        """What this process took from the store and what it added (recorded in a notebook's results)."""
        return {"folder": str(self.root), "loaded": self.loaded, "trained": self.trained, "not_stored": self.not_stored,
                "loaded_seconds": round(self.loaded_seconds, 1),
                "loaded_devices": dict(sorted(self.loaded_devices.items()))}


def _device_label() -> str:
    from .runtime import STATE

    return STATE.device or "unknown device"


_STORES: dict[str, RunStore] = {}


def active() -> RunStore | None:
    """The store named by env TCMAX_RUN_STORE (a folder), one per folder and process; None when unset (nb 00)."""
    root = os.environ.get(ENV)
    if not root:
        return None
    root = str(Path(root).absolute())
    if root not in _STORES:
        _STORES[root] = RunStore(root)
    return _STORES[root]


def note(store: RunStore) -> None:
    """Record the store's summary in the running notebook's metrics; `results.publish` moves it to the meta (nb 00)."""
    from .runtime import record

    record("_run_store", store.summary())


def stored(model: torch.nn.Module, method: Any, train: Any, val: Any, cfg: Any, precision: Any, storable: bool,
           train_fn: Callable[[], tuple[torch.nn.Module, pd.DataFrame]]) -> tuple[torch.nn.Module, pd.DataFrame]:
    """`train_fn()`, or its stored result when the active store holds this training; store what it gives (nb 00).

    `fit` calls it with data checked and on the device. Without an active store, or when `storable` is
    False (an `on_epoch_end` or `augment` function, torchrun) or the key cannot be formed, it just trains.
    A divergence is stored too and raised again on a later load: a resumed rate grid does not retrain it.
    """
    store = active() if storable else None
    key = store.key(model, method, train, val, cfg, precision) if store is not None else None
    if key is None:
        return train_fn()
    before = store.loaded
    try:
        hit = store.load(key, model)                     # a stored divergence raises again
    finally:
        if store.loaded != before:
            note(store)
    if hit is not None:
        return hit
    t0 = time.perf_counter()
    try:
        model, history = train_fn()
    except TrainingDivergedError as exc:
        store.save_diverged(key, str(exc), time.perf_counter() - t0)
        note(store)
        raise
    store.save(key, model, history, time.perf_counter() - t0)
    note(store)
    return model, history
