"""OGM-GE: on-the-fly gradient modulation with generalisation enhancement (Peng et al., CVPR 2022).

Idea: measure which modality is ahead from the ratio of the true-class softmax scores of the two unimodal
logit slices, damp the leading encoder's gradient by 1 - tanh(alpha * ratio), and add Gaussian noise to the
gradients so the slowed-down training still explores.

Official code followed: GeWu-Lab/OGM-GE_CVPR2022 `main.py` (commit bf87983), `train_epoch`; the same rule is
in hubaak/TCMax (commit a950d9b4e9cd). Defaults: alpha 0.8 (hubaak/TCMax `OGM_alpha`), modulation in epochs
0-50 (`--modulation_starts`/`--modulation_ends`).

Adapted: the noise goes on weight tensors of dim >= 2 instead of 4-D conv kernels only, which is the same set
for conv encoders and gives the toy MLPs (no conv kernels) the noise too; see the class docstring.

Introduced in notebook 04.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import checks
from .base import Method, check_window, modality_ce, ogm_ratio


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

    def __post_init__(self) -> None:
        self.alpha = checks.real(self.alpha, "OGMGE.alpha", minimum=0.0)
        self.start, self.end = check_window(self, self.start, self.end)

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
