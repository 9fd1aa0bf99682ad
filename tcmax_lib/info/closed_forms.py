"""Closed-form ground truths (all in nats) and samplers with known MI / TC.

Gaussian MI:  I = -(d/2) log(1 - rho^2)  for d coordinates each correlated by rho.
Gaussian TC:  TC = 1/2 [sum_i log det Sigma_ii - log det Sigma].
Discrete:     exact entropies, MI and TC of a probability table by enumeration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..checks import integer, open_interval, real


def nats_to_bits(x: float) -> float:
    """Convert nats to bits (notebook 00)."""
    return x / math.log(2.0)


# ----------------------------------------------------------------------------- two variables
def gaussian_mi(rho: float, dim: int = 1) -> float:
    """MI of x, y in R^dim with coordinate-wise correlation rho: -(dim/2) log(1 - rho^2) (notebook 00)."""
    rho, dim = open_interval(rho, "rho", -1.0, 1.0), integer(dim, "dim", hint="coordinates")
    return -0.5 * dim * math.log1p(-rho * rho)


def rho_for_mi(mi: float, dim: int = 1) -> float:
    """Inverse of `gaussian_mi`: the correlation that gives `mi` nats over `dim` coordinates (notebook 00)."""
    mi, dim = real(mi, "mi", minimum=0.0), integer(dim, "dim", hint="coordinates")
    rho = math.sqrt(-math.expm1(-2.0 * mi / dim))
    if rho >= 1.0:
        raise ValueError(f"mi={mi} nats over {dim} coordinates needs a correlation that rounds to 1 in float64; "
                         "use more coordinates or less MI.")
    return rho


def sample_correlated_gaussian(n: int, dim: int, rho: float, generator: torch.Generator | None = None,
                               cubic: bool = False, device: torch.device | str = "cpu"):
    """Draw n pairs x ~ N(0, I), y = rho x + sqrt(1 - rho^2) eps; `cubic` maps y -> y^3 (MI unchanged) (notebook 01)."""
    n, dim, rho = integer(n, "n", hint="samples"), integer(dim, "dim", hint="coordinates"), real(rho, "rho")
    if not -1.0 <= rho <= 1.0:
        raise ValueError(f"rho={rho:g} is a correlation and must lie in [-1, 1].")
    device = generator.device if generator is not None else device
    x = torch.randn(n, dim, generator=generator, device=device)                 # [n, dim]
    eps = torch.randn(n, dim, generator=generator, device=device)               # [n, dim]
    y = rho * x + math.sqrt(1.0 - rho * rho) * eps                              # [n, dim]
    return x, (y ** 3 if cubic else y)


def gaussian_log_ratio(x: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
    """Optimal critic log p(y_j|x_i) - log p(y_j) for all pairs: returns a [K, K] score matrix (notebook 01)."""
    if isinstance(rho, bool) or not isinstance(rho, int | float) or not -1.0 < rho < 1.0:
        raise ValueError(f"rho={rho!r}: the correlation of a Gaussian pair lies strictly between -1 and 1 (at +-1 the "
                         "mutual information is infinite and the log ratio undefined).")
    s2 = 1.0 - rho * rho
    diff = y[None, :, :] - rho * x[:, None, :]                                  # [K, K, d]
    log_cond = -0.5 * (diff ** 2).sum(-1) / s2 - 0.5 * x.shape[1] * math.log(s2)  # [K, K]
    log_marg = -0.5 * (y ** 2).sum(-1)                                          # [K]
    return log_cond - log_marg[None, :]


# ----------------------------------------------------------------------------- total correlation
def gaussian_tc(cov: np.ndarray | torch.Tensor, blocks: Sequence[int]) -> float:
    """TC of jointly Gaussian blocks of sizes `blocks`: 1/2 [sum_i log det S_ii - log det S] (notebook 01)."""
    cov = np.asarray(cov, dtype=np.float64)
    blocks = [integer(b, "a block size") for b in blocks]
    if cov.ndim != 2 or cov.shape[0] != sum(blocks) or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"cov has shape {cov.shape} but blocks {list(blocks)} sum to {sum(blocks)}.")
    if not np.isfinite(cov).all() or not np.allclose(cov, cov.T):
        raise ValueError("cov must be a finite, symmetric covariance matrix.")
    edges = np.cumsum([0, *blocks])
    parts = sum(np.linalg.slogdet(cov[a:b, a:b])[1] for a, b in zip(edges[:-1], edges[1:]))
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0:
        raise ValueError("cov is not positive definite.")
    return float(0.5 * (parts - logdet))


def equicorrelated_tc(n: int, r: float, dim: int = 1) -> float:
    """TC of n unit-variance variables with all pairwise correlations r, repeated over `dim` coordinates.

    Introduced in notebook 00.
    """
    n, dim, r = integer(n, "n", minimum=2, hint="TC needs at least two variables"), integer(dim, "dim"), real(r, "r")
    if not -1.0 / (n - 1) < r < 1.0:
        raise ValueError(f"r={r} gives no valid correlation matrix for n={n}.")
    return -0.5 * dim * ((n - 1) * math.log1p(-r) + math.log1p((n - 1) * r))


def r_for_tc(tc: float, n: int, dim: int = 1) -> float:
    """Inverse of `equicorrelated_tc` for r in [0, 1): bisection to 1e-12 (notebook 02)."""
    tc, dim = real(tc, "tc", minimum=0.0), integer(dim, "dim", hint="coordinates")
    n = integer(n, "n", minimum=2, hint="total correlation needs at least two variables")
    reachable = equicorrelated_tc(n, 1.0 - 1e-12, dim)
    if tc > reachable:
        raise ValueError(f"tc={tc} nats is out of reach for {n} variables x {dim} coordinates in float64 "
                         f"(at most {reachable:.1f}); use more coordinates or less TC.")
    lo, hi = 0.0, 1.0 - 1e-12
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if equicorrelated_tc(n, mid, dim) < tc else (lo, mid)
    return 0.5 * (lo + hi)


def sample_gaussian_modalities(n: int, num_vars: int, dim: int, r: float,
                               generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Draw `num_vars` variables in R^dim whose coordinate k is equicorrelated (r) across variables (notebook 01)."""
    n, num_vars, dim = integer(n, "n"), integer(num_vars, "num_vars"), integer(dim, "dim")
    r = real(r, "r")
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"r={r:g}: this sampler mixes a shared and an own part, so r must lie in [0, 1].")
    device = generator.device if generator is not None else "cpu"
    shared = torch.randn(n, 1, dim, generator=generator, device=device)          # [n, 1, dim]
    own = torch.randn(n, num_vars, dim, generator=generator, device=device)      # [n, M, dim]
    z = math.sqrt(r) * shared + math.sqrt(1.0 - r) * own                         # [n, M, dim]
    return list(z.unbind(1))


def sample_paired_gaussians(n: int, tc: float, dim: int = 20, generator: torch.Generator | None = None
                            ) -> list[torch.Tensor]:
    """Bai et al.'s TC staircase data: 4 variables in R^dim, two independent correlated pairs of MI tc/2 each.

    TC(z_1, z_2, z_3, z_4) = I(z_1; z_2) + I(z_3; z_4) = tc (notebook 02).
    """
    rho = rho_for_mi(real(tc, "tc", minimum=0.0) / 2, dim)
    z1, z2 = sample_correlated_gaussian(n, dim, rho, generator=generator)
    z3, z4 = sample_correlated_gaussian(n, dim, rho, generator=generator)
    return [z1, z2, z3, z4]


def equicorrelated_log_ratio(zs: Sequence[torch.Tensor], r: float) -> torch.Tensor:
    """Optimal TC critic log p(z_1..z_M) - sum_m log p(z_m) for aligned tuples: returns [n] (notebook 01)."""
    z = torch.stack(list(zs), dim=-1)                                            # [n, d, M]
    m = z.shape[-1]
    if m < 2 or not -1.0 / (m - 1) < real(r, "r") < 1.0:
        raise ValueError(f"r={r} with {m} variables gives no positive-definite correlation matrix: use M >= 2 and "
                         f"-1/(M-1) < r < 1.")
    corr = torch.full((m, m), r, dtype=z.dtype) + (1 - r) * torch.eye(m, dtype=z.dtype)
    precision_minus_eye = torch.linalg.inv(corr) - torch.eye(m, dtype=z.dtype)
    quad = torch.einsum("ndi,ij,ndj->n", z, precision_minus_eye, z)             # [n]
    return -0.5 * quad - 0.5 * z.shape[1] * torch.logdet(corr)


# ----------------------------------------------------------------------------- discrete tables
def _check_table(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if (p < 0).any() or not math.isclose(p.sum(), 1.0, rel_tol=1e-9):
        raise ValueError("a probability table must be non-negative and sum to 1.")
    return p


def entropy(p: np.ndarray, axes: Sequence[int] | None = None) -> float:
    """Entropy (nats) of the marginal of table `p` over `axes` (all axes when None) (notebook 00)."""
    p = _check_table(p)
    keep = range(p.ndim) if axes is None else tuple(axes)
    drop = tuple(a for a in range(p.ndim) if a not in keep)
    q = p.sum(axis=drop).ravel() if drop else p.ravel()
    q = q[q > 0]
    return float(-(q * np.log(q)).sum())


def mutual_information(p: np.ndarray, a: Sequence[int], b: Sequence[int], given: Sequence[int] = ()) -> float:
    """Exact I(A; B | C) of a discrete table from entropies (notebook 02)."""
    a, b, c = tuple(a), tuple(b), tuple(given)
    return entropy(p, a + c) + entropy(p, b + c) - entropy(p, a + b + c) - (entropy(p, c) if c else 0.0)


def total_correlation(p: np.ndarray) -> float:
    """Exact TC = sum_i H(X_i) - H(X_1..X_n) of a discrete table (notebook 02)."""
    p = _check_table(p)
    return sum(entropy(p, (i,)) for i in range(p.ndim)) - entropy(p)


def xor_table(flip: float = 0.0) -> np.ndarray:
    """Joint table of (x1, x2, x3) with x1, x2 fair independent bits and x3 = x1 XOR x2 (flipped w.p. `flip`).

    Introduced in notebook 02.
    """
    flip = real(flip, "flip")
    if not 0.0 <= flip <= 1.0:
        raise ValueError(f"flip={flip:g} is a probability and must lie in [0, 1].")
    p = np.zeros((2, 2, 2))
    for x1 in range(2):
        for x2 in range(2):
            p[x1, x2, x1 ^ x2] += 0.25 * (1 - flip)
            p[x1, x2, 1 - (x1 ^ x2)] += 0.25 * flip
    return p


def sample_table(p: np.ndarray, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw n index tuples from a discrete table: returns a LongTensor [n, ndim] (notebook 02)."""
    p, n = _check_table(p), integer(n, "n", hint="samples")
    flat = torch.multinomial(torch.as_tensor(p.ravel()), n, replacement=True, generator=generator)
    return torch.stack(torch.unravel_index(flat, p.shape), dim=1)
