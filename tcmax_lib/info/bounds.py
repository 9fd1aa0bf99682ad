"""Variational lower bounds on mutual information and total correlation: DV, MINE, NWJ, InfoNCE, JS, SMILE
and TCNE (notebooks 01-02). The critics that produce the scores are in `critics.py`.

Convention (Poole et al. 2019): a critic returns a K x K score matrix S with S[i, j] = T(x_i, y_j).
The diagonal holds the K joint pairs, the K(K-1) off-diagonal entries are samples of p(x)p(y):
no shuffling, hence no accidental joint pairs among the "negatives". Every bound works in log
space (logsumexp), so it is finite for any finite scores (NWJ: see its docstring).
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn


# ----------------------------------------------------------------------------- helpers
def logmeanexp_offdiag(scores: torch.Tensor) -> torch.Tensor:
    """log of the mean of exp(scores) over the off-diagonal entries of a [K, K] matrix (notebook 01)."""
    k = scores.shape[0]
    off = scores.masked_fill(torch.eye(k, dtype=torch.bool, device=scores.device), float("-inf"))
    return torch.logsumexp(off.flatten(), 0) - math.log(k * (k - 1))


def _check_square(scores: torch.Tensor) -> None:
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1] or scores.shape[0] < 2:
        raise ValueError(f"expected a square [K, K] score matrix with K >= 2, got shape {tuple(scores.shape)}.")


# ----------------------------------------------------------------------------- MI bounds
def dv_bound(scores: torch.Tensor) -> torch.Tensor:
    """Donsker-Varadhan bound: mean T(joint) - log mean exp T(marginal) (notebook 02)."""
    _check_square(scores)
    return scores.diagonal().mean() - logmeanexp_offdiag(scores)


def nwj_bound(scores: torch.Tensor) -> torch.Tensor:
    """NWJ (f-divergence) bound: mean T(joint) - e^-1 mean exp T(marginal).

    Its true value for scores near 1e4 is about -e^9999, below the float range; the exponent
    is therefore capped at log(float max), which keeps the value finite (and very negative).
    Introduced in notebook 01.
    """
    _check_square(scores)
    cap = math.log(torch.finfo(scores.dtype).max) - 1.0
    return scores.diagonal().mean() - torch.exp((logmeanexp_offdiag(scores) - 1.0).clamp(max=cap))


def infonce_bound(scores: torch.Tensor) -> torch.Tensor:
    """InfoNCE: mean_i [S_ii - log mean_j exp S_ij]; can never exceed log K (notebook 01)."""
    _check_square(scores)
    k = scores.shape[0]
    return (scores.diagonal() - torch.logsumexp(scores, dim=1)).mean() + math.log(k)


def js_fgan(scores: torch.Tensor) -> torch.Tensor:
    """f-GAN Jensen-Shannon objective (a training signal, not an MI estimate) (notebook 01)."""
    _check_square(scores)
    k = scores.shape[0]
    eye = torch.eye(k, dtype=torch.bool, device=scores.device)
    joint = -nn.functional.softplus(-scores.diagonal()).mean()
    marginal = nn.functional.softplus(scores[~eye]).mean()
    return joint - marginal


def js_bound(scores: torch.Tensor) -> torch.Tensor:
    """Train with the JS objective, report NWJ with critic T + 1 (Poole et al.): value NWJ, gradient JS.

    Introduced in notebook 01.
    """
    js = js_fgan(scores)
    return js + (nwj_bound(scores + 1.0) - js).detach()


def smile_bound(scores: torch.Tensor, clip: float | None = 5.0) -> torch.Tensor:
    """SMILE (Song & Ermon): DV with the partition scores clipped to [-clip, clip]; gradient of JS (notebook 01)."""
    _check_square(scores)
    clipped = scores if clip is None else scores.clamp(-clip, clip)
    dv = scores.diagonal().mean() - logmeanexp_offdiag(clipped)
    js = js_fgan(scores)
    return js + (dv - js).detach()


BOUNDS = {"dv": dv_bound, "nwj": nwj_bound, "infonce": infonce_bound, "js": js_bound, "smile": smile_bound}


class MINE:
    """DV bound whose partition-gradient uses an exponential moving average kept in log space.

    The reported value is the plain batch DV; only the gradient differs (Belghazi et al. 2018, sec. 3.2):
    grad log E[e^T] = E[grad T e^T] / E[e^T] with the denominator replaced by the EMA.
    Introduced in notebook 01.
    """

    def __init__(self, ema_rate: float = 0.01):
        if not 0.0 < ema_rate <= 1.0:
            raise ValueError(f"ema_rate={ema_rate} must be in (0, 1].")
        self.ema_rate = ema_rate
        self.log_ema: torch.Tensor | None = None

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        """Return a tensor whose value is the batch DV bound and whose gradient is EMA-corrected."""
        _check_square(scores)
        joint = scores.diagonal().mean()
        lme = logmeanexp_offdiag(scores)                                  # log mean_B e^T (has grad)
        if not bool(torch.isfinite(lme)) or not bool(torch.isfinite(joint)):
            raise ValueError("MINE: the critic's scores hold NaN/inf on this batch; the moving average was not "
                             "updated (it would stay NaN for every later batch). Check the inputs and the learning "
                             "rate.")
        with torch.no_grad():
            a = self.ema_rate
            new = lme.detach()
            if self.log_ema is None or a == 1.0:
                self.log_ema = new
            else:  # EMA of E_B[e^T] in log space: log((1-a) m + a e^new)
                self.log_ema = torch.logaddexp(math.log1p(-a) + self.log_ema, math.log(a) + new)
        weight = torch.exp(lme.detach() - self.log_ema)                   # E_B[e^T] / EMA, never overflows
        surrogate = joint - weight * lme
        value = joint - lme
        return value.detach() + surrogate - surrogate.detach()


# ----------------------------------------------------------------------------- total correlation
def tcne_bound(joint_scores: torch.Tensor, marginal_scores: torch.Tensor) -> torch.Tensor:
    """DV bound on total correlation: mean T(joint tuples) - log mean exp T(product-of-marginal tuples).

    Introduced in notebook 02.
    """
    if joint_scores.numel() == 0 or marginal_scores.numel() == 0:
        raise ValueError("tcne_bound needs at least one joint and one product-of-marginals score.")
    m = marginal_scores.flatten()
    return joint_scores.mean() - (torch.logsumexp(m, 0) - math.log(m.numel()))


def distinct_index_mask(k: int, num_vars: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean [K]*M mask of index tuples whose M indices are pairwise different.

    Those tuples combine M different samples, so they are exact draws from the product of the
    marginals; tuples that repeat an index would mix in partly joint samples.
    Introduced in notebook 02.
    """
    idx = torch.arange(k, device=device)
    mask = torch.ones((k,) * num_vars, dtype=torch.bool, device=device)
    for a, b in itertools.combinations(range(num_vars), 2):
        shape_a = [1] * num_vars
        shape_b = [1] * num_vars
        shape_a[a], shape_b[b] = k, k
        mask &= idx.view(shape_a) != idx.view(shape_b)
    return mask


def tcne_from_tensor(scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """TCNE bound from a full score tensor [K]*M: diagonal = joint, distinct-index tuples = marginals (notebook 02)."""
    k, m = scores.shape[0], scores.ndim
    if any(s != k for s in scores.shape):
        raise ValueError(f"expected a cube [K]*M of scores, got {tuple(scores.shape)}.")
    mask = distinct_index_mask(k, m, scores.device) if mask is None else mask
    diag = scores.flatten()[torch.arange(k, device=scores.device) * sum(k ** i for i in range(m))]  # [K]
    return tcne_bound(diag, scores[mask])


def sample_distinct_tuples(k: int, num_vars: int, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n index tuples [n, M] drawn uniformly among those with pairwise-distinct entries (notebook 02).

    Draws with replacement and keeps the rows without a repeated index (rejection sampling), so every
    kept tuple combines M different samples: an exact draw from the product of the marginals.
    """
    if k < num_vars:
        raise ValueError(f"need K >= M to draw distinct indices, got K={k}, M={num_vars}.")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r}: draw at least one tuple (a whole number >= 1); with none the bound has no terms.")
    device = generator.device if generator is not None else "cpu"
    kept, have = [], 0
    while have < n:
        idx = torch.randint(0, k, (max(2 * (n - have), 64), num_vars), generator=generator, device=device)
        ok = torch.ones(idx.shape[0], dtype=torch.bool, device=device)
        for a, b in itertools.combinations(range(num_vars), 2):
            ok &= idx[:, a] != idx[:, b]
        kept.append(idx[ok])
        have += int(ok.sum())
    return torch.cat(kept)[:n]
