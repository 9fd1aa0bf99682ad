"""Reading a stored protocol record (`protocol.Comparison.record`), the form every comparison has in results/ (nb 07).

    frame(record) / verdict(record, col)            -> the rows again / best set and readings against a reference
    choice_frame(record) / difference_frame(record, cols) -> the tables notebooks 05 and 07 read them with
    curve_shortfalls(record) / tail_slopes(record)  -> the grid and learning-curve rules a stored comparison misses

These read only the record (a dict as stored in JSON), never a live run, so a committed result can be re-read
and re-judged without training anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .readings import Reading, best_set, read_family


def frame(record: Mapping) -> pd.DataFrame:
    """The per-seed rows of a stored `Comparison.record`: one row per (method, seed) (notebook 07)."""
    rows = []
    for m, cols in record["per_seed"].items():
        for k, seed in enumerate(record["seeds"]):
            rows.append({"method": m, "seed": seed, **{c: v[k] for c, v in cols.items()}})
    return pd.DataFrame(rows)


def verdict(record: Mapping, col: str = "acc", reference: str = "joint", higher_is_better: bool = True,
            alpha: float = 0.05, margin: float | None = None) -> dict:
    """The best set for `col` and every method read against `reference` (notebook 07).

    'best': `readings.best_set` (no other method resolved above it, Holm over every pair). 'minus_<ref>':
    a `readings.Reading` per method, the family being the comparisons with `reference` in this record and
    column (Holm over them); `margin` adds the equivalence test.
    """
    per = {m: v[col] for m, v in record["per_seed"].items()}
    if reference not in per:
        raise ValueError(f"verdict: the reference {reference!r} is not among the methods {list(per)}.")
    pairs = {m: (v, per[reference]) for m, v in per.items() if m != reference}
    readings: dict[str, Reading] = read_family(pairs, margin, alpha)
    return {"best": best_set(per, alpha, higher_is_better), "minus_" + reference: readings}


def choice_frame(record: Mapping) -> pd.DataFrame:
    """Per method: the chosen rate, validation accuracy per rate and the learning-curve warnings (notebook 07).

    'at grid edge': a wider grid might do better; 'seeds best at last epoch': those runs were still
    improving (needs `best_epoch` among the recorded columns). Rates given to `compare` show no grid.
    """
    grid, last, n = record["lr_grid"], record["epochs"] - 1, len(record["seeds"])
    rows = {}
    for m, lr in record["lr"].items():
        val = record["val_acc_by_lr"][m]
        best = record["selection_best_epoch"][m]
        epochs = record["per_seed"][m].get("best_epoch")
        rows[m] = {"lr": lr, "val acc per lr": " / ".join(f"{val[f'{g:g}']:.3f}" for g in grid) if val else "given",
                   "at grid edge": bool(val) and len(grid) > 1 and lr in (grid[0], grid[-1]),
                   "best epoch (selection)": f"{best + 1} of {record['epochs']}" if best >= 0 else "-",
                   "seeds best at last epoch": "-" if epochs is None else f"{sum(e == last for e in epochs)} of {n}"}
    return pd.DataFrame(rows).T


def tail_epochs(record: Mapping) -> int:
    """How many final epochs the tail rule reads: half the epochs after the StepLR drop, at least 3 (nb 07)."""
    epochs, step = record["epochs"], record.get("lr_step")
    after = epochs - step if step and step < epochs else epochs
    return min(epochs, max(3, after // 2))


def tail_slopes(record: Mapping, alpha: float = 0.05) -> dict[str, Reading]:
    """Per method: the least-squares slope of validation accuracy over the last `tail_epochs`, over seeds (nb 07).

    Under StepLR the curve flattens after the drop and its maximum falls before the last epoch by chance, so
    "best epoch not last" is met almost always. A slope read as `resolved above` 0 (Holm over the methods)
    says the runs were still improving when they stopped.
    """
    k = tail_epochs(record)
    slopes = {m: [float(np.polyfit(np.arange(k), np.asarray(c[-k:], dtype=float), 1)[0]) for c in curves]
              for m, curves in record["val_curve"].items() if curves and all(len(c) >= k for c in curves)}
    return read_family({m: (v, [0.0] * len(v)) for m, v in slopes.items() if len(v) >= 2}, None, alpha) \
        if any(len(v) >= 2 for v in slopes.values()) else {}


def curve_shortfalls(record: Mapping) -> list[str]:
    """The rules a stored comparison misses, in words; empty when it meets every one (notebook 07).

    - the grid: the chosen rate is not its smallest or largest (a wider grid might do better);
    - the selection run's best validation epoch is not its last (more epochs might do better);
    - the tail: over the reported seeds, validation accuracy is not still rising over the last epochs
      (`tail_slopes`), the check that still bites under StepLR.
    Rates given to `compare` (no grid searched) are not judged on the grid.
    """
    grid, last, out = record["lr_grid"], record["epochs"] - 1, []
    for m, lr in record["lr"].items():
        if not record["val_acc_by_lr"].get(m):
            continue
        if len(grid) > 1 and lr in (grid[0], grid[-1]):
            out.append(f"{m}: rate {lr:g} at the {'bottom' if lr == grid[0] else 'top'} of the grid")
        if record["selection_best_epoch"][m] == last:
            out.append(f"{m}: the selection run was best at its last epoch ({last + 1} of {record['epochs']})")
    if "val_curve" not in record:
        out.append("no validation curves stored: the tail rule cannot be checked (a record from before it)")
        return out
    k = tail_epochs(record)
    for m, r in tail_slopes(record).items():
        if r.verdict == "resolved above":
            out.append(f"{m}: validation accuracy still rising over the last {k} epochs "
                       f"({r.diff.mean:+.4f} per epoch, Holm p = {r.p_adjusted:.2g} over {r.family})")
    return out


def difference_frame(record: Mapping, cols: Sequence[str], reference: str = "joint",
                     alpha: float = 0.05, margin: float | None = None) -> pd.DataFrame:
    """Each method minus `reference`, paired by seed, per column: 'mean ± half-width (verdict)' (notebook 07).

    Each column is its own family (Holm over the methods compared with `reference`).
    """
    out = {c: {m: r.short() for m, r in verdict(record, c, reference, alpha=alpha, margin=margin)
               ["minus_" + reference].items()} for c in cols}
    return pd.DataFrame(out)


def seed_plan(record: Mapping, subject: str, family: Sequence[str], col: str = "acc", target: float = 0.02,
              alpha: float = 0.05, power: float = 0.8) -> pd.DataFrame:
    """How many paired seeds each comparison `subject - b` of `family` needs to find `target` (notebook 07).

    The record's seeds are the pilot: the standard deviation of each paired difference, what the record's n can
    detect, and the n that detects `target` with `power`, each at alpha / len(family) (Holm's strictest step, so
    the verdict after the family's adjustment has at least that power). A zero spread needs no more seeds.
    """
    from .stats import detectable_difference, seeds_needed

    ps, n, a = record["per_seed"], len(record["seeds"]), alpha / len(family)
    rows = {}
    for b in family:
        sd = float(np.std(np.subtract(ps[subject][col], ps[b][col]), ddof=1))
        rows[b] = {"pilot sd": sd, f"detectable with {n}": detectable_difference(sd, n, a, power) if sd > 0 else 0.0,
                   "seeds needed": seeds_needed(sd, target, a, power) if sd > 0 else n}
    return pd.DataFrame(rows).T


def detectable(record: Mapping, subject: str, family: Sequence[str], col: str = "acc", alpha: float = 0.05,
               power: float = 0.8) -> dict[str, float]:
    """What the record's seeds can detect for each `subject - b` of `family`, at alpha / len(family) (nb 07)."""
    return {b: float(v) for b, v in seed_plan(record, subject, family, col, 0.02, alpha, power)
            [f"detectable with {len(record['seeds'])}"].items()}
