"""Training loops for neural MI / TC estimators, the Poole et al. staircase and its summary (notebooks 01-02)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from . import estimators as est
from .ground_truth import (
    r_for_tc,
    rho_for_mi,
    sample_correlated_gaussian,
    sample_gaussian_modalities,
)
from .runtime import Precision, pick_precision, seeded


@dataclass
class EstimatorSpec:
    """One estimator = a critic + the bound it is trained with ('dv', 'mine', 'nwj', 'infonce', 'js', 'smile').

    Introduced in notebook 01.
    """

    name: str
    critic: nn.Module
    bound: str
    clip: float | None = 5.0
    ema_rate: float = 0.01
    _mine: est.MINE | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.bound != "mine" and self.bound not in est.BOUNDS:
            raise ValueError(f"unknown bound {self.bound!r}; choose from {sorted(est.BOUNDS) + ['mine']}.")

    def value(self, scores: torch.Tensor) -> torch.Tensor:
        """The estimate this estimator reports (MINE reports the plain DV bound; SMILE uses its clip)."""
        if self.bound == "mine":
            return est.dv_bound(scores)
        if self.bound == "smile":
            return est.smile_bound(scores, self.clip)
        return est.BOUNDS[self.bound](scores)

    def objective(self, scores: torch.Tensor) -> torch.Tensor:
        """Training objective whose value is the reported estimate (to be maximised)."""
        if self.bound == "mine":  # same value as DV, EMA-corrected gradient
            if self._mine is None:
                self._mine = est.MINE(self.ema_rate)
            return self._mine(scores)
        return self.value(scores)


def make_critic(kind: str, dim: int, hidden: int = 256, layers: int = 2, embed: int = 32) -> nn.Module:
    """Build a 'concat' (joint) or 'separable' critic with Poole et al.'s default sizes (notebook 01)."""
    if kind == "concat":
        return est.ConcatCritic(dim, dim, hidden, layers)
    if kind == "separable":
        return est.SeparableCritic(dim, dim, hidden, layers, embed)
    raise ValueError(f"critic kind {kind!r} unknown; use 'concat' or 'separable'.")


def make_estimators(bounds: Sequence[str], critic: str = "concat", dim: int = 20, hidden: int = 256,
                    seed: int = 0, **bound_kw) -> list[EstimatorSpec]:
    """One freshly initialised critic per bound, seeded so every run starts from the same weights (notebook 01)."""
    specs = []
    for i, bound in enumerate(bounds):
        with seeded(seed * 1000 + i):
            specs.append(EstimatorSpec(name=bound, critic=make_critic(critic, dim, hidden), bound=bound, **bound_kw))
    return specs


def mi_staircase(levels: Sequence[float] = (2, 4, 6, 8, 10), steps_per_level: int = 4000) -> np.ndarray:
    """True MI for every step of the staircase schedule (nats) (notebook 01)."""
    return np.repeat(np.asarray(levels, dtype=float), steps_per_level)


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


def batched_default(device: str | torch.device) -> bool:
    """Whether `train_estimators(batched=None)` stacks the critics: on CUDA only (notebook 01).

    On CPU the vmapped step measured slower than one critic after another (bench_estimators.py): one
    critic's [K*K, hidden] activations fit in cache, four stacked do not. On CUDA, where small kernels
    are launch-bound, one batched step replaces four; that choice has not been measured here.
    """
    return torch.device(device).type == "cuda"


def train_estimators(specs: Sequence[EstimatorSpec], true_values: np.ndarray, dim: int = 20,
                     batch_size: int = 64, lr: float = 5e-4, seed: int = 0, device: str | torch.device = "cpu",
                     cubic: bool = False, progress: bool = True, precision: str | Precision | None = None,
                     batched: bool | None = None) -> pd.DataFrame:
    """Train every estimator on fresh correlated-Gaussian batches whose MI follows `true_values`.

    All critics see the same batch each step and share one Adam optimiser (their losses are
    independent, so this equals one optimiser each and one separate run each). `precision`
    ('auto'/'fp32'/'bf16', see `runtime.pick_precision`) runs the critics under bf16 autocast; scores
    are upcast, so bounds and the trace stay fp32. `auto` on a CPU uses bf16 for concat critics only
    (K^2 pairs a step); separable critics measured slower in bf16 there (`Precision.unless_small`).
    `batched=True` evaluates all critics as one vmapped call (`StackedCritics`); None picks it on CUDA
    only: on CPU it measured slower (benchmarks/bench_estimators.py). Values stay on the device until
    the end: the only per-step host sync is MINE's finite check of its moving average.
    Returns a tidy frame: step, estimator, estimate, true, joint, log_partition. Introduced in notebook 01.
    """
    device = torch.device(device)
    prec = precision if isinstance(precision, Precision) else pick_precision(device, precision)
    prec = prec.unless_small(all(isinstance(s.critic, est.ConcatCritic) for s in specs))   # K^2-row products
    batched = batched_default(device) if batched is None else batched
    for s in specs:
        s.critic.to(device).train()
    stacked = StackedCritics([s.critic for s in specs]) if batched else None
    params = list(stacked.params.values()) if stacked else [p for s in specs for p in s.critic.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator(device=device).manual_seed(seed)
    n = len(true_values)
    trace = torch.zeros(n, len(specs), 3, device=device)                  # estimate, joint term, log-partition
    rhos = [rho_for_mi(v, dim) for v in true_values]
    for step in tqdm(range(n), desc="training estimators", disable=not progress or None, leave=False):
        x, y = sample_correlated_gaussian(batch_size, dim, rhos[step], generator=gen, cubic=cubic)
        with prec.autocast():
            all_scores = stacked(x, y) if stacked else [s.critic(x, y) for s in specs]   # E x [K, K]
        loss, rows = 0.0, []
        for e, spec in enumerate(specs):
            scores = all_scores[e].float()                                # [K, K], bounds in fp32
            value = spec.objective(scores)
            loss = loss - value
            with torch.no_grad():
                rows.append(torch.stack([value, scores.diagonal().mean(), est.logmeanexp_offdiag(scores)]))
        trace[step] = torch.stack(rows).detach()                          # [E, 3]: one write a step
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if stacked:
        stacked.write_back()
    trace = trace.cpu().numpy()
    frames = [pd.DataFrame({"step": np.arange(n), "estimator": s.name, "estimate": trace[:, e, 0],
                            "true": true_values, "joint": trace[:, e, 1], "log_partition": trace[:, e, 2]})
              for e, s in enumerate(specs)]
    return pd.concat(frames, ignore_index=True)


@torch.no_grad()
def evaluate_estimators(specs: Sequence[EstimatorSpec], mi: float, dim: int = 20, batch_size: int = 64,
                        n_batches: int = 50, seed: int = 12345, device: str | torch.device = "cpu",
                        cubic: bool = False) -> pd.DataFrame:
    """Held-out estimate of each trained critic on `n_batches` fresh batches: mean and std per estimator.

    Introduced in notebook 01.
    """
    gen = torch.Generator(device=torch.device(device)).manual_seed(seed)
    rho = rho_for_mi(mi, dim)
    rows = []
    for _ in range(n_batches):
        x, y = sample_correlated_gaussian(batch_size, dim, rho, generator=gen, cubic=cubic)
        for s in specs:
            rows.append((s.name, float(s.value(s.critic.eval()(x, y)))))
    df = pd.DataFrame(rows, columns=["estimator", "estimate"])
    out = df.groupby("estimator", sort=False)["estimate"].agg(["mean", "std"]).reset_index()
    out["true"] = mi
    return out


def staircase_summary(history: pd.DataFrame, steps_per_level: int, tail: float = 0.2) -> pd.DataFrame:
    """Bias, variance and MSE of each estimator over the last `tail` fraction of every level (notebook 01)."""
    h = history.copy()
    h["level"] = h["step"] // steps_per_level
    pos = h["step"] % steps_per_level
    h = h[pos >= int(round((1 - tail) * steps_per_level))]
    err = h["estimate"] - h["true"]
    h = h.assign(err=err, sq=err ** 2)
    g = h.groupby(["estimator", "true"], sort=False)
    out = pd.DataFrame({"mean": g["estimate"].mean(), "bias": g["err"].mean(),
                        "variance": g["estimate"].var(ddof=0), "mse": g["sq"].mean()})
    return out.reset_index()


def optimal_critic_table(levels: Sequence[float], batch_sizes: Sequence[int], dim: int = 20,
                         n_batches: int = 200, seed: int = 0, smile_clip: float = 5.0) -> pd.DataFrame:
    """Bound values with the exact Gaussian log-ratio critic (no training): mean and std per level and K.

    SMILE is evaluated on the same critic with its partition scores clipped to [-smile_clip, smile_clip].

    Introduced in notebook 01.
    """
    from .ground_truth import gaussian_log_ratio

    gen = torch.Generator().manual_seed(seed)
    rows = []
    for k in batch_sizes:
        for mi in levels:
            rho = rho_for_mi(mi, dim)
            vals = {b: [] for b in ("infonce", "nwj", "dv", "smile")}
            for _ in range(n_batches):
                x, y = sample_correlated_gaussian(k, dim, rho, generator=gen)
                s = gaussian_log_ratio(x.double(), y.double(), rho)
                # NWJ's optimal critic is 1 + log ratio; DV and InfoNCE are shift-invariant
                vals["nwj"].append(float(est.nwj_bound(s + 1.0)))
                vals["smile"].append(float(est.smile_bound(s, smile_clip)))
                for b in ("infonce", "dv"):
                    vals[b].append(float(est.BOUNDS[b](s)))
            for b, v in vals.items():
                rows.append({"K": k, "true": mi, "bound": b, "mean": np.mean(v), "std": np.std(v)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- total correlation
def train_tc_estimator(critic: nn.Module, true_values: np.ndarray, num_vars: int = 3, dim: int = 20,
                       batch_size: int = 64, lr: float = 5e-4, seed: int = 0,
                       device: str | torch.device = "cpu", progress: bool = True,
                       sampler: Callable | None = None, negatives: int | None = None,
                       name: str = "TCNE") -> pd.DataFrame:
    """Train a PairwiseTCCritic with the TCNE bound on a TC staircase (notebook 02).

    `true_values` is the TC per step. Batches come from `sample_gaussian_modalities` (equicorrelated
    coordinates) unless `sampler(n, tc, generator)` is given. The negatives are all K!/(K-M)! tuples of
    distinct indices (`negatives=None`, a [K]^M score tensor) or `negatives` such tuples drawn uniformly
    each step (for M >= 4, where the full tensor is too large).
    """
    device = torch.device(device)
    critic.to(device).train()
    opt = torch.optim.Adam(critic.parameters(), lr=lr)
    gen = torch.Generator(device=device).manual_seed(seed)
    mask = est.distinct_index_mask(batch_size, num_vars, device) if negatives is None else None
    r_of = {v: r_for_tc(v, num_vars, dim) for v in np.unique(true_values)}
    sample = sampler or (lambda n, tc, g: sample_gaussian_modalities(n, num_vars, dim, r_of[tc], generator=g))
    aligned = torch.arange(batch_size, device=device)[:, None].expand(batch_size, num_vars)
    trace = torch.zeros(len(true_values), device=device)
    for step in tqdm(range(len(true_values)), desc="training TCNE", disable=not progress or None, leave=False):
        zs = sample(batch_size, float(true_values[step]), gen)
        if negatives is None:
            value = est.tcne_from_tensor(critic(zs), mask)
        else:
            index = est.sample_distinct_tuples(batch_size, num_vars, negatives, gen)        # [N, M]
            value = est.tcne_bound(critic.score_tuples(zs, aligned), critic.score_tuples(zs, index))
        opt.zero_grad(set_to_none=True)
        (-value).backward()
        opt.step()
        trace[step] = value.detach()
    return pd.DataFrame({"step": np.arange(len(true_values)), "estimator": name,
                         "estimate": trace.cpu().numpy(), "true": true_values})
