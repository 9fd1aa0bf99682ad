"""More runs from a stored comparison record, at rates its selection already chose (notebooks 05 and 07).

    add_seeds(record, methods, seeds, ...)   -> the same methods at their chosen rates on more seeds (powered)
    at_next_rate(record, methods, ...)       -> the same seeds, each method at its next-best rate (a control)

Both return a record of the form `Comparison.record` gives, so the readers of `records` read them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from .data.splits import Splits
from .protocol import LRChoice, Protocol, compare
from .records import check_record, other_rates
from .train import TrainConfig


def add_seeds(record: Mapping, methods: Sequence[str], seeds: Sequence[int], splits: Splits | Callable[[int], Splits],
              make_model: Callable[[str, int], object], head: str, config: TrainConfig, cols: Sequence[str], *,
              max_train: int | None = None, method_kw: dict | None = None) -> dict:
    """`methods` of a stored record trained on more `seeds` at their chosen rates, appended to its seeds (nb 07).

    No rate is chosen again: the record's selection stands. Returns a record of the same form restricted to
    `methods` and `cols`, whose seeds are the record's followed by `seeds` (the powered comparison).
    """
    check_record(record, "add_seeds")
    seeds = list(seeds)
    clash = sorted(set(seeds) & set(record["seeds"]) | ({record["selection_seed"]} & set(seeds)))
    if clash:
        raise ValueError(f"add_seeds: seeds {clash} are already reported or are the selection seed; give new ones.")
    out = {**{k: record[k] for k in ("optimizer", "epochs", "batch_size", "weight_decay", "lr_step", "lr_grid",
                                     "selection_seed")},
           "seeds": list(record["seeds"]) + seeds, "head": {m: record["head"][m] for m in methods},
           "lr": {m: record["lr"][m] for m in methods},
           "per_seed": {m: {c: list(record["per_seed"][m][c]) for c in cols} for m in methods},
           "val_curve": {m: list(record.get("val_curve", {}).get(m, [])) for m in methods}}
    if seeds:
        more = compare(methods, splits, make_model, head, replace(config, track_train=False),
                       Protocol(record["lr_grid"], tuple(seeds), record["selection_seed"]),
                       lr=out["lr"], keep="none", max_train=max_train, method_kw=method_kw).record(cols)
        for m in methods:
            for c in cols:
                out["per_seed"][m][c] += more["per_seed"][m][c]
            out["val_curve"][m] += more["val_curve"][m]
    return out


def at_next_rate(record: Mapping, methods: Sequence[str], splits: Splits | Callable[[int], Splits],
                 make_model: Callable[[str, int], object], head: str, config: TrainConfig, cols: Sequence[str], *,
                 max_train: int | None = None, method_kw: dict | None = None) -> dict:
    """The record's seeds with each method at its next-best rate of the selection seed: the choice's control (nb 07).

    The next-best rate is the best selection accuracy after the chosen rate (rates that diverged, on the
    selection seed or a reported one, are out); if a reported seed diverges there, the next after it, as in
    `compare`. A verdict that holds both in `record` and here does not rest on which of two close rates one
    selection seed preferred. Returns a record of the same form (its `lr` the rates used).
    """
    check_record(record, "at_next_rate")
    choices = {}
    for m in methods:
        val = other_rates(record, m)
        if not val:
            raise ValueError(f"at_next_rate: {m} has no rate besides {record['lr'][m]:g} that trained on the selection "
                             f"seed (a record of given rates, or every other rate diverged); leave {m} out.")
        lr = max(sorted(val), key=val.get)                                 # the first maximum: the smaller rate
        curves = record.get("selection_val_curve", {}).get(m, {})
        best = {r: (max(range(len(c)), key=c.__getitem__) if (c := curves.get(f"{r:g}")) else -1) for r in val}
        choices[m] = LRChoice(lr=lr, val_acc=val, best_epoch=best, epochs=config.epochs,
                              val_curve={r: curves[f"{r:g}"] for r in val if f"{r:g}" in curves})
    protocol = Protocol(record["lr_grid"], tuple(record["seeds"]), record["selection_seed"])
    return compare(methods, splits, make_model, head, replace(config, track_train=False), protocol, keep="none",
                   choices=choices, max_train=max_train, method_kw=method_kw).record(cols)
