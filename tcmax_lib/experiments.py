"""The experiment layer: one run, a grid of runs over methods x seeds, and one summary (notebooks 03-06).

    run(method, splits, model_fn, config)        -> Run (model, history, metrics, pred)
    run_grid(methods, seeds, splits, model_fn, config) -> (results DataFrame, {(method, seed): Run})
    run_table(methods, seeds, splits, make_model, head, config) -> the same, each method on its native head
    summarize(results, cols, ci=0.95)            -> mean ± CI half-width per method (Student t)

Every chapter uses these: the toy problem (03-04), AV digits (05) and CREMA-D (06, and the CLI).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import pandas as pd
import torch

from . import checks
from .data.splits import Splits
from .diagnostics import linear_probe, report
from .methods import METHODS, make_method
from .methods.base import Method
from .models import MultimodalClassifier, encode
from .stats import mean_ci
from .train import TrainConfig, fit

ModelFn = Callable[[int], MultimodalClassifier]          # seed -> freshly initialised model
ExtraFn = Callable[[MultimodalClassifier, Splits, torch.Tensor], dict]


@dataclass
class Run:
    """One trained run: the restored best-validation model, its epoch history, test metrics and predictions.

    Introduced in notebook 01.
    """

    model: MultimodalClassifier | None
    history: pd.DataFrame
    metrics: dict
    pred: torch.Tensor


def run(method: str | Method, splits: Splits, model_fn: ModelFn, config: TrainConfig, *,
        method_kw: dict | None = None, max_train: int | None = None, extra: ExtraFn | None = None,
        names: Sequence[str] = ("audio", "visual"),
        on_epoch_end: Callable[[int, MultimodalClassifier], dict] | None = None) -> Run:
    """Train one method with `config` (its seed seeds the model too) and evaluate on test once (notebook 03).

    `max_train` trains on a seeded, class-stratified subsample of the training split. `extra(model,
    splits, pred)` adds task-specific metrics (e.g. `toy_metrics`). Metrics: fused and per-head test
    accuracy, linear probes, Shapley values, `best_epoch`, and whatever `extra` returns. `on_epoch_end` is
    passed to `fit`: called with the epoch and the model, the dict it returns joins that epoch's history row.
    """
    meth = make_method(method, **(method_kw or {})) if isinstance(method, str) else method
    if len(splits.test) == 0:
        raise ValueError("the test split is empty: nothing to report after training. Use a split with test data.")
    train = splits.train if max_train is None else splits.train.stratified_subset(max_train, seed=config.seed)
    model = model_fn(config.seed)
    checks.check_split(model, splits.test, "test")                      # before training, not after it
    model, history = fit(model, meth, train, splits.val, config, on_epoch_end)
    num_classes = splits.meta.get("num_classes") or int(splits.train.y.max()) + 1
    metrics = report(model, meth, train, splits.test, num_classes, names)
    pred = metrics.pop("pred")
    metrics["best_epoch"] = int(history["best_epoch"].iloc[0])
    if extra is not None:
        metrics.update(extra(model, splits.replace(train=train), pred))
    return Run(model=model, history=history, metrics=metrics, pred=pred)


def run_grid(methods: Sequence[str], seeds: Sequence[int], splits: Splits | Callable[[int], Splits],
             model_fn: ModelFn, config: TrainConfig, *, keep: str = "first", method_kw: dict | None = None,
             on_run: Callable[[str, int, Run], None] | None = None, **run_kw) -> tuple[pd.DataFrame, dict]:
    """Every method for every seed: one row of scalar metrics per run, and the kept runs (notebook 04).

    `splits` may be a function of the seed (the toy problem draws fresh data per seed). `keep`:
    'first' keeps the first seed's run of each method, 'all' every run, 'none' none (large models).
    `method_kw` maps a method name to its keyword arguments; `on_run` is called after each run.
    """
    if keep not in ("first", "all", "none"):
        raise ValueError(f"keep={keep!r}; use 'first', 'all' or 'none'.")
    seeds = [checks.integer(s, "a seed", minimum=None) for s in seeds]
    if not list(methods) or not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"run_grid needs at least one method and one seed, each seed once; got methods "
                         f"{list(methods)} and seeds {seeds}.")
    unknown = sorted({m for m in methods if isinstance(m, str)} - set(METHODS))
    if unknown:                                                          # before the first run, not after some
        raise ValueError(f"unknown method(s) {unknown}; choose from {sorted(METHODS)}.")
    rows, runs = [], {}
    for method in methods:
        for k, seed in enumerate(seeds):
            data = splits(seed) if callable(splits) else splits
            res = run(method, data, model_fn, replace(config, seed=seed),
                      method_kw=(method_kw or {}).get(method), **run_kw)
            rows.append({"method": method, "seed": seed,
                         **{n: v for n, v in res.metrics.items() if isinstance(v, (int, float))}})
            if on_run is not None:
                on_run(method, seed, res)
            if keep == "all" or (keep == "first" and k == 0):
                runs[(method, seed)] = res
    return pd.DataFrame(rows), runs


NATIVE_HEADS = {"mla": "shared", "mmpareto": "concat_msh"}   # the heads these baselines are defined with


def native_head(method: str, head: str) -> str:
    """The fusion head a method is trained with: its own (MLA: shared, MMPareto: concat_msh), else `head` (nb 07)."""
    return NATIVE_HEADS.get(method, head)


def run_table(methods: Sequence[str], seeds: Sequence[int], splits: Splits | Callable[[int], Splits],
              make_model: Callable[[str, int], MultimodalClassifier], head: str, config: TrainConfig,
              **grid_kw) -> tuple[pd.DataFrame, dict]:
    """`run_grid` for a comparison table: each method on `native_head(method, head)` (notebook 07).

    `make_model(head, seed)` builds a fresh model; the results get a `head` column.
    """
    frames, runs = [], {}
    for method in methods:
        used = native_head(method, head)
        res, kept = run_grid([method], seeds, splits, lambda seed, h=used: make_model(h, seed), config, **grid_kw)
        frames.append(res.assign(head=used))
        runs.update(kept)
    return pd.concat(frames, ignore_index=True), runs


def summarize(results: pd.DataFrame, cols: Sequence[str] = ("acc",), by: str = "method", ci: float | None = 0.95,
              digits: int = 3) -> pd.DataFrame:
    """Mean ± half-width per group: a Student-t `ci` interval over seeds, or ± std (ddof=1) if ci is None (nb 04).

    With one seed there is no spread, and only the mean is shown.
    """
    missing = [c for c in (by, *cols) if c not in results.columns]
    if missing:
        raise ValueError(f"summarize: no column {missing} in the results; they have {list(results.columns)}.")
    if ci is not None and not 0.0 < ci < 1.0:
        raise ValueError(f"ci={ci}: a confidence level lies strictly between 0 and 1, e.g. 0.95 (None: ± std).")
    sizes = results.groupby(by, sort=False).size()
    if sizes.nunique() > 1:                  # a dropped run would give one group a silently wider interval
        raise ValueError(f"summarize: the groups have different numbers of rows {sizes.to_dict()}; every {by} "
                         "needs the same seeds. Find the missing or extra run, or summarise the groups separately.")
    rows = {}
    for key, g in results.groupby(by, sort=False):
        n = len(g)
        row = {}
        for c in cols:
            mean, sd = g[c].mean(), g[c].std(ddof=1)
            if n < 2:
                row[c] = f"{mean:.{digits}f}"
                continue
            half = sd if ci is None else mean_ci(g[c].to_numpy(), ci).half_width
            row[c] = f"{mean:.{digits}f} ± {half:.{digits}f}"
        rows[key] = row
    out = pd.DataFrame(rows).T
    out.index.name = by
    spread = "std" if ci is None else f"{100 * ci:g} % CI"
    out.columns.name = f"mean ± {spread} (n = {results.groupby(by).size().max()})"
    return out


def toy_metrics(model: MultimodalClassifier, splits: Splits, pred: torch.Tensor) -> dict:
    """Toy-problem extras: linear probes for the shared bit b1, shared-bit and interaction accuracy (notebook 03)."""
    device = next(model.parameters()).device
    train, test = splits.train.to(device), splits.test.to(device)
    ftr, fte = encode(model, train.inputs), encode(model, test.inputs)
    b1, b2 = test.extras["b1"], test.extras["b2"]
    interaction = splits.meta["config"].interaction
    out = {f"probe_b1_{name}": linear_probe(a, train.extras["b1"], b, b1, 2)
           for name, a, b in zip(("audio", "visual"), ftr, fte)}
    out["acc_shared_b1"] = float(((pred // 2 if interaction else pred) == b1).float().mean())
    if interaction:
        out["acc_interaction_b2"] = float(((pred % 2) == b2).float().mean())
    return out
