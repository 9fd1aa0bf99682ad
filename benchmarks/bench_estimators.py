"""Steps per second of the Poole et al. staircase (4 estimators trained together on one batch).

    python benchmarks/bench_estimators.py [--device cuda] [--steps 300]

Reports the FULL configuration (joint critic 2x256, batch 64, 4 estimators) and the FAST notebook
configuration (joint critic 2x64), and extrapolates to the whole 5 x 4,000-step FULL staircase.
"""

from __future__ import annotations

import argparse
import time

import torch

from tcmax_lib import estimation as E
from tcmax_lib.runtime import device_name

BOUNDS = ["mine", "nwj", "infonce", "smile"]


def steps_per_second(critic: str, hidden: int, steps: int, device: str) -> float:
    """Train the four estimators for `steps` steps (after 20 warm-up steps) and return steps/s."""
    specs = E.make_estimators(BOUNDS, critic=critic, dim=20, hidden=hidden)
    E.train_estimators(specs, E.mi_staircase([2.0], 20), device=device, progress=False)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    E.train_estimators(specs, E.mi_staircase([2.0, 4.0], steps // 2), device=device, progress=False)
    if device == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    name = device_name(args.device)
    print(f"# staircase training speed, 4 estimators ({', '.join(BOUNDS)}), batch 64, d=20; device: {name}")
    print(f"{'configuration':32s} {'steps/s':>8} {'20k-step staircase':>19}")
    for label, critic, hidden in (("FULL: concat critic 2x256", "concat", 256),
                                  ("FULL: separable critic 2x256", "separable", 256),
                                  ("FAST: concat critic 2x64", "concat", 64),
                                  ("FAST: separable critic 2x64", "separable", 64)):
        sps = steps_per_second(critic, hidden, args.steps, args.device)
        print(f"{label:32s} {sps:8.1f} {20_000 / sps:17.0f} s")


if __name__ == "__main__":
    main()
