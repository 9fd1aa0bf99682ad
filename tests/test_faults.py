"""No silent failure: every fault and bad input of the review (issue #13) gives a clear error or a correct result.

Downloads run over real HTTP on 127.0.0.1, concurrency with real processes. Data-set specific cases
(FSDD/MNIST/CREMA-D caches) are in test_avdigits.py and test_cremad.py, next to their fixtures.
"""

from __future__ import annotations

import errno
import hashlib
import io
import multiprocessing as mp
import tarfile
from pathlib import Path

import pytest
import torch
from http_files import FileHandler as Handler
from http_files import serve

from tcmax_lib import losses, methods, models
from tcmax_lib.data import download as dl
from tcmax_lib.data import integrity
from tcmax_lib.data.splits import Split
from tcmax_lib.info import bounds
from tcmax_lib.info import closed_forms as gt
from tcmax_lib.runtime import pick_device
from tcmax_lib.train import TrainConfig, TrainingDivergedError, fit

PAYLOAD = bytes(range(256)) * 2048  # 512 KiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _targz(n_files: int = 3) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for k in range(n_files):
            data = bytes([k]) * 50_000
            info = tarfile.TarInfo(f"pkg/f{k}.bin")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


ARCHIVE = _targz()


def archive_check(path: Path) -> None:
    """The kind of content check a caller gives for a file without a stable hash: a complete listing."""
    with tarfile.open(path) as tar:
        names = tar.getnames()
    if names != [f"pkg/f{k}.bin" for k in range(3)]:
        raise ValueError(f"unexpected members {names}")


@pytest.fixture()
def server():
    with serve({"/good.bin": PAYLOAD, "/a.tar.gz": ARCHIVE}) as url:
        yield url


# ----------------------------------------------------------------------------- downloads and caches
def _fetch_in_process(url: str, cache: str, use_hash: bool, out) -> None:
    try:
        kw = {"sha256": SHA} if use_hash else {"sha256": None, "check": lambda p: None}
        path = dl.fetch(url, dataset="t", cache_dir=Path(cache), mirror=None, progress=False, **kw)
        out.put(hashlib.sha256(path.read_bytes()).hexdigest())
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        out.put(repr(exc))


@pytest.mark.parametrize("use_hash", [True, False])
def test_two_processes_fetching_one_file_do_not_corrupt_it(server, tmp_path, use_hash):
    Handler.mode = "slow"
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_fetch_in_process, args=(f"{server}/good.bin", str(tmp_path), use_hash, out))
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [out.get(timeout=5) for _ in procs] == [SHA, SHA]
    assert (tmp_path / "t" / "good.bin").read_bytes() == PAYLOAD
    assert len(Handler.requests) == 1            # the second process waited for the lock, then used the cache


def test_mirror_copy_is_never_visible_half_done(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "t").mkdir(parents=True)
    (mirror / "t" / "good.bin").write_bytes(PAYLOAD)
    ctx = mp.get_context("fork")
    out = ctx.Queue()

    def worker():
        path = dl.fetch(None, sha256=SHA, dataset="t", filename="good.bin", cache_dir=tmp_path / "c", mirror=mirror)
        out.put(hashlib.sha256(path.read_bytes()).hexdigest())
    procs = [ctx.Process(target=worker) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [out.get(timeout=5) for _ in procs] == [SHA] * 3


def test_complete_part_is_verified_not_resumed(server, tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "good.bin.part").write_bytes(PAYLOAD)      # killed after the transfer, during the check
    path = dl.fetch(f"{server}/good.bin", sha256=SHA, dataset="t", cache_dir=tmp_path, mirror=None, progress=False)
    assert path.read_bytes() == PAYLOAD and Handler.requests == []


def test_overlong_part_gets_416_and_restarts(server, tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "good.bin.part").write_bytes(PAYLOAD + b"extra")
    path = dl.fetch(f"{server}/good.bin", sha256=SHA, dataset="t", cache_dir=tmp_path, mirror=None, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert [r[1] for r in Handler.requests] == [f"bytes={len(PAYLOAD) + 5}-", None]   # 416, then a fresh GET


def test_corrupt_cached_archive_without_hash_is_replaced(server, tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.tar.gz").write_bytes(ARCHIVE[: len(ARCHIVE) // 2])             # truncated, cached earlier
    path = dl.fetch(f"{server}/a.tar.gz", sha256=None, check=archive_check, dataset="t", cache_dir=tmp_path,
                    mirror=None, progress=False)
    assert path.read_bytes() == ARCHIVE
    (tmp_path / "t" / "a.tar.gz").write_bytes(b"<html>rate limited</html>")               # an HTML error page
    assert dl.fetch(f"{server}/a.tar.gz", sha256=None, check=archive_check, dataset="t", cache_dir=tmp_path,
                    mirror=None, progress=False).read_bytes() == ARCHIVE


def test_truncated_transfer_without_length_fails_its_check(server, tmp_path):
    Handler.mode = "no-length-truncated"
    with pytest.raises(dl.ChecksumError, match="failed its content check"):
        dl.fetch(f"{server}/a.tar.gz", sha256=None, check=archive_check, dataset="t", cache_dir=tmp_path,
                 mirror=None, progress=False)
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["a.tar.gz.lock"]   # nothing but the lock


def test_bogus_206_is_refused(server, tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "good.bin.part").write_bytes(PAYLOAD[:1000])
    Handler.mode = "bogus-206"
    with pytest.raises(dl.DataUnavailableError, match="misplaced partial response"):
        dl.fetch(f"{server}/good.bin", sha256=SHA, dataset="t", cache_dir=tmp_path, mirror=None, progress=False)
    assert not (tmp_path / "t" / "good.bin").exists()


def test_bad_mirror_file_falls_back_to_the_url(server, tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "t").mkdir(parents=True)
    (mirror / "t" / "good.bin").write_bytes(b"junk")
    path = dl.fetch(f"{server}/good.bin", sha256=SHA, dataset="t", cache_dir=tmp_path / "c", mirror=mirror,
                    progress=False)
    assert path.read_bytes() == PAYLOAD and len(Handler.requests) == 1


def test_fetch_refuses_unsafe_names_directories_and_uncheckable_files(tmp_path):
    with pytest.raises(ValueError, match="leaves the cache folder"):
        dl.fetch("http://127.0.0.1:9/x", sha256=SHA, dataset="t", filename="../../x", cache_dir=tmp_path, mirror=None)
    (tmp_path / "t" / "d").mkdir(parents=True)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        dl.fetch("http://127.0.0.1:9/d", sha256=None, check=archive_check, dataset="t", filename="d",
                 cache_dir=tmp_path, mirror=None)
    with pytest.raises(ValueError, match="content check"):
        dl.fetch("http://127.0.0.1:9/x", sha256=None, dataset="t", cache_dir=tmp_path, mirror=None)


def test_read_only_cache_is_explained(tmp_path, monkeypatch):
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))
    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(dl.DataUnavailableError, match="not writable.*TCMAX_DATA_DIR"):
        dl.fetch("http://127.0.0.1:9/x", sha256=SHA, dataset="t", cache_dir=tmp_path / "ro", mirror=None)


def test_stored_digest_catches_flipped_bytes(tmp_path):
    path = tmp_path / "cache.bin"
    path.write_bytes(PAYLOAD)
    integrity.write_digest(path)
    assert integrity.check_digest(path)
    data = bytearray(PAYLOAD)
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))
    assert not integrity.check_digest(path)


# ----------------------------------------------------------------------------- training
def _toy(n: int, seed: int = 0, nan_row: int | None = None) -> Split:
    g = torch.Generator().manual_seed(seed)
    xa, xv = torch.randn(n, 4, generator=g), torch.randn(n, 4, generator=g)
    y = (xa[:, 0] > 0).long()
    if nan_row is not None:
        xa[nan_row, 1] = float("nan")
    return Split((xa, xv), y)


def _model():
    return models.mlp_pair_model([4, 4], 2, "concat", hidden=8, feat=4, seed=0)


def test_nan_input_row_is_refused_before_training_and_named():
    cfg = TrainConfig(epochs=3, batch_size=16, progress=False)
    with pytest.raises(ValueError, match=r"the training split: modality 0 holds NaN/inf in 1 of 64 rows \(first rows "
                                         r"\[10\]\)"):
        fit(_model(), methods.Joint(), _toy(64, nan_row=10), _toy(32, seed=1), cfg)


def test_nan_made_during_training_stops_at_its_step_and_names_the_input():
    # data that were clean before training but turn NaN in a step (here: an augmentation) stop at that step
    def augment(batch, generator):
        return [batch[0].masked_fill(torch.arange(len(batch[0]))[:, None] == 3, float("nan")), batch[1]]

    cfg = TrainConfig(epochs=3, batch_size=16, progress=False, augment=augment)
    with pytest.raises(TrainingDivergedError, match=r"epoch 0, step 0: input 0 holds NaN/inf \(batch rows \[3\]\)"):
        fit(_model(), methods.Joint(), _toy(64), _toy(32, seed=1), cfg)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_divergence_stops_with_the_step(optimizer):
    cfg = TrainConfig(epochs=20, batch_size=16, lr=1e3 if optimizer == "sgd" else 1e4, optimizer=optimizer,
                      progress=False, max_abs_loss=1e4)
    with pytest.raises(TrainingDivergedError, match=r"epoch \d+, step \d+: (the loss is|the gradient of)"):
        fit(_model(), methods.Joint(), _toy(64), _toy(32, seed=1), cfg)


@pytest.mark.parametrize("change,message", [({"batch_size": 128}, "fewer than batch_size=128")])
def test_settings_that_train_nothing_are_refused(change, message):
    cfg = TrainConfig(**{"epochs": 1, "batch_size": 16, "progress": False, **change})
    with pytest.raises(ValueError, match=message):
        fit(_model(), methods.Joint(), _toy(64), _toy(32, seed=1), cfg)


def test_a_non_finite_checkpoint_is_never_restored():
    # with the per-step checks switched off, a diverged model must still not be handed back as "best":
    # the end of the first epoch finds the NaN weights and stops there, naming the epoch and the rate
    cfg = TrainConfig(epochs=2, batch_size=16, progress=False, check_finite=False)
    with pytest.raises(TrainingDivergedError, match=r"joint diverged in epoch 1 at lr 0.001: the weights hold NaN/inf"):
        fit(_model(), methods.Joint(), _toy(64, nan_row=3), _toy(32, seed=1), cfg)


def test_empty_test_split_is_refused_before_training():
    from tcmax_lib import experiments as ex
    from tcmax_lib.data.splits import Splits

    empty = _toy(8).index(torch.zeros(8, dtype=torch.bool))
    splits = Splits(_toy(64), _toy(32, seed=1), empty, {"num_classes": 2})
    calls = []
    with pytest.raises(ValueError, match="test split is empty"):
        ex.run("joint", splits, lambda seed: calls.append(seed) or _model(), TrainConfig(epochs=1, progress=False))
    assert calls == []                                                     # no model was even built


def test_empty_validation_split_is_refused():
    with pytest.raises(ValueError, match="validation split is empty"):
        fit(_model(), methods.Joint(), _toy(64), _toy(32).index(torch.zeros(32, dtype=torch.bool)),
            TrainConfig(epochs=1, batch_size=16, progress=False))


# ----------------------------------------------------------------------------- bounds, losses, inputs
def test_one_nan_batch_does_not_poison_mine():
    mine = bounds.MINE(0.5)
    good = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
    mine(good)
    before = mine.log_ema.clone()
    with pytest.raises(ValueError, match="NaN/inf.*moving average was not updated"):
        mine(torch.full((8, 8), float("nan")))
    assert torch.equal(mine.log_ema, before) and torch.isfinite(mine(good))


@pytest.mark.parametrize("fn,arg", [(gt.rho_for_mi, float("nan")), (gt.rho_for_mi, -1.0), (gt.rho_for_mi, 1e4),
                                    (gt.r_for_tc, float("nan")), (gt.r_for_tc, -0.5), (gt.r_for_tc, 100.0)])
def test_unreachable_targets_raise(fn, arg):
    with pytest.raises(ValueError, match="must be a finite number|must be at least 0|out of reach|rounds to 1"):
        fn(arg, 3, 1) if fn is gt.r_for_tc else fn(arg, 1)


@pytest.mark.parametrize("labels,message", [
    (torch.tensor([0, 5, 1, 2]), r"in \[0, 3\].*\[0, 5\]"), (torch.tensor([0, -1, 1, 2]), r"\[-1, 2\]"),
    (torch.tensor([0.0, 1.0, 1.0, 2.0]), "integer class indices"),
])
def test_bad_labels_are_explained(labels, message):
    logits = [torch.randn(4, 4), torch.randn(4, 4)]
    with pytest.raises(ValueError, match=message):
        losses.tcmax_loss(logits, labels)


def test_empty_batch_chunk_size_and_head_shape_are_explained():
    with pytest.raises(ValueError, match="batch is empty"):
        losses.tcmax_loss([torch.zeros(0, 3), torch.zeros(0, 3)], torch.zeros(0, dtype=torch.long))
    head = models.FiLMHead([4, 4], 3)
    za, zv, y = torch.randn(5, 4), torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    with pytest.raises(ValueError, match="chunk_size=0"):
        losses.tcmax_loss_pairwise(head, [za, zv], y, chunk_size=0)
    with pytest.raises(ValueError, match=r"head returned shape \(5,\)"):
        losses.tcmax_loss_pairwise(lambda a, v: head(a, v)[:, 0], [za, zv], y)


def test_unavailable_devices_fail_at_once():
    if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        with pytest.raises(RuntimeError, match="Apple MPS"):
            pick_device("mps", verbose=False)
    with pytest.raises(ValueError, match="not a device name"):
        pick_device("gpu0", verbose=False)
