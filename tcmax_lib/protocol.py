"""The evidence protocol: each method's learning rate chosen on validation, then paired seeds (notebook 07).

    Protocol(lr_grid, seeds, selection_seed)        the settings, checked; `shortfalls()` against the rules
    select_lr(method, splits, model_fn, config, protocol) -> LRChoice (lr, validation accuracy per lr)
    compare(methods, splits, make_model, head, config, protocol) -> Comparison (per-seed rows, the choices)
    Comparison.record(cols)                         -> the dict stored in results/: every per-seed value
    (more runs from a stored record, `add_seeds` and `at_next_rate`, are in `reruns`)
    frame, verdict, choice_frame, difference_frame, ...  the readers of a stored record (`records`), also here

The rules (the series' evidence protocol): one optimiser for every method; a learning-rate grid of at
least 3 values spanning at least 10x, the rate of each method chosen by the best validation accuracy on
a selection seed that is never reported; at least 5 reported seeds, paired across methods (the same data,
batch order and initialisation wherever the architectures allow); the best-validation weights tested
once; every comparison read in the vocabulary of `readings` (resolved above or below after the family's Holm
adjustment, equivalent within a stated margin, or not resolved), never by the largest mean.
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
from .records import (  # noqa: F401  (re-exported: notebooks read records as pr.verdict, pr.frame, ...)
    check_record,
    choice_frame,
    curve_shortfalls,
    detectable,
    difference_frame,
    frame,
    powered_pairs,
    powered_readings,
    seed_plan,
    subject_frame,
    tail_epochs,
    tail_slopes,
    verdict,
)
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
    val_curve: dict[float, list[float]] = field(default_factory=dict)   # validation accuracy per epoch, per rate
    diverged_reported: dict[float, str] = field(default_factory=dict)   # rates given up: a reported seed diverged

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
    val_acc, best_epoch, curves = {}, {}, {}
    for lr in protocol.lr_grid:
        cfg = replace(config, lr=lr, seed=seed, track_train=False)      # selection reads validation only
        try:
            _, hist = fit(model_fn(seed), make_method(method, **(method_kw or {})), train, data.val, cfg)
            val_acc[lr], best_epoch[lr] = float(hist["val_acc"].max()), int(hist["best_epoch"].iloc[0])
            curves[lr] = [round(float(v), 6) for v in hist["val_acc"]]
        except TrainingDivergedError:
            val_acc[lr], best_epoch[lr], curves[lr] = -math.inf, -1, []
    if all(v == -math.inf for v in val_acc.values()):
        raise TrainingDivergedError(f"{method}: every learning rate of {list(protocol.lr_grid)} diverged on the "
                                    f"selection seed; add smaller rates to the grid.")
    lr = max(val_acc, key=val_acc.get)                                   # the first maximum: the smaller rate
    return LRChoice(lr=lr, val_acc=val_acc, best_epoch=best_epoch, epochs=config.epochs, val_curve=curves)


@dataclass
class Comparison:
    """One protocol comparison: a row per (method, seed), the chosen rates and the kept runs (notebook 07)."""

    results: pd.DataFrame
    choices: dict[str, LRChoice]
    protocol: Protocol
    config: TrainConfig
    runs: dict[tuple[str, int], Run] = field(default_factory=dict, repr=False)
    curves: dict[tuple[str, int], list[float]] = field(default_factory=dict, repr=False)   # val acc per epoch

    def record(self, cols: Sequence[str]) -> dict:
        """Everything needed to recompute any statistic: settings, grid, choices and every per-seed value (nb 07).

        `val_curve` holds each reported run's validation accuracy per epoch and `selection_val_curve` each
        selection run's, so the learning-curve rules can be recomputed from the record alone;
        `protocol_shortfalls` is what the settings lack (`Protocol.shortfalls`), `curve_shortfalls` what
        the runs miss (`curve_shortfalls`).
        """
        missing = [c for c in cols if c not in self.results.columns]
        if missing:
            raise ValueError(f"record: no column {missing}; the results have {list(self.results.columns)}.")
        per_seed = {}
        for m, g in self.results.groupby("method", sort=False):
            g = g.set_index("seed").loc[list(self.protocol.seeds)]      # one order: the protocol's seeds
            per_seed[m] = {c: [float(v) for v in g[c]] for c in cols}
        rec = {"optimizer": self.config.optimizer, "epochs": self.config.epochs,
               "batch_size": self.config.batch_size, "weight_decay": self.config.weight_decay,
               "lr_step": self.config.lr_step, "lr_grid": list(self.protocol.lr_grid),
               "seeds": list(self.protocol.seeds), "selection_seed": self.protocol.selection_seed,
               "protocol_shortfalls": self.protocol.shortfalls(),
               "head": {m: str(g["head"].iloc[0]) for m, g in self.results.groupby("method", sort=False)},
               "lr": {m: c.lr for m, c in self.choices.items()},
               "val_acc_by_lr": {m: {f"{lr:g}": v if math.isfinite(v) else None for lr, v in c.val_acc.items()}
                                 for m, c in self.choices.items()},                 # None: the rate diverged
               "selection_best_epoch": {m: c.best_epoch[c.lr] for m, c in self.choices.items()},
               "diverged_reported": {m: {f"{lr:g}": msg for lr, msg in c.diverged_reported.items()}
                                     for m, c in self.choices.items() if c.diverged_reported},
               "selection_val_curve": {m: {f"{lr:g}": v for lr, v in c.val_curve.items()}
                                       for m, c in self.choices.items()},
               "per_seed": per_seed,
               "val_curve": {m: [self.curves[(m, s)] for s in self.protocol.seeds] for m in per_seed
                             if all((m, s) in self.curves for s in self.protocol.seeds)}}
        rec["curve_shortfalls"] = curve_shortfalls(rec)
        return rec


_REPORTING_FIELDS = {"track_train", "progress"}   # TrainConfig fields that change what a run reports, not how it trains


def compare(methods: Sequence[str], splits: Splits | Callable[[int], Splits],
            make_model: Callable[[str, int], object], head: str, config: TrainConfig, protocol: Protocol, *,
            method_kw: dict | None = None, max_train: int | None = None, keep: str = "first",
            lr: Mapping[str, float] | None = None, method_config: Mapping[str, Mapping] | None = None,
            choices: Mapping[str, LRChoice] | None = None, **run_kw) -> Comparison:
    """Every method on its native head: its rate chosen by `select_lr`, then the protocol's seeds (notebook 07).

    `lr` gives already chosen rates (e.g. a head comparison that reuses the main table's choices); the
    methods it names skip the selection, and their choice records only the rate. `choices` gives whole
    `LRChoice`s instead (`at_next_rate`): no selection, and a rate a reported seed diverges at falls back
    to the next of its `val_acc`, as after a selection. `method_config` changes
    `TrainConfig` fields of some methods' reported runs only, e.g. `{"joint": {"track_train": True}}` for the
    runs a figure reads training curves from (training behaviour fields are refused: the protocol is one).
    """
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:                                           # before the first run, not after some
        raise ValueError(f"compare: unknown method(s) {unknown} or none given; choose from {sorted(METHODS)}.")
    method_config = {m: dict(v) for m, v in (method_config or {}).items()}
    stray = sorted(set(method_config) - set(methods))
    changed = sorted({k for v in method_config.values() for k in v} - _REPORTING_FIELDS)
    if stray or changed:
        raise ValueError(f"compare: method_config names method(s) {stray} not compared, or field(s) {changed} that "
                         f"change training; it may set only {sorted(_REPORTING_FIELDS)}.")
    frames, chosen, runs, curves = [], {}, {}, {}
    caller_on_run = run_kw.pop("on_run", None)

    def on_run(method: str, seed: int, res: Run) -> None:              # keep every run's validation curve
        curves[(method, seed)] = [round(float(v), 6) for v in res.history["val_acc"]]
        if caller_on_run is not None:
            caller_on_run(method, seed, res)

    for method in methods:
        used = native_head(method, head)
        model_fn = (lambda seed, h=used: make_model(h, seed))
        kw = (method_kw or {}).get(method)
        if choices is not None and method in choices:
            chosen[method] = replace(choices[method], val_acc=dict(choices[method].val_acc),
                                     diverged_reported=dict(choices[method].diverged_reported))
        elif lr is not None and method in lr:
            chosen[method] = LRChoice(lr=float(lr[method]), val_acc={}, best_epoch={float(lr[method]): -1},
                                      epochs=config.epochs)
        else:
            chosen[method] = select_lr(method, splits, model_fn, config, protocol, method_kw=kw,
                                       max_train=max_train)
        res, kept = _reported_runs(method, chosen[method], protocol, splits, model_fn, config,
                                   dict(keep=keep, method_kw={method: kw} if kw else None, max_train=max_train,
                                        on_run=on_run, **run_kw), method_config.get(method, {}))
        frames.append(res.assign(head=used, lr=chosen[method].lr))
        runs.update(kept)
    return Comparison(pd.concat(frames, ignore_index=True), chosen, protocol, config, runs, curves)


def _reported_runs(method: str, choice: LRChoice, protocol: Protocol, splits, model_fn: ModelFn, config: TrainConfig,
                   grid_kw: dict, reporting: dict) -> tuple[pd.DataFrame, dict]:
    """The reported seeds at the chosen rate; if one diverges, the next rate by selection accuracy, all seeds again.

    The rule that no diverging rate is chosen (`select_lr`) also covers the reported seeds: a rate at which
    any of them diverges is given up (recorded in `choice.diverged_reported`), and every seed is rerun at the
    next-best rate of the selection seed, so the seeds stay paired at one rate. Given rates (no grid) have no
    fallback: their divergence is an error naming the method, rate and seed.
    """
    order = sorted((lr for lr, v in choice.val_acc.items() if math.isfinite(v)),
                   key=lambda lr: (-choice.val_acc[lr], lr))           # best first, ties to the smaller rate
    order = [choice.lr] + [lr for lr in order if lr != choice.lr]
    for lr in order:
        try:
            out = run_grid([method], protocol.seeds, splits, model_fn, replace(config, lr=lr, **reporting), **grid_kw)
        except TrainingDivergedError as exc:
            choice.diverged_reported[lr] = str(exc)
            if not choice.val_acc:                                          # a given rate: nothing to fall back on
                raise TrainingDivergedError(f"{method} at the given rate {lr:g} diverged on a reported seed: {exc}"
                                            ) from exc
            continue
        choice.lr = lr
        return out
    raise TrainingDivergedError(f"{method}: at every rate that trained on the selection seed ({order}), a reported "
                                f"seed diverged; add smaller rates to the grid. {choice.diverged_reported}")
