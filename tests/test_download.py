"""The downloader over real HTTP on 127.0.0.1: success, mismatch, interruption + resume, mirror, cache."""

import hashlib
import io
import tarfile

import pytest
from http_files import FileHandler as Handler
from http_files import serve

from tcmax_lib.data import download as dl

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture()
def server():
    with serve({"/good.bin": PAYLOAD, "/bad.bin": PAYLOAD[:-1] + b"x"}) as url:
        yield url


def test_success_then_cached_without_request(server, tmp_path):
    path = dl.fetch(f"{server}/good.bin", sha256=SHA, dataset="t", cache_dir=tmp_path, mirror=None, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert len(Handler.requests) == 1
    again = dl.fetch(f"{server}/good.bin", sha256=SHA, dataset="t", cache_dir=tmp_path, mirror=None)
    assert again == path and len(Handler.requests) == 1  # verified cache: no network


def test_checksum_mismatch_raises_and_removes(server, tmp_path):
    with pytest.raises(dl.ChecksumError, match="SHA-256 mismatch.*expected") as err:
        dl.fetch(f"{server}/bad.bin", sha256=SHA, dataset="t", cache_dir=tmp_path, mirror=None, progress=False)
    assert "bad.bin" in str(err.value) and "Run again" in str(err.value)
    # neither the final file nor a partial one is left (the per-file lock stays, empty)
    assert [p.name for p in (tmp_path / "t").iterdir()] == ["bad.bin.lock"]


def test_interrupted_transfer_leaves_no_complete_file_and_resumes(server, tmp_path):
    Handler.cut_after = 300_000
    with pytest.raises(dl.DataUnavailableError, match="interrupted|cannot get"):
        dl.fetch(f"{server}/good.bin", sha256=SHA, dataset="t", cache_dir=tmp_path, mirror=None, progress=False)
    assert not (tmp_path / "t" / "good.bin").exists()
    part = tmp_path / "t" / "good.bin.part"
    assert part.exists() and part.stat().st_size == 300_000
    path = dl.fetch(f"{server}/good.bin", sha256=SHA, dataset="t", cache_dir=tmp_path, mirror=None, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert Handler.requests[-1][1] == "bytes=300000-"  # resumed, not restarted


def test_mirror_hit_makes_no_request(server, tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "t").mkdir(parents=True)
    (mirror / "t" / "good.bin").write_bytes(PAYLOAD)
    path = dl.fetch(f"{server}/good.bin", sha256=SHA, dataset="t", cache_dir=tmp_path / "cache", mirror=mirror)
    assert path.read_bytes() == PAYLOAD and Handler.requests == []


def test_corrupted_mirror_is_reported(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "t").mkdir(parents=True)
    (mirror / "t" / "good.bin").write_bytes(b"junk")
    with pytest.raises(dl.ChecksumError, match="mirror"):
        dl.fetch(None, sha256=SHA, dataset="t", filename="good.bin", cache_dir=tmp_path / "c", mirror=mirror)


def test_offline_without_mirror_says_how_to_fix(tmp_path):
    with pytest.raises(dl.DataUnavailableError, match="TCMAX_DATA_MIRROR"):
        dl.fetch("http://127.0.0.1:9/none.bin", sha256=SHA, dataset="t", cache_dir=tmp_path, mirror=None,
                 timeout=2, progress=False)


def test_stale_cache_is_replaced(server, tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "good.bin").write_bytes(b"old")
    path = dl.fetch(f"{server}/good.bin", sha256=SHA, dataset="t", cache_dir=tmp_path, mirror=None, progress=False)
    assert path.read_bytes() == PAYLOAD


def _tar_with(name: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    return buf.getvalue()


def test_safe_extract_refuses_traversal(tmp_path):
    archive = tmp_path / "evil.tar"
    archive.write_bytes(_tar_with("../escape.txt"))
    with pytest.raises(RuntimeError, match="escapes"):
        dl.safe_extract_tar(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_safe_extract_ok(tmp_path):
    archive = tmp_path / "ok.tar"
    archive.write_bytes(_tar_with("dir/file.txt"))
    out = dl.safe_extract_tar(archive, tmp_path / "out")
    assert out[0].read_bytes() == b"abc"


def test_read_sha256sums(tmp_path):
    p = tmp_path / "SUMS"
    p.write_text(f"{SHA}  a/b.wav\n{SHA} *c.bin\n")
    assert dl.read_sha256sums(p) == {"a/b.wav": SHA, "c.bin": SHA}
