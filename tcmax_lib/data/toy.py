"""Two-modality toy classification with known ground truth ("audio" fast, "visual" slow).

Label y = 2 b1 + b2 (4 classes) from two fair bits:

* b1, the shared part: audio shows it linearly (x_a[0] = +-m_a + noise, learned fast);
  visual hides it in an XOR of two coordinates (sign(x_v[0] x_v[1]) = +-1, needs non-linear features).
* b2, the interaction part: b2 = c_a XOR c_v where audio shows bit c_a and visual bit c_v; each
  modality alone says nothing about b2, only the pair does.

Every modality also carries `n_noise` pure-noise coordinates. All noise is N(0, 1).
The Bayes-optimal posterior is exact (below), so Bayes accuracies are closed form or Monte Carlo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..checks import feature_widths, integer, real
from .splits import Split, Splits


@dataclass
class ToyConfig:
    """Signal strengths (in noise standard deviations) and sizes of the toy problem (notebook 03)."""

    audio_margin: float = 2.0          # b1 in audio: Bayes accuracy Phi(m_a) = 0.977
    visual_margin: float = 1.5         # b1 in visual via XOR: p^2 + (1-p)^2 = 0.875, p = Phi(m_v)
    interaction_margin: float = 2.5    # c_a, c_v signals; b2 = c_a xor c_v
    n_noise: int = 12
    interaction: bool = True           # False: 2 classes (b1 only)

    def __post_init__(self) -> None:   # margins are signal strengths: finite and >= 0
        for name in ("audio_margin", "visual_margin", "interaction_margin"):
            setattr(self, name, real(getattr(self, name), name, minimum=0.0))
        self.n_noise = integer(self.n_noise, "n_noise", minimum=0, hint="pure-noise coordinates per modality")

    @property
    def num_classes(self) -> int:
        return 4 if self.interaction else 2

    @property
    def dims(self) -> tuple[int, int]:
        extra = 1 if self.interaction else 0
        return 1 + extra + self.n_noise, 2 + extra + self.n_noise


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def sample_toy(n: int, cfg: ToyConfig, generator: torch.Generator | None = None):
    """Draw n samples: returns (x_audio [n, da], x_visual [n, dv], y [n], b1 [n], b2 [n]) (notebook 03)."""
    n, g = integer(n, "n", hint="samples"), generator
    b1 = torch.randint(0, 2, (n,), generator=g)
    b2 = torch.randint(0, 2, (n,), generator=g) if cfg.interaction else torch.zeros(n, dtype=torch.long)
    c_a = torch.randint(0, 2, (n,), generator=g)
    c_v = b2 ^ c_a
    s1 = torch.randint(0, 2, (n,), generator=g) * 2 - 1                  # random sign
    s2 = s1 * (2 * b1 - 1)                                              # sign(s1 * s2) encodes b1
    da, dv = cfg.dims
    xa = torch.randn(n, da, generator=g)
    xv = torch.randn(n, dv, generator=g)
    xa[:, 0] += cfg.audio_margin * (2 * b1 - 1)
    xv[:, 0] += cfg.visual_margin * s1
    xv[:, 1] += cfg.visual_margin * s2
    if cfg.interaction:
        xa[:, 1] += cfg.interaction_margin * (2 * c_a - 1)
        xv[:, 2] += cfg.interaction_margin * (2 * c_v - 1)
    y = 2 * b1 + b2 if cfg.interaction else b1
    return xa, xv, y, b1, b2


def bayes_posterior(xa: torch.Tensor, xv: torch.Tensor, cfg: ToyConfig, use: str = "both") -> torch.Tensor:
    """Exact p(y | inputs) [n, C] using 'audio', 'visual' or 'both' modalities (notebook 03)."""
    if use not in ("audio", "visual", "both"):
        raise ValueError(f"use={use!r}; choose 'audio', 'visual' or 'both'.")
    feature_widths((xa, xv), cfg.dims, "bayes_posterior (the inputs of this ToyConfig)")
    n = xa.shape[0]
    zero = torch.zeros(n, dtype=torch.float64)
    xa, xv = xa.double(), xv.double()
    llr_a = 2 * cfg.audio_margin * xa[:, 0]                              # log p(xa|b1=1)/p(xa|b1=0)
    m = cfg.visual_margin
    llr_v = _logcosh(m * (xv[:, 0] + xv[:, 1])) - _logcosh(m * (xv[:, 0] - xv[:, 1]))
    llr_b1 = (llr_a if use != "visual" else zero) + (llr_v if use != "audio" else zero)
    p_b1 = torch.sigmoid(llr_b1)                                         # [n]
    if not cfg.interaction:
        return torch.stack([1 - p_b1, p_b1], dim=1)
    if use == "both":
        pa = torch.sigmoid(2 * cfg.interaction_margin * xa[:, 1])        # p(c_a = 1)
        pv = torch.sigmoid(2 * cfg.interaction_margin * xv[:, 2])        # p(c_v = 1)
        p_b2 = pa * (1 - pv) + (1 - pa) * pv                             # p(c_a xor c_v = 1)
    else:
        p_b2 = torch.full_like(p_b1, 0.5)
    return torch.stack([(1 - p_b1) * (1 - p_b2), (1 - p_b1) * p_b2, p_b1 * (1 - p_b2), p_b1 * p_b2], dim=1)


def _logcosh(x: torch.Tensor) -> torch.Tensor:
    return x.abs() + torch.log1p(torch.exp(-2 * x.abs())) - math.log(2.0)


def bayes_accuracy(cfg: ToyConfig, n_mc: int = 400_000, seed: int = 0) -> dict[str, float]:
    """Bayes accuracy of y from audio, visual and both (Monte Carlo) + closed forms (notebook 03)."""
    xa, xv, y, b1, b2 = sample_toy(n_mc, cfg, torch.Generator().manual_seed(seed))
    out = {use: float((bayes_posterior(xa, xv, cfg, use).argmax(1) == y).double().mean())
           for use in ("audio", "visual", "both")}
    half = 0.5 if cfg.interaction else 1.0
    p = _phi(cfg.visual_margin)
    q = _phi(cfg.interaction_margin)
    out["audio_closed_form"] = half * _phi(cfg.audio_margin)
    out["visual_closed_form"] = half * (p * p + (1 - p) ** 2)
    if cfg.interaction:
        out["interaction_closed_form"] = q * q + (1 - q) ** 2
    return out


def make_toy_splits(cfg: ToyConfig, n_train: int = 4000, n_val: int = 2000, n_test: int = 10000,
                    seed: int = 0) -> Splits:
    """Seeded train/val/test `Splits` (inputs audio, visual; extras b1, b2), iid draws (notebook 03)."""
    n_train, n_val, n_test = (integer(v, k) for k, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)))
    g = torch.Generator().manual_seed(seed)
    parts = []
    for n in (n_train, n_val, n_test):
        xa, xv, y, b1, b2 = sample_toy(n, cfg, g)
        parts.append(Split((xa, xv), y, {"b1": b1, "b2": b2}))
    return Splits(*parts, meta={"config": cfg, "num_classes": cfg.num_classes})
