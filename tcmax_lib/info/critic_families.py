"""What the DV bound reaches over a restricted critic family, on exact discrete tables (notebook 04).

For a joint table p[a, v, y] and the product of its marginals q = p(a) p(v) p(y), the Donsker-Varadhan
bound over a critic family F is

    sup_{T in F} E_p[T] - log E_q[e^T]  =  KL(p || q) - min_{T in F} KL(p || q_T),   q_T ∝ q e^T.

* 'full' critics T[a, v, y] (any table; an expressive fusion head) reach TC(a, v, y) = KL(p || q).
* 'additive' critics T = g_a[a, y] + g_v[v, y] (every linear fusion head: concat, sum, shared) make
  a and v independent given y under every q_T, so they reach TC - I(a; v | y) = I(a; y) + I(v; y):
  the sum of the unimodal objectives, not TC.

`dv_supremum` finds the supremum numerically (float64 L-BFGS) so the notebook and the tests can compare
it with these closed forms.
"""

from __future__ import annotations

import numpy as np
import torch

FAMILIES = ("full", "additive")


def dv_value(p: torch.Tensor, critic: torch.Tensor) -> torch.Tensor:
    """DV bound E_p[T] - log E_q[e^T] for a joint table p[a, v, y] and a critic table T (notebook 04)."""
    q = p.sum((1, 2))[:, None, None] * p.sum((0, 2))[None, :, None] * p.sum((0, 1))[None, None, :]
    return (p * critic).sum() - torch.logsumexp((torch.log(q) + critic).flatten(), 0)


def critic_table(family: str, params: list[torch.Tensor]) -> torch.Tensor:
    """The critic table T[a, v, y] of a family from its parameters (notebook 04)."""
    if family == "full":
        return params[0]
    if family == "additive":
        g_a, g_v = params                                                 # [A, Y], [V, Y]
        return g_a[:, None, :] + g_v[None, :, :]                         # [A, V, Y]
    raise ValueError(f"critic family {family!r}; use one of {FAMILIES}.")


def dv_supremum(p: np.ndarray | torch.Tensor, family: str = "full", max_iter: int = 500) -> float:
    """Largest DV bound over the critic family, found by float64 L-BFGS from T = 0 (notebook 04).

    The objective is concave in the critic (a linear term minus a log-sum-exp), so L-BFGS converges to
    the supremum; with a strictly positive table it is attained at a finite critic.
    """
    p = torch.as_tensor(p, dtype=torch.float64)
    if p.ndim != 3 or (p < 0).any() or abs(float(p.sum()) - 1.0) > 1e-9:
        raise ValueError(f"p must be a joint probability table [A, V, Y] summing to 1, got shape {tuple(p.shape)}.")
    a, v, y = p.shape
    shapes = {"full": [(a, v, y)], "additive": [(a, y), (v, y)]}
    if family not in shapes:
        raise ValueError(f"critic family {family!r}; use one of {FAMILIES}.")
    params = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in shapes[family]]
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = -dv_value(p, critic_table(family, params))
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(dv_value(p, critic_table(family, params)))


def random_table(shape: tuple[int, int, int] = (3, 3, 3), seed: int = 0, concentration: float = 1.0) -> np.ndarray:
    """A random joint table p[a, v, y] ~ Dirichlet(concentration), strictly positive, seeded (notebook 04)."""
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(int(np.prod(shape)), concentration)).reshape(shape)
