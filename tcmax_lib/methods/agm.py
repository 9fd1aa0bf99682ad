"""AGM: adaptive gradient modulation from Shapley-value responses (Li et al., ICCV 2023).

Idea: measure each modality's own contribution to the fused prediction by the Shapley value of the head's
logits, and scale each encoder's gradients by exp(alpha (running mean ratio - current ratio)), so a modality
that is ahead of its usual share is slowed down and one that lags is sped up.

Official code followed: hubaak/TCMax (commit a950d9b4e9cd, 2026-02-27), `src/utils/modulation.py`
`AGM_modulation` and `src/models/AGM_module.py`. Defaults are that repository's (AGM_alpha 1, modulation
epochs 0-50).

Adapted: the responses are Shapley values of the *features* (4 head passes with zeroed features) where the
paper zero-pads the inputs and the release uses the head slices; see the class docstring.

Introduced in notebook 07.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .. import checks
from .base import Method, check_window, encoder_params, modality_ce


def shapley_responses(head: torch.nn.Module, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """AGM's mono-modal responses of two modalities: Shapley values of the head's logits (notebook 07).

    r_a = 1/2 [(f(a, 0) - f(0, 0)) + (f(a, v) - f(0, v))], r_v likewise; r_a + r_v = f(a, v) - f(0, 0).
    A missing modality is a zero feature vector. For a linear head r_m is the head's slice without bias.
    """
    if len(feats) != 2:
        raise ValueError(f"AGM's Shapley responses are written for two modalities, got {len(feats)}.")
    a, v = feats
    za, zv = torch.zeros_like(a), torch.zeros_like(v)
    f_av, f_a0, f_0v, f_00 = head(a, v), head(a, zv), head(za, v), head(za, zv)   # 4 x [B, C]
    return [0.5 * ((f_a0 - f_00) + (f_av - f_0v)), 0.5 * ((f_0v - f_00) + (f_av - f_a0))]


@dataclass
class AGM(Method):
    """AGM (Li et al., ICCV 2023): scale each encoder's gradients by exp(alpha (r_bar - r)) (notebook 07).

    score_m = mean_i -log softmax(r_m)_i[y_i] of the mono-modal response r_m; the ratio
    r_a = exp(score_v - score_a) (> 1: audio is ahead) is compared with its running mean over the
    training steps so far, and coeff_m = exp(alpha * min(r_bar_m - r_m, 10)) multiplies the gradient of
    every parameter of encoder m, for epochs in [start, end]. As in hubaak/TCMax `AGM_modulation`,
    the running mean is updated after the coefficients are computed, only inside the window, and
    starts at 0 (so the first step's reference ratio is 1). Adapted: the responses are the Shapley
    values of the *features* (zeroed features, 4 head passes; AGM's paper zero-pads the inputs, the
    hubaak code uses the head slices `forward_a/forward_v`, which include half the bias).
    """

    alpha: float = 1.0
    start: int = 0
    end: int = 50
    name: str = "agm"
    running: list[float] = field(default_factory=lambda: [0.0, 0.0], repr=False)
    iterations: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.alpha = checks.real(self.alpha, "AGM.alpha", minimum=0.0)
        self.start, self.end = check_window(self, self.start, self.end)

    def loss(self, model, out, y):
        return F.cross_entropy(out.logits.float(), y), modality_ce(out, y)

    @torch.no_grad()
    def after_backward(self, model, out, y, epoch):
        responses = shapley_responses(model.head, [f.detach().float() for f in out.feats])
        scores = [float(-F.log_softmax(r, 1).gather(1, y[:, None]).clamp_min(math.log(1e-8)).mean())
                  for r in responses]                                   # mean NLL of the true class
        ratios = [math.exp(scores[1] - scores[0]), math.exp(scores[0] - scores[1])]
        logs = {"agm_ratio": ratios[0], "coeff_0": 1.0, "coeff_1": 1.0}
        if self.start <= epoch <= self.end:
            best = [math.exp(self.running[1] - self.running[0]), math.exp(self.running[0] - self.running[1])]
            coeffs = [math.exp(self.alpha * min(b - r, 10.0)) for b, r in zip(best, ratios)]
            self.iterations += 1
            self.running = [s_bar + (s - s_bar) / self.iterations for s_bar, s in zip(self.running, scores)]
            for params, k in zip(encoder_params(model), coeffs):
                for p in params:
                    if p.grad is not None:
                        p.grad.mul_(k)
            logs.update(coeff_0=coeffs[0], coeff_1=coeffs[1])
        return logs
