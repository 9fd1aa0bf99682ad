"""MMPareto: combine the multimodal and unimodal gradients without conflict (Wei & Hu, ICML 2024).

Idea: train on L_mm + sum_m L_m, but per encoder combine the multimodal and the unimodal gradient with Pareto
weights: equal weights when they agree (cosine > 0), the min-norm point of the segment when they conflict,
then rescale to at least the summed gradient's norm (times gamma) to keep exploring.

Official code followed: hubaak/TCMax (commit a950d9b4e9cd, 2026-02-27), `src/utils/modulation.py` `MMPareto`
and `MinNormSolver`. Defaults are that repository's (gamma 1.5).

Adapted: none in the rule; the unimodal losses use the model's per-modality logits (dedicated heads with
head="concat_msh", as the release requires, else the slices of a linear head).

Introduced in notebook 07.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .. import checks
from .base import Method, encoder_params


def pareto_weights(g_mm: torch.Tensor, g_uni: torch.Tensor) -> tuple[float, float, float]:
    """MMPareto's weights (k_mm, k_uni) and cos(g_mm, g_uni): (1/2, 1/2) if cos > 0, else min-norm (nb 07).

    The min-norm point d = k g_mm + (1 - k) g_uni of the segment has <d, g_mm> = <d, g_uni> = |d|^2 >= 0
    when k is interior, so the combined direction never conflicts with either task.
    """
    g1, g2 = g_mm.double(), g_uni.double()
    v11, v12, v22 = float(g1 @ g1), float(g1 @ g2), float(g2 @ g2)
    cos = v12 / max(math.sqrt(v11 * v22), 1e-30)
    if cos > 0:
        return 0.5, 0.5, cos
    if v12 >= v11:                                   # hubaak MinNormSolver._min_norm_element_from2
        k = 0.999
    elif v12 >= v22:
        k = 0.001
    else:
        k = (v22 - v12) / (v11 + v22 - 2 * v12)
    return k, 1.0 - k, cos


@dataclass
class MMPareto(Method):
    """MMPareto (Wei & Hu, ICML 2024): L_mm + sum_m L_m, encoder gradients combined Pareto-style (nb 07).

    Per encoder m: g = 2 (k_mm g_mm + k_m g_m) with `pareto_weights`, rescaled per parameter tensor to
    at least the norm of the plain summed gradient, times gamma = 1.5; heads keep the summed gradient.
    Costs 3 extra backward passes. The unimodal losses use the model's per-modality logits: with
    head="concat_msh" (as hubaak requires) dedicated modality heads, with a linear head its slices.
    The per-tensor rescale (faithful to the code) can in principle tilt the direction that
    `pareto_weights` makes conflict-free.
    """

    gamma: float = 1.5
    name: str = "mmpareto"
    pending: tuple | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.gamma = checks.real(self.gamma, "MMPareto.gamma", positive=True)

    def loss(self, model, out, y):
        l_mm = F.cross_entropy(out.logits.float(), y)
        l_uni = [F.cross_entropy(lg.float(), y) for lg in out.modality_logits]
        if torch.is_grad_enabled() and model.training:
            params = encoder_params(model)
            g_mm = torch.autograd.grad(l_mm, [p for ps in params for p in ps], retain_graph=True, allow_unused=True)
            sizes = [len(ps) for ps in params]
            g_mm = [list(g_mm[sum(sizes[:m]):sum(sizes[:m + 1])]) for m in range(len(params))]
            g_uni = [list(torch.autograd.grad(loss_m, ps, retain_graph=True, allow_unused=True))
                     for loss_m, ps in zip(l_uni, params)]
            self.pending = (params, g_mm, g_uni)
        logs = {f"ce_{m}": c.detach() for m, c in enumerate(l_uni)}
        return l_mm + sum(l_uni), logs

    @torch.no_grad()
    def after_backward(self, model, out, y, epoch):
        params, g_mm, g_uni = self.pending
        self.pending = None
        logs = {}
        for m, (ps, gm, gu) in enumerate(zip(params, g_mm, g_uni)):
            gm = [torch.zeros_like(p) if g is None else g for p, g in zip(ps, gm)]
            gu = [torch.zeros_like(p) if g is None else g for p, g in zip(ps, gu)]
            flat_mm, flat_uni = torch.cat([g.flatten() for g in gm]), torch.cat([g.flatten() for g in gu])
            k_mm, k_uni, cos = pareto_weights(flat_mm, flat_uni)
            for p, a, b in zip(ps, gm, gu):
                new = 2 * (k_mm * a + k_uni * b)
                summed, norm = p.grad.norm(), new.norm()
                scale = summed / norm if bool(summed > norm) and bool(norm > 0) else 1.0
                p.grad.copy_(new * scale * self.gamma)
            logs[f"pareto_cos_{m}"] = cos
        return logs
