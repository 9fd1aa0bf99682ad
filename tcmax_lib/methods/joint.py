"""Joint training: one cross-entropy on the fused logits, the baseline every method is compared with.

Idea: train every encoder and the fusion head end to end on CE(f(z_1, ..., z_M), y), which maximises I(y; z_1,
..., z_M); the modality that lowers the loss fastest then dominates (modality competition).

Paper: the standard late-fusion baseline of every paper in the series ("Normal" in the TCMax paper).

Official code followed: GeWu-Lab/OGM-GE_CVPR2022 `main.py` (commit bf87983), `train_epoch` with `--modulation
Normal`, also carried by hubaak/TCMax (commit a950d9b4e9cd). No adaptation.

Introduced in notebook 03.
"""

from __future__ import annotations

import torch.nn.functional as F

from .base import Method, modality_ce


class Joint(Method):
    """Cross-entropy on the fused logits (maximises I(y; z_1..z_M)) (notebook 03)."""

    name = "joint"

    def loss(self, model, out, y):
        loss = F.cross_entropy(out.logits.float(), y)
        return loss, modality_ce(out, y)
