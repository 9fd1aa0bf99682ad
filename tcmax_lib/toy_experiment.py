"""One call = one training run on the toy problem with every diagnostic chapters 3 and 4 report."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from .data.toy import ToyConfig, make_toy_splits
from .diagnostics import encode, linear_probe, report
from .methods import make_method
from .models import MLPEncoder, make_model
from .train import TrainConfig, fit


@dataclass
class ToyRun:
    """Result of one toy run: the model, its epoch history and the final test metrics."""

    model: torch.nn.Module
    history: pd.DataFrame
    metrics: dict


def toy_model(cfg: ToyConfig, head: str = "concat", hidden: int = 64, feat: int = 32, seed: int = 0):
    """Two MLP encoders (audio, visual) + a fusion head, seeded."""
    torch.manual_seed(seed)
    da, dv = cfg.dims
    return make_model([MLPEncoder(da, hidden, feat), MLPEncoder(dv, hidden, feat)], head, cfg.num_classes)


def run_toy(method: str, cfg: ToyConfig | None = None, head: str = "concat", epochs: int = 30,
            seed: int = 0, n_train: int = 4000, train_cfg: TrainConfig | None = None,
            method_kw: dict | None = None, device: str | torch.device = "cpu", progress: bool = False) -> ToyRun:
    """Train `method` on the toy data; report fused, per-head, probe, interaction accuracy and Shapley values."""
    cfg = cfg or ToyConfig()
    train, val, test = make_toy_splits(cfg, n_train=n_train, seed=seed)
    model = toy_model(cfg, head, seed=seed)
    tc = train_cfg or TrainConfig(epochs=epochs, batch_size=64, lr=1e-3, seed=seed, device=device, progress=progress)
    meth = make_method(method, **(method_kw or {}))
    model, hist = fit(model, meth, train[:3], val[:3], tc)
    metrics = report(model, meth, train[:3], test[:3], cfg.num_classes)
    pred = metrics.pop("pred")
    xa, xv, y, b1, b2 = (t.to(tc.device) for t in test)
    ftr = encode(model, [t.to(tc.device) for t in train[:2]])
    fte = encode(model, [xa, xv])
    probes_b1 = [linear_probe(a, train[3].to(tc.device), b, b1, 2) for a, b in zip(ftr, fte)]
    metrics.update({"probe_b1_audio": probes_b1[0], "probe_b1_visual": probes_b1[1],
                    "acc_shared_b1": float(((pred // 2 if cfg.interaction else pred) == b1).float().mean()),
                    "best_epoch": int(hist["best_epoch"].iloc[0])})
    if cfg.interaction:
        metrics["acc_interaction_b2"] = float(((pred % 2) == b2).float().mean())
    return ToyRun(model=model, history=hist, metrics=metrics)


def run_toy_grid(methods, seeds, **kw) -> pd.DataFrame:
    """Run every method for every seed; one row of metrics per run."""
    rows = []
    for method in methods:
        for seed in seeds:
            run = run_toy(method, seed=seed, **kw)
            rows.append({"method": method, "seed": seed, **run.metrics})
    return pd.DataFrame(rows)
