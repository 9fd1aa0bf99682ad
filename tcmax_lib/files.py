"""Files that are never half-written: atomic writes, per-file locks and strict JSON (notebook 00).

    write_atomically(path, write)  -> write to a private temporary file beside `path`, then rename it into place
    write_text(path, text)         -> the same for a text (README, a guide page, a notebook)
    file_lock(path)                -> an exclusive advisory lock on `<path>.lock` (fcntl), waiting with a message
    dumps_json(data, where)        -> JSON text; a NaN or infinity is an error naming its key, never `Infinity`
    update_json(path, change)      -> read, change and write a JSON file under its lock: safe with concurrent writers
    env_seconds(name, default)     -> positive seconds from an environment variable (the waits of the library)

A reader never sees a partial file: the rename is atomic on one file system, so a full disk, a SIGTERM or a
crash leaves the old file whole and no temporary file behind (removed on any exception). Two processes that
change the same JSON file (two notebooks recording metrics, two FAST runs publishing timings) take turns
under the file's lock, so neither loses the other's keys. The data layer (`data.integrity`) builds its
checked caches on these.
"""

from __future__ import annotations

import errno
import json
import math
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def env_seconds(name: str, default: float) -> float:
    """Positive seconds from environment variable `name`, else `default`; an error naming it (notebook 00)."""
    text = os.environ.get(name)
    if text is None:
        return float(default)
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ValueError(f"{name}={text!r} must be a positive number of seconds.")
    return value


def existing_parent(folder: Path) -> Path:
    """`folder` or its nearest existing ancestor (where free space can be measured) (notebook 00)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def disk_full(path: Path, need: int | None = None) -> OSError:
    """The error for a write to `path` that found no room: names the folder, the free and the needed bytes (nb 05)."""
    folder = existing_parent(Path(path).parent)
    free = shutil.disk_usage(folder).free
    needs = f", and needs {need:,} bytes" if need else ""
    return OSError(errno.ENOSPC, f"no space left for {Path(path).name} in {folder}: {free:,} bytes free{needs}. "
                   "Free disk space there, or set TCMAX_DATA_DIR (or pass cache_dir=) to a folder on a disk with "
                   "room; nothing half-written was kept")


def ensure_free_space(path: Path, need: int) -> None:
    """Raise `disk_full` before any work when the disk of `path` has fewer than `need` bytes free (notebook 05)."""
    if shutil.disk_usage(existing_parent(Path(path).parent)).free < need:
        raise disk_full(path, need)


def write_atomically(path: Path, write: Callable[[Path], None], need: int | None = None) -> Path:
    """`write(tmp)` beside `path`, then rename it into place; a failed write leaves nothing behind (notebook 00).

    The temporary name is private to the process and the call, so concurrent writers never share one. A
    write that fails for lack of space (OSError ENOSPC, or torch.save's RuntimeError on a full disk) raises
    `disk_full`, naming the folder and the space needed, after the temporary file is removed.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    if need:
        ensure_free_space(path, need)
    try:
        write(tmp)
        tmp.replace(path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
        full = full or (isinstance(exc, RuntimeError) and need is not None
                        and shutil.disk_usage(existing_parent(path.parent)).free < need)
        if full:
            raise disk_full(path, need) from exc
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically (README, a guide page, a notebook) (notebook 00)."""
    return write_atomically(Path(path), lambda tmp: tmp.write_text(text))


def lock_timeout() -> float:
    """Seconds a process waits for another one's file lock: env TCMAX_LOCK_TIMEOUT, else 3600 (notebook 05)."""
    return env_seconds("TCMAX_LOCK_TIMEOUT", 3600.0)


@contextmanager
def file_lock(path: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `<path>.lock` while building, fetching or changing `path` (notebook 05).

    A process that has to wait says for what and for how long (`timeout`, default `lock_timeout()`),
    then gives up with a TimeoutError naming the lock file.
    """
    import fcntl

    timeout = lock_timeout() if timeout is None else timeout
    lock_path = Path(str(path) + ".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+")                                   # noqa: SIM115 (closed below)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise PermissionError(f"cannot create the lock file {lock_path} ({exc.strerror}): the folder "
                                  f"{lock_path.parent} is not writable. Use a writable folder.") from exc
        raise
    with handle:
        deadline, said = time.monotonic() + timeout, False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not said and timeout > 0:
                    print(f"{Path(path).name}: another process holds {lock_path} (it is writing this file); "
                          f"waiting for it, at most {timeout:.0f} s (TCMAX_LOCK_TIMEOUT)", flush=True)
                    said = True
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{Path(path).name}: another process has held {lock_path} for {timeout:.0f} "
                                       "s. If no other run is active, delete the lock file and run again; "
                                       "TCMAX_LOCK_TIMEOUT sets how long to wait.") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _non_finite(data: Any, where: str) -> str | None:
    """The key path of the first NaN or infinity in `data`, or None."""
    if isinstance(data, float) and not math.isfinite(data):
        return where
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, (list, tuple)):
        items = enumerate(data)
    else:
        return None
    for k, v in items:
        if (hit := _non_finite(v, f"{where}[{k!r}]")) is not None:
            return hit
    return None


def dumps_json(data: Any, where: str = "the data", **kw) -> str:
    """JSON text of `data`; a NaN or infinity raises a ValueError naming its key path (notebook 00).

    Python would write them as `NaN`/`Infinity`, which is not JSON: strict readers (and browsers) reject the file.
    Record a diverged run as `None` (null) with a word for why, not as a number.
    """
    hit = _non_finite(data, "")
    if hit is not None:
        raise ValueError(f"{where}: the value at {hit or 'the top'} is NaN or infinite, which JSON cannot hold; "
                         "record a diverged or undefined value as None with a note, not as a number.")
    return json.dumps(data, **kw)


def loads_json(text: str, where: str) -> Any:
    """Parse strict JSON: `NaN`/`Infinity` are refused with an error naming `where` (notebook 00)."""
    def refuse(token: str) -> float:
        raise ValueError(f"{where} holds {token}, which is not JSON (a non-finite number was written into it). "
                         "Restore the file from git or re-run what wrote it.")
    try:
        return json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where} is not valid JSON ({exc}): a truncated or hand-edited file. Restore it with "
                         "`git checkout -- <file>` or re-run what wrote it.") from exc


def update_json(path: Path, change: Callable[[dict], dict], timeout: float | None = None) -> dict:
    """Read the JSON object at `path` (or {}), apply `change`, write it back atomically, all under its lock (nb 00)."""
    path = Path(path)
    with file_lock(path, timeout):
        data = loads_json(path.read_text(), str(path)) if path.exists() else {}
        data = change(data)
        text = dumps_json(data, str(path), indent=1, sort_keys=True) + "\n"
        write_text(path, text)
    return data
