"""AV digits: spoken digits (Free Spoken Digit Dataset v1.0.10) paired with MNIST digits by label.

The pairing is by *label*, not by event: a recording of "three" and an image of a 3 share only
their class (the AV-MNIST construction of Vielzeuf et al. 2018 / MultiBench). Splits follow the
sources: FSDD recordings with index 0-4 are test, MNIST's own train/test pools are kept apart.

Audio features are log-mel spectrograms computed with torch only and cached once in a file whose
name encodes every preprocessing parameter; a stale or truncated cache is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tarfile
import wave
import zlib
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import torch

from .download import ChecksumError, data_dir, fetch, read_sha256sums, safe_extract_tar, sha256_file
from .integrity import check_digest, file_lock, write_atomically, write_digest
from .mnist import MNIST_FILES, MNIST_URL, mnist  # noqa: F401 - part of this module's interface
from .splits import Split, Splits, shuffled

FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"
FSDD_ARCHIVE = "free-spoken-digit-dataset-1.0.10.tar.gz"
FSDD_PREFIX = "free-spoken-digit-dataset-1.0.10/"
SAMPLE_RATE = 8000


def _manifest(name: str) -> dict[str, str]:
    with resources.as_file(resources.files("tcmax_lib.data") / "manifests" / name) as path:
        return read_sha256sums(path)


# ----------------------------------------------------------------------------- FSDD
def fsdd_recordings(cache_dir: Path | None = None) -> Path:
    """Folder with the 3,000 verified FSDD recordings (download + extract on first use) (notebook 05)."""
    root = (Path(cache_dir) if cache_dir else data_dir()) / "fsdd"
    manifest = _manifest("fsdd_v1.0.10.sha256")
    folder = root / "recordings"
    if all((root / n).exists() for n in manifest):
        return folder
    with file_lock(folder):                                  # one process extracts; the others wait for it
        missing = [n for n in manifest if not (root / n).exists()]
        if missing:
            _extract_recordings(root, missing, cache_dir)
    return folder


def _check_fsdd_archive(path: Path) -> None:
    """Content check of the FSDD archive: a complete tar.gz that lists every recording of the manifest."""
    manifest = _manifest("fsdd_v1.0.10.sha256")
    try:
        with tarfile.open(path) as tar:                      # reads the whole stream: truncation shows here
            names = set(tar.getnames())
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"not a complete tar.gz archive ({type(exc).__name__}: {exc})") from exc
    lacking = [n for n in manifest if FSDD_PREFIX + n not in names]
    if lacking:
        raise ValueError(f"it lacks {len(lacking)} recordings of FSDD v1.0.10, e.g. {lacking[0]}")


def _extract_recordings(root: Path, missing: list[str], cache_dir: Path | None) -> None:
    archive = fetch(FSDD_URL, sha256=None, dataset="fsdd", filename=FSDD_ARCHIVE, cache_dir=cache_dir,
                    check=_check_fsdd_archive)
    members = [FSDD_PREFIX + n for n in missing]
    extracted = safe_extract_tar(archive, root / "_extract", members=members)
    for path in extracted:
        rel = path.relative_to(root / "_extract" / FSDD_PREFIX.rstrip("/")).as_posix()
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        path.replace(target)
    shutil.rmtree(root / "_extract", ignore_errors=True)
    still = [n for n in missing if not (root / n).exists()]
    if still:
        raise ChecksumError(f"{archive.name} lacks {len(still)} recordings, e.g. {still[0]}: the archive is "
                            "incomplete or not v1.0.10. Delete it and run again (or fix TCMAX_DATA_MIRROR).")


def verify_recordings(folder: Path) -> None:
    """Check every recording against the committed SHA-256 manifest; a bad one is deleted and named (notebook 05)."""
    manifest = _manifest("fsdd_v1.0.10.sha256")
    root = folder.parent
    for name, digest in manifest.items():
        path = root / name
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing. Delete {root} and run again to re-extract the archive.")
        if sha256_file(path) != digest:
            path.unlink()
            raise ChecksumError(f"{name}: SHA-256 mismatch (expected {digest}); the file was deleted. "
                                "Run again to re-extract it from the verified archive.")


def read_wav(path: Path) -> torch.Tensor:
    """Read a mono 16-bit 8 kHz wav as float32 in [-1, 1]; anything else is an error naming the file (notebook 05)."""
    try:
        with wave.open(str(path)) as w:
            if w.getframerate() != SAMPLE_RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
                raise ValueError(f"{path.name}: expected mono 16-bit {SAMPLE_RATE} Hz, got {w.getnchannels()} "
                                 f"channel(s), {8 * w.getsampwidth()}-bit, {w.getframerate()} Hz. Use the FSDD "
                                 "v1.0.10 recordings or resample to 8 kHz first.")
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path}: not a readable WAV file ({exc}). Delete it; the FSDD recordings are "
                         "re-extracted from the verified archive on the next run.") from exc
    return torch.frombuffer(bytearray(raw), dtype=torch.int16).float() / 32768.0


@dataclass(frozen=True)
class AudioFeatures:
    """Log-mel preprocessing; every field is part of the cache file name (notebook 05)."""

    n_fft: int = 256          # 32 ms window at 8 kHz
    hop: int = 80             # 10 ms
    n_mels: int = 40
    seconds: float = 1.0      # fixed length: first `seconds` of each recording, zero-padded
    snr_db: float | None = None  # add white noise at this SNR (difficulty knob), seeded by recording
    version: int = 1

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Triangular HTK-mel filterbank [n_mels, n_fft // 2 + 1] (notebook 05)."""
    def hz_to_mel(f): return 2595.0 * math.log10(1.0 + f / 700.0)
    mels = torch.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)                              # [n_mels + 2]
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)               # [F]
    lo, mid, hi = hz[:-2, None], hz[1:-1, None], hz[2:, None]                # [n_mels, 1]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return torch.clamp(torch.minimum(up, down), min=0.0)                    # [n_mels, F]


def log_mel(waves: torch.Tensor, cfg: AudioFeatures) -> torch.Tensor:
    """Log-mel spectrogram of fixed-length waves [N, T] -> [N, n_mels, frames] (notebook 05)."""
    window = torch.hann_window(cfg.n_fft, device=waves.device)
    spec = torch.stft(waves, cfg.n_fft, cfg.hop, window=window, center=True, return_complex=True)  # [N, F, frames]
    power = spec.abs() ** 2
    fb = mel_filterbank(cfg.n_fft, cfg.n_mels).to(waves.device)
    return torch.log(torch.einsum("mf,nft->nmt", fb, power) + 1e-6)       # [N, n_mels, frames]


def _fixed_length(wave_: torch.Tensor, n: int) -> torch.Tensor:
    out = torch.zeros(n)
    out[:min(n, wave_.numel())] = wave_[:n]
    return out


def audio_features(cfg: AudioFeatures = AudioFeatures(), cache_dir: Path | None = None) -> dict:
    """Log-mel features of all 3,000 recordings (fp16), cached; keys: x, digit, speaker, index, names (notebook 05)."""
    root = (Path(cache_dir) if cache_dir else data_dir()) / "fsdd"
    path = root / f"features_{cfg.key()}.pt"
    if (cached := _load_features(path, cfg)) is not None:   # a verified hit needs no lock and no write access
        return cached
    with file_lock(path):                                    # one process builds; the others wait, then load
        if (cached := _load_features(path, cfg)) is not None:
            return cached
        if path.exists():
            print(f"{path.name}: stale or damaged feature cache (content checksum or format), rebuilding")
            path.unlink()
        return _build_features(cfg, path, cache_dir)


def _load_features(path: Path, cfg: AudioFeatures) -> dict | None:
    """The cached features if the file matches its stored digest (bytes as built) and this config, else None."""
    try:
        cached = torch.load(path, weights_only=True) if path.exists() and check_digest(path) else {}
    except Exception:  # noqa: BLE001 - foreign file under our name: rebuild
        return None
    return cached if cached.get("config") == asdict(cfg) and cached["x"].shape[0] == 3000 else None


def _build_features(cfg: AudioFeatures, path: Path, cache_dir: Path | None) -> dict:
    folder = fsdd_recordings(cache_dir)
    verify_recordings(folder)
    names = sorted(Path(n).name for n in _manifest("fsdd_v1.0.10.sha256"))  # the manifest, not whatever is there
    n = int(cfg.seconds * SAMPLE_RATE)
    waves = torch.stack([_fixed_length(read_wav(folder / name), n) for name in names])  # [3000, T]
    if cfg.snr_db is not None:
        gen = torch.Generator().manual_seed(0)
        power = waves.pow(2).mean(1, keepdim=True).clamp_min(1e-10)
        waves = waves + torch.randn(waves.shape, generator=gen) * torch.sqrt(power / 10 ** (cfg.snr_db / 10))
    parts = [name[:-4].split("_") for name in names]
    data = {"x": log_mel(waves, cfg).half(), "digit": torch.tensor([int(p[0]) for p in parts]),
            "speaker": [p[1] for p in parts], "index": torch.tensor([int(p[2]) for p in parts]),
            "names": names, "config": asdict(cfg)}
    need = data["x"].nbytes + 16 * len(names) + (1 << 20)   # the tensor, the labels and pickle overhead
    write_atomically(path, lambda tmp: torch.save(data, tmp), need)   # a full disk leaves no .tmp behind
    write_digest(path)
    return data


# ----------------------------------------------------------------------------- pairing
@dataclass(frozen=True)
class AVDigitsConfig:
    """Pairing and difficulty knobs (image noise / occlusion applied once, seeded) (notebook 05)."""

    audio: AudioFeatures = AudioFeatures()
    image_noise: float = 0.0       # std of Gaussian pixel noise (pixels in [0, 1])
    occlusion: float = 0.0         # side of a random occluding square, as a fraction of 28 px
    val_fraction: float = 0.1
    seed: int = 0


def _pair_images(digits: torch.Tensor, pool_x: torch.Tensor, pool_y: torch.Tensor,
                 gen: torch.Generator) -> torch.Tensor:
    """For each digit label pick a distinct image of that digit from the pool (seeded)."""
    out = torch.empty(len(digits), *pool_x.shape[1:], dtype=pool_x.dtype)
    for d in range(10):
        where = (digits == d).nonzero().squeeze(1)
        pool = (pool_y == d).nonzero().squeeze(1)
        pick = pool[torch.randperm(len(pool), generator=gen)[: len(where)]]
        out[where] = pool_x[pick]
    return out


def _degrade(img: torch.Tensor, cfg: AVDigitsConfig, gen: torch.Generator) -> torch.Tensor:
    x = img.float() / 255.0                                                  # [N, 28, 28]
    if cfg.occlusion > 0:
        s = int(round(cfg.occlusion * 28))
        r = torch.randint(0, 28 - s + 1, (len(x), 2), generator=gen)
        for i, (a, b) in enumerate(r.tolist()):
            x[i, a:a + s, b:b + s] = 0.0
    if cfg.image_noise > 0:
        x = x + cfg.image_noise * torch.randn(x.shape, generator=gen)
    return x


def default_config(seed: int = 0) -> AVDigitsConfig:
    """The series' AV-digits difficulty: speech in white noise at 0 dB SNR, digits with pixel noise 0.3 (nb 05).

    Images are then the fast, dominant modality and speech the slow, weaker one.
    """
    return AVDigitsConfig(audio=AudioFeatures(snr_db=0.0), image_noise=0.3, occlusion=0.0, seed=seed)


HARD_TRAIN_PAIRS = 1000   # the hard preset trains on a class-stratified subset of this many pairs


def hard_config(seed: int = 0) -> AVDigitsConfig:
    """The harder preset of notebook 07: speech at 0 dB SNR, digits with pixel noise 0.45 and a 35 % occluder.

    Trained on `HARD_TRAIN_PAIRS` pairs its test accuracies stay below the ceiling where the default preset
    reaches it (notebook 05), so methods can be ranked, and both modalities carry partial evidence; under
    joint training the speech head still falls far below a speech head trained alone (notebook 07, section 3).
    """
    return AVDigitsConfig(audio=AudioFeatures(snr_db=0.0), image_noise=0.45, occlusion=0.35, seed=seed)


def make_avdigits(cfg: AVDigitsConfig = AVDigitsConfig(), cache_dir: Path | None = None) -> Splits:
    """Train/val/test `Splits`: inputs (audio [N,1,M,T] fp32, image [N,1,28,28] fp32), y [N] (notebook 05).

    Each split is shuffled once with the config's seed, so no split is ordered by digit (a prefix of a
    sorted split would hold a few classes only); extras hold the FSDD `index` of each recording.
    """
    feats = audio_features(cfg.audio, cache_dir)
    mn = mnist(cache_dir)
    gen = torch.Generator().manual_seed(cfg.seed)
    is_test = feats["index"] < 5
    parts = {}
    audio = feats["x"].float()
    mean, std = audio[~is_test].mean(), audio[~is_test].std()
    audio = ((audio - mean) / std)[:, None]                                  # [3000, 1, n_mels, frames]
    for split, mask, pool in (("train", ~is_test, "train"), ("test", is_test, "test")):
        idx = mask.nonzero().squeeze(1)
        y = feats["digit"][idx]
        img = _degrade(_pair_images(y, mn[f"{pool}_x"], mn[f"{pool}_y"], gen), cfg, gen)[:, None]
        parts[split] = Split((audio[idx], img), y, {"index": feats["index"][idx]})
    # validation carved from train, stratified by digit and seeded
    y = parts["train"].y
    val_idx = torch.cat([(y == d).nonzero().squeeze(1)[torch.randperm(int((y == d).sum()), generator=gen)
                         [: int(round(cfg.val_fraction * int((y == d).sum())))]] for d in range(10)])
    keep = torch.ones(len(y), dtype=torch.bool)
    keep[val_idx] = False
    train, val, test = parts["train"].index(keep), parts["train"].index(val_idx), parts["test"]
    shuffle_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    train, val, test = (shuffled(s, shuffle_seed + k) for k, s in enumerate((train, val, test)))
    meta = {"speakers": sorted(set(feats["speaker"])), "audio_shape": tuple(audio.shape[1:]), "num_classes": 10,
            "config": cfg}
    return Splits(train, val, test, meta)


def load_recording(name: str, cache_dir: Path | None = None) -> torch.Tensor:
    """Waveform of one FSDD recording by file name (e.g. '3_jackson_12.wav'), for listening (notebook 05)."""
    folder = fsdd_recordings(cache_dir)
    path = folder / name
    if not path.exists():
        raise FileNotFoundError(f"{name} is not an FSDD v1.0.10 recording (expected e.g. '3_jackson_12.wav').")
    return read_wav(path)

