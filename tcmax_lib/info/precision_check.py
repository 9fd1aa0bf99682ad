"""Does bf16 change the MI estimates? The same staircase in fp32 and bf16 over seeds, against the seed spread.

The precision policy itself is `runtime.pick_precision`; this module is the check of notebook 01 §7 and
of `tests/test_estimators.py`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..runtime import progress_off
from .training import make_estimators, mi_staircase, staircase_summary, train_estimators


def precision_comparison(bounds: Sequence[str], levels: Sequence[float], steps_per_level: int,
                         seeds: Sequence[int], critic: str = "concat", hidden: int = 256, dim: int = 20,
                         batch_size: int = 64, lr: float = 5e-4, device: str | torch.device = "cpu",
                         precisions: Sequence[str] = ("fp32", "bf16"), tail: float = 0.2,
                         progress: bool = True) -> pd.DataFrame:
    """Tail-mean estimate per level of the same staircase trained in each precision over several seeds (nb 01).

    Seed s fixes both the initial weights and the batches, so fp32 and bf16 runs of one seed differ
    only in arithmetic. Returns one row per (precision, seed, estimator, level) with the tail mean and
    the run's training speed (steps of all estimators per second, wall clock).
    """
    true = mi_staircase(levels, steps_per_level)
    rows = []
    runs = [(p, s) for p in precisions for s in seeds]
    for prec, seed in tqdm(runs, desc="precision x seed", disable=progress_off(progress), leave=False):
        specs = make_estimators(bounds, critic=critic, dim=dim, hidden=hidden, seed=seed)
        t0 = time.perf_counter()
        hist = train_estimators(specs, true, dim=dim, batch_size=batch_size, lr=lr, seed=seed, device=device,
                                precision=prec, batched=False, progress=False)
        seconds = time.perf_counter() - t0
        summ = staircase_summary(hist, steps_per_level, tail)
        rows += [{"precision": prec, "seed": seed, "estimator": r.estimator, "true": r.true, "mean": r.mean,
                  "steps_per_s": len(true) / seconds} for r in summ.itertuples()]
    return pd.DataFrame(rows)


def precision_verdict(runs: pd.DataFrame, base: str = "fp32", other: str = "bf16", z: float = 3.0,
                      level: float = 0.95) -> pd.DataFrame:
    """Per estimator and level: does `other` move the estimate, read with the seeds paired (nb 01)?

    Seed s fixes weights and batches in both precisions, so the per-seed differences other - base are the
    comparison: their mean with a Student-t interval (`stats.paired_difference`) and `paired_contains_0`.
    Also the unpaired reading of the first FULL run: SE = sqrt(s_a^2/n_a + s_b^2/n_b) from the seed spread and
    `within` = |difference| <= z SE, and the seed sd of `base` for the size of a difference.
    """
    from ..stats import paired_difference

    rows = []
    for (est, true), g in runs.groupby(["estimator", "true"], sort=False):
        a = g[g["precision"] == base].set_index("seed")["mean"]
        b = g[g["precision"] == other].set_index("seed")["mean"]
        if sorted(a.index) != sorted(b.index):
            raise ValueError(f"{est} at {true}: the seeds of {base} ({sorted(a.index)}) and {other} "
                             f"({sorted(b.index)}) differ; the comparison needs the same seeds in both.")
        b = b.loc[a.index]                                              # pair by seed
        d = paired_difference(b.to_numpy(), a.to_numpy(), level)
        se = float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
        rows.append({"estimator": est, "true": true, base: float(a.mean()), other: float(b.mean()),
                     f"seed sd ({base})": float(a.std(ddof=1)), "difference": d.mean,
                     "paired lo": d.lo, "paired hi": d.hi, "paired_contains_0": d.contains(0.0),
                     "se": se, "within": abs(d.mean) <= z * se})
    return pd.DataFrame(rows)
