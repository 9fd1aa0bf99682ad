"""Verified, resumable, atomic downloads with an offline-mirror fallback.

Cache:  ``$TCMAX_DATA_DIR/<dataset>/<file>``  (default ``data/`` in the repository).
Mirror: ``$TCMAX_DATA_MIRROR/<dataset>/<file>`` -- a local copy (CI, air-gapped GPU boxes).
When the mirror is set and holds the file it is used without touching the network;
otherwise the canonical URL is downloaded. Every file is checked against its SHA-256.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from ..runtime import repo_root

CHUNK = 1 << 20


class ChecksumError(RuntimeError):
    """A file's SHA-256 does not match the manifest (notebook 05)."""


class DataUnavailableError(RuntimeError):
    """A file is neither cached, nor in the mirror, nor downloadable (notebook 05)."""


def data_dir() -> Path:
    """Cache root: env TCMAX_DATA_DIR, else <repo>/data (notebook 05)."""
    env = os.environ.get("TCMAX_DATA_DIR")
    return Path(env).expanduser() if env else repo_root() / "data"


def mirror_dir() -> Path | None:
    """Offline mirror root from env TCMAX_DATA_MIRROR (None when unset) (notebook 05)."""
    env = os.environ.get("TCMAX_DATA_MIRROR")
    if not env:
        return None
    path = Path(env).expanduser()
    if not path.is_absolute() and not path.exists() and (repo_root() / path).exists():
        path = repo_root() / path  # relative to the project root (e.g. CI's ../shared/data)
    return path.resolve()


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


def _copy_from_mirror(src: Path, part: Path) -> None:
    with open(src, "rb") as fin, open(part, "wb") as fout:
        shutil.copyfileobj(fin, fout, CHUNK)


def _download(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Stream `url` into `part`, resuming from its current size with an HTTP Range request."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "tcmax-tutorial"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        resumed = have and response.status == 206
        mode = "ab" if resumed else "wb"
        start = have if resumed else 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        with open(part, mode) as f, tqdm(total=total, initial=start, unit="B", unit_scale=True,
                                         desc=part.name.removesuffix(".part"), disable=not progress or None,
                                         leave=False) as bar:
            received = 0
            for block in iter(lambda: response.read(CHUNK), b""):
                f.write(block)
                received += len(block)
                bar.update(len(block))
        if length is not None and received < int(length):
            raise urllib.error.URLError(f"transfer interrupted after {start + received} of {total} bytes")


def fetch(url: str | None, *, sha256: str | None, dataset: str, filename: str | None = None,
          cache_dir: Path | None = None, mirror: Path | None | str = "env", timeout: float = 60.0,
          progress: bool = True) -> Path:
    """Return a verified local copy of `filename` of `dataset`, downloading it only when needed.

    `sha256=None` is only for files whose bytes are not stable upstream (GitHub tag archives,
    re-compressed .gz); the caller must then verify the content it extracts.
    Introduced in notebook 05.
    """
    filename = filename or Path(str(url)).name
    cache_dir = Path(cache_dir) if cache_dir is not None else data_dir()
    mirror = mirror_dir() if mirror == "env" else (Path(mirror) if mirror else None)
    dest = cache_dir / dataset / filename
    if dest.exists():
        if sha256 is None or sha256_file(dest) == sha256.lower():
            return dest  # verified cache hit: no network
        dest.unlink()  # stale or corrupted cache: fetch again
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    mirrored = mirror / dataset / filename if mirror else None
    errors = []
    if mirrored is not None and mirrored.exists():
        part.unlink(missing_ok=True)
        _copy_from_mirror(mirrored, part)
        source = str(mirrored)
    elif url:
        try:
            _download(url, part, timeout, progress)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            errors.append(f"{url}: {exc}")
        source = url
    if errors or not part.exists():
        hint = (f"mirror {mirror}/{dataset}/ has no {filename}" if mirror
                else "set TCMAX_DATA_MIRROR to a folder holding <dataset>/<file> copies")
        raise DataUnavailableError(
            f"cannot get {dataset}/{filename}: " + ("; ".join(errors) or "no URL") +
            f". Fix: connect to the internet and run again (a partial download resumes), or {hint}.")
    if sha256 is not None:
        verify(part, sha256, source)
    part.replace(dest)  # atomic: a file under its final name is always complete and verified
    return dest


def safe_extract_tar(archive: Path, dest: Path, members: list[str] | None = None) -> list[Path]:
    """Extract a tar archive into `dest`, refusing absolute paths, '..', links and devices (notebook 05)."""
    dest = Path(dest).resolve()
    out = []
    with tarfile.open(archive) as tar:
        for info in tar.getmembers():
            if members is not None and info.name not in members:
                continue
            target = (dest / info.name).resolve()
            if not str(target).startswith(str(dest) + os.sep) and target != dest:
                raise RuntimeError(f"{archive.name}: member {info.name!r} escapes the target folder; refusing.")
            if info.issym() or info.islnk() or info.isdev():
                raise RuntimeError(f"{archive.name}: member {info.name!r} is a link or device; refusing.")
            if info.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(info)
            tmp = target.with_name(target.name + ".part")
            with src, open(tmp, "wb") as f:
                shutil.copyfileobj(src, f, CHUNK)
            tmp.replace(target)
            out.append(target)
    return out


def read_sha256sums(path: Path) -> dict[str, str]:
    """Parse a `sha256sum`-style manifest into {relative path: hash} (notebook 05)."""
    table = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            table[name.strip().lstrip("*")] = digest.lower()
    return table
