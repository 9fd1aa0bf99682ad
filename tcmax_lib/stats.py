"""Reading comparisons with intervals: one place for the statistics every comparison table uses (notebook 07).

    mean_ci(values)                  -> Interval: the mean over seeds with its 95 % Student-t interval
    paired_difference(a, b)          -> Interval: mean of a_s - b_s over paired seeds, with its t-interval
    tied_best(per_seed)              -> the methods whose paired difference to the top mean contains 0

Seeds are paired across methods (the same split, data order and initialisation where the architectures
allow), so differences are taken seed by seed: the seed-to-seed variation that every method shares
cancels, and the interval of a difference is narrower than the two intervals side by side suggest.
The tie rule replaces argmax verdicts: a method is "best" unless the data say another one is better.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st


@dataclass(frozen=True)
class Interval:
    """A mean over n seeds with its two-sided Student-t interval [lo, hi] at `level` (notebook 07)."""

    mean: float
    lo: float
    hi: float
    n: int
    level: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    def contains(self, value: float) -> bool:
        """Whether `value` lies inside the closed interval (notebook 07)."""
        return self.lo <= value <= self.hi

    @property
    def side(self) -> str:
        """Where the interval lies relative to 0: '> 0', '< 0' or 'contains 0' (the tie rule's reading) (nb 07)."""
        return "> 0" if self.lo > 0 else "< 0" if self.hi < 0 else "contains 0"

    def signed(self, digits: int = 3) -> str:
        """A difference as 'mean ± half-width (side of 0)', e.g. '+0.012 ± 0.010 (> 0)' (notebook 07)."""
        return f"{self.mean:+.{digits}f} ± {self.half_width:.{digits}f} ({self.side})"

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.half_width:.3f}"


def _values(values: Sequence[float], what: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size < 2:
        raise ValueError(f"{what}: an interval needs at least 2 values (seeds), got {v.size}.")
    if not np.isfinite(v).all():
        raise ValueError(f"{what}: the values hold NaN/inf: {v.tolist()}.")
    return v


def _level(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level}: a confidence level lies strictly between 0 and 1, e.g. 0.95.")
    return float(level)


def mean_ci(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean of per-seed values with its Student-t interval: mean ± t_{n-1} s / sqrt(n) (notebook 07)."""
    v, level = _values(values, "mean_ci"), _level(level)
    n, mean = v.size, float(v.mean())
    half = float(_st.t.ppf(0.5 + level / 2, n - 1)) * float(v.std(ddof=1)) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, level)


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Interval:
    """Mean of a_s - b_s over paired seeds with its t-interval (the paired t-test's interval) (notebook 07)."""
    a, b = _values(a, "paired_difference (a)"), _values(b, "paired_difference (b)")
    if a.size != b.size:
        raise ValueError(f"paired_difference: {a.size} and {b.size} values; pairing needs one value per seed in both.")
    return mean_ci(a - b, level)


def tied_best(per_seed: Mapping[str, Sequence[float]], level: float = 0.95, higher_is_better: bool = True
              ) -> list[str]:
    """The methods tied for best: the top mean, and every method whose paired difference to it contains 0 (nb 07).

    `per_seed` maps a method to its values on the same seeds, in the same order. The list is in the
    order of `per_seed`; it has more than one entry whenever the seeds cannot tell the leaders apart.
    """
    if not per_seed:
        raise ValueError("tied_best: no methods given.")
    sign = 1.0 if higher_is_better else -1.0
    means = {m: sign * float(np.mean(_values(v, f"tied_best ({m})"))) for m, v in per_seed.items()}
    top = max(means, key=means.get)
    return [m for m in per_seed if m == top or paired_difference(per_seed[m], per_seed[top], level).contains(0.0)]
