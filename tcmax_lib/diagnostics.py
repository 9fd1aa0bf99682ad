"""Modality-competition diagnostics: per-modality accuracy curves, linear probes of frozen encoders,
the OGM discrepancy ratio, Shapley modality contributions and confusion matrices (+ plots)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from .models import MultimodalClassifier
from .plotting import COLORS


@torch.no_grad()
def encode(model: MultimodalClassifier, xs: Sequence[torch.Tensor], batch_size: int = 512) -> list[torch.Tensor]:
    """Frozen features of every modality: M x [N, d_m]."""
    model.eval()
    device = next(model.parameters()).device
    feats = [[] for _ in xs]
    for start in range(0, xs[0].shape[0], batch_size):
        for m, (enc, x) in enumerate(zip(model.encoders, xs)):
            feats[m].append(enc(x[start:start + batch_size].to(device)).float())
    return [torch.cat(f) for f in feats]


def linear_probe(train_feats: torch.Tensor, train_y: torch.Tensor, test_feats: torch.Tensor,
                 test_y: torch.Tensor, num_classes: int, steps: int = 300, weight_decay: float = 1e-4,
                 seed: int = 0) -> float:
    """Accuracy of a softmax-regression probe (full-batch L-BFGS on standardised frozen features)."""
    torch.manual_seed(seed)
    mean, std = train_feats.mean(0), train_feats.std(0) + 1e-6
    xtr, xte = (train_feats - mean) / std, (test_feats - mean) / std
    probe = nn.Linear(xtr.shape[1], num_classes).to(xtr.device)
    opt = torch.optim.LBFGS(probe.parameters(), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(probe(xtr), train_y) + weight_decay * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return float((probe(xte).argmax(1) == test_y).float().mean())


def probe_modalities(model: MultimodalClassifier, train: Sequence[torch.Tensor], test: Sequence[torch.Tensor],
                     num_classes: int) -> list[float]:
    """Linear-probe accuracy of each frozen encoder; splits are (x_1, ..., x_M, y)."""
    *xtr, ytr = train
    *xte, yte = test
    ftr, fte = encode(model, xtr), encode(model, xte)
    device = ftr[0].device
    return [linear_probe(a, ytr.to(device), b, yte.to(device), num_classes) for a, b in zip(ftr, fte)]


def ogm_ratio(modality_logits: Sequence[torch.Tensor], y: torch.Tensor) -> float:
    """OGM discrepancy ratio s_0 / s_1 with s_m = sum_i softmax(logits_m)[y_i] (>1: modality 0 dominates)."""
    s = [lg.detach().float().softmax(1).gather(1, y[:, None]).sum() for lg in modality_logits]
    return float(s[0] / s[1].clamp_min(1e-12))


@torch.no_grad()
def shapley_contributions(model: MultimodalClassifier, xs: Sequence[torch.Tensor], y: torch.Tensor) -> list[float]:
    """Shapley value of each modality for accuracy; a missing modality's features are zeroed (2^M evaluations)."""
    model.eval()
    feats = encode(model, xs)
    y = y.to(feats[0].device)
    m = len(feats)
    chance = 1.0 / model.head(*feats).shape[1]

    def value(subset: tuple[int, ...]) -> float:
        if not subset:
            return chance
        masked = [f if k in subset else torch.zeros_like(f) for k, f in enumerate(feats)]
        return float((model.head(*masked).argmax(1) == y).float().mean())

    phi = []
    for k in range(m):
        others = [j for j in range(m) if j != k]
        total = 0.0
        for size in range(m):
            for s in itertools.combinations(others, size):
                w = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
                total += w * (value(tuple(sorted(s + (k,)))) - value(s))
        phi.append(total)
    return phi


def confusion_matrix(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> np.ndarray:
    """Counts [true, predicted]."""
    idx = (y.cpu() * num_classes + pred.cpu()).long()
    return torch.bincount(idx, minlength=num_classes ** 2).view(num_classes, num_classes).numpy()


# ----------------------------------------------------------------------------- plots
def plot_accuracy_curves(histories: dict[str, pd.DataFrame], names: Sequence[str] = ("audio", "visual"),
                         split: str = "val") -> plt.Figure:
    """One panel per method: fused and per-modality accuracy over epochs."""
    fig, axes = plt.subplots(1, len(histories), figsize=(3.4 * len(histories), 3.0), sharey=True, squeeze=False)
    for ax, (method, h) in zip(axes[0], histories.items()):
        ax.plot(h["epoch"], h[f"{split}_acc"], color=COLORS["fused"], label="fused")
        for m, name in enumerate(names):
            ax.plot(h["epoch"], h[f"{split}_acc_{m}"], color=COLORS.get(name), label=name)
        ax.set_title(method)
        ax.set_xlabel("epoch")
    axes[0, 0].set_ylabel(f"{split} accuracy")
    axes[0, -1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_ogm_ratio(history: pd.DataFrame, window: tuple[int, int] | None = None) -> plt.Figure:
    """OGM discrepancy ratio per epoch (log scale) with the modulation window shaded."""
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(history["epoch"], history["ogm_ratio"], color=COLORS["ogm_ge"])
    ax.axhline(1.0, color="grey", ls="--", lw=1)
    if window is not None:
        ax.axvspan(*window, color=COLORS["ogm_ge"], alpha=0.1, label="modulation window")
        ax.legend()
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(r"$\rho$ = score$_0$ / score$_1$")
    fig.tight_layout()
    return fig


def plot_confusion(cm: np.ndarray, labels: Sequence[str], ax: plt.Axes | None = None, title: str = "") -> plt.Axes:
    """Row-normalised confusion matrix as a heat map."""
    import seaborn as sns

    ax = ax or plt.subplots(figsize=(3.5, 3))[1]
    norm = cm / np.clip(cm.sum(1, keepdims=True), 1, None)
    sns.heatmap(norm, annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1, cbar=False,
                xticklabels=labels, yticklabels=labels, ax=ax)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return ax


def summarize_runs(df: pd.DataFrame, by: str = "method", cols: Sequence[str] = ("acc",)) -> pd.DataFrame:
    """Mean +- std over seeds, as formatted strings, one row per method."""
    g = df.groupby(by, sort=False)
    out = pd.DataFrame({c: g[c].mean().map("{:.3f}".format) + " ± " + g[c].std(ddof=0).map("{:.3f}".format)
                        for c in cols})
    return out


@torch.no_grad()
def _predict(model: MultimodalClassifier, method, xs: Sequence[torch.Tensor], batch_size: int = 1024):
    model.eval()
    preds, heads = [], []
    for start in range(0, xs[0].shape[0], batch_size):
        out = model(*(x[start:start + batch_size] for x in xs))
        preds.append(method.predict_logits(out).argmax(1))
        heads.append(torch.stack([lg.argmax(1) for lg in out.modality_logits]))
    return torch.cat(preds), torch.cat(heads, dim=1)


def report(model: MultimodalClassifier, method, train: Sequence[torch.Tensor], test: Sequence[torch.Tensor],
           num_classes: int, names: Sequence[str] = ("audio", "visual")) -> dict:
    """Test metrics of a trained model: fused and per-head accuracy, linear probes, Shapley values."""
    device = next(model.parameters()).device
    *xtr, ytr = [t.to(device) for t in train]
    *xte, yte = [t.to(device) for t in test]
    pred, heads = _predict(model, method, xte)
    out = {"acc": float((pred == yte).float().mean()), "pred": pred}
    for m, name in enumerate(names):
        out[f"acc_{name}_head"] = float((heads[m] == yte).float().mean())
    ftr, fte = encode(model, xtr), encode(model, xte)
    for name, a, b in zip(names, ftr, fte):
        out[f"probe_{name}"] = linear_probe(a, ytr, b, yte, num_classes)
    for name, phi in zip(names, shapley_contributions(model, xte, yte)):
        out[f"shapley_{name}"] = phi
    return out
