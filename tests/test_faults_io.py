"""No silent failure, round 2 (issue #24): full and read-only disks, archives, and waits that end.

Full and read-only file systems are real: small tmpfs mounts (root only; skipped elsewhere). Downloads run
over real HTTP on 127.0.0.1, distributed cases with real gloo processes. Each test failed before the fix.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import socket
import subprocess
import sys
import tarfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from http_files import FileHandler as Handler
from http_files import serve

from tcmax_lib import distributed, losses
from tcmax_lib.data import download as dl
from tcmax_lib.data import integrity

PAYLOAD = bytes(range(256)) * 2048  # 512 KiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@contextmanager
def tmpfs(folder: Path, size: str):
    """A real file system of `size` mounted at `folder` (skips the test where mounting is not allowed)."""
    folder.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if res.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.decode().strip()}): needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


# ----------------------------------------------------------------------------- defect 8: full disks
def test_a_full_cache_names_itself_not_the_mirror_and_leaves_no_part(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "t").mkdir(parents=True)
    (mirror / "t" / "good.bin").write_bytes(PAYLOAD)
    with tmpfs(tmp_path / "cache", "128k") as cache:
        with pytest.raises(OSError, match=rf"no space left for good.bin.part in {cache / 't'}: [\d,]+ bytes free, "
                                          r"and needs 524,288 bytes") as info:
            dl.fetch(None, sha256=SHA, dataset="t", filename="good.bin", cache_dir=cache, mirror=mirror,
                     progress=False)
        assert "internet" not in str(info.value) and str(mirror) not in str(info.value)
        assert _leftovers(cache) == []


@pytest.mark.parametrize("mode", ["normal", "no-length"])
def test_a_download_onto_a_full_disk_stops_at_once_and_cleans_up(tmp_path, mode):
    with serve({"/good.bin": PAYLOAD}) as url, tmpfs(tmp_path / "cache", "128k") as cache:
        Handler.mode = mode                                              # no-length: only the write can tell
        with pytest.raises(OSError, match=rf"no space left for good.bin.part in {cache / 't'}"):
            dl.fetch(f"{url}/good.bin", sha256=SHA, dataset="t", cache_dir=cache, mirror=None, progress=False)
        assert _leftovers(cache) == []
        assert len(Handler.requests) == 1                                # no retry against a full disk


def test_a_cache_file_written_onto_a_full_disk_leaves_no_tmp(tmp_path):
    data = {"x": torch.zeros(100_000)}                                   # 400 kB
    with tmpfs(tmp_path / "cache", "128k") as cache:
        with pytest.raises(OSError, match=r"no space left for features.pt .* and needs [\d,]+ bytes"):
            integrity.write_atomically(cache / "features.pt", lambda tmp: torch.save(data, tmp), need=400_000)
        # a write that fails without a size estimate is cleaned up too, with the same message
        with pytest.raises(OSError, match="no space left for features.pt"):
            integrity.write_atomically(cache / "features.pt", lambda tmp: tmp.write_bytes(bytes(400_000)))
        assert _leftovers(cache) == []


# ----------------------------------------------------------------------------- defect 9: read-only caches
def test_a_verified_read_only_cache_is_used_without_the_network(tmp_path):
    with tmpfs(tmp_path / "shared", "4m") as shared:
        (shared / "t").mkdir()
        (shared / "t" / "good.bin").write_bytes(PAYLOAD)
        subprocess.run(["mount", "-o", "remount,ro", str(shared)], check=True)
        path = dl.fetch("http://127.0.0.1:9/unreachable", sha256=SHA, dataset="t", filename="good.bin",
                        cache_dir=shared, mirror=None, progress=False)
        assert path.read_bytes() == PAYLOAD
        path = dl.fetch("http://127.0.0.1:9/unreachable", sha256=None, check=lambda p: None, dataset="t",
                        filename="good.bin", cache_dir=shared, mirror=None, progress=False)
        assert path == shared / "t" / "good.bin"
        # a read-only cache that lacks the file still says that the folder is not writable
        with pytest.raises(dl.DataUnavailableError, match="is not writable"):
            dl.fetch("http://127.0.0.1:9/x", sha256=SHA, dataset="t", filename="other.bin", cache_dir=shared,
                     mirror=None, progress=False)


def test_a_data_dir_that_is_a_file_is_named(tmp_path, monkeypatch):
    (tmp_path / "data").write_text("not a folder")
    monkeypatch.setenv("TCMAX_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(NotADirectoryError, match=f"TCMAX_DATA_DIR={tmp_path / 'data'} is a file, not a folder"):
        dl.data_dir()


# ----------------------------------------------------------------------------- archives
def _tar(members: list[tuple[str, bytes]]) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_duplicate_archive_members_are_refused(tmp_path):
    archive = tmp_path / "a.tar"
    archive.write_bytes(_tar([("pkg/a.bin", b"first"), ("pkg/b.bin", b"b"), ("pkg/./a.bin", b"second")]))
    with pytest.raises(RuntimeError, match=r"member 'pkg/./a.bin' and an earlier one both write pkg/a.bin"):
        dl.safe_extract_tar(archive, tmp_path / "out")


def test_a_file_member_named_dot_cannot_write_beside_the_folder(tmp_path):
    archive = tmp_path / "a.tar"
    archive.write_bytes(_tar([(".", b"payload")]))
    with pytest.raises(RuntimeError, match="named like the target folder itself"):
        dl.safe_extract_tar(archive, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar"]


# ----------------------------------------------------------------------------- defect 10: waits that end
def test_a_process_waiting_for_a_lock_says_so_and_gives_up(tmp_path, monkeypatch, capsys):
    target = tmp_path / "f.bin"
    with open(str(target) + ".lock", "a+") as holder:                   # another open file: flock blocks us
        fcntl.flock(holder, fcntl.LOCK_EX)
        monkeypatch.setenv("TCMAX_LOCK_TIMEOUT", "0.3")
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match=r"has held .*f.bin.lock for 0 s.*TCMAX_LOCK_TIMEOUT"):
            with integrity.file_lock(target):
                pass
        assert time.monotonic() - t0 < 5
    said = capsys.readouterr().out
    assert "another process holds" in said and "waiting for it, at most 0 s (TCMAX_LOCK_TIMEOUT)" in said
    monkeypatch.setenv("TCMAX_LOCK_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="TCMAX_LOCK_TIMEOUT='soon' must be a positive number"):
        with integrity.file_lock(target):
            pass


def test_a_dripping_server_cannot_hold_a_download_forever(tmp_path):
    with serve({"/good.bin": PAYLOAD}) as url:
        Handler.mode = "drip"
        t0 = time.monotonic()
        with pytest.raises(dl.DataUnavailableError, match=r"after the deadline \(TCMAX_DOWNLOAD_DEADLINE\)"):
            dl.fetch(f"{url}/good.bin", sha256=SHA, dataset="t", cache_dir=tmp_path, mirror=None, progress=False,
                     timeout=3, deadline=1.0)
        assert time.monotonic() - t0 < 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_joining_a_job_without_peers_says_so_and_times_out():
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port()), "TCMAX_DIST_TIMEOUT": "2"}
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-c", "from tcmax_lib import distributed; distributed.init_from_env()"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode != 0 and time.monotonic() - t0 < 60
    assert "waiting for the 2 processes of the job at 127.0.0.1" in res.stdout
    assert "did not all join" in res.stderr and "torchrun --nproc_per_node=2" in res.stderr


def _mismatch_worker(rank: int, world: int, init_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        logits = [torch.randn(4, 3 + rank), torch.randn(4, 3 + rank)]   # rank 1 has one class more
        with pytest.raises(ValueError, match=r"different shapes \[\(2, 3\), \(2, 4\)\]"):
            losses.tcmax_loss(logits, torch.tensor([0, 1, 2, 0]), group=distributed.group_or_none())
        dist.barrier()                  # both ranks are past the error before either tears its connections down
    finally:
        dist.destroy_process_group()


def test_ranks_with_different_class_counts_get_a_message_not_a_gloo_abort(tmp_path):
    ctx = mp.spawn(_mismatch_worker, args=(2, str(tmp_path / "init")), nprocs=2, join=False)
    deadline = time.monotonic() + 120                                    # before the fix the ranks could hang
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the ranks did not finish within 120 s")
