"""Unimodal training: each modality learns alone, on its own cross-entropy; the logits are summed to predict.

Idea: sum_m CE(f_m(z_m), y) gives every encoder its own full-strength gradient, so no modality can starve
another; but no term sees the modalities together, so interactions between them cannot be learned.

Paper: the unimodal reference point of the modality-competition literature (OGM-GE, Peng et al., CVPR 2022,
compares with audio-only and visual-only models; hubaak/TCMax has a unimodal baseline).

Official code followed: none line by line.

Adapted: the M objectives share one model and one optimiser step instead of M separate trainings, so a
parameter every modality's logits use (a shared head bias) gets all M gradients.

Introduced in notebook 03.
"""

from __future__ import annotations

import torch.nn.functional as F

from .base import Method


class Unimodal(Method):
    """Sum of per-modality cross-entropies; each encoder learns alone, prediction = summed logits (notebook 03)."""

    name = "unimodal"

    def loss(self, model, out, y):
        ces = [F.cross_entropy(lg.float(), y) for lg in out.modality_logits]
        return sum(ces), {f"ce_{m}": c.detach() for m, c in enumerate(ces)}

    def predict_logits(self, out):
        return sum(out.modality_logits)
