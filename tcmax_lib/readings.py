"""One vocabulary for every comparison the series reads (notebook 07).

    read_family(pairs, margin)      -> {name: Reading}: paired t-tests, Holm over the family, TOST with a margin
    best_set(per_seed)              -> the methods that no other method is resolved above (Holm over every pair)
    tally(readings) / headline(...) -> counts per verdict, and the sentence those counts support

Every comparison is read as exactly one of four verdicts:

    resolved above / resolved below   the paired t-test's Holm-adjusted p-value is below alpha
    equivalent within ±m              not resolved, and the TOST within the stated margin m is (Holm-adjusted)
    not resolved                      neither: the interval says how large a difference is still possible

"Level with", "matched" or "as good as" is only ever said of an `equivalent within ±m` reading. The family is
named where it is read (e.g. "TCMax minus each of 7 baselines on 3 data sets: 21 comparisons"), because the
adjustment, and therefore the verdict, depends on it. The statistics themselves are `stats`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .stats import Interval, holm, paired_difference, tost_paired

ABOVE, BELOW, EQUIVALENT, UNRESOLVED = "resolved above", "resolved below", "equivalent", "not resolved"
VERDICTS = (ABOVE, BELOW, EQUIVALENT, UNRESOLVED)


@dataclass(frozen=True)
class Reading:
    """One comparison a - b, read in the series' vocabulary within a family of `family` comparisons (nb 07)."""

    diff: Interval                     # the paired 95 % t-interval (per comparison) and its raw p-value
    p_adjusted: float                  # Holm over the family
    family: int
    verdict: str                       # one of VERDICTS
    margin: float | None = None        # the equivalence margin, if one was tested
    p_equivalence: float | None = None   # TOST, Holm over the family
    alpha: float = 0.05

    @property
    def within_margin(self) -> bool:
        """Whether the TOST shows |difference| < margin (also for a resolved difference smaller than it)."""
        return self.p_equivalence is not None and self.p_equivalence < self.alpha

    def text(self, digits: int = 3) -> str:
        """The reading in words, with the numbers that back it (notebook 07)."""
        d, f = self.diff, f"{digits}f"
        adj = f"Holm p = {self.p_adjusted:.2g} over {self.family}" if self.family > 1 else f"p = {self.p_adjusted:.2g}"
        if self.verdict in (ABOVE, BELOW):
            extra = f", and within ±{self.margin:g} (TOST)" if self.within_margin else ""
            return f"{self.verdict}: {d.mean:+.{f}} ± {d.half_width:.{f}} ({adj}{extra})"
        if self.verdict == EQUIVALENT:
            over = f" over {self.family}" if self.family > 1 else ""
            return (f"equivalent within ±{self.margin:g}: {d.mean:+.{f}} ± {d.half_width:.{f}} "
                    f"(TOST{' Holm' if over else ''} p = {self.p_equivalence:.2g}{over})")
        return f"not resolved: {d.mean:+.{f}} ± {d.half_width:.{f}}; the data allow {d.lo:+.{f}} to {d.hi:+.{f}}"

    def short(self, digits: int = 3) -> str:
        """'mean ± half-width (verdict)' for a table cell, e.g. '+0.187 ± 0.040 (above)' (notebook 07)."""
        word = f"equivalent ±{self.margin:g}" if self.verdict == EQUIVALENT else \
            {ABOVE: "above", BELOW: "below", UNRESOLVED: "not resolved"}[self.verdict]
        return f"{self.diff.mean:+.{digits}f} ± {self.diff.half_width:.{digits}f} ({word})"


def _check_alpha(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha}: a significance level lies strictly between 0 and 1, e.g. 0.05.")
    return float(alpha)


def read_family(pairs: Mapping[str, tuple[Sequence[float], Sequence[float]]], margin: float | None = None,
                alpha: float = 0.05) -> dict[str, Reading]:
    """Read every comparison `name: (a, b)` (paired per-seed values) as one family (notebook 07).

    Each gets its paired t-interval (95 %, unadjusted: the size of the difference still possible) and a
    verdict from the Holm-adjusted p-values of the family; with a `margin`, the TOST p-values (also Holm-
    adjusted) decide "equivalent within ±margin" for the comparisons that are not resolved.
    """
    alpha = _check_alpha(alpha)
    if not pairs:
        raise ValueError("read_family: no comparisons given; pass {name: (a_values, b_values)}.")
    diffs = {k: paired_difference(a, b, 1 - alpha) for k, (a, b) in pairs.items()}
    p_adj = dict(zip(diffs, holm([d.p for d in diffs.values()])))
    p_eq: dict[str, float | None] = dict.fromkeys(diffs)
    if margin is not None:
        p_eq = dict(zip(diffs, holm([tost_paired(a, b, margin) for a, b in pairs.values()])))
    out = {}
    for k, d in diffs.items():
        if p_adj[k] < alpha:
            verdict = ABOVE if d.mean > 0 else BELOW
        elif p_eq[k] is not None and p_eq[k] < alpha:
            verdict = EQUIVALENT
        else:
            verdict = UNRESOLVED
        out[k] = Reading(d, p_adj[k], len(diffs), verdict, margin, p_eq[k], alpha)
    return out


def best_set(per_seed: Mapping[str, Sequence[float]], alpha: float = 0.05, higher_is_better: bool = True
             ) -> list[str]:
    """The methods no other method is resolved above: paired t-tests of every pair, Holm over them (notebook 07).

    Unlike a rule that compares each method with the largest sample mean, membership does not depend on which
    method happens to lead, and with k truly equal methods every one of them is in the set with probability
    at least 1 - alpha. A one-member set means that member is resolved above every other method. The list
    keeps the order of `per_seed`.
    """
    alpha = _check_alpha(alpha)
    if not per_seed:
        raise ValueError("best_set: no methods given.")
    names = list(per_seed)
    if len(names) == 1:
        return names
    pairs = list(itertools.combinations(names, 2))
    diffs = [paired_difference(per_seed[i], per_seed[j], 1 - alpha) for i, j in pairs]
    beaten = set()
    for (i, j), d, p in zip(pairs, diffs, holm([d.p for d in diffs])):
        if p < alpha:
            better_i = (d.mean > 0) == higher_is_better
            beaten.add(j if better_i else i)
    return [m for m in names if m not in beaten]


def tally(readings: Mapping[str, Reading]) -> dict[str, int]:
    """How many readings of a family have each verdict (notebook 07)."""
    return {v: sum(r.verdict == v for r in readings.values()) for v in VERDICTS}


def headline(readings: Mapping[str, Reading], subject: str, what: str) -> str:
    """The sentence a family of `subject`-minus-baseline readings supports, from its counts (notebook 07).

    E.g. headline(r, "TCMax", "baselines on 3 data sets") -> "Of 21 comparisons of TCMax with baselines on 3
    data sets (Holm over the 21), 14 are resolved above, none below, 7 not resolved (...)".
    """
    if not readings:
        raise ValueError("headline: no readings given.")
    c, n = tally(readings), len(readings)

    def count(k: int) -> str:
        return "none" if k == 0 else str(k)

    s = (f"Of {n} comparisons of {subject} with {what} (Holm over the {n}), {count(c[ABOVE])} "
         f"{'is' if c[ABOVE] == 1 else 'are'} resolved above, {count(c[BELOW])} below")
    rest = [f"{count(c[EQUIVALENT])} equivalent within the margin"] if c[EQUIVALENT] else []
    rest.append(f"{count(c[UNRESOLVED])} not resolved")
    s += ", " + " and ".join(rest)
    unresolved = [r.diff for r in readings.values() if r.verdict == UNRESOLVED]
    if unresolved:
        s += (f"; the unresolved ones allow differences from {min(d.lo for d in unresolved):+.3f} "
              f"to {max(d.hi for d in unresolved):+.3f}")
    return s + "."
