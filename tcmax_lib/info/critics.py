"""Critics: the networks whose scores the bounds in `bounds.py` turn into MI and TC estimates (notebooks 01-02).

Convention (Poole et al. 2019): an MI critic returns a K x K score matrix S with S[i, j] = T(x_i, y_j);
a TC critic of M variables returns a tensor [K]*M of scores for every index tuple.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence

import torch
from torch import nn

from .. import checks
from ..layers import mlp


class ConcatCritic(nn.Module):
    """Joint critic T(x, y) = MLP([x, y]) evaluated on all K x K pairs of a batch (notebook 01)."""

    def __init__(self, dim_x: int, dim_y: int, hidden: int = 256, layers: int = 2):
        super().__init__()
        self.first_x = nn.Linear(dim_x, hidden)               # first layer split in two: W[x; y] = Wx x + Wy y
        self.first_y = nn.Linear(dim_y, hidden, bias=False)
        self.rest = mlp([hidden] * layers + [1])
        self.dims = (dim_x, dim_y)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Return scores [K, K] with entry [i, j] = T(x_i, y_j)."""
        checks.feature_widths((x, y), self.dims, "ConcatCritic")
        h = self.first_x(x)[:, None, :] + self.first_y(y)[None, :, :]  # [K, K, hidden]
        return self.rest(torch.relu(h)).squeeze(-1)                     # [K, K]


class SeparableCritic(nn.Module):
    """Separable critic T(x, y) = g(x) . h(y) with two MLP embeddings (notebook 01)."""

    def __init__(self, dim_x: int, dim_y: int, hidden: int = 256, layers: int = 2, embed: int = 32):
        super().__init__()
        self.g = mlp([dim_x] + [hidden] * layers + [embed])
        self.h = mlp([dim_y] + [hidden] * layers + [embed])
        self.dims = (dim_x, dim_y)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Return scores [K, K] with entry [i, j] = g(x_i) . h(y_j)."""
        checks.feature_widths((x, y), self.dims, "SeparableCritic")
        return self.g(x) @ self.h(y).T                                   # [K, embed] @ [embed, K] -> [K, K]


def make_critic(kind: str, dim: int, hidden: int = 256, layers: int = 2, embed: int = 32) -> nn.Module:
    """Build a 'concat' (joint) or 'separable' critic with Poole et al.'s default sizes (notebook 01)."""
    if kind == "concat":
        return ConcatCritic(dim, dim, hidden, layers)
    if kind == "separable":
        return SeparableCritic(dim, dim, hidden, layers, embed)
    raise ValueError(f"critic kind {kind!r} unknown; use 'concat' or 'separable'.")


class StackedCritics:
    """E critics of identical architecture evaluated as one vmapped call on stacked parameters (notebook 01).

    `torch.func.stack_module_state` turns the E critics into one set of [E, ...] leaf tensors, the
    parameters of one optimiser; `write_back` copies the trained values into the original modules.
    """

    def __init__(self, critics: Sequence[nn.Module]):
        shapes = [[(n, p.shape) for n, p in c.named_parameters()] for c in critics]
        if any(type(c) is not type(critics[0]) for c in critics) or any(s != shapes[0] for s in shapes):
            raise ValueError("batched training needs critics of one class and identical parameter shapes; "
                             "use batched=False for mixed critics.")
        self.critics = list(critics)
        params, self.buffers = torch.func.stack_module_state(self.critics)
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}   # [E, ...] leaves
        self._base = copy.deepcopy(self.critics[0]).to("meta")          # structure only, no storage

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Scores of every critic on one batch: [E, K, K]."""
        def one(p: dict, b: dict) -> torch.Tensor:
            return torch.func.functional_call(self._base, (p, b), (x, y))
        return torch.func.vmap(one)(self.params, self.buffers)

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy the stacked (trained) parameters into the original critic modules."""
        for e, critic in enumerate(self.critics):
            for name, p in critic.named_parameters():
                p.copy_(self.params[name][e])


class PairwiseTCCritic(nn.Module):
    """TC critic with unary and pairwise terms: T = sum_a u_a(z_a) + sum_{a<b} e_ab(z_a) . e_ba(z_b).

    Every pairwise bilinear-plus-unary form (e.g. the exact Gaussian log ratio, a quadratic form)
    is representable, and scores for all K^M index tuples come from M small matrix products.
    Introduced in notebook 02.
    """

    def __init__(self, dims: Sequence[int], hidden: int = 256, layers: int = 2, embed: int = 32):
        super().__init__()
        self.num_vars, self.embed = len(dims), embed
        out = (self.num_vars - 1) * embed + 1
        self.nets = nn.ModuleList([mlp([d] + [hidden] * layers + [out]) for d in dims])
        self.dims = tuple(dims)

    def forward(self, zs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Return scores for all index tuples: a tensor [K]*M."""
        checks.feature_widths(zs, self.dims, "PairwiseTCCritic")
        m, e = self.num_vars, self.embed
        outs = [net(z) for net, z in zip(self.nets, zs)]                # M x [K, (M-1)*e + 1]
        k = zs[0].shape[0]
        total = torch.zeros((k,) * m, device=zs[0].device, dtype=outs[0].dtype)
        for a in range(m):
            shape = [1] * m
            shape[a] = k
            total = total + outs[a][:, -1].view(shape)                   # unary term u_a
        for a, b in itertools.combinations(range(m), 2):
            ea = outs[a][:, self._slot(a, b) * e:(self._slot(a, b) + 1) * e]   # [K, e]
            eb = outs[b][:, self._slot(b, a) * e:(self._slot(b, a) + 1) * e]   # [K, e]
            shape = [1] * m
            shape[a], shape[b] = k, k
            total = total + (ea @ eb.T).view(shape)                      # [K, K] placed on axes (a, b)
        return total

    def score_tuples(self, zs: Sequence[torch.Tensor], index: torch.Tensor) -> torch.Tensor:
        """Scores of given index tuples index[n] = (j_1, ..., j_M): returns [N] (sampled negatives).

        Builds the M unary vectors [K] and the M(M-1)/2 pairwise matrices [K, K] once, then gathers
        one scalar per term and tuple: O(M^2 N) after an O(M^2 K^2 e) set-up.
        """
        checks.feature_widths(zs, self.dims, "PairwiseTCCritic")
        m, e = self.num_vars, self.embed
        outs = [net(z) for net, z in zip(self.nets, zs)]                # M x [K, (M-1)*e + 1]
        k = outs[0].shape[0]
        total = sum(outs[a][:, -1][index[:, a]] for a in range(m))      # [N] unary terms
        for a, b in itertools.combinations(range(m), 2):
            ea = outs[a][:, self._slot(a, b) * e:(self._slot(a, b) + 1) * e]   # [K, e]
            eb = outs[b][:, self._slot(b, a) * e:(self._slot(b, a) + 1) * e]   # [K, e]
            total = total + (ea @ eb.T).flatten()[index[:, a] * k + index[:, b]]  # [K, K] -> [N]
        return total

    @staticmethod
    def _slot(a: int, b: int) -> int:
        return b if b < a else b - 1


class TableCritic(nn.Module):
    """Critic for discrete variables: one learnable score per value tuple, T[x_1, ..., x_M] (notebook 02)."""

    def __init__(self, cardinalities: Sequence[int]):
        super().__init__()
        self.table = nn.Parameter(torch.zeros(*cardinalities))

    def forward(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Scores for all index tuples of a batch of integer codes: a tensor [K]*M."""
        if len(xs) != self.table.ndim:
            raise ValueError(f"critic built for {self.table.ndim} variables, got {len(xs)}.")
        grids = torch.meshgrid(*xs, indexing="ij")                        # M x [K]*M value codes
        return self.table[grids]
