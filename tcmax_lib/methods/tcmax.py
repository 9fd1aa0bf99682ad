"""TCMax: maximise the total correlation of the modalities and the label, with the classifier as critic.

Idea: minimise the negative TCNE (Donsker-Varadhan) bound on TC(z_1, ..., z_M, y) whose critic is the fused
logits f(z_1, ..., z_M)_y, so the negatives are every (sample tuple, class) combination of the batch; for a
linear fusion head the normaliser factorises and the loss costs O(M B C) (`losses.py`). With the default uniform
label prior the bound is on TC + KL(p_y || Uniform), the TC for balanced labels; a head linear in the features
reaches at most I(y; z_a) + I(y; z_v) of it (notebook 04, section 6).

Paper: Yu, Wu, Yang, Lu, "Multimodal Classification via Total Correlation Maximization", ICLR 2026 (arXiv
2602.13015).

Official code followed: hubaak/TCMax (commit a950d9b4e9cd), `src/utils/losses.py` `TCMax_loss` and its use in
`main.py`.

Adapted: log-space normaliser (the release's exp overflows, see notebook 04), the exact factorised form
instead of the materialised B x B x C grid, a pairwise form for non-linear heads, the label prior as an option
('uniform' is the release's), and the sampled-negative variant as `negatives=N`.

Introduced in notebook 04.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import checks, distributed
from ..losses import LABEL_PRIORS, tcmax_loss, tcmax_loss_pairwise, tcmax_loss_sampled
from .base import Method, modality_ce


@dataclass
class TCMax(Method):
    """TCMax: minimise the negative TCNE bound with the fused logits as critic, factorised or pairwise (nb 04)."""

    chunk_size: int = 64
    label_prior: str = "uniform"       # 'uniform' (the paper) or 'batch' (empirical class frequencies)
    negatives: int | None = None       # N > 0: N sampled negative pairs (the paper's sampled variant); else exact
    name: str = "tcmax"

    def __post_init__(self) -> None:
        self.chunk_size = checks.integer(self.chunk_size, "TCMax.chunk_size")
        if self.negatives is not None:
            self.negatives = checks.integer(self.negatives, "TCMax.negatives", None, "N sampled pairs; None: exact")
        if self.label_prior not in LABEL_PRIORS:
            raise ValueError(f"TCMax.label_prior={self.label_prior!r}; use one of {LABEL_PRIORS}.")

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
