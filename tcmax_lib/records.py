"""Reading a stored protocol record (`protocol.Comparison.record`), the form every comparison has in results/ (nb 07).

    frame(record) / verdict(record, col)            -> the rows again / best set and readings against a reference
    choice_frame(record) / difference_frame(record, cols) -> the tables notebooks 05 and 07 read them with
    curve_shortfalls(record) / tail_slopes(record)  -> the grid and learning-curve rules a stored comparison misses
    seed_plan / powered_pairs / powered_readings    -> how many seeds a question needs, and the powered comparison

These read only the record (a dict as stored in JSON), never a live run, so a committed result can be re-read
and re-judged without training anything. Each first checks what it reads (`check_record`): a per-seed list of
the wrong length, a NaN, a missing key or a selection seed among the reported seeds is an error naming the
record, the method and the column, never a silently smaller interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .readings import Reading, best_set, read_family

PROTOCOL_KEYS = ("lr", "lr_grid", "epochs", "selection_seed", "val_acc_by_lr", "selection_best_epoch")


def check_record(record: Mapping, where: str = "the record") -> Mapping:
    """Refuse a record whose per-seed values do not match its seeds, or that lacks what its readers need (nb 07).

    Checks: `seeds` and `per_seed` present, the seeds distinct integers, every per-seed list one finite
    number per seed, the selection seed (if any) not reported, and, for a record of a rate selection (one
    with `val_acc_by_lr`), the selection keys present, a rate for every method and, per rate, a finite
    validation accuracy or None (diverged). `where` names the record in the error (the loaders pass file and
    key). Returns the record.
    """
    def fail(what: str) -> ValueError:
        return ValueError(f"{where}: {what}. The record is damaged or hand-edited: restore it from git "
                          "(git checkout -- results) or re-run the notebook in FULL mode.")

    if not isinstance(record, Mapping):
        raise fail(f"expected a record (a dict), got {type(record).__name__}")
    missing = [k for k in ("seeds", "per_seed") if k not in record]
    if missing:
        raise fail(f"lacks {missing}")
    seeds = record["seeds"]
    if not isinstance(seeds, list) or not seeds or len(set(map(str, seeds))) != len(seeds) \
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in seeds):
        raise fail(f"'seeds' must be a non-empty list of distinct integers, got {seeds!r}")
    if record.get("selection_seed") in seeds:
        raise fail(f"the selection seed {record['selection_seed']} is also a reported seed")
    per = record["per_seed"]
    if not isinstance(per, Mapping) or not per:
        raise fail("'per_seed' must map each method to its columns")
    for m, cols in per.items():
        if not isinstance(cols, Mapping):
            raise fail(f"method {m!r}: expected {{column: per-seed values}}, got {type(cols).__name__}")
        for c, v in cols.items():
            if not isinstance(v, list) or len(v) != len(seeds):
                n = len(v) if isinstance(v, list) else type(v).__name__
                raise fail(f"method {m!r}, column {c!r}: {n} values for {len(seeds)} seeds {seeds}; pairing needs "
                           "one value per seed, in the seeds' order")
            bad = [x for x in v if isinstance(x, bool) or not isinstance(x, (int, float)) or not np.isfinite(x)]
            if bad:
                raise fail(f"method {m!r}, column {c!r}: non-finite or non-numeric values {bad[:3]}")
    if "val_acc_by_lr" in record:
        lacking = [k for k in PROTOCOL_KEYS if k not in record]
        if lacking:
            raise fail(f"a protocol record lacks {lacking}")
        if set(record["lr"]) != set(per):
            raise fail(f"rates are given for {sorted(record['lr'])} but values for {sorted(per)}")
        for m, by_lr in record["val_acc_by_lr"].items():
            bad = {k: v for k, v in by_lr.items() if v is not None and not (isinstance(v, (int, float))
                                                                          and np.isfinite(v))}
            if bad:
                raise fail(f"method {m!r}: validation accuracies {bad} per rate are not finite (a diverged rate "
                           "is stored as None)")
    for m, curves in record.get("val_curve", {}).items():
        if len(curves) != len(seeds):
            raise fail(f"method {m!r}, column 'val_curve': {len(curves)} curves for {len(seeds)} seeds")
    return record


def frame(record: Mapping) -> pd.DataFrame:
    """The per-seed rows of a stored `Comparison.record`: one row per (method, seed) (notebook 07)."""
    check_record(record)
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
    check_record(record)
    per = {m: v[col] for m, v in record["per_seed"].items()}
    if reference not in per:
        raise ValueError(f"verdict: the reference {reference!r} is not among the methods {list(per)}.")
    pairs = {m: (v, per[reference]) for m, v in per.items() if m != reference}
    readings: dict[str, Reading] = read_family(pairs, margin, alpha)
    return {"best": best_set(per, alpha, higher_is_better), "minus_" + reference: readings}


def _acc(v: float | None) -> str:
    """A validation accuracy per rate; None (or the -inf of records before 2026-12-07) is a diverged rate."""
    return "diverged" if v is None or v == -np.inf else f"{v:.3f}"


def other_rates(record: Mapping, method: str) -> dict[float, float]:
    """Selection accuracy of each rate besides the chosen one that trained (no divergence, not given up) (nb 07).

    The candidates for the next-best rate: `choice_frame`'s lead and `reruns.at_next_rate` read them.
    """
    given_up = record.get("diverged_reported", {}).get(method, {})
    return {float(g): v for g, v in record["val_acc_by_lr"][method].items()
            if v is not None and g not in given_up and float(g) != record["lr"][method]}


def _lead(record: Mapping, method: str) -> str:
    """The chosen rate's selection accuracy minus the best other usable rate's; '-' without a grid."""
    val, others, chosen = record["val_acc_by_lr"][method], other_rates(record, method), f"{record['lr'][method]:g}"
    return f"{val[chosen] - max(others.values()):+.3f}" if val and others else "-"


def choice_frame(record: Mapping) -> pd.DataFrame:
    """Per method: the chosen rate, validation accuracy per rate and the learning-curve warnings (notebook 07).

    'at grid edge': a wider grid might do better; 'lead over next rate': the chosen rate's validation accuracy
    minus the best other rate's on the selection seed (a lead of one or two validation items is a choice one
    seed cannot make reliably); 'seeds best at last epoch': those runs were still improving (needs `best_epoch`
    among the recorded columns). Rates given to `compare` show no grid.
    """
    check_record(record)
    grid, last, n = record["lr_grid"], record["epochs"] - 1, len(record["seeds"])
    rows = {}
    for m, lr in record["lr"].items():
        val = record["val_acc_by_lr"][m]
        best = record["selection_best_epoch"][m]
        epochs = record["per_seed"][m].get("best_epoch")
        rows[m] = {"lr": lr, "val acc per lr": " / ".join(_acc(val[f"{g:g}"]) for g in grid) if val else "given",
                   "at grid edge": bool(val) and len(grid) > 1 and lr in (grid[0], grid[-1]),
                   "lead over next rate": _lead(record, m),
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
    check_record(record)
    k = tail_epochs(record)
    if k < 2:                                              # one epoch has no slope (and polyfit would not converge)
        return {}
    slopes = {m: [float(np.polyfit(np.arange(k), np.asarray(c[-k:], dtype=float), 1)[0]) for c in curves]
              for m, curves in record["val_curve"].items() if curves and all(len(c) >= k for c in curves)}
    return read_family({m: (v, [0.0] * len(v)) for m, v in slopes.items() if len(v) >= 2}, None, alpha) \
        if any(len(v) >= 2 for v in slopes.values()) else {}


def curve_shortfalls(record: Mapping) -> list[str]:
    """The rules a stored comparison misses, in words; empty when it meets every one (notebook 07).

    - the grid: the chosen rate is not its smallest or largest (a wider grid might do better);
    - the selection run's best validation epoch is not its last (more epochs might do better);
    - the tail: over the reported seeds, validation accuracy is not still rising over the last epochs
      (`tail_slopes`), the check that still bites under StepLR;
    - the chosen rate trained on every reported seed (else `compare` fell back to the next-best rate, named).

    Rates given to `compare` (no grid searched) are not judged on the grid.
    """
    check_record(record)
    grid, last, out = record["lr_grid"], record["epochs"] - 1, []
    for m, lr in record["lr"].items():
        if not record["val_acc_by_lr"].get(m):
            continue
        if len(grid) > 1 and lr in (grid[0], grid[-1]):
            out.append(f"{m}: rate {lr:g} at the {'bottom' if lr == grid[0] else 'top'} of the grid")
        if record["selection_best_epoch"][m] == last:
            out.append(f"{m}: the selection run was best at its last epoch ({last + 1} of {record['epochs']})")
    for m, given_up in record.get("diverged_reported", {}).items():
        out.append(f"{m}: rate {', '.join(given_up)} diverged on a reported seed; reported at the next-best rate of "
                   f"the selection seed, {record['lr'][m]:g}")
    if "val_curve" not in record:
        out.append("no validation curves stored: the tail rule cannot be checked (a record from before it)")
        return out
    k = tail_epochs(record)
    if k < 2:
        out.append(f"{record['epochs']} epoch: the tail rule needs at least 2 epochs to read a slope")
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


def subject_frame(record: Mapping, cols: Sequence[str], subject: str = "tcmax", alpha: float = 0.05,
                  margin: float | None = None) -> pd.DataFrame:
    """`subject` minus each other method, paired by seed, per column: 'mean ± half-width (verdict)' (notebook 05).

    Each column is its own family (Holm over the comparisons of `subject` with every other method).
    """
    check_record(record)
    ps = record["per_seed"]
    if subject not in ps:
        raise KeyError(f"subject_frame: {subject!r} is not a method of this record ({sorted(ps)}).")
    out = {c: {f"{subject} - {m}": r.short() for m, r in read_family(
        {m: (ps[subject][c], ps[m][c]) for m in ps if m != subject}, margin, alpha).items()} for c in cols}
    return pd.DataFrame(out)


def seed_plan(record: Mapping, subject: str, family: Sequence[str], col: str = "acc", target: float = 0.02,
              alpha: float = 0.05, power: float = 0.8) -> pd.DataFrame:
    """How many paired seeds each comparison `subject - b` of `family` needs to find `target` (notebook 07).

    The record's seeds are the pilot: the standard deviation of each paired difference, what the record's n can
    detect, and the n that detects `target` with `power`, each at alpha / len(family) (Holm's strictest step, so
    the verdict after the family's adjustment has at least that power). A zero spread needs no more seeds.
    """
    from .stats import detectable_difference, seeds_needed

    check_record(record)
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


def powered_pairs(p: Mapping, subject: str = "tcmax") -> dict[str, dict]:
    """Each comparison `subject - b` of a powered record as its own paired record (notebooks 05, 07).

    A record with `comparisons` (07: each baseline trained on as many seeds as its own question needs) gives
    them as stored; a record whose methods share every seed (05) is cut into the same form.
    """
    out = {}
    for b in p["family"]:
        sub = p["comparisons"][b] if "comparisons" in p else {
            "seeds": p["seeds"], "per_seed": {m: p["per_seed"][m] for m in (subject, b)}}
        out[b] = dict(check_record(sub, f"the powered comparison {subject} - {b}"))
    return out


def powered_readings(p: Mapping, col: str = "acc", subject: str = "tcmax") -> dict[str, tuple[Reading, float, int]]:
    """{b: (reading, detectable difference, seeds)} of every `subject - b` of a powered record (notebooks 05, 07).

    The readings are one family (Holm, TOST at the record's margin); the detectable difference is at the record's
    power and alpha / len(family), Holm's strictest step, from each comparison's own paired SD and seeds.
    """
    pairs = powered_pairs(p, subject)
    reads = read_family({b: (s["per_seed"][subject][col], s["per_seed"][b][col]) for b, s in pairs.items()},
                        p["margin"], p["alpha"])
    a = p["alpha"] / len(pairs)
    return {b: (reads[b], detectable(s, subject, [b], col, a, p["power"])[b], len(s["seeds"]))
            for b, s in pairs.items()}
