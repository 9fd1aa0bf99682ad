"""The evidence protocol: each method's learning rate chosen on validation, then paired seeds (notebook 07).

    Protocol(lr_grid, seeds, selection_seed)        the settings, checked; `shortfalls()` against the rules
    select_lr(method, splits, model_fn, config, protocol) -> LRChoice (lr, validation accuracy per lr)
    compare(methods, splits, make_model, head, config, protocol) -> Comparison (per-seed rows, the choices)
    Comparison.record(cols)                         -> the dict stored in results/: every per-seed value
    frame(record) / verdict(record, col)            -> the rows again / tie-rule best set and paired differences
    choice_frame(record) / difference_frame(record, cols) -> the tables notebooks 05 and 07 read them with

The rules (the series' evidence protocol): one optimiser for every method; a learning-rate grid of at
least 3 values spanning at least 10x, the rate of each method chosen by the best validation accuracy on
a selection seed that is never reported; at least 5 reported seeds, paired across methods (the same data,
batch order and initialisation wherever the architectures allow); the best-validation weights tested
once; verdicts by the tie rule of `stats.tied_best`, never by the largest mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import pandas as pd

from . import checks
from .data.splits import Splits
from .experiments import ModelFn, Run, native_head, run_grid
from .methods import METHODS, make_method
from .stats import Interval, paired_difference, tied_best
from .train import TrainConfig, TrainingDivergedError, fit

MIN_GRID, MIN_SPAN, MIN_SEEDS = 3, 10.0, 5


@dataclass(frozen=True)
class Protocol:
    """Learning-rate grid, reported seeds and the selection seed of one comparison (notebook 07)."""

    lr_grid: tuple[float, ...]
    seeds: tuple[int, ...]
    selection_seed: int = 1000

    def __post_init__(self) -> None:
        grid = tuple(sorted(checks.real(v, "a learning rate of lr_grid", positive=True) for v in self.lr_grid))
        seeds = tuple(checks.integer(s, "a seed", minimum=None) for s in self.seeds)
        sel = checks.integer(self.selection_seed, "selection_seed", minimum=None)
        if not grid or len(set(grid)) != len(grid):
            raise ValueError(f"lr_grid={list(self.lr_grid)}: give at least one learning rate, each once.")
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds={list(self.seeds)}: give at least one seed, each once.")
        if sel in seeds:                   # the seed that picks the rate would also be scored: a biased result
            raise ValueError(f"selection_seed={sel} is also a reported seed; choose one outside {list(seeds)}.")
        object.__setattr__(self, "lr_grid", grid)
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "selection_seed", sel)

    def shortfalls(self) -> list[str]:
        """What this protocol lacks against the series' rules (empty for a FULL comparison) (notebook 07)."""
        out = []
        if len(self.lr_grid) < MIN_GRID:
            out.append(f"{len(self.lr_grid)} learning rates (the rule: at least {MIN_GRID})")
        if self.lr_grid[-1] / self.lr_grid[0] < MIN_SPAN:
            out.append(f"the grid spans {self.lr_grid[-1] / self.lr_grid[0]:g}x (the rule: at least {MIN_SPAN:g}x)")
        if len(self.seeds) < MIN_SEEDS:
            out.append(f"{len(self.seeds)} reported seeds (the rule: at least {MIN_SEEDS})")
        return out


@dataclass
class LRChoice:
    """The learning rate chosen for one method: best validation accuracy per rate on the selection seed (nb 07)."""

    lr: float
    val_acc: dict[float, float]            # -inf: the rate diverged
    best_epoch: dict[float, int]           # -1: the rate diverged
    epochs: int

    @property
    def at_edge(self) -> bool:
        """Whether the chosen rate is the smallest or largest of the grid (a wider grid might do better)."""
        grid = sorted(self.val_acc)
        return len(grid) > 1 and self.lr in (grid[0], grid[-1])

    @property
    def best_is_last(self) -> bool:
        """Whether the chosen run was still improving at its last epoch (more epochs might do better)."""
        return self.best_epoch[self.lr] == self.epochs - 1


def select_lr(method: str, splits: Splits | Callable[[int], Splits], model_fn: ModelFn, config: TrainConfig,
              protocol: Protocol, *, method_kw: dict | None = None, max_train: int | None = None) -> LRChoice:
    """Train `method` once per rate of the grid on the selection seed; keep the best validation accuracy (nb 07).

    Ties go to the smaller rate. A rate that diverges (`TrainingDivergedError`) is never chosen; if every
    rate diverges the error says so before any reported seed is trained. The test split is not touched.
    """
    seed = protocol.selection_seed
    data = splits(seed) if callable(splits) else splits
    train = data.train if max_train is None else data.train.stratified_subset(max_train, seed=seed)
    val_acc, best_epoch = {}, {}
    for lr in protocol.lr_grid:
        cfg = replace(config, lr=lr, seed=seed)
        try:
            _, hist = fit(model_fn(seed), make_method(method, **(method_kw or {})), train, data.val, cfg)
            val_acc[lr], best_epoch[lr] = float(hist["val_acc"].max()), int(hist["best_epoch"].iloc[0])
        except TrainingDivergedError:
            val_acc[lr], best_epoch[lr] = -math.inf, -1
    if all(v == -math.inf for v in val_acc.values()):
        raise TrainingDivergedError(f"{method}: every learning rate of {list(protocol.lr_grid)} diverged on the "
                                    f"selection seed; add smaller rates to the grid.")
    lr = max(val_acc, key=val_acc.get)                                   # the first maximum: the smaller rate
    return LRChoice(lr=lr, val_acc=val_acc, best_epoch=best_epoch, epochs=config.epochs)


@dataclass
class Comparison:
    """One protocol comparison: a row per (method, seed), the chosen rates and the kept runs (notebook 07)."""

    results: pd.DataFrame
    choices: dict[str, LRChoice]
    protocol: Protocol
    config: TrainConfig
    runs: dict[tuple[str, int], Run] = field(default_factory=dict, repr=False)

    def record(self, cols: Sequence[str]) -> dict:
        """Everything needed to recompute any statistic: settings, grid, choices and every per-seed value (nb 07)."""
        missing = [c for c in cols if c not in self.results.columns]
        if missing:
            raise ValueError(f"record: no column {missing}; the results have {list(self.results.columns)}.")
        per_seed = {}
        for m, g in self.results.groupby("method", sort=False):
            g = g.set_index("seed").loc[list(self.protocol.seeds)]      # one order: the protocol's seeds
            per_seed[m] = {c: [float(v) for v in g[c]] for c in cols}
        return {"optimizer": self.config.optimizer, "epochs": self.config.epochs,
                "batch_size": self.config.batch_size, "weight_decay": self.config.weight_decay,
                "lr_step": self.config.lr_step, "lr_grid": list(self.protocol.lr_grid),
                "seeds": list(self.protocol.seeds), "selection_seed": self.protocol.selection_seed,
                "shortfalls": self.protocol.shortfalls(),
                "head": {m: str(g["head"].iloc[0]) for m, g in self.results.groupby("method", sort=False)},
                "lr": {m: c.lr for m, c in self.choices.items()},
                "val_acc_by_lr": {m: {f"{lr:g}": v for lr, v in c.val_acc.items()} for m, c in self.choices.items()},
                "selection_best_epoch": {m: c.best_epoch[c.lr] for m, c in self.choices.items()},
                "per_seed": per_seed}


def compare(methods: Sequence[str], splits: Splits | Callable[[int], Splits],
            make_model: Callable[[str, int], object], head: str, config: TrainConfig, protocol: Protocol, *,
            method_kw: dict | None = None, max_train: int | None = None, keep: str = "first",
            lr: Mapping[str, float] | None = None, **run_kw) -> Comparison:
    """Every method on its native head: its rate chosen by `select_lr`, then the protocol's seeds (notebook 07).

    `lr` gives already chosen rates (e.g. a head comparison that reuses the main table's choices); the
    methods it names skip the selection, and their choice records only the rate.
    """
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:                                           # before the first run, not after some
        raise ValueError(f"compare: unknown method(s) {unknown} or none given; choose from {sorted(METHODS)}.")
    frames, choices, runs = [], {}, {}
    for method in methods:
        used = native_head(method, head)
        model_fn = (lambda seed, h=used: make_model(h, seed))
        kw = (method_kw or {}).get(method)
        if lr is not None and method in lr:
            choices[method] = LRChoice(lr=float(lr[method]), val_acc={}, best_epoch={float(lr[method]): -1},
                                       epochs=config.epochs)
        else:
            choices[method] = select_lr(method, splits, model_fn, config, protocol, method_kw=kw,
                                        max_train=max_train)
        res, kept = run_grid([method], protocol.seeds, splits, model_fn, replace(config, lr=choices[method].lr),
                             keep=keep, method_kw={method: kw} if kw else None, max_train=max_train, **run_kw)
        frames.append(res.assign(head=used, lr=choices[method].lr))
        runs.update(kept)
    return Comparison(pd.concat(frames, ignore_index=True), choices, protocol, config, runs)


def frame(record: Mapping) -> pd.DataFrame:
    """The per-seed rows of a stored `Comparison.record`: one row per (method, seed) (notebook 07)."""
    rows = []
    for m, cols in record["per_seed"].items():
        for k, seed in enumerate(record["seeds"]):
            rows.append({"method": m, "seed": seed, **{c: v[k] for c, v in cols.items()}})
    return pd.DataFrame(rows)


def verdict(record: Mapping, col: str = "acc", reference: str = "joint", higher_is_better: bool = True,
            level: float = 0.95) -> dict:
    """The tie-rule best set for `col`, and each method's paired difference to `reference` (notebook 07)."""
    per = {m: v[col] for m, v in record["per_seed"].items()}
    if reference not in per:
        raise ValueError(f"verdict: the reference {reference!r} is not among the methods {list(per)}.")
    diffs: dict[str, Interval] = {m: paired_difference(v, per[reference], level) for m, v in per.items()
                                  if m != reference}
    return {"best": tied_best(per, level, higher_is_better), "minus_" + reference: diffs}


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


def curve_shortfalls(record: Mapping) -> list[str]:
    """The rules a stored comparison misses: a rate at the grid's edge, a selection run best at its last epoch (nb 07).

    The protocol asks for enough epochs that the selected run's best validation epoch is not its last, and a
    grid wide enough that the chosen rate is not its smallest or largest. Rates given to `compare` (no grid
    searched) are not judged. Empty when the comparison meets both rules.
    """
    grid, last, out = record["lr_grid"], record["epochs"] - 1, []
    for m, lr in record["lr"].items():
        if not record["val_acc_by_lr"].get(m):
            continue
        if len(grid) > 1 and lr in (grid[0], grid[-1]):
            out.append(f"{m}: rate {lr:g} at the {'bottom' if lr == grid[0] else 'top'} of the grid")
        if record["selection_best_epoch"][m] == last:
            out.append(f"{m}: the selection run was best at its last epoch ({last + 1} of {record['epochs']})")
    return out


def difference_frame(record: Mapping, cols: Sequence[str], reference: str = "joint",
                     level: float = 0.95) -> pd.DataFrame:
    """Each method minus `reference`, paired by seed, per column: 'mean ± half-width (side of 0)' (notebook 07)."""
    out = {c: {m: iv.signed() for m, iv in verdict(record, c, reference, level=level)["minus_" + reference].items()}
           for c in cols}
    return pd.DataFrame(out)
