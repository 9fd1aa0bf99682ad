"""Training throughput (samples/s) of every method on AV digits, its ratio to joint training, the
one-off preprocessing time, and the precision policy's speedup on AV digits and the toy problem.

    python benchmarks/bench_train.py [--device cuda] [--epochs 3] [--skip-preprocessing] [--precision-only]

Precision table: the trainer before the precision policy (fp32, NCHW) against fp32 + channels_last and
against the policy's choice (`precision='auto'`: bf16 autocast on CUDA and bf16-capable CPUs, with
channels_last for the CNNs), measured side by side in alternating order (median of --rounds rounds).

Uses the same data, encoders and trainer as notebooks 05 and 07 (data kept on the device, the precision
policy of `runtime.pick_precision`), each method on its native head (MLA: shared, MMPareto: concat_msh). AGM adds 4
head passes, MMPareto 3 backward passes, MLA a second optimiser step, TCMax with a non-linear head
B^2 head passes. Needs the FSDD and MNIST files (downloaded, or TCMAX_DATA_MIRROR).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tcmax_lib.data import avdigits as av
from tcmax_lib.data.toy import ToyConfig, make_toy_splits
from tcmax_lib.experiments import native_head
from tcmax_lib.hardware import device_name
from tcmax_lib.methods import METHODS, make_method
from tcmax_lib.models import cnn_pair_model, mlp_pair_model
from tcmax_lib.runtime import pick_precision
from tcmax_lib.train import TrainConfig, fit, trainer_precision


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
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of the precision table")
    ap.add_argument("--precision-only", action="store_true", help="only the precision table")
    args = ap.parse_args()
    name = device_name(args.device)
    print(f"# AV digits training throughput; device: {name}, torch {torch.__version__}; "
          f"precision policy: {pick_precision(args.device, 'auto')}")
    if not args.skip_preprocessing and not args.precision_only:
        time_preprocessing()
    data = av.make_avdigits(av.default_config())
    train = data.train if args.max_train is None else data.train.stratified_subset(args.max_train)
    precision_table(train, data.val, args)
    if args.precision_only:
        return
    n = len(train)
    print(f"{'method':10s} {'head':11s} {'samples/s':>10} {'s/epoch':>8} {'x joint':>8}   "
          f"({n} training pairs, batch 64, {args.epochs} epochs, first epoch excluded)")
    rows = [(m, native_head(m, "concat")) for m in METHODS] + [("tcmax", "gated"), ("tcmax", "film")]
    joint = None
    for method, head in rows:
        model = cnn_pair_model(head=head, seed=0)
        tc = TrainConfig(epochs=args.epochs, batch_size=64, lr=1e-3, device=args.device, progress=False,
                         precision="auto")
        _, hist = fit(model, make_method(method), train, data.val, tc)
        sec = hist["seconds"].iloc[1:].mean() if len(hist) > 1 else hist["seconds"].iloc[0]
        joint = sec if method == "joint" else joint
        print(f"{method:10s} {head:11s} {n / sec:10.0f} {sec:8.2f} {sec / joint:8.2f}")


def epoch_seconds(model_fn, method: str, train, val, epochs: int, device: str, **cfg) -> float:
    """Mean wall time of the training epochs after the first (which includes one-off set-up)."""
    tc = TrainConfig(epochs=epochs, batch_size=64, lr=1e-3, device=device, progress=False, **cfg)
    _, hist = fit(model_fn(), make_method(method), train, val, tc)
    return float(hist["seconds"].iloc[1:].mean() if len(hist) > 1 else hist["seconds"].iloc[0])


def precision_table(av_train, av_val, args) -> None:
    """Samples/s of joint and TCMax training before the policy (fp32, NCHW) and with it, side by side."""
    toy = make_toy_splits(ToyConfig(), n_train=len(av_train) if args.max_train else 4000, n_val=500, n_test=10)
    toy_cfg = ToyConfig()
    problems = {"AV digits (CNN)": (lambda: cnn_pair_model(head="concat", seed=0), av_train, av_val),
                "toy (MLP)": (lambda: mlp_pair_model(toy_cfg.dims, toy_cfg.num_classes, "concat", seed=0),
                              toy.train, toy.val)}
    configs = {"fp32, NCHW (before)": dict(precision="fp32", channels_last=False),
               "fp32, channels_last": dict(precision="fp32", channels_last=None),
               "bf16 (forced)": dict(precision="bf16", channels_last=None),
               "auto": dict(precision="auto", channels_last=None)}
    times = {(p, m, c): [] for p in problems for m in ("joint", "tcmax") for c in configs}
    for _ in range(args.rounds):
        for (prob, method, conf) in times:
            model_fn, tr, va = problems[prob]
            times[(prob, method, conf)].append(epoch_seconds(model_fn, method, tr, va, args.epochs, args.device,
                                                             **configs[conf]))
    auto = pick_precision(args.device, "auto").name
    print(f"{'problem':16s} {'method':7s} {'configuration':22s} {'used':>5s} {'samples/s':>10} {'x before':>9}   "
          f"(median of {args.rounds} alternating rounds; precision policy here: {auto})")
    for prob, (_, tr, _) in problems.items():
        for method in ("joint", "tcmax"):
            before = statistics.median(times[(prob, method, "fp32, NCHW (before)")])
            for conf in configs:
                sec = statistics.median(times[(prob, method, conf)])
                if prob.startswith("toy") and conf == "fp32, channels_last":
                    continue                                             # no conv layers: same as before
                used = trainer_precision(problems[prob][0](), TrainConfig(device=args.device, **configs[conf])).name
                print(f"{prob:16s} {method:7s} {conf:22s} {used:>5s} {len(tr) / sec:10.0f} {before / sec:8.2f}x")


if __name__ == "__main__":
    main()
