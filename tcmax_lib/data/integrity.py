"""File integrity for everything the library keeps on disk: hashes, per-file locks, checked caches (nb 05).

* `file_lock(path)`: an exclusive advisory lock (fcntl) on `<path>.lock`, so two processes (two notebooks,
  a notebook and a test) never write the same cache file at once; the second waits, then finds it done.
* `write_digest` / `check_digest`: a cache file's SHA-256 stored beside it (`<file>.sha256`) when it is
  built and checked when it is loaded (once per process and file version), so flipped bytes are caught.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..runtime import env_seconds

CHUNK = 1 << 20
_CHECKED: dict[tuple[str, int, int], str] = {}      # (path, size, mtime_ns) -> digest verified in this process


class ChecksumError(RuntimeError):
    """A file's content does not match its expected SHA-256 or fails its content check (notebook 05)."""


class DataUnavailableError(RuntimeError):
    """A file is neither cached, nor in the mirror, nor downloadable (notebook 05)."""


def _existing(folder: Path) -> Path:
    """`folder` or its nearest existing ancestor (where free space can be measured)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def disk_full(path: Path, need: int | None = None) -> OSError:
    """The error for a write to `path` that found no room: names the folder, the free and the needed bytes (nb 05)."""
    folder = _existing(Path(path).parent)
    free = shutil.disk_usage(folder).free
    needs = f", and needs {need:,} bytes" if need else ""
    return OSError(errno.ENOSPC, f"no space left for {Path(path).name} in {folder}: {free:,} bytes free{needs}. "
                   "Free disk space there, or set TCMAX_DATA_DIR (or pass cache_dir=) to a folder on a disk with "
                   "room; nothing half-written was kept")


def ensure_free_space(path: Path, need: int) -> None:
    """Raise `disk_full` before any work when the disk of `path` has fewer than `need` bytes free (notebook 05)."""
    if shutil.disk_usage(_existing(Path(path).parent)).free < need:
        raise disk_full(path, need)


def write_atomically(path: Path, write: Callable[[Path], None], need: int | None = None) -> Path:
    """`write(tmp)` beside `path`, then rename it into place; a failed write leaves nothing behind (notebook 05).

    A write that fails for lack of space (OSError ENOSPC, or torch.save's RuntimeError on a full disk)
    raises `disk_full`, naming the folder and the space needed, after the temporary file is removed.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if need:
        ensure_free_space(path, need)
    try:
        write(tmp)
        tmp.replace(path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
        full = full or (isinstance(exc, RuntimeError) and need is not None
                        and shutil.disk_usage(_existing(path.parent)).free < need)
        if full:
            raise disk_full(path, need) from exc
        raise
    return path


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file, streamed (notebook 05)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, sha256: str, source: str = "") -> None:
    """Raise ChecksumError (and delete the file) when `path` does not hash to `sha256` (notebook 05)."""
    actual = sha256_file(path)
    if actual != sha256.lower():
        path.unlink(missing_ok=True)
        where = f" (from {source})" if source else ""
        raise ChecksumError(
            f"{path.name}{where}: SHA-256 mismatch, expected {sha256}, got {actual}. "
            "The bad file was deleted. Run again to re-download; if it keeps failing, the source "
            "is corrupted or changed: check TCMAX_DATA_MIRROR or the URL.")


def writable_dir(folder: Path) -> Path:
    """Create `folder` if needed and check that files can be written there; a clear error otherwise (nb 05)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise DataUnavailableError(
                f"the cache folder {folder} is not writable ({exc.strerror}). Set TCMAX_DATA_DIR to a writable "
                "folder (or pass cache_dir=...).") from exc
        raise
    return folder


def lock_timeout() -> float:
    """Seconds a process waits for another one's file lock: env TCMAX_LOCK_TIMEOUT, else 3600 (notebook 05)."""
    return env_seconds("TCMAX_LOCK_TIMEOUT", 3600.0)


@contextmanager
def file_lock(path: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `<path>.lock` while building or fetching `path` (notebook 05).

    A process that has to wait says for what and for how long (`timeout`, default `lock_timeout()`),
    then gives up with a TimeoutError naming the lock file.
    """
    import fcntl

    timeout = lock_timeout() if timeout is None else timeout
    lock_path = Path(str(path) + ".lock")
    writable_dir(lock_path.parent)
    with open(lock_path, "a+") as handle:
        deadline, said = time.monotonic() + timeout, False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not said:
                    print(f"{path.name}: another process holds {lock_path} (it is building or fetching this file); "
                          f"waiting for it, at most {timeout:.0f} s (TCMAX_LOCK_TIMEOUT)", flush=True)
                    said = True
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path.name}: another process has held {lock_path} for {timeout:.0f} s. "
                                       "If no other run is active, delete the lock file and run again; "
                                       "TCMAX_LOCK_TIMEOUT sets how long to wait.") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_digest(path: Path) -> str:
    """Store the SHA-256 of a freshly built cache file in `<file>.sha256` (notebook 05)."""
    digest = sha256_file(path)
    write_atomically(Path(str(path) + ".sha256"), lambda tmp: tmp.write_text(digest + "\n"))
    st = path.stat()
    _CHECKED[(str(path), st.st_size, st.st_mtime_ns)] = digest
    return digest


def check_digest(path: Path) -> bool:
    """True when `path` matches its stored `<file>.sha256` (hashed once per process and file version; nb 05)."""
    side = Path(str(path) + ".sha256")
    if not path.exists() or not side.exists():
        return False
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    expected = side.read_text().strip()
    if _CHECKED.get(key) == expected:
        return True
    if sha256_file(path) != expected:
        return False
    _CHECKED[key] = expected
    return True
