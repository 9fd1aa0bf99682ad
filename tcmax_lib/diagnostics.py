"""Modality-competition diagnostics (notebook 03): linear probes of frozen encoders, the OGM discrepancy
ratio, Shapley modality contributions, confusion matrices, the agreement of the unimodal predictions
(JS divergence, entropy ratio; notebook 07), and `report`. Plots live in `plotting`."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_split, class_labels
from .data.splits import Split
from .methods.base import Method, ogm_ratio
from .models import MultimodalClassifier, encode
from .runtime import seeded

__all__ = ["confusion_matrix", "encode", "entropy_ratio", "js_divergence", "linear_probe", "ogm_ratio",
           "prediction_entropy", "report", "shapley_contributions"]


@torch.no_grad()
def linear_probe(train_feats: torch.Tensor, train_y: torch.Tensor, test_feats: torch.Tensor,
                 test_y: torch.Tensor, num_classes: int, steps: int = 300, weight_decay: float = 1e-4,
                 seed: int = 0) -> float:
    """Accuracy of a softmax-regression probe (full-batch L-BFGS on standardised frozen features) (notebook 03)."""
    if train_feats.ndim != 2 or test_feats.ndim != 2 or train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(f"linear_probe: features must be [N, d] with the same d, got {tuple(train_feats.shape)} "
                         f"and {tuple(test_feats.shape)}.")
    train_y = class_labels(train_y, num_classes, "linear_probe's training labels")
    test_y = class_labels(test_y, num_classes, "linear_probe's test labels")
    mean, std = train_feats.mean(0), train_feats.std(0) + 1e-6
    xtr, xte = (train_feats - mean) / std, (test_feats - mean) / std
    with seeded(seed):
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


@torch.no_grad()
def shapley_contributions(model: MultimodalClassifier, xs: Sequence[torch.Tensor], y: torch.Tensor) -> list[float]:
    """Shapley value of each modality for accuracy; a missing modality is zeroed, 2^M evaluations (nb 03)."""
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
    """Counts [true, predicted] (notebook 05)."""
    idx = (y.cpu() * num_classes + pred.cpu()).long()
    return torch.bincount(idx, minlength=num_classes ** 2).view(num_classes, num_classes).numpy()


def js_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Per-sample Jensen-Shannon divergence [N] (nats, in [0, log 2]) of softmax(logits_p), softmax(logits_q) (nb 07).

    JS(p, q) = KL(p || m) / 2 + KL(q || m) / 2 with m = (p + q) / 2, computed in log space.
    """
    logp, logq = F.log_softmax(logits_p.float(), -1), F.log_softmax(logits_q.float(), -1)   # [N, C]
    logm = torch.logaddexp(logp, logq) - math.log(2.0)
    kl_pm = (logp.exp() * (logp - logm)).sum(-1)
    kl_qm = (logq.exp() * (logq - logm)).sum(-1)
    return (0.5 * (kl_pm + kl_qm)).clamp_min(0.0)


def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample entropy [N] (nats) of softmax(logits) (notebook 07)."""
    logp = F.log_softmax(logits.float(), -1)
    return -(logp.exp() * logp).sum(-1)


def entropy_ratio(logits_a: torch.Tensor, logits_v: torch.Tensor) -> float:
    """Our entropy ratio rho = max(H_a, H_v) / min(H_a, H_v) of the mean prediction entropies, >= 1 (nb 07).

    H_m is the test-set mean of `prediction_entropy` of modality m's logits; 1 means both modalities
    are equally confident. The paper does not publish its definition; this is ours.
    """
    h = [float(prediction_entropy(lg).mean()) for lg in (logits_a, logits_v)]
    lo, hi = min(h), max(h)
    return float("inf") if lo == 0 else hi / lo


@torch.no_grad()
def _predict(model: MultimodalClassifier, method: Method, xs: Sequence[torch.Tensor], batch_size: int = 1024):
    model.eval()
    preds, heads = [], []
    logits = [[] for _ in xs]
    for start in range(0, xs[0].shape[0], batch_size):
        out = model(*(x[start:start + batch_size] for x in xs))
        preds.append(method.predict_logits(out).argmax(1))
        heads.append(torch.stack([lg.argmax(1) for lg in out.modality_logits]))
        for m, lg in enumerate(out.modality_logits):
            logits[m].append(lg.float())
    return torch.cat(preds), torch.cat(heads, dim=1), [torch.cat(lg) for lg in logits]


def report(model: MultimodalClassifier, method: Method, train: Split, test: Split, num_classes: int,
           names: Sequence[str] = ("audio", "visual")) -> dict:
    """Test metrics of a trained model: fused and per-head accuracy, linear probes, Shapley values (notebook 03).

    With two modalities also the mean JS divergence between the per-modality predictions (`js`), their
    mean entropies and `entropy_ratio` (notebook 07).
    """
    device = next(model.parameters()).device
    check_split(model, test, "test")
    train, test = train.to(device), test.to(device)
    xtr, ytr, xte, yte = train.inputs, train.y, test.inputs, test.y
    pred, heads, logits = _predict(model, method, xte)
    out = {"acc": float((pred == yte).float().mean()), "pred": pred}
    for m, name in enumerate(names):
        out[f"acc_{name}_head"] = float((heads[m] == yte).float().mean())
    if len(logits) == 2:
        out["js"] = float(js_divergence(*logits).mean())
        for name, lg in zip(names, logits):
            out[f"entropy_{name}"] = float(prediction_entropy(lg).mean())
        out["entropy_ratio"] = entropy_ratio(*logits)
    ftr, fte = encode(model, xtr), encode(model, xte)
    for name, a, b in zip(names, ftr, fte):
        out[f"probe_{name}"] = linear_probe(a, ytr, b, yte, num_classes)
    for name, phi in zip(names, shapley_contributions(model, xte, yte)):
        out[f"shapley_{name}"] = phi
    return out
