"""CREMA-D (Cao et al. 2014): clip lists, verified download, decoding and the two preprocessing presets.

The cache, the splits, frame augmentation and `prepare` live in `cremad_cache` (notebook 06).

Each `VideoFlash/<clip>.flv` holds VP6 video (480x360, ~30 fps) and its MP3 audio (44.1 kHz mono);
PyAV (FFmpeg bundled in the `av` wheel) decodes both. Files come from the CREMA-D repository at a
pinned revision, one by one, each verified against the SHA-256 manifest shipped with the library.

Preprocessing presets (recorded in the cache key, so results stay comparable):

* `ogm` -- the audio of OGM-GE's CREMA-D loader (also AGM's): 22.05 kHz, waveform repeated to >= 3 s,
  first 3 s, STFT 512/353, log(|X| + 1e-7) -> 257 x 188. Not MLA's (16 kHz, 5 s crop) or PMR's
  (z-scored 257 x 1004) recipe. Frames here: 3 at 1 fps (OGM-GE's loader in effect uses 1).
* `tcmax` -- the TCMax release: 22.05 kHz, repeated to >= 10 s, one 5 s crop (seeded here,
  unseeded there), STFT 256/128 -> 129 x 862; 3 frames at 1 fps.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..runtime import progress_off
from .download import fetch

REVISION = "1658cd342dff90010aa843eaeebd53610a08b1dc"
MEDIA_URL = f"https://media.githubusercontent.com/media/CheyneyComputerScience/CREMA-D/{REVISION}/"
EMOTIONS = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")
BAD_CLIPS = {  # from the CREMA-D README; excluded everywhere, with the reason logged
    "1076_MTI_SAD_XX": "no audio, very short",
    "1076_MTI_NEU_XX": "very short",
    "1064_TIE_SAD_XX": "no duration",
    "1064_IEO_DIS_MD": "one minute long, holds every emotion of the sentence",
}


@dataclass(frozen=True)
class CremadPreset:
    """Audio and frame preprocessing of one literature recipe (notebook 06)."""

    name: str = "ogm"
    sample_rate: int = 22050
    seconds: float = 3.0
    repeat_to: float = 3.0         # repeat the waveform until at least this long, then crop `seconds`
    crop: str = "start"            # 'start' or 'random' (seeded by the clip name)
    n_fft: int = 512
    hop: int = 353
    frames: int = 3                # frames kept at `fps`; the last is repeated if the clip is short
    fps: float = 1.0
    frame_size: int = 224
    version: int = 1

    def key(self) -> str:
        return self.name + "_" + hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]

    @property
    def spec_shape(self) -> tuple[int, int]:
        samples = int(round(self.seconds * self.sample_rate))
        return self.n_fft // 2 + 1, samples // self.hop + 1


PRESETS = {"ogm": CremadPreset(),
           "tcmax": CremadPreset(name="tcmax", seconds=5.0, repeat_to=10.0, crop="random", n_fft=256, hop=128)}


# ----------------------------------------------------------------------------- clip lists
def manifest() -> dict[str, tuple[str, int]]:
    """{clip: (sha256, size)} for all 7,442 VideoFlash files at the pinned revision (notebook 06)."""
    with resources.as_file(resources.files("tcmax_lib.data") / "manifests" / "cremad_videoflash.tsv.gz") as p:
        rows = gzip.decompress(p.read_bytes()).decode().splitlines()[1:]
    out = {}
    for row in rows:
        path, digest, size = row.split("\t")
        out[Path(path).stem] = (digest, int(size))
    return out


def ogm_test_clips() -> list[str]:
    """The 744 test clips of the OGM-GE split (everything else is training: 6,698) (notebook 06)."""
    with resources.as_file(resources.files("tcmax_lib.data") / "manifests" / "cremad_ogm_test.txt") as p:
        return [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def parse(clip: str) -> dict:
    """Fields of a clip name `{actor}_{sentence}_{emotion}_{level}` (notebook 06)."""
    actor, sentence, emotion, level = clip.split("_")
    if emotion not in EMOTIONS:
        raise ValueError(f"{clip}: emotion {emotion!r} is not one of {EMOTIONS}.")
    return {"actor": int(actor), "sentence": sentence, "emotion": emotion, "level": level,
            "label": EMOTIONS.index(emotion)}


def subset(name: str = "offline") -> list[str]:
    """Clip lists: 'offline' (1001 x DFA, the 6 clips of the offline mirror), 'teaching' (sentence DFA x
    91 actors x 6 emotions = 546 clips, ~161 MB), 'actors20' (actors 1001-1020), 'all' (7,442). Notebook 06."""
    clips = sorted(manifest())
    if name == "offline":
        return [c for c in clips if c.startswith("1001_DFA_")]
    if name == "teaching":
        return [c for c in clips if c.split("_")[1] == "DFA"]
    if name == "actors20":
        return [c for c in clips if int(c[:4]) <= 1020]
    if name == "all":
        return clips
    raise ValueError(f"unknown subset {name!r}; use 'offline', 'teaching', 'actors20' or 'all'.")


def drop_bad(clips: list[str], log: bool = True) -> list[str]:
    """Remove the known bad clips, printing each reason (notebook 06)."""
    for c in clips:
        if c in BAD_CLIPS and log:
            print(f"excluding {c}: {BAD_CLIPS[c]}")
    return [c for c in clips if c not in BAD_CLIPS]


def download(clips: list[str], cache_dir: Path | None = None, progress: bool = True) -> list[Path]:
    """Fetch and verify each clip's .flv (resumable: verified files are skipped, partial ones resumed) (notebook 06)."""
    table = manifest()
    paths = []
    for clip in tqdm(clips, desc="CREMA-D clips", disable=progress_off(progress)):
        if clip not in table:
            raise ValueError(f"{clip} is not a CREMA-D clip at revision {REVISION[:8]}.")
        paths.append(fetch(MEDIA_URL + f"VideoFlash/{clip}.flv", sha256=table[clip][0], dataset="cremad",
                           filename=f"VideoFlash/{clip}.flv", cache_dir=cache_dir, progress=False))
    return paths


# ----------------------------------------------------------------------------- decoding
def decode_audio(path: Path, sample_rate: int) -> torch.Tensor:
    """Mono float32 waveform of a clip's audio track, resampled by FFmpeg (libswresample) (notebook 06)."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"{path.name} has no audio track; known bad clips: {sorted(BAD_CLIPS)}.")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = []
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    if not chunks:
        raise ValueError(f"{path.name}: the audio track decoded to nothing.")
    return torch.from_numpy(np.concatenate(chunks).astype(np.float32))


def decode_frames(path: Path, frames: int, fps: float) -> torch.Tensor:
    """`frames` RGB frames, the first of each 1/fps interval (last repeated if short): uint8 [F, 3, H, W].

    Introduced in notebook 06.
    """
    import av

    picked = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time >= len(picked) / fps:
                picked.append(torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1))
                if len(picked) == frames:
                    break
    if not picked:
        raise ValueError(f"{path.name}: no video frame could be decoded.")
    while len(picked) < frames:
        picked.append(picked[-1])
    return torch.stack(picked)


def spectrogram(wave: torch.Tensor, preset: CremadPreset, clip: str = "") -> torch.Tensor:
    """Log-magnitude STFT of the preset's fixed-length crop: [1, n_fft/2 + 1, frames] float32 (notebook 06)."""
    n = int(round(preset.seconds * preset.sample_rate))
    need = max(int(round(preset.repeat_to * preset.sample_rate)), n)
    reps = math.ceil(need / max(wave.numel(), 1))
    wave = wave.repeat(reps)
    start = 0
    if preset.crop == "random":
        seed = int(hashlib.sha256(clip.encode()).hexdigest()[:8], 16)
        start = int(torch.randint(0, wave.numel() - n + 1, (1,), generator=torch.Generator().manual_seed(seed)))
    wave = wave[start:start + n].clamp(-1.0, 1.0)
    window = torch.hann_window(preset.n_fft)
    spec = torch.stft(wave, preset.n_fft, preset.hop, window=window, center=True, pad_mode="constant",
                      return_complex=True)                                # [F, T]
    return torch.log(spec.abs() + 1e-7)[None]                             # [1, F, T]


def resize_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (antialiased) resize of uint8 frames [F, 3, H, W] to [F, 3, size, size] (notebook 06)."""
    out = F.interpolate(frames.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def preprocess_clip(path: Path, preset: CremadPreset) -> tuple[np.ndarray, np.ndarray]:
    """One clip -> (frames uint8 [F, 3, S, S], spectrogram float16 [1, H, W]) (notebook 06)."""
    clip = Path(path).stem
    frames = resize_frames(decode_frames(path, preset.frames, preset.fps), preset.frame_size)
    spec = spectrogram(decode_audio(path, preset.sample_rate), preset, clip)
    return frames.numpy(), spec.half().numpy()


def with_size(preset: CremadPreset, frame_size: int) -> CremadPreset:
    """The same preset with another frame size (a different cache) (notebook 06)."""
    return replace(preset, frame_size=frame_size)
