"""Training throughput (samples/s) of every method on AV digits, its ratio to joint training, and the
one-off preprocessing time.

    python benchmarks/bench_train.py [--device cuda] [--epochs 3] [--skip-preprocessing]

Uses the same data, encoders and trainer as notebooks 05 and 07 (data kept on the device, bf16
autocast on CUDA), each method on its native head (MLA: shared, MMPareto: concat_msh). AGM adds 4
head passes, MMPareto 3 backward passes, MLA a second optimiser step, TCMax with a non-linear head
B^2 head passes. Needs the FSDD and MNIST files (downloaded, or TCMAX_DATA_MIRROR).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from tcmax_lib.data import avdigits as av
from tcmax_lib.experiments import native_head
from tcmax_lib.methods import METHODS, make_method
from tcmax_lib.models import cnn_pair_model
from tcmax_lib.runtime import device_name
from tcmax_lib.train import TrainConfig, fit


def time_preprocessing() -> None:
    """Log-mel features of all recordings in a fresh cache copy, so the feature cache is really rebuilt."""
    tmp = Path(tempfile.mkdtemp())
    try:
        src = av.fsdd_recordings()
        shutil.copytree(src.parent / "recordings", tmp / "fsdd" / "recordings")
        t0 = time.perf_counter()
        av.audio_features(av.AudioFeatures(), cache_dir=tmp)
        print(f"preprocessing: log-mel of 3,000 recordings (verify + features): {time.perf_counter() - t0:.1f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--skip-preprocessing", action="store_true", help="do not time the feature preprocessing")
    ap.add_argument("--max-train", type=int, default=None, help="train on a stratified subset (smoke runs)")
    args = ap.parse_args()
    name = device_name(args.device)
    print(f"# AV digits training throughput; device: {name}, torch {torch.__version__}")
    if not args.skip_preprocessing:
        time_preprocessing()
    data = av.make_avdigits(av.default_config())
    train = data.train if args.max_train is None else data.train.stratified_subset(args.max_train)
    n = len(train)
    print(f"{'method':10s} {'head':11s} {'samples/s':>10} {'s/epoch':>8} {'x joint':>8}   "
          f"({n} training pairs, batch 64, {args.epochs} epochs, first epoch excluded)")
    rows = [(m, native_head(m, "concat")) for m in METHODS] + [("tcmax", "gated"), ("tcmax", "film")]
    joint = None
    for method, head in rows:
        model = cnn_pair_model(head=head, seed=0)
        tc = TrainConfig(epochs=args.epochs, batch_size=64, lr=1e-3, device=args.device, progress=False)
        _, hist = fit(model, make_method(method), train, data.val, tc)
        sec = hist["seconds"].iloc[1:].mean() if len(hist) > 1 else hist["seconds"].iloc[0]
        joint = sec if method == "joint" else joint
        print(f"{method:10s} {head:11s} {n / sec:10.0f} {sec:8.2f} {sec / joint:8.2f}")


if __name__ == "__main__":
    main()
