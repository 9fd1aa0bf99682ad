"""Training objectives behind one interface (notebooks 03, 04, 07): joint, unimodal, OGM-GE and TCMax
here; the paper's other baselines AGM, MLA, MMPareto and PMR in `baselines`. `make_method(name)`
builds any of them. The interface (`Method`) is in `method_base`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import distributed
from .baselines import AGM, MLA, PMR, MMPareto
from .losses import tcmax_loss, tcmax_loss_pairwise, tcmax_loss_sampled
from .method_base import Method, modality_ce, ogm_ratio

__all__ = ["METHODS", "Method", "make_method", "ogm_ratio", "Joint", "Unimodal", "OGMGE", "TCMax", "AGM", "MLA",
           "MMPareto", "PMR"]


class Joint(Method):
    """Cross-entropy on the fused logits (maximises I(y; z_1..z_M)) (notebook 03)."""

    name = "joint"

    def loss(self, model, out, y):
        loss = F.cross_entropy(out.logits.float(), y)
        return loss, modality_ce(out, y)


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
        return F.cross_entropy(out.logits.float(), y), modality_ce(out, y)

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
    negatives: int | None = None       # N > 0: N sampled negative pairs (the paper's sampled variant); else exact
    name: str = "tcmax"

    def loss(self, model, out, y):
        group = distributed.group_or_none()            # under torchrun: the loss of the global batch
        if self.negatives is not None and self.negatives > 0:
            if len(out.feats) != 2:
                raise ValueError("TCMax(negatives=N) samples (audio, visual) index pairs: it needs two modalities.")
            res = tcmax_loss_sampled(model.head, out.feats, y, self.negatives, label_prior=self.label_prior,
                                     group=group)
        elif model.linear_fusion:
            res = tcmax_loss(out.modality_logits, y, label_prior=self.label_prior, group=group)
        else:
            res = tcmax_loss_pairwise(model.head, out.feats, y, chunk_size=self.chunk_size,
                                      label_prior=self.label_prior, group=group)
        logs = {"tc_estimate": res.tc_estimate, **modality_ce(out, y)}
        return res.loss, logs


METHODS = {"joint": Joint, "unimodal": Unimodal, "ogm_ge": OGMGE, "agm": AGM, "mla": MLA, "mmpareto": MMPareto,
           "pmr": PMR, "tcmax": TCMax}


def make_method(name: str, **kwargs) -> Method:
    """Build a method by name: joint, unimodal, ogm_ge, agm, mla, mmpareto, pmr or tcmax (notebook 03)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(METHODS)}.")
    return METHODS[name](**kwargs)
