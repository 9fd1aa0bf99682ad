"""Forward+backward time and peak memory of the TCMax loss: factorised O(BC) vs the materialised
B x B x C grid (the released code's layout), and the chunked pairwise form with a FiLM head.

    python benchmarks/bench_tcmax_loss.py [--device cuda] [--batch-sizes 64 256 1024] [--classes 6 31 309]

Peak memory: on CUDA torch.cuda.max_memory_allocated; on CPU the peak RSS of a fresh subprocess
minus that of the same subprocess without the loss (so imports and tensors of the inputs cancel).
Configurations whose grid would need more than --max-gb are reported as skipped, not run.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import resource
import subprocess
import sys
import time

import torch

from tcmax_lib import losses
from tcmax_lib.hardware import device_name
from tcmax_lib.models import FiLMHead


def materialised(logits: list[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """Baseline: the same loss on the explicit [B, B, C] grid (the released code's layout, stable logsumexp)."""
    la, lv = logits
    b, c = la.shape
    grid = la[:, None, :] + lv[None, :, :]                                # [B, B, C]
    positive = (la.gather(1, y[:, None]) + lv.gather(1, y[:, None])).mean()
    return -positive + torch.logsumexp(grid.flatten(), 0) - (2 * math.log(b) + math.log(c))


def run_once(form: str, b: int, c: int, device: str, reps: int, dim: int = 512) -> float:
    """Mean seconds per forward+backward of one form."""
    gen = torch.Generator(device=device).manual_seed(0)
    y = torch.randint(0, c, (b,), device=device, generator=gen)
    if form == "pairwise":
        head = FiLMHead([dim, dim], c).to(device)
        feats = [torch.randn(b, dim, device=device, generator=gen, requires_grad=True) for _ in range(2)]
        fn = lambda: losses.tcmax_loss_pairwise(head, feats, y, chunk_size=16).loss
    else:
        logits = [torch.randn(b, c, device=device, generator=gen, requires_grad=True) for _ in range(2)]
        if form == "factorised":
            fn = lambda: losses.tcmax_loss(logits, y).loss
        elif form == "materialised":
            fn = lambda: materialised(logits, y)
        else:
            fn = lambda: logits[0].sum()
    fn().backward()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn().backward()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


def child(args: argparse.Namespace) -> None:
    """Subprocess mode: run one configuration, print seconds and peak RSS (bytes)."""
    torch.set_num_threads(args.threads)
    sec = run_once(args.form, args.b, args.c, "cpu", args.reps)
    print(json.dumps({"sec": sec, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def measure(form: str, b: int, c: int, device: str, reps: int, threads: int) -> tuple[float, float]:
    """(seconds, peak bytes) of one configuration."""
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        sec = run_once(form, b, c, device, reps)
        return sec, torch.cuda.max_memory_allocated() - base
    inputs, out = _child("inputs", b, c, 1, threads), _child(form, b, c, reps, threads)
    return out["sec"], max(out["rss"] - inputs["rss"], 0)


@functools.cache                            # the inputs-only baseline of a (B, C) is measured once, not per form
def _child(form: str, b: int, c: int, reps: int, threads: int) -> dict:
    """One configuration in a fresh subprocess: {'sec': seconds per rep, 'rss': its peak RSS in bytes}."""
    cmd = [sys.executable, __file__, "--child", "--form", form, "--b", str(b), "--c", str(c),
           "--reps", str(reps), "--threads", str(threads)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024, 2048, 4096])
    ap.add_argument("--classes", type=int, nargs="+", default=[6, 31, 309])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--max-gb", type=float, default=8.0, help="skip materialised configs above this estimate")
    ap.add_argument("--pairwise-batch", type=int, default=1024)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--form"), ap.add_argument("--b", type=int), ap.add_argument("--c", type=int)
    args = ap.parse_args()
    if args.child:
        return child(args)
    name = device_name(args.device)
    print(f"# TCMax loss, forward+backward, device: {name}, torch {torch.__version__}")
    print(f"{'B':>6} {'C':>5} | {'materialised ms':>15} {'peak MB':>10} | "
          f"{'factorised ms':>13} {'peak MB':>9} | {'mem ratio':>9}")
    for c in args.classes:
        for b in args.batch_sizes:
            fs, fm = measure("factorised", b, c, args.device, args.reps, args.threads)
            est_gb = 3 * 4 * b * b * c / 2 ** 30  # grid + its exp/grad in float32
            if est_gb > args.max_gb:
                ms_txt, mm_txt, ratio = f"skip (~{est_gb:.0f} GB)", "-", "-"
            else:
                try:
                    ms, mm = measure("materialised", b, c, args.device, max(1, args.reps // 2), args.threads)
                    ms_txt, mm_txt, ratio = f"{1e3 * ms:.2f}", f"{mm / 2 ** 20:.1f}", f"{mm / max(fm, 1):.0f}x"
                except (torch.cuda.OutOfMemoryError, subprocess.CalledProcessError):
                    ms_txt, mm_txt, ratio = "OOM", "-", "-"
            print(f"{b:>6} {c:>5} | {ms_txt:>15} {mm_txt:>10} | {1e3 * fs:>13.3f} {fm / 2 ** 20:>9.2f} | {ratio:>9}")
    b = args.pairwise_batch
    ps, pm = measure("pairwise", b, 31, args.device, 1, args.threads)
    print(f"# pairwise form, FiLM head (512-d features), B={b}, C=31, chunk 16: "
          f"{1e3 * ps:.1f} ms, peak {pm / 2 ** 20:.0f} MB")


if __name__ == "__main__":
    main()
