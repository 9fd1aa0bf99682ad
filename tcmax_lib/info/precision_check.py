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


def precision_verdict(runs: pd.DataFrame, base: str = "fp32", other: str = "bf16", z: float = 3.0) -> pd.DataFrame:
    """Per estimator and level: mean over seeds in each precision, the difference, its standard error
    sqrt(s_a^2/n_a + s_b^2/n_b) from the seed spread, and whether |difference| <= z standard errors (nb 01)."""
    g = runs.groupby(["estimator", "true", "precision"], sort=False)["mean"]
    stats = pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1), "n": g.size()}).unstack("precision")
    out = pd.DataFrame({base: stats["mean"][base], other: stats["mean"][other],
                        f"seed sd ({base})": stats["sd"][base]})
    out["difference"] = out[other] - out[base]
    out["se"] = np.sqrt(stats["sd"][base] ** 2 / stats["n"][base] + stats["sd"][other] ** 2 / stats["n"][other])
    out["within"] = out["difference"].abs() <= z * out["se"]
    return out.reset_index()
