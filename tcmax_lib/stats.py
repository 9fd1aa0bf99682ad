"""The statistics every comparison uses, each a thin wrapper of scipy or statsmodels (notebook 07).

    mean_ci(values)                      -> Interval: the mean over seeds with its Student-t interval
    paired_difference(a, b)              -> Interval: mean of a_s - b_s over paired seeds, t-interval and p-value
    holm(pvalues)                        -> Holm-adjusted p-values of a family (equal to statsmodels `multipletests`)
    tost_paired(a, b, margin)            -> p-value of "|mean(a - b)| < margin" (statsmodels `ttost_paired`)
    paired_power(effect, n, alpha)       -> the power of the paired t-test (scipy's noncentral t, as `TTestPower`)
    detectable_difference(sd, n, alpha)  -> the paired difference a test finds with 80 % power
    seeds_needed(sd, difference, alpha)  -> the number of paired seeds for that power

Seeds are paired across methods (the same data, batch order and initialisation where the architectures
allow), so differences are taken seed by seed: the seed-to-seed variation that every method shares cancels.
The intervals are over *training* seeds: where every seed is scored on one fixed test set (AV digits), they
say nothing about how a fresh test set would vary. How these become a verdict is `readings`.
`tests/test_stats.py` checks each function against the library it wraps and against the obvious formula.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st


@dataclass(frozen=True)
class Interval:
    """A mean over n seeds with its two-sided Student-t interval [lo, hi] at `level` (notebook 07).

    `p` is the two-sided p-value of the t-test of mean 0 (for a paired difference: the paired t-test).
    """

    mean: float
    lo: float
    hi: float
    n: int
    level: float = 0.95
    p: float = float("nan")

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    def contains(self, value: float) -> bool:
        """Whether `value` lies inside the closed interval (notebook 07)."""
        return self.lo <= value <= self.hi

    @property
    def side(self) -> str:
        """Where the interval lies relative to 0: '> 0', '< 0' or 'contains 0', before any adjustment (nb 07)."""
        return "> 0" if self.lo > 0 else "< 0" if self.hi < 0 else "contains 0"

    def signed(self, digits: int = 3) -> str:
        """A difference as 'mean ± half-width (side of 0)', e.g. '+0.012 ± 0.010 (> 0)' (notebook 07)."""
        return f"{self.mean:+.{digits}f} ± {self.half_width:.{digits}f} ({self.side})"

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.half_width:.3f}"


def _values(values: Sequence[float], what: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"{what}: give one value per seed as a flat list; got an array of shape {v.shape}.")
    if v.size < 2:
        raise ValueError(f"{what}: an interval needs at least 2 values (seeds), got {v.size}.")
    if not np.isfinite(v).all():
        raise ValueError(f"{what}: the values hold NaN/inf: {v.tolist()}.")
    return v


def _level(level: float, what: str = "level") -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"{what}={level}: a probability lies strictly between 0 and 1, e.g. 0.95 (or 0.05).")
    return float(level)


def mean_ci(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean of per-seed values with its Student-t interval: mean ± t_{n-1} s / sqrt(n) (notebook 07).

    scipy's one-sample t-test gives the interval and the p-value of mean 0; a zero spread (every seed the
    same, e.g. 300/300 at a ceiling) gives a zero-width interval and p = 0 if the mean is not 0.
    """
    v, level = _values(values, "mean_ci"), _level(level)
    n, mean, sd = v.size, float(v.mean()), float(v.std(ddof=1))
    if sd == 0.0:                                                    # scipy returns NaN here; the limit is exact
        return Interval(mean, mean, mean, n, level, 1.0 if mean == 0.0 else 0.0)
    res = _st.ttest_1samp(v, 0.0)
    ci = res.confidence_interval(level)
    return Interval(mean, float(ci.low), float(ci.high), n, level, float(res.pvalue))


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Interval:
    """Mean of a_s - b_s over paired seeds with the paired t-test's interval and p-value (notebook 07)."""
    a, b = _values(a, "paired_difference (a)"), _values(b, "paired_difference (b)")
    if a.size != b.size:
        raise ValueError(f"paired_difference: {a.size} and {b.size} values; pairing needs one value per seed in both.")
    return mean_ci(a - b, level)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values: max over j <= i of (m - j) p_(j), capped at 1 (nb 07).

    Rejecting every adjusted p-value below alpha keeps the chance of any false "resolved" in the family at
    most alpha, whatever the number of true differences. The values equal statsmodels' `multipletests(p,
    method="holm")` (tested on random families); it is not called here because it runs a full garbage
    collection on every call, which costs about 0.07 s in a bare process and 0.4 s inside the test suite.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or not np.all((p >= 0) & (p <= 1)):
        raise ValueError(f"holm: give a flat, non-empty list of p-values in [0, 1]; got {p.tolist()}.")
    order = np.argsort(p, kind="stable")
    steps = np.maximum.accumulate((p.size - np.arange(p.size)) * p[order])   # (m - j) p_(j), running max
    out = np.empty_like(p)
    out[order] = np.minimum(steps, 1.0)
    return [float(x) for x in out]


def tost_paired(a: Sequence[float], b: Sequence[float], margin: float) -> float:
    """p-value of the paired TOST: both one-sided tests that -margin < mean(a - b) < margin (nb 07).

    statsmodels `ttost_paired`. Equivalence within ±margin is shown at level alpha when p < alpha; an
    interval that merely contains 0 shows nothing of the kind.
    """
    from statsmodels.stats.weightstats import ttost_paired

    a, b = _values(a, "tost_paired (a)"), _values(b, "tost_paired (b)")
    if a.size != b.size:
        raise ValueError(f"tost_paired: {a.size} and {b.size} values; pairing needs one value per seed in both.")
    if not margin > 0:
        raise ValueError(f"tost_paired: margin={margin}; an equivalence margin is a positive number.")
    d = a - b
    if float(d.std(ddof=1)) == 0.0:                                  # no spread: the limit of the test is exact
        return 0.0 if abs(float(d.mean())) < margin else 1.0
    return float(ttost_paired(a, b, -margin, margin)[0])


def _power_args(sd: float, alpha: float, power: float) -> tuple[float, float, float]:
    if not (math.isfinite(sd) and sd > 0):
        raise ValueError(f"sd={sd}: the standard deviation of the paired differences must be positive and finite.")
    return float(sd), _level(alpha, "alpha"), _level(power, "power")


def paired_power(effect: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test on n differences for a true effect (in units of their sd) (nb 07).

    The noncentral t of scipy, as statsmodels' `TTestPower.power` computes it, except that the far tail on the
    wrong side, which scipy 1.17 returns as NaN once it underflows (below 1e-15), counts as 0.
    """
    from scipy import stats as st

    df, nc = int(n) - 1, math.sqrt(int(n)) * float(effect)
    crit = float(st.t.ppf(1 - alpha / 2, df))
    wrong_side = float(st.nct.cdf(-crit, df, nc))
    return float(st.nct.sf(crit, df, nc)) + (wrong_side if math.isfinite(wrong_side) else 0.0)


def detectable_difference(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true paired difference a two-sided paired t-test at `alpha` finds with `power` (nb 07).

    The root of `paired_power` (the one-sample t-test on the n differences, noncentral t; scipy's brentq, since
    statsmodels' own solver fails at n = 2); the effect size is in units of sd, so the difference is
    effect_size * sd. With n = 5, alpha = 0.05 and power 0.8 it is about 1.7 sd.
    """
    sd, alpha, power = _power_args(sd, alpha, power)
    if int(n) != n or n < 2:
        raise ValueError(f"n={n}: a paired t-test needs at least 2 seeds.")
    from scipy.optimize import brentq


    def gap(effect: float) -> float:                   # the power curve, increasing in the effect size
        return paired_power(effect, n, alpha) - power

    hi = 1.0                                           # bracket the root: statsmodels' own solver fails at n = 2
    while gap(hi) < 0:
        hi *= 4
        if hi > 1e9:
            raise ValueError(f"detectable_difference: no effect below 1e9 sd reaches power {power:g} with n={n} at "
                             f"alpha={alpha:g}; use more seeds.")
    return float(brentq(gap, 0.0, hi, xtol=1e-10, rtol=1e-10)) * sd


def seeds_needed(sd: float, difference: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """The number of paired seeds for which a paired t-test at `alpha` finds `difference` with `power` (nb 07)."""
    sd, alpha, power = _power_args(sd, alpha, power)
    if not difference > 0:
        raise ValueError(f"difference={difference}: the difference to detect is a positive number.")
    effect = difference / sd

    def enough(n: int) -> bool:
        return paired_power(effect, n, alpha) >= power

    hi = 2                                              # the power grows with n: double, then bisect
    while not enough(hi):
        hi *= 2
        if hi > 10**7:
            raise ValueError(f"seeds_needed: more than 10^7 seeds to find {difference:g} at sd {sd:g}; the "
                             "difference is tiny next to the spread.")
    lo = hi // 2                                        # not enough (or 1), unless hi == 2
    while hi - lo > 1 and hi > 2:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi
