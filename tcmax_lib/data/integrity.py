"""File integrity for everything the library keeps on disk: hashes, per-file locks, checked caches (nb 05).

* `file_lock(path)` and `write_atomically` (from `files`, re-exported here): an exclusive lock on `<path>.lock`,
  so two processes never build the same cache file at once, and writes that leave no partial file.
* `write_digest` / `check_digest`: a cache file's SHA-256 stored beside it (`<file>.sha256`) when it is
  built and checked when it is loaded (once per process and file version), so flipped bytes are caught.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

from ..files import disk_full, ensure_free_space, existing_parent, file_lock, lock_timeout, write_atomically  # noqa: F401

CHUNK = 1 << 20
_CHECKED: dict[tuple[str, int, int], str] = {}      # (path, size, mtime_ns) -> digest verified in this process


class ChecksumError(RuntimeError):
    """A file's content does not match its expected SHA-256 or fails its content check (notebook 05)."""


class DataUnavailableError(RuntimeError):
    """A file is neither cached, nor in the mirror, nor downloadable (notebook 05)."""


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
