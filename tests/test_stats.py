"""The statistics of every comparison (tcmax_lib.stats) against scipy's own tests and brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from tcmax_lib import experiments, stats


@pytest.mark.parametrize("n", [2, 3, 5, 12])
def test_mean_ci_is_the_one_sample_t_interval(n):
    v = np.random.default_rng(n).normal(0.8, 0.05, n)
    got = stats.mean_ci(v)
    ref = st.ttest_1samp(v, 0.0).confidence_interval(0.95)
    assert got.n == n and got.mean == pytest.approx(v.mean())
    assert (got.lo, got.hi) == pytest.approx((ref.low, ref.high), rel=1e-12)
    # written out: mean ± t_{n-1, 0.975} s / sqrt(n)
    t = st.t.ppf(0.975, n - 1)
    assert got.half_width == pytest.approx(t * v.std(ddof=1) / math.sqrt(n))


def test_paired_difference_is_the_paired_t_interval_and_narrower_than_unpaired():
    rng = np.random.default_rng(0)
    seed_effect = rng.normal(0, 0.05, 6)                                 # shared by both methods on a seed
    a = 0.80 + seed_effect + rng.normal(0, 0.005, 6)
    b = 0.79 + seed_effect + rng.normal(0, 0.005, 6)
    got = stats.paired_difference(a, b)
    ref = st.ttest_rel(a, b).confidence_interval(0.95)
    assert (got.lo, got.hi) == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert not got.contains(0.0)                                         # paired: the 0.01 gap is resolved
    unpaired = st.ttest_ind(a, b).confidence_interval(0.95)
    assert unpaired.low < 0 < unpaired.high                              # side by side it would not be


def _tied_best_brute(per_seed, level=0.95):
    names = list(per_seed)
    top = names[int(np.argmax([np.mean(per_seed[m]) for m in names]))]
    out = []
    for m in names:
        d = np.asarray(per_seed[m]) - np.asarray(per_seed[top])
        if m == top:
            out.append(m)
            continue
        half = st.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
        if d.mean() - half <= 0 <= d.mean() + half:
            out.append(m)
    return out


@pytest.mark.parametrize("seed", range(20))
def test_tied_best_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    shared = rng.normal(0, 0.02, 5)
    per_seed = {m: (0.8 + gap + shared + rng.normal(0, 0.01, 5)).tolist()
                for m, gap in zip("abcde", rng.uniform(0, 0.03, 5))}
    assert stats.tied_best(per_seed) == _tied_best_brute(per_seed)


def test_tied_best_ties_a_hair_and_separates_a_gap():
    same = [0.80, 0.82, 0.79, 0.81, 0.80]
    assert stats.tied_best({"a": same, "b": [v + 6e-5 for v in same[:4]] + [same[4] - 1e-4]}) == ["a", "b"]
    assert stats.tied_best({"a": same, "b": [v - 0.05 for v in same]}) == ["a"]
    lower = {"fast": [1.0, 1.1, 0.9], "slow": [2.0, 2.2, 1.9]}
    assert stats.tied_best(lower, higher_is_better=False) == ["fast"]


@pytest.mark.parametrize("call,message", [
    (lambda: stats.mean_ci([0.5]), "at least 2 values"),
    (lambda: stats.mean_ci([0.5, float("nan")]), "NaN/inf"),
    (lambda: stats.mean_ci([0.5, 0.6], level=95), "strictly between 0 and 1"),
    (lambda: stats.paired_difference([1, 2, 3], [1, 2]), "pairing needs one value per seed"),
    (lambda: stats.tied_best({}), "no methods"),
])
def test_bad_inputs_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_summarize_uses_the_same_interval():
    import pandas as pd

    v = [0.81, 0.79, 0.84, 0.80]
    table = experiments.summarize(pd.DataFrame({"method": ["m"] * 4, "acc": v}))
    assert table.loc["m", "acc"] == str(stats.mean_ci(v))
