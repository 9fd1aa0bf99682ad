"""AV-digits loaders on the real FSDD and MNIST files (from TCMAX_DATA_MIRROR in CI): bad inputs
produce clear errors, caches are keyed and rebuilt, features match an independent computation."""

import gzip
import os
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from tcmax_lib.data import avdigits as av
from tcmax_lib.data import download as dl
from tcmax_lib.data import mnist as mnist_module

MIRROR = os.environ.get("TCMAX_DATA_MIRROR")
pytestmark = pytest.mark.skipif(
    not MIRROR or dl.mirror_dir() is None or not (dl.mirror_dir() / "fsdd").exists(),
    reason="needs the FSDD/MNIST files: set TCMAX_DATA_MIRROR (CI sets ../shared/data)")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A private cache with the 3,000 recordings extracted once from the mirror's archive."""
    root = tmp_path_factory.mktemp("cache")
    av.fsdd_recordings(root)
    return root


def _copy(cache: Path, tmp_path: Path) -> Path:
    shutil.copytree(cache / "fsdd" / "recordings", tmp_path / "fsdd" / "recordings")
    return tmp_path


def test_recordings_verified_and_split(cache):
    folder = av.fsdd_recordings(cache)
    av.verify_recordings(folder)
    names = sorted(p.name for p in folder.glob("*.wav"))
    assert len(names) == 3000
    assert sum(int(n[:-4].split("_")[2]) < 5 for n in names) == 300  # official test split


def test_missing_recording_is_named(cache, tmp_path):
    root = _copy(cache, tmp_path)
    (root / "fsdd" / "recordings" / "7_theo_33.wav").unlink()
    with pytest.raises(FileNotFoundError, match="7_theo_33.wav.*run again"):
        av.verify_recordings(root / "fsdd" / "recordings")
    av.fsdd_recordings(root)  # re-extracted from the verified archive
    av.verify_recordings(root / "fsdd" / "recordings")


def test_corrupted_recording_is_named_and_removed(cache, tmp_path):
    root = _copy(cache, tmp_path)
    bad = root / "fsdd" / "recordings" / "2_lucas_10.wav"
    data = bytearray(bad.read_bytes())
    data[100] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(dl.ChecksumError, match="2_lucas_10.wav: SHA-256 mismatch"):
        av.verify_recordings(root / "fsdd" / "recordings")
    assert not bad.exists()


def test_wrong_sample_rate_is_explained(tmp_path):
    path = tmp_path / "x.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(b"\x00\x00" * 100)
    with pytest.raises(ValueError, match="x.wav: expected mono 16-bit 8000 Hz.*16000 Hz.*resample"):
        av.read_wav(path)


def test_empty_cache_without_network_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("TCMAX_DATA_MIRROR")
    monkeypatch.setattr(av, "FSDD_URL", "http://127.0.0.1:9/fsdd.tar.gz")  # nothing listens there
    with pytest.raises(dl.DataUnavailableError, match="TCMAX_DATA_MIRROR"):
        av.fsdd_recordings(tmp_path)


def test_feature_cache_keyed_and_rebuilt(cache, tmp_path, capsys):
    root = _copy(cache, tmp_path)
    cfg = av.AudioFeatures()
    feats = av.audio_features(cfg, root)
    assert feats["x"].shape == (3000, 40, 101) and feats["x"].dtype == torch.float16
    path = root / "fsdd" / f"features_{cfg.key()}.pt"
    assert path.exists()
    assert av.AudioFeatures(n_mels=64).key() != cfg.key()  # a parameter change means another file
    path.write_bytes(path.read_bytes()[:1000])  # truncated cache
    again = av.audio_features(cfg, root)
    assert "rebuilding" in capsys.readouterr().out
    torch.testing.assert_close(again["x"], feats["x"])


def test_feature_cache_with_flipped_bytes_is_rebuilt(cache, tmp_path, capsys):
    root = _copy(cache, tmp_path)
    cfg = av.AudioFeatures()
    feats = av.audio_features(cfg, root)
    path = root / "fsdd" / f"features_{cfg.key()}.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF                                           # one flipped byte inside the tensor
    path.write_bytes(bytes(data))
    again = av.audio_features(cfg, root)
    assert "content checksum" in capsys.readouterr().out
    torch.testing.assert_close(again["x"], feats["x"])


def test_extra_and_junk_wavs_do_not_change_the_data(cache, tmp_path):
    root = _copy(cache, tmp_path)
    folder = root / "fsdd" / "recordings"
    (folder / "9_extra_99.wav").write_bytes((folder / "9_theo_10.wav").read_bytes())   # an extra recording
    (folder / "junk.wav").write_bytes(b"not a wav file")
    feats = av.audio_features(av.AudioFeatures(), root)
    assert feats["x"].shape[0] == 3000 and "9_extra_99.wav" not in feats["names"]
    with pytest.raises(ValueError, match="junk.wav: not a readable WAV file"):
        av.read_wav(folder / "junk.wav")


def test_truncated_or_html_archive_is_not_kept(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror" / "fsdd"
    mirror.mkdir(parents=True)
    good = (dl.mirror_dir() / "fsdd" / av.FSDD_ARCHIVE).read_bytes()
    monkeypatch.setattr(av, "FSDD_URL", "http://127.0.0.1:9/fsdd.tar.gz")   # nothing listens there
    for bad in (good[: len(good) // 3], b"<!DOCTYPE html><html>Too Many Requests</html>"):
        (mirror / av.FSDD_ARCHIVE).write_bytes(bad)
        monkeypatch.setenv("TCMAX_DATA_MIRROR", str(tmp_path / "mirror"))
        with pytest.raises(dl.ChecksumError, match="failed its content check"):
            av.fsdd_recordings(tmp_path / "cache")
        assert not (tmp_path / "cache" / "fsdd" / av.FSDD_ARCHIVE).exists()   # nothing bad is cached
    (mirror / av.FSDD_ARCHIVE).write_bytes(good)                             # the mirror is fixed: it recovers
    av.verify_recordings(av.fsdd_recordings(tmp_path / "cache"))


def test_log_mel_matches_numpy_reference():
    cfg = av.AudioFeatures()
    gen = torch.Generator().manual_seed(0)
    wav = torch.randn(2, 8000, generator=gen) * 0.1
    ours = av.log_mel(wav, cfg)
    # independent reference: reflect-padded frames, periodic Hann window, rfft power, the same filter bank
    x = np.pad(wav.numpy().astype(np.float64), ((0, 0), (128, 128)), mode="reflect")
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(256) / 256)
    frames = np.stack([x[:, t * 80:t * 80 + 256] * win for t in range(101)], axis=1)   # [2, 101, 256]
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2                                  # [2, 101, 129]
    fb = av.mel_filterbank(256, 40).double().numpy()
    ref = np.log(np.einsum("mf,ntf->nmt", fb, power) + 1e-6)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-4, atol=1e-3)
    # 40 mel triangles on 129 bins of 31 Hz: none is empty (each peak reaches >= 0.5 on some bin)
    # and their centres increase with frequency
    assert fb.shape == (40, 129) and (fb.max(1) >= 0.5).all()
    assert (np.diff(fb.argmax(1)) >= 0).all()


def test_mnist_verified_and_corruption_caught(tmp_path, monkeypatch):
    mn = av.mnist()
    assert mn["train_x"].shape == (60000, 28, 28) and mn["test_y"].shape == (10000,)
    assert torch.bincount(mn["train_y"]).tolist()[0] == 5923
    # a corrupted .gz in the cache is caught on the decompressed bytes and replaced from the mirror
    bad_root = tmp_path / "mnist"
    bad_root.mkdir()
    for name in av.MNIST_FILES:
        (bad_root / f"{name}.gz").write_bytes(gzip.compress(b"not mnist"))
    torch.testing.assert_close(av.mnist(tmp_path)["test_y"], mn["test_y"])
    # with a corrupted mirror too (and no network), the error names the check and nothing bad is kept
    mirror = tmp_path / "bad_mirror" / "mnist"
    mirror.mkdir(parents=True)
    for name in av.MNIST_FILES:
        (mirror / f"{name}.gz").write_bytes(gzip.compress(b"not mnist"))
        (bad_root / f"{name}.gz").unlink()
    monkeypatch.setenv("TCMAX_DATA_MIRROR", str(tmp_path / "bad_mirror"))
    monkeypatch.setattr(mnist_module, "MNIST_URL", "http://127.0.0.1:9/")   # nothing listens there
    with pytest.raises(dl.ChecksumError, match="decompressed SHA-256 mismatch"):
        av.mnist(tmp_path)
    assert not (bad_root / "train-images-idx3-ubyte.gz").exists()


def test_pairing_by_label_from_separate_pools(cache):
    data = av.make_avdigits(av.AVDigitsConfig(), cache)
    mn = av.mnist()
    for split, pool in (("train", "train"), ("test", "test")):
        (_, img), y = getattr(data, split).inputs, getattr(data, split).y
        pool_x = mn[f"{pool}_x"].float() / 255.0
        pool_y = mn[f"{pool}_y"]
        for i in range(0, len(y), 97):  # the paired image is in the right pool and shows the same digit
            match = (pool_x == img[i, 0]).flatten(1).all(1).nonzero().squeeze(1)
            assert len(match) >= 1 and int(pool_y[match[0]]) == int(y[i])
    assert data.sizes() == {"train": 2430, "val": 270, "test": 300}
    same = av.make_avdigits(av.AVDigitsConfig(), cache)
    torch.testing.assert_close(same.train.inputs[1], data.train.inputs[1])  # seeded
    torch.testing.assert_close(same.train.y, data.train.y)


def test_splits_are_shuffled_and_subsets_stratified(cache):
    """The FAST bug of notebook 05: a prefix of a digit-sorted split held digits 0-3 only."""
    data = av.make_avdigits(av.default_config(), cache)
    for part in (data.train, data.val, data.test):
        first = part.y[: len(part) // 4]
        assert len(torch.unique(first)) == 10                             # no prefix is sorted by digit
        assert part.class_counts(10) == part.y.bincount(minlength=10).tolist()
    sub = data.train.stratified_subset(960, seed=0)
    counts = sub.class_counts(10)
    assert len(sub) == 960 and min(counts) > 0
    full = torch.tensor(data.train.class_counts(10), dtype=torch.float64)
    # every class keeps its share of the 960 to within one sample (largest-remainder rounding)
    assert (torch.tensor(counts) - 960 * full / full.sum()).abs().max() < 1.0
    assert (data.train.extras["index"] >= 5).all() and (data.test.extras["index"] < 5).all()
