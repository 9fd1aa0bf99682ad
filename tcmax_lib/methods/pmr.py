"""PMR: prototypical modal rebalance (Fan et al., CVPR 2023).

Idea: class prototypes per modality (mean encoder features of each class) give each modality a prototypical
classifier; the weaker modality, judged by the ratio of its prototypical true-class scores, gets an extra
prototypical cross-entropy, weighted by how far behind it is.

Official code followed: hubaak/TCMax (commit a950d9b4e9cd, 2026-02-27), `src/models/PMR_module.py` and its use
in `main.py`. Defaults are that repository's (PMR_alpha 1, PMR_epsilon 0, PMR_mu 0).

Adapted: prototypes from a class-stratified 10 % of the training split each epoch; PMR's entropy regulariser
is off in the release's defaults and is not implemented.

Introduced in notebook 07.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .. import checks
from ..data.splits import Split
from ..models import encode
from .base import Method, modality_ce


@dataclass
class PMR(Method):
    """PMR (Fan et al., CVPR 2023): prototypical CE on the weaker modality, weighted by the imbalance (nb 07).

    Prototypes c_m[k] are the mean encoder features of class k over a class-stratified `fraction` of
    the training split, recomputed (eval mode) before every epoch, blended with the old ones by
    `momentum` (hubaak's PMR_epsilon, default 0: replaced). Prototypical logits are -||z_m - c_m[k]||;
    rho = sum_i softmax(proto_a)_i[y_i] / sum_i softmax(proto_v)_i[y_i]. The weaker modality's
    prototypical CE gets weight alpha * min(rho' - 1, 1), rho' = max(rho, 1/rho); a prototypical CE
    above `max_proto_loss` is dropped for the step (hubaak `max_ignore_loss`). PMR's entropy
    regulariser (PER, weight mu) is off in hubaak's defaults and scripts and is not implemented here.
    """

    alpha: float = 1.0
    momentum: float = 0.0
    fraction: float = 0.1
    max_proto_loss: float = 10.0
    name: str = "pmr"
    prototypes: list[torch.Tensor] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.alpha = checks.real(self.alpha, "PMR.alpha", minimum=0.0)
        self.max_proto_loss = checks.real(self.max_proto_loss, "PMR.max_proto_loss", positive=True)
        self.momentum, self.fraction = checks.real(self.momentum, "PMR.momentum"), checks.real(self.fraction,
                                                                                                 "PMR.fraction")
        if not (0.0 <= self.momentum < 1.0 and 0.0 < self.fraction <= 1.0):
            raise ValueError(f"PMR: momentum={self.momentum:g} must lie in [0, 1) and fraction={self.fraction:g} "
                             "in (0, 1].")

    @torch.no_grad()
    def on_epoch_start(self, model, train: Split, epoch):
        was_training = model.training
        model.eval()
        num_classes = model(*[x[:1] for x in train.inputs]).logits.shape[1]
        n = min(len(train), max(num_classes, round(self.fraction * len(train))))
        sub = train.stratified_subset(n, seed=epoch)
        counts = torch.bincount(sub.y, minlength=num_classes).float()
        if bool((counts == 0).any()):
            missing = (counts == 0).nonzero().squeeze(1).tolist()
            raise ValueError(f"PMR: classes {missing} have no training sample, so their prototypes are undefined. "
                             "Train on a split that contains every class.")
        new = []
        for z in encode(model, sub.inputs):                                                # M x [n, d]
            sums = torch.zeros(num_classes, z.shape[1], device=z.device).index_add_(0, sub.y, z)
            new.append(sums / counts[:, None])                                             # [C, d]
        if self.prototypes is None:
            self.prototypes = new
        else:
            self.prototypes = [self.momentum * old + (1 - self.momentum) * p for old, p in zip(self.prototypes, new)]
        model.train(was_training)
        return {}

    def loss(self, model, out, y):
        if self.prototypes is None:
            raise RuntimeError("PMR has no prototypes yet: the trainer calls on_epoch_start before each epoch.")
        ce = F.cross_entropy(out.logits.float(), y)
        sims = [-torch.cdist(z.float(), c) for z, c in zip(out.feats, self.prototypes)]    # M x [B, C]
        pce = [F.cross_entropy(s, y) for s in sims]
        score = [s.detach().softmax(1).gather(1, y[:, None]).sum() for s in sims]
        rho = float(score[0] / score[1])
        weights = [0.0, min(rho - 1.0, 1.0)] if rho > 1 else [min(1.0 / rho - 1.0, 1.0), 0.0] if rho < 1 else [0.0, 0.0]
        loss = ce
        for w, p in zip(weights, pce):
            if w > 0 and float(p.detach()) <= self.max_proto_loss:
                loss = loss + self.alpha * w * p
        logs = {**modality_ce(out, y), "pmr_ratio": rho, "pce_0": pce[0].detach(), "pce_1": pce[1].detach()}
        return loss, logs
