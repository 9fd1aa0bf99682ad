"""Steps per second of the Poole et al. MI staircase: 4 estimators (MINE, NWJ, InfoNCE, SMILE), batch 64.

    python benchmarks/bench_estimators.py [--device cpu] [--steps 60] [--rounds 3] [--hidden 256]

One run, configurations measured side by side in alternating order (every round times each one once;
the median over rounds is reported), all with the concat critic of notebook 01 (2 x hidden):

  plain fp32 loop   the public reference's structure, written out below: one critic per estimator
                    evaluated on the tiled [K*K, 2d] pair tensor, one optimiser and one step each
  project loop      `info.training.train_estimators(batched=False)`: split first layer, one backward for all
  project batched   `info.training.train_estimators(batched=True)`: the four critics stacked and vmapped
  project compiled  `info.training.train_estimators(compile=True)`: each critic through torch.compile
                    (compile time reported on its own line; a failed compile falls back to eager)

each in fp32 and in bf16 autocast (`runtime.pick_precision`). A "step" trains all four estimators
on one batch. The last line is the speedup of the configuration the notebooks use on this device
(`precision='auto'`, `batched=None`) over the plain fp32 loop.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from tcmax_lib.hardware import device_name
from tcmax_lib.info import bounds
from tcmax_lib.info import training as E
from tcmax_lib.info.closed_forms import rho_for_mi, sample_correlated_gaussian
from tcmax_lib.runtime import pick_precision, seeded

BOUNDS = ["mine", "nwj", "infonce", "smile"]
DIM, BATCH, LR = 20, 64, 5e-4


class TiledConcatCritic(nn.Module):
    """The reference's joint critic: MLP([x_i, y_j]) on all K^2 tiled pairs (no first-layer split)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        k = x.shape[0]
        pairs = torch.cat([x[:, None].expand(k, k, -1), y[None, :].expand(k, k, -1)], -1)   # [K, K, 2d]
        return self.net(pairs.reshape(k * k, -1)).view(k, k)                              # [K, K]


def plain_loop(hidden: int, steps: int, device: str) -> float:
    """Four separate fp32 loops (critic, optimiser, bound each), as in the reference; all-four steps/s."""
    mine = bounds.MINE(0.01)
    bound = {"mine": mine, "nwj": bounds.nwj_bound, "infonce": bounds.infonce_bound, "smile": bounds.smile_bound}
    rho = rho_for_mi(2.0, DIM)
    seconds = 0.0
    for i, name in enumerate(BOUNDS):
        with seeded(i):
            critic = TiledConcatCritic(DIM, hidden).to(device)
        opt = torch.optim.Adam(critic.parameters(), lr=LR)
        gen = torch.Generator(device=device).manual_seed(0)
        for s in range(steps + 3):                                          # 3 warm-up steps
            if s == 3:
                _sync(device)
                t0 = time.perf_counter()
            x, y = sample_correlated_gaussian(BATCH, DIM, rho, generator=gen)
            loss = -bound[name](critic(x, y))
            opt.zero_grad()
            loss.backward()
            opt.step()
        _sync(device)
        seconds += time.perf_counter() - t0
    return steps / seconds


COMPILE_S: dict[str, list[float]] = {}          # compile seconds of the compiled configurations, per round


def project_loop(hidden: int, steps: int, device: str, precision: str | None, batched: bool | None,
                 compile: bool = False) -> float:
    """The library's training loop (`train_estimators`) on the four estimators; steps/s (compilation excluded)."""
    specs = E.make_estimators(BOUNDS, critic="concat", dim=DIM, hidden=hidden)
    if compile:                                   # compile once, on the warm-up run; time the compiled critics after
        torch._dynamo.reset()
        warm = E.train_estimators(specs, E.mi_staircase([2.0], 3), dim=DIM, batch_size=BATCH, lr=LR, device=device,
                                  precision=precision, batched=False, progress=False, compile=True)
        COMPILE_S.setdefault(str(precision), []).append(warm.attrs["compile_s"])
        for s in specs:
            s.critic = torch.compile(s.critic, dynamic=False)       # the cached graphs of the warm-up
    kw = dict(dim=DIM, batch_size=BATCH, lr=LR, device=device, precision=precision, batched=batched, progress=False)
    E.train_estimators(specs, E.mi_staircase([2.0], 3), **kw)              # warm-up
    _sync(device)
    t0 = time.perf_counter()
    E.train_estimators(specs, E.mi_staircase([2.0], steps), **kw)
    _sync(device)
    return steps / (time.perf_counter() - t0)


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=60, help="timed steps per configuration and round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    ap.add_argument("--hidden", type=int, default=256, help="critic width (FULL: 256)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile configurations")
    args = ap.parse_args()
    auto = pick_precision(args.device, "auto")
    print(f"# MI staircase speed, 4 estimators ({', '.join(BOUNDS)}), concat critic 2x{args.hidden}, batch {BATCH}, "
          f"d={DIM}; device: {device_name(args.device)}, torch {torch.__version__}; auto precision: {auto}")
    configs = {"plain fp32 loop (reference structure)": lambda: plain_loop(args.hidden, args.steps, args.device)}
    for prec in ("fp32", "bf16"):
        configs[f"project loop, {prec}"] = (
            lambda p=prec: project_loop(args.hidden, args.steps, args.device, p, False))
        configs[f"project batched (vmap), {prec}"] = (
            lambda p=prec: project_loop(args.hidden, args.steps, args.device, p, True))
        if not args.no_compile:
            configs[f"project compiled, {prec}"] = (
                lambda p=prec: project_loop(args.hidden, args.steps, args.device, p, False, compile=True))
    runs: dict[str, list[float]] = {k: [] for k in configs}
    for _ in range(args.rounds):
        for name, fn in configs.items():
            runs[name].append(fn())
    base = statistics.median(runs["plain fp32 loop (reference structure)"])
    print(f"{'configuration':40s} {'steps/s':>8} {'x plain':>8} {'20k-step staircase':>19}")
    for name, values in runs.items():
        sps = statistics.median(values)
        print(f"{name:40s} {sps:8.1f} {sps / base:7.2f}x {20_000 / sps:17.0f} s")
    for prec, seconds in COMPILE_S.items():
        print(f"torch.compile time, {prec} (4 critics, forward+backward, median of {len(seconds)}): "
              f"{statistics.median(seconds):.1f} s")
    used = f"project {'batched (vmap)' if E.batched_default(args.device) else 'loop'}, {auto.name}"
    print(f"notebook default on this device: {used}")
    print(f"staircase-4 speedup vs plain fp32 loop: {statistics.median(runs[used]) / base:.2f}x")


if __name__ == "__main__":
    main()
