"""Training objectives behind one interface: joint, unimodal, OGM-GE and TCMax (notebooks 03-04).

A method computes the loss of a batch (`loss`) and may touch gradients after backward
(`after_backward`, used by OGM-GE). Both return plain floats/tensors for logging.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .losses import tcmax_loss, tcmax_loss_pairwise
from .models import ModelOutput, MultimodalClassifier


class Method:
    """Base class: `loss(model, out, y)` -> (loss, logs); `after_backward(model, out, y, epoch)` -> logs (nb 03)."""

    name = "base"

    def loss(self, model: MultimodalClassifier, out: ModelOutput, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def after_backward(self, model: MultimodalClassifier, out: ModelOutput, y: torch.Tensor, epoch: int) -> dict:
        return {}

    def predict_logits(self, out: ModelOutput) -> torch.Tensor:
        """Logits used for prediction (fused head by default)."""
        return out.logits


def ogm_ratio(modality_logits: Sequence[torch.Tensor], y: torch.Tensor) -> float:
    """OGM discrepancy ratio s_0 / s_1, s_m = sum_i softmax(logits_m)[y_i]; > 1: modality 0 dominates (nb 05)."""
    if len(modality_logits) != 2:
        raise ValueError(f"the OGM ratio compares two modalities, got {len(modality_logits)}.")
    s = [lg.detach().float().softmax(1).gather(1, y[:, None]).sum() for lg in modality_logits]
    return float(s[0] / s[1].clamp_min(1e-12))


def _modality_ce(out: ModelOutput, y: torch.Tensor) -> dict:
    return {f"ce_{m}": F.cross_entropy(lg.detach().float(), y) for m, lg in enumerate(out.modality_logits)}


class Joint(Method):
    """Cross-entropy on the fused logits (maximises I(y; z_1..z_M)) (notebook 03)."""

    name = "joint"

    def loss(self, model, out, y):
        loss = F.cross_entropy(out.logits.float(), y)
        return loss, _modality_ce(out, y)


class Unimodal(Method):
    """Sum of per-modality cross-entropies; each encoder learns alone, prediction = summed logits (notebook 03)."""

    name = "unimodal"

    def loss(self, model, out, y):
        ces = [F.cross_entropy(lg.float(), y) for lg in out.modality_logits]
        return sum(ces), {f"ce_{m}": c.detach() for m, c in enumerate(ces)}

    def predict_logits(self, out):
        return sum(out.modality_logits)


@dataclass
class OGMGE(Method):
    """OGM-GE (Peng et al. 2022): damp the dominant encoder's gradients by 1 - tanh(alpha * rho), add noise (nb 04).

    rho = (sum_i softmax(out_dom)[y_i]) / (sum_i softmax(out_weak)[y_i]) > 1 for the dominant modality;
    its encoder's gradient is multiplied by 1 - tanh(alpha * rho), the other's by 1. As in the official
    implementation (GeWu-Lab/OGM-GE_CVPR2022 `main.py`, `train_epoch`), for epochs in [start, end] the
    Gaussian "generalisation enhancement" noise goes on *both* encoders, each tensor's noise having the
    std of its gradient *before* damping: g <- k g + N(0, std(g)^2). The official code touches the 4-D
    conv kernels only; here the rule is "weight tensors of dim >= 2", which is the same set for the
    conv encoders (SmallCNN, ResNet-18: no linear layer inside) and means the linear weights for the
    MLP encoders of the toy problem, which have no conv kernel.
    """

    alpha: float = 0.8
    start: int = 0
    end: int = 50
    noise: bool = True
    name: str = "ogm_ge"

    def loss(self, model, out, y):
        return F.cross_entropy(out.logits.float(), y), _modality_ce(out, y)

    @torch.no_grad()
    def after_backward(self, model, out, y, epoch):
        ratio = ogm_ratio(out.modality_logits, y)                        # audio / visual
        coeffs = [1.0, 1.0]
        if ratio > 1:
            coeffs[0] = 1.0 - math.tanh(self.alpha * ratio)
        else:
            coeffs[1] = 1.0 - math.tanh(self.alpha * (1.0 / max(ratio, 1e-12)))
        if self.start <= epoch <= self.end:
            for enc, k in zip(model.encoders, coeffs):
                for p in enc.parameters():
                    if p.grad is None or p.grad.ndim < 2:
                        continue
                    std = p.grad.std() + 1e-8                              # of the undamped gradient
                    p.grad.mul_(k)
                    if self.noise:
                        p.grad.add_(torch.randn_like(p.grad) * std)
        return {"ogm_ratio": ratio, "coeff_0": coeffs[0], "coeff_1": coeffs[1]}


@dataclass
class TCMax(Method):
    """TCMax: minimise the negative TCNE bound with the fused logits as critic, factorised or pairwise (nb 04)."""

    chunk_size: int = 64
    label_prior: str = "uniform"       # 'uniform' (the paper) or 'batch' (empirical class frequencies)
    name: str = "tcmax"

    def loss(self, model, out, y):
        if model.linear_fusion:
            res = tcmax_loss(out.modality_logits, y, label_prior=self.label_prior)
        else:
            res = tcmax_loss_pairwise(model.head, out.feats, y, chunk_size=self.chunk_size,
                                      label_prior=self.label_prior)
        logs = {"tc_estimate": res.tc_estimate, **_modality_ce(out, y)}
        return res.loss, logs


METHODS = {"joint": Joint, "unimodal": Unimodal, "ogm_ge": OGMGE, "tcmax": TCMax}


def make_method(name: str, **kwargs) -> Method:
    """Build a method by name: 'joint', 'unimodal', 'ogm_ge' or 'tcmax' (notebook 03)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(METHODS)}.")
    return METHODS[name](**kwargs)
