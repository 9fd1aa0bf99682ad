"""MLA: multimodal learning by alternating unimodal adaptation (Zhang et al., CVPR 2024).

Idea: never optimise the modalities jointly: each batch takes one optimiser step per modality through one
shared head, with the head's gradient projected (orthogonal weight modification, OWM) so each step interferes
less with what the other modality taught the head; at test time the modalities' logits are fused with entropy-
based weights.

Official code followed: hubaak/TCMax (commit a950d9b4e9cd, 2026-02-27), `src/utils/modulation.py`
`MLA_modulation` and `MLA_prediction`, `src/models/MLA_module.py`.

Projection: the default `projection="none"` is what the release computes. Its projector (`MLA_GSPlugin.
before_update`) looks for a parameter named "module.weight", which the head's nn.Linear never has, so it never
runs. `"released"` is the release's formula as written, were it to run (an elementwise denominator,
`owm_update_released`); `"owm"` is the MLA paper's orthogonal weight modification (a scalar denominator,
`owm_update`). See the class docstring.

Introduced in notebook 07.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..models import MultimodalClassifier, SharedHead
from .base import Method


def mla_fusion(modality_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """MLA's test-time fusion: sum_m w_m logits_m, w = softmax_m(-entropy of softmax(logits_m)) (notebook 07)."""
    stacked = torch.stack([lg.float() for lg in modality_logits])       # [M, B, C]
    logp = F.log_softmax(stacked, dim=-1)
    entropy = -(logp.exp() * logp).sum(-1, keepdim=True)                # [M, B, 1], finite for p = 0
    return (torch.softmax(-entropy, dim=0) * stacked).sum(0)            # [B, C]


PROJECTIONS = ("none", "released", "owm")


def owm_update(proj: torch.Tensor, feats: torch.Tensor, alpha: float) -> torch.Tensor:
    """One OWM step: P - P r (P r)^T / (alpha + r P r^T) (the MLA paper), Frobenius-normalised (notebook 07).

    The scalar denominator is the paper's; the division by ||P||_F is the release's step (`pnorm2` in
    `MLA_GSPlugin`), kept here so that "owm" differs from "released" only in the denominator. It also scales
    the head's weight step: from P = I it is 1/sqrt(d) (0.177 at d = 32, 0.125 at d = 64), which
    `MLA(head_grad_scale=...)` reproduces without any projection, as a control.
    """
    r = feats.float().mean(0, keepdim=True)                              # [1, d] batch mean feature
    k = proj @ r.T                                                       # [d, 1]
    proj = proj - (k @ k.T) / (alpha + r @ k)                            # [d, d], scalar denominator
    return proj / proj.norm()


def owm_update_released(proj: torch.Tensor, feats: torch.Tensor, alpha: float) -> torch.Tensor:
    """The release's projector step: P - (k k^T) / (alpha + k r) elementwise, k = P r^T, normalised (notebook 07).

    `torch.mm(k, r)` in hubaak/TCMax and in MLA's own code is the [d, d] outer product k r, so each entry of
    k k^T is divided by its own alpha + k_i r_j, not by the scalar alpha + r P r^T of the OWM paper.
    """
    r = feats.float().mean(0, keepdim=True)                              # [1, d]
    k = proj @ r.T                                                       # [d, 1]
    proj = proj - (k @ k.T) / (alpha + k @ r)                            # [d, d] / [d, d], elementwise
    return proj / proj.norm()


@dataclass
class MLA(Method):
    """MLA (Zhang et al., CVPR 2024): alternating unimodal steps through one shared head (notebook 07).

    Each batch takes M optimiser steps: encoder m + the shared head on CE(head(z_m), y), modality by
    modality. With a projection, before each step but the first of training, the head's weight gradient
    is multiplied by a projector P (alpha = 0.1^(1 + step/steps_per_epoch)) so that it interferes less with what the
    other modality taught the head. Prediction: `mla_fusion` (entropy-weighted). Needs `head="shared"`.
    `projection`: "none" (default; what hubaak/TCMax and MLA's release compute, since their projector's
    "module.weight" name check never matches an nn.Linear's "weight"), "released" (their formula as
    written, `owm_update_released`) or "owm" (the MLA paper's form, `owm_update`).
    `head_grad_scale` multiplies the head's weight gradient at every step (default 1): with
    `projection="none"` and 1/sqrt(d) it is the step-size part of a normalised projector without its
    direction, the control that separates the two (07, Exercise 2).
    """

    projection: str = "none"
    head_grad_scale: float = 1.0
    name: str = "mla"
    owns_step = True
    proj: torch.Tensor | None = field(default=None, repr=False)
    updates: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.projection not in PROJECTIONS:                          # a bool would silently mean one of them
            raise ValueError(f"MLA.projection={self.projection!r}; use one of {PROJECTIONS}: 'none' (the released "
                             "code's behaviour, default), 'released' (its formula, were it to run), 'owm' (the paper).")
        if not (isinstance(self.head_grad_scale, (int, float)) and 0 < self.head_grad_scale < float("inf")):
            raise ValueError(f"MLA.head_grad_scale={self.head_grad_scale!r}; give a positive finite factor for the "
                             "head's weight gradient (1 = unchanged).")

    @staticmethod
    def _head(model: MultimodalClassifier) -> SharedHead:
        if not isinstance(model.head, SharedHead):
            raise ValueError(f"MLA trains one head shared by the modalities: build the model with head='shared' "
                             f"(got {type(model.head).__name__}).")
        return model.head

    def loss(self, model, out, y):
        self._head(model)
        ces = [F.cross_entropy(lg.float(), y) for lg in out.modality_logits]
        return sum(ces), {f"ce_{m}": c.detach() for m, c in enumerate(ces)}

    def predict_logits(self, out):
        return mla_fusion(out.modality_logits)

    def step(self, model, batch, y, opt, guard, epoch, step, steps_per_epoch):
        head = self._head(model)
        total, logs = 0.0, {}
        for m, (enc, x) in enumerate(zip(model.encoders, batch)):
            z = enc(x)                                                   # [B, d]
            loss = F.cross_entropy(head.fc(z).float(), y)
            guard(loss, False)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            guard(loss, True)
            if self.projection != "none":
                with torch.autocast(z.device.type, enabled=False):      # the projector stays fp32 under bf16
                    if self.proj is None:
                        self.proj = torch.eye(z.shape[1], device=z.device)
                    if self.updates > 0:
                        update = owm_update if self.projection == "owm" else owm_update_released
                        self.proj = update(self.proj, z.detach().float(), 0.1 ** (1 + step / steps_per_epoch))
                        head.fc.weight.grad = head.fc.weight.grad @ self.proj.T
            if self.head_grad_scale != 1.0:
                head.fc.weight.grad.mul_(self.head_grad_scale)
            self.updates += 1
            opt.step()
            total = total + loss.detach()
            logs[f"ce_{m}"] = loss.detach()
        return total, logs
