"""Training loops for neural MI / TC estimators, the Poole et al. staircase, its summary and the optimal-critic
table (notebooks 01-02)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ..checks import check_estimates
from ..runtime import Precision, check_device, pick_precision, progress_off, seeded
from . import bounds
from .closed_forms import (
    r_for_tc,
    rho_for_mi,
    sample_correlated_gaussian,
    sample_gaussian_modalities,
)
from .critics import ConcatCritic, StackedCritics, make_critic


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
    _mine: bounds.MINE | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.bound != "mine" and self.bound not in bounds.BOUNDS:
            raise ValueError(f"unknown bound {self.bound!r}; choose from {sorted(bounds.BOUNDS) + ['mine']}.")

    def value(self, scores: torch.Tensor) -> torch.Tensor:
        """The estimate this estimator reports (MINE reports the plain DV bound; SMILE uses its clip)."""
        if self.bound == "mine":
            return bounds.dv_bound(scores)
        if self.bound == "smile":
            return bounds.smile_bound(scores, self.clip)
        return bounds.BOUNDS[self.bound](scores)

    def objective(self, scores: torch.Tensor) -> torch.Tensor:
        """Training objective whose value is the reported estimate (to be maximised)."""
        if self.bound == "mine":  # same value as DV, EMA-corrected gradient
            if self._mine is None:
                self._mine = bounds.MINE(self.ema_rate)
            return self._mine(scores)
        return self.value(scores)


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


def batched_default(device: str | torch.device) -> bool:
    """Whether `train_estimators(batched=None)` stacks the critics: on CUDA only (notebook 01).

    On CPU the vmapped step measured slower than one critic after another (bench_estimators.py): one
    critic's [K*K, hidden] activations fit in cache, four stacked do not. On CUDA, where small kernels
    are launch-bound, one batched step replaces four; that choice has not been measured here.
    """
    return torch.device(device).type == "cuda"


def compile_critic(critic: nn.Module, x: torch.Tensor, y: torch.Tensor, prec: Precision) -> tuple[Callable, float]:
    """`torch.compile` a critic and compile it now, on one forward+backward; (critic to call, compile seconds).

    Where compilation fails (no C++ compiler, an unsupported op) it warns and returns the eager critic, so
    training goes on unchanged. Measured in benchmarks/bench_estimators.py (notebook 01).
    """
    compiled = torch.compile(critic, dynamic=False)
    t0 = time.perf_counter()
    try:
        with prec.autocast():
            compiled(x, y).float().sum().backward()
    except Exception as exc:  # noqa: BLE001 - any compiler failure means: train eagerly, and say so
        warnings.warn(f"torch.compile failed for {type(critic).__name__} ({type(exc).__name__}: "
                      f"{str(exc)[:200]}); training it without compilation", RuntimeWarning, stacklevel=2)
        compiled = critic
    critic.zero_grad(set_to_none=True)
    return compiled, time.perf_counter() - t0


def train_estimators(specs: Sequence[EstimatorSpec], true_values: np.ndarray, dim: int = 20,
                     batch_size: int = 64, lr: float = 5e-4, seed: int = 0, device: str | torch.device = "cpu",
                     cubic: bool = False, progress: bool = True, precision: str | Precision | None = None,
                     batched: bool | None = None, compile: bool = False, check_finite: bool = True) -> pd.DataFrame:
    """Train every estimator on fresh correlated-Gaussian batches whose MI follows `true_values`.

    All critics see the same batch each step and share one Adam optimiser (their losses are
    independent, so this equals one optimiser each and one separate run each). `precision`
    ('auto'/'fp32'/'bf16', see `runtime.pick_precision`) runs the critics under bf16 autocast; scores
    are upcast, so bounds and the trace stay fp32. `auto` on a CPU uses bf16 for concat critics only
    (K^2 pairs a step); separable critics measured slower in bf16 there (`Precision.unless_small`).
    `batched=True` evaluates all critics as one vmapped call (`StackedCritics`); None picks it on CUDA
    only: on CPU it measured slower (benchmarks/bench_estimators.py). Values stay on the device until
    the end; the per-step host syncs are `check_estimates` (`check_finite`: a NaN/inf or exploding
    estimate stops training before the update) and MINE's finite check of its moving average. `compile=True`
    runs each critic through `torch.compile` (`compile_critic`; eager where that fails); its compile time
    is in the frame's `attrs["compile_s"]`.
    Returns a tidy frame: step, estimator, estimate, true, joint, log_partition. Introduced in notebook 01.
    """
    device = check_device(device)
    prec = precision if isinstance(precision, Precision) else pick_precision(device, precision)
    prec = prec.unless_small(all(isinstance(s.critic, ConcatCritic) for s in specs))   # K^2-row products
    batched = batched_default(device) if batched is None else batched
    if compile and batched:
        raise ValueError("compile=True compiles each critic on its own; pass batched=False with it.")
    for s in specs:
        s.critic.to(device).train()
    stacked = StackedCritics([s.critic for s in specs]) if batched else None
    params = list(stacked.params.values()) if stacked else [p for s in specs for p in s.critic.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator(device=device).manual_seed(seed)
    n = len(true_values)
    trace = torch.zeros(n, len(specs), 3, device=device)                  # estimate, joint term, log-partition
    rhos = [rho_for_mi(v, dim) for v in true_values]
    critics, compile_s = [s.critic for s in specs], 0.0
    if compile:
        x, y = sample_correlated_gaussian(batch_size, dim, rhos[0], generator=torch.Generator(device).manual_seed(-1))
        critics, seconds = zip(*(compile_critic(c, x, y, prec) for c in critics))
        compile_s = sum(seconds)
    for step in tqdm(range(n), desc="training estimators", disable=progress_off(progress), leave=False):
        x, y = sample_correlated_gaussian(batch_size, dim, rhos[step], generator=gen, cubic=cubic)
        with prec.autocast():
            all_scores = stacked(x, y) if stacked else [c(x, y) for c in critics]   # E x [K, K]
        loss, rows = 0.0, []
        for e, spec in enumerate(specs):
            scores = all_scores[e].float()                                # [K, K], bounds in fp32
            value = spec.objective(scores)
            loss = loss - value
            with torch.no_grad():
                rows.append(torch.stack([value, scores.diagonal().mean(), bounds.logmeanexp_offdiag(scores)]))
        trace[step] = torch.stack(rows).detach()                          # [E, 3]: one write a step
        if check_finite:
            check_estimates([r[0] for r in rows], [s.name for s in specs], step, lr, (x, y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if stacked:
        stacked.write_back()
    trace = trace.cpu().numpy()
    frames = [pd.DataFrame({"step": np.arange(n), "estimator": s.name, "estimate": trace[:, e, 0],
                            "true": true_values, "joint": trace[:, e, 1], "log_partition": trace[:, e, 2]})
              for e, s in enumerate(specs)]
    out = pd.concat(frames, ignore_index=True)
    out.attrs["compile_s"] = compile_s
    return out


@torch.no_grad()
def evaluate_estimators(specs: Sequence[EstimatorSpec], mi: float, dim: int = 20, batch_size: int = 64,
                        n_batches: int = 50, seed: int = 12345, device: str | torch.device = "cpu",
                        cubic: bool = False) -> pd.DataFrame:
    """Held-out estimate of each trained critic on `n_batches` fresh batches: mean and std per estimator.

    Introduced in notebook 01.
    """
    gen = torch.Generator(device=check_device(device)).manual_seed(seed)
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
    from .closed_forms import gaussian_log_ratio

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
                vals["nwj"].append(float(bounds.nwj_bound(s + 1.0)))
                vals["smile"].append(float(bounds.smile_bound(s, smile_clip)))
                for b in ("infonce", "dv"):
                    vals[b].append(float(bounds.BOUNDS[b](s)))
            for b, v in vals.items():
                rows.append({"K": k, "true": mi, "bound": b, "mean": np.mean(v), "std": np.std(v)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- total correlation
def train_tc_estimator(critic: nn.Module, true_values: np.ndarray, num_vars: int = 3, dim: int = 20,
                       batch_size: int = 64, lr: float = 5e-4, seed: int = 0,
                       device: str | torch.device = "cpu", progress: bool = True,
                       sampler: Callable | None = None, negatives: int | None = None,
                       name: str = "TCNE", check_finite: bool = True) -> pd.DataFrame:
    """Train a PairwiseTCCritic with the TCNE bound on a TC staircase (notebook 02).

    `true_values` is the TC per step. Batches come from `sample_gaussian_modalities` (equicorrelated
    coordinates) unless `sampler(n, tc, generator)` is given. The negatives are all K!/(K-M)! tuples of
    distinct indices (`negatives=None`, a [K]^M score tensor) or `negatives` such tuples drawn uniformly
    each step (for M >= 4, where the full tensor is too large). `check_finite` stops training before
    the update of a step whose estimate is NaN/inf or exploding (`check_estimates`), naming a bad input row.
    """
    device = check_device(device)
    critic.to(device).train()
    opt = torch.optim.Adam(critic.parameters(), lr=lr)
    gen = torch.Generator(device=device).manual_seed(seed)
    mask = bounds.distinct_index_mask(batch_size, num_vars, device) if negatives is None else None
    r_of = {v: r_for_tc(v, num_vars, dim) for v in np.unique(true_values)}
    sample = sampler or (lambda n, tc, g: sample_gaussian_modalities(n, num_vars, dim, r_of[tc], generator=g))
    aligned = torch.arange(batch_size, device=device)[:, None].expand(batch_size, num_vars)
    trace = torch.zeros(len(true_values), device=device)
    for step in tqdm(range(len(true_values)), desc="training TCNE", disable=progress_off(progress), leave=False):
        zs = sample(batch_size, float(true_values[step]), gen)
        if negatives is None:
            value = bounds.tcne_from_tensor(critic(zs), mask)
        else:
            index = bounds.sample_distinct_tuples(batch_size, num_vars, negatives, gen)        # [N, M]
            value = bounds.tcne_bound(critic.score_tuples(zs, aligned), critic.score_tuples(zs, index))
        if check_finite:
            check_estimates([value], [name], step, lr, zs)
        opt.zero_grad(set_to_none=True)
        (-value).backward()
        opt.step()
        trace[step] = value.detach()
    return pd.DataFrame({"step": np.arange(len(true_values)), "estimator": name,
                         "estimate": trace.cpu().numpy(), "true": true_values})
