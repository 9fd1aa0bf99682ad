"""The paper's other baselines behind the `Method` interface: AGM, MLA, MMPareto and PMR (notebook 07).

Each follows its paper and the implementation in the TCMax authors' repository, hubaak/TCMax at
commit a950d9b4e9cd (2026-02-27): `src/utils/modulation.py` (AGM_modulation, MLA_modulation,
MLA_prediction, MMPareto, MinNormSolver), `src/models/{AGM,MLA,PMR}_module.py`. Where we adapt,
the class docstring says so. Defaults are that repository's defaults.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .data.splits import Split
from .diagnostics import encode
from .method_base import Method, encoder_params, modality_ce
from .models import MultimodalClassifier, SharedHead


# ----------------------------------------------------------------------------- AGM
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


# ----------------------------------------------------------------------------- MLA
def mla_fusion(modality_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """MLA's test-time fusion: sum_m w_m logits_m, w = softmax_m(-entropy of softmax(logits_m)) (notebook 07)."""
    stacked = torch.stack([lg.float() for lg in modality_logits])       # [M, B, C]
    logp = F.log_softmax(stacked, dim=-1)
    entropy = -(logp.exp() * logp).sum(-1, keepdim=True)                # [M, B, 1], finite for p = 0
    return (torch.softmax(-entropy, dim=0) * stacked).sum(0)            # [B, C]


def owm_update(proj: torch.Tensor, feats: torch.Tensor, alpha: float) -> torch.Tensor:
    """One OWM step of MLA's gradient projector: P - P r (P r)^T / (alpha + r^T P r), Frobenius-normalised (nb 07)."""
    r = feats.float().mean(0, keepdim=True)                              # [1, d] batch mean feature
    k = proj @ r.T                                                       # [d, 1]
    proj = proj - (k @ k.T) / (alpha + r @ k)                            # [d, d]
    return proj / proj.norm()


@dataclass
class MLA(Method):
    """MLA (Zhang et al., CVPR 2024): alternating unimodal steps through one shared head (notebook 07).

    Each batch takes M optimiser steps: encoder m + the shared head on CE(head(z_m), y), modality by
    modality. Before each step but the first of training, the head's weight gradient is projected by
    the OWM matrix P (`owm_update`, alpha = 0.1^(1 + step/steps_per_epoch)) so that it interferes less
    with what the other modality taught the head. Prediction: `mla_fusion` (entropy-weighted).
    Needs `head="shared"`. Note: in hubaak/TCMax `MLA_GSPlugin.before_update` looks for a parameter
    named "module.weight", which an nn.Linear never has ("weight", "bias"), so there the projection
    is never applied; `projection=False` reproduces that code, the default follows the MLA paper.
    """

    projection: bool = True
    name: str = "mla"
    owns_step = True
    proj: torch.Tensor | None = field(default=None, repr=False)
    updates: int = field(default=0, repr=False)

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
            if self.projection:
                with torch.autocast(z.device.type, enabled=False):      # the projector stays fp32 under bf16
                    if self.proj is None:
                        self.proj = torch.eye(z.shape[1], device=z.device)
                    if self.updates > 0:
                        self.proj = owm_update(self.proj, z.detach().float(), 0.1 ** (1 + step / steps_per_epoch))
                        head.fc.weight.grad = head.fc.weight.grad @ self.proj.T
            self.updates += 1
            opt.step()
            total = total + loss.detach()
            logs[f"ce_{m}"] = loss.detach()
        return total, logs


# ----------------------------------------------------------------------------- MMPareto
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


# ----------------------------------------------------------------------------- PMR
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
