"""Training throughput (samples/s) per method on AV digits, and the one-off preprocessing time.

    python benchmarks/bench_train.py [--device cuda] [--epochs 3]

Uses the same data, encoders and trainer as notebook 05 (data kept on the device, bf16 autocast on
CUDA). Needs the FSDD and MNIST files (downloaded, or TCMAX_DATA_MIRROR).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from tcmax_lib.data import avdigits as av
from tcmax_lib.methods import make_method
from tcmax_lib.models import cnn_pair_model
from tcmax_lib.runtime import device_name
from tcmax_lib.train import TrainConfig, fit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    name = device_name(args.device)
    print(f"# AV digits training throughput; device: {name}, torch {torch.__version__}")
    # preprocessing from raw recordings, in a fresh cache copy so the feature cache is really rebuilt
    tmp = Path(tempfile.mkdtemp())
    try:
        src = av.fsdd_recordings()
        shutil.copytree(src.parent / "recordings", tmp / "fsdd" / "recordings")
        t0 = time.perf_counter()
        av.audio_features(av.AudioFeatures(), cache_dir=tmp)
        print(f"preprocessing: log-mel of 3,000 recordings (verify + features): {time.perf_counter() - t0:.1f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    data = av.make_avdigits(av.default_config())
    n = len(data.train)
    print(f"{'method':10s} {'samples/s':>10} {'s/epoch':>8}   ({n} training pairs, batch 64, {args.epochs} epochs)")
    for method in ("joint", "unimodal", "ogm_ge", "tcmax"):
        model = cnn_pair_model(seed=0)
        tc = TrainConfig(epochs=args.epochs, batch_size=64, lr=1e-3, device=args.device, progress=False)
        _, hist = fit(model, make_method(method), data.train, data.val, tc)
        sec = hist["seconds"].iloc[1:].mean() if len(hist) > 1 else hist["seconds"].iloc[0]
        print(f"{method:10s} {n / sec:10.0f} {sec:8.2f}")


if __name__ == "__main__":
    main()
