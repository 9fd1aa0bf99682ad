"""Verified, resumable, atomic, locked downloads with an offline-mirror fallback (notebook 05).

Cache:  ``$TCMAX_DATA_DIR/<dataset>/<file>``  (default ``data/`` in the repository).
Mirror: ``$TCMAX_DATA_MIRROR/<dataset>/<file>`` -- a local copy (CI, air-gapped GPU boxes).
Sources are tried in order, mirror first, then the canonical URL; a source whose file fails its check
is reported and the next one is tried. Every kept file passes a check that can fail: its SHA-256 where
the bytes are stable, else the caller's content check (`check=`, e.g. a complete archive listing).
A file under its final name is always complete and checked; a per-file lock keeps concurrent
processes from writing the same file.
"""

from __future__ import annotations

import errno
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from ..files import env_seconds
from ..runtime import progress_off, repo_root
from .integrity import (
    CHUNK,
    ChecksumError,
    DataUnavailableError,
    disk_full,
    ensure_free_space,
    file_lock,
    sha256_file,
    verify,
    writable_dir,
)

__all__ = ["ChecksumError", "DataUnavailableError", "data_dir", "fetch", "mirror_dir", "read_sha256sums",
           "safe_extract_tar", "sha256_file", "verify"]


def data_dir() -> Path:
    """Cache root: env TCMAX_DATA_DIR, else <repo>/data (notebook 05)."""
    env = os.environ.get("TCMAX_DATA_DIR")
    path = Path(env).expanduser() if env else repo_root() / "data"
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"TCMAX_DATA_DIR={env} is a file, not a folder: point it at a folder for the "
                                 "data cache (it is created if missing), or unset it to use the repository's data/.")
    return path


def download_deadline() -> float:
    """Seconds one source may take for one file: env TCMAX_DOWNLOAD_DEADLINE, else 7200 (notebook 05)."""
    return env_seconds("TCMAX_DOWNLOAD_DEADLINE", 7200.0)


def mirror_dir() -> Path | None:
    """Offline mirror root from env TCMAX_DATA_MIRROR (None when unset) (notebook 05)."""
    env = os.environ.get("TCMAX_DATA_MIRROR")
    if not env:
        return None
    path = Path(env).expanduser()
    if not path.is_absolute() and not path.exists() and (repo_root() / path).exists():
        path = repo_root() / path  # relative to the project root (e.g. CI's ../shared/data)
    return path.resolve()


def _copy_from_mirror(src: Path, part: Path) -> None:
    ensure_free_space(part, src.stat().st_size)
    with open(src, "rb") as fin, open(part, "wb") as fout:
        shutil.copyfileobj(fin, fout, CHUNK)
    if part.stat().st_size != src.stat().st_size:
        raise OSError(f"copy of {src} is incomplete ({part.stat().st_size} of {src.stat().st_size} bytes)")


def _download(url: str, part: Path, timeout: float, progress: bool, resume: bool, deadline: float) -> None:
    """Stream `url` into `part`; resume from its size with an HTTP Range request when `resume`.

    `timeout` bounds each read, `deadline` (seconds since the epoch of time.monotonic) the whole transfer.
    """
    have = part.stat().st_size if (resume and part.exists()) else 0
    request = urllib.request.Request(url, headers={"User-Agent": "tcmax-tutorial"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing after `have`: the partial file is complete or too long; restart
            part.unlink()
            return _download(url, part, timeout, progress, False, deadline)
        raise
    with response:
        crange = response.headers.get("Content-Range", "")
        resumed = bool(have) and response.status == 206 and crange.startswith(f"bytes {have}-")
        if response.status == 206 and not resumed:
            raise urllib.error.URLError(f"server answered 206 with Content-Range {crange!r} to a request for "
                                        f"bytes {have}-: refusing a misplaced partial response")
        start = have if resumed else 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        if length is not None:
            ensure_free_space(part, int(length))
        with open(part, "ab" if resumed else "wb") as f, tqdm(
                total=total, initial=start, unit="B", unit_scale=True, desc=part.name.removesuffix(".part"),
                disable=progress_off(progress), leave=False) as bar:
            received = 0
            for block in iter(lambda: response.read1(CHUNK), b""):     # read1: returns what has arrived
                f.write(block)
                received += len(block)
                bar.update(len(block))
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url}: {start + received:,} bytes after the deadline "
                                       "(TCMAX_DOWNLOAD_DEADLINE); the server is too slow or stalled")
        if length is not None and received < int(length):
            raise urllib.error.URLError(f"transfer interrupted after {start + received} of {total} bytes")


def _target(cache_dir: Path, dataset: str, filename: str) -> Path:
    root = (Path(cache_dir) / dataset).resolve()
    dest = (root / filename).resolve()
    if Path(filename).is_absolute() or root not in dest.parents:
        raise ValueError(f"filename {filename!r} leaves the cache folder {root}; use a relative path inside it.")
    if dest.is_dir():
        raise IsADirectoryError(f"{dest} is a directory, not a cached file: remove it and run again.")
    return dest


def _passes(path: Path, sha256: str | None, check: Callable[[Path], None] | None) -> bool:
    """Whether a file passes its hash and content check, without deleting it (works on a read-only folder)."""
    if sha256 is not None and sha256_file(path) != sha256.lower():
        return False
    if check is not None:
        try:
            check(path)
        except Exception:  # noqa: BLE001 - any failed content check means: not a good copy
            return False
    return True


def _acceptable(path: Path, sha256: str | None, check: Callable[[Path], None] | None, source: str) -> None:
    """Raise ChecksumError (deleting `path`) unless the file passes its hash or content check."""
    if sha256 is not None:
        verify(path, sha256, source)
    if check is not None:
        try:
            check(path)
        except Exception as exc:  # noqa: BLE001 - any failed content check means: do not keep this file
            path.unlink(missing_ok=True)
            raise ChecksumError(f"{path.name.removesuffix('.part')} (from {source}) failed its content check: "
                                f"{exc}. The bad file was deleted.") from exc


def fetch(url: str | None, *, sha256: str | None, dataset: str, filename: str | None = None,
          cache_dir: Path | None = None, mirror: Path | None | str = "env", timeout: float = 60.0,
          progress: bool = True, check: Callable[[Path], None] | None = None,
          deadline: float | None = None) -> Path:
    """Return a checked local copy of `filename` of `dataset`, downloading it only when needed (notebook 05).

    `sha256=None` is only for files whose bytes are not stable upstream (GitHub tag archives,
    re-compressed .gz); pass `check(path)`, which raises on bad content, so that such a file can fail too.
    `timeout` bounds each network read; `deadline` (default `download_deadline()`) one source's whole
    transfer. A verified cache hit needs no write access (a read-only shared data folder works).
    A full disk stops at once with the folder, its free space and the size needed (no other source is tried).
    """
    if sha256 is None and check is None:
        raise ValueError(f"{dataset}/{filename or url}: give sha256= or a content check= (a file that cannot "
                         "fail a check could be kept truncated or corrupted).")
    filename = filename or Path(str(url)).name
    dest = _target(Path(cache_dir) if cache_dir is not None else data_dir(), dataset, filename)
    mirror = mirror_dir() if mirror == "env" else (Path(mirror) if mirror else None)
    deadline = download_deadline() if deadline is None else deadline
    if dest.is_file() and _passes(dest, sha256, check):
        return dest  # checked cache hit: no network, no lock, no write access needed
    writable_dir(dest.parent)
    with file_lock(dest):
        if dest.exists():
            try:
                _acceptable(dest, sha256, check, "the cache")
                return dest  # checked cache hit: no network
            except ChecksumError:
                pass  # stale or corrupted cache (deleted): fetch again
        part = dest.with_name(dest.name + ".part")
        mirrored = mirror / dataset / filename if mirror else None
        errors: list[str] = []
        bad_content = False
        sources = ([("mirror", str(mirrored))] if mirrored is not None and mirrored.is_file() else [])
        sources += [("url", url)] if url else []
        for kind, source in sources:
            try:
                if kind == "mirror":
                    part.unlink(missing_ok=True)
                    _copy_from_mirror(Path(source), part)
                elif part.exists() and sha256 is not None and sha256_file(part) == sha256.lower():
                    pass  # a complete .part left by a run killed during its check: verify, do not resume
                else:
                    _download(source, part, timeout, progress, sha256 is not None, time.monotonic() + deadline)
                _acceptable(part, sha256, check, source)
                part.replace(dest)  # atomic: a file under its final name is always complete and checked
                return dest
            except ChecksumError as exc:
                bad_content = True
                errors.append(str(exc))
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                if getattr(exc, "errno", None) == errno.ENOSPC:                # the disk, not the source
                    part.unlink(missing_ok=True)
                    raise (exc if "no space left for" in str(exc) else disk_full(part)) from None
                errors.append(f"{source}: {exc}")
        hint = (f"mirror {mirror}/{dataset}/ has no good {filename}" if mirror
                else "set TCMAX_DATA_MIRROR to a folder holding <dataset>/<file> copies")
        cls = ChecksumError if bad_content else DataUnavailableError
        raise cls(f"cannot get {dataset}/{filename}: " + ("; ".join(errors) or "no URL and no mirror copy") +
                  f". Fix: connect to the internet and run again (a partial download with a known hash resumes), "
                  f"or {hint}.")


def safe_extract_tar(archive: Path, dest: Path, members: list[str] | None = None) -> list[Path]:
    """Extract a tar archive into `dest`, refusing absolute paths, '..', links and devices (notebook 05).

    Every member is checked before anything is written: one that escapes `dest`, a link or device, two
    members writing one path, and a path that is a file in one member and a folder in another are refused
    with the member named.
    """
    dest = Path(dest).resolve()
    out, seen, folders = [], {}, set()
    with tarfile.open(archive) as tar:
        chosen = [info for info in tar.getmembers() if members is None or info.name in members]
        for info in chosen:                                        # every member checked before any is written
            target = (dest / info.name).resolve()
            if target == dest and not info.isdir():
                raise RuntimeError(f"{archive.name}: member {info.name!r} is a file named like the target folder "
                                   "itself; refusing (it would be written beside the folder).")
            if not str(target).startswith(str(dest) + os.sep) and target != dest:
                raise RuntimeError(f"{archive.name}: member {info.name!r} escapes the target folder; refusing.")
            if target in seen and not (info.isdir() and seen[target]):
                raise RuntimeError(f"{archive.name}: member {info.name!r} and an earlier one both write "
                                   f"{target.relative_to(dest)}; refusing a duplicate that would overwrite it.")
            if info.issym() or info.islnk() or info.isdev():
                raise RuntimeError(f"{archive.name}: member {info.name!r} is a link or device; refusing.")
            seen[target] = info.isdir()
            folders.update(p for p in target.parents if p != dest and str(p).startswith(str(dest)))
        clash = sorted(str(t.relative_to(dest)) for t, is_dir in seen.items() if not is_dir and t in folders)
        if clash:
            raise RuntimeError(f"{archive.name}: {clash[0]!r} is a file in one member and a folder holding others; "
                               "refusing a malformed archive (re-download it, or check the source).")
        for info in chosen:
            target = (dest / info.name).resolve()
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
