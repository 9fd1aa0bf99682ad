"""The checks of the student edition: `tl.check("NN.k", globals())` says "correct" or "not yet" (notebook 00).

Each exercise is described once, in `exercises.toml` next to this file (the variable the student assigns,
the tolerance, a hint, the self-check of a derivation). The expected value is the solution's: the
exercise's solution cells, copied from the instructor notebook into `checks.json` by
`tcmax series sync-book`, run once, silently, in a copy of the student's namespace. An entry may give an
`expected` expression instead, to compare with the student's own data (their random table, their logits).
A check never prints the expected value; it names what is wrong (type, shape, keys, which entry) and
gives the hint. The checks run locally, so a student who reads `checks.json` can see the solutions:
for graded work, `tcmax course grade` re-executes submitted notebooks and evaluates every check itself
(`grading`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

SPEC = Path(__file__).with_name("exercises.toml")
CHECKS = Path(__file__).with_name("checks.json")
KEY = re.compile(r"^\d\d\.\d+$")
LINE = re.compile(r"^Exercise (\d\d\.\d+): (correct|not yet|cannot check)\b", re.M)


@dataclass(frozen=True)
class Exercise:
    """One exercise's check: the answer variable, tolerance, hint, self-check, solution code (notebook 00)."""

    key: str
    answer: str | None = None
    what: str = ""
    expected: str | None = None
    tol: float = 0.0
    hint: str = ""
    reveal: str | None = None
    wrong: tuple[str, ...] = ()             # answers the check must refuse (expressions), e.g. "0.0"
    leaks: tuple[str, ...] = ()             # phrases of the answer the student edition must not show
    solution: str = ""                      # the solution cells' code, from the instructor notebook


def read_spec(path: Path = SPEC) -> dict[str, Exercise]:
    """Parse `exercises.toml` (no solutions); a malformed entry is an error naming it (notebook 00)."""
    import tomllib  # maintainers' side: Python >= 3.11

    out: dict[str, Exercise] = {}
    fields = set(Exercise.__dataclass_fields__) - {"solution"}
    for i, entry in enumerate(tomllib.loads(Path(path).read_text()).get("exercise", [])):
        key = entry.get("key", "")
        where = f"{path}: exercise #{i + 1} ({key or 'no key'})"
        if not KEY.match(str(key)) or key in out:
            raise ValueError(f"{where}: key must be a new 'NN.k' (notebook NN, exercise k), e.g. '01.3'.")
        if set(entry) - fields:
            raise ValueError(f"{where}: unknown field(s) {sorted(set(entry) - fields)}; allowed: {sorted(fields)}.")
        if not entry.get("answer") and not entry.get("reveal"):
            raise ValueError(f"{where}: give `answer` (a computed check) or `reveal` (a self-check), or both.")
        if entry.get("answer") and not str(entry["answer"]).isidentifier():
            raise ValueError(f"{where}: answer {entry['answer']!r} is not a Python variable name.")
        wrong = entry.get("wrong", [])
        if not isinstance(wrong, list) or not all(isinstance(w, str) and w.strip() for w in wrong):
            raise ValueError(f"{where}: wrong must be a list of Python expressions (answers the check refuses).")
        leaks = entry.get("leaks", [])
        if not isinstance(leaks, list) or not all(isinstance(w, str) and w.strip() for w in leaks):
            raise ValueError(f"{where}: leaks must be a list of phrases the student edition must not show.")
        entry = {**entry, "wrong": tuple(wrong), "leaks": tuple(leaks)}
        tol = entry.get("tol", 0.0)
        if isinstance(tol, bool) or not isinstance(tol, int | float) or not tol >= 0:
            raise ValueError(f"{where}: tol must be a number >= 0, got {tol!r}.")
        out[key] = Exercise(**{**entry, "tol": float(tol)})
    return out


@cache
def exercises(path: Path = CHECKS) -> dict[str, Exercise]:
    """Every exercise by key "NN.k", with its solution code, from `checks.json` (notebook 00).

    `checks.json` is `exercises.toml` joined with the solution cells of the instructor notebooks, written by
    `tcmax series sync-book` (`student.write_checks`); a test fails when it is out of date.
    """
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} is missing: run `tcmax series sync-book` (or reinstall tcmax_lib).")
    return {k: Exercise(**{**v, "wrong": tuple(v.get("wrong", ())), "leaks": tuple(v.get("leaks", ()))}) for k, v in
            json.loads(Path(path).read_text()).items()}


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: 'correct', 'not yet' or 'cannot check', and the message (notebook 00)."""

    key: str
    outcome: str
    message: str

    def __bool__(self) -> bool:
        return self.outcome == "correct"

    def __repr__(self) -> str:                        # what the check cell shows
        return f"Exercise {self.key}: {self.outcome}" + (f". {self.message}" if self.message else ".")


def _number(x: Any) -> float | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int | float | np.number):
        return float(x)
    if hasattr(x, "shape") and tuple(x.shape) == () and hasattr(x, "item"):      # 0-d tensor or array
        return float(x.item())
    return None


def _array(x: Any) -> np.ndarray | None:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=float) if isinstance(x, np.ndarray) else None


def _key(k: Any) -> Any:
    n = _number(k)
    return n if n is not None else str(k).strip().lower()


def compare(got: Any, want: Any, tol: float, name: str) -> str | None:
    """None if `got` matches `want` within `tol`, else what is wrong, never `want` itself (notebook 00)."""
    if _number(want) is not None:                                  # a number, numpy scalar or 0-d tensor
        g = _number(got)
        if g is None:
            return f"`{name}` should be a number, got {type(got).__name__}"
        if not abs(g - _number(want)) <= tol:
            return f"`{name}` is more than {tol:g} away from the expected value" if tol else f"`{name}` is not right"
        return None
    if isinstance(want, bool | str):
        if type(got) is not type(want):
            return f"`{name}` should be a {type(want).__name__}, got {type(got).__name__}"
        ok = got == want if isinstance(want, bool) else got.strip().lower() == want.strip().lower()
        return None if ok else f"`{name}` is not right"
    wa = _array(want)
    if wa is not None:
        ga = _array(got) if _array(got) is not None else (np.asarray(got, dtype=float)
                                                          if isinstance(got, list | tuple) else None)
        if ga is None:
            return f"`{name}` should be an array or tensor, got {type(got).__name__}"
        if ga.shape != wa.shape:
            return f"`{name}` should have shape {tuple(wa.shape)}, got {tuple(ga.shape)}"
        bad = ~(np.abs(ga - wa) <= tol)
        return f"`{name}` differs by more than {tol:g} in {int(bad.sum())} of {bad.size} entries" if bad.any() \
            else None
    if isinstance(want, Mapping):
        if not isinstance(got, Mapping):
            return f"`{name}` should be a dict, got {type(got).__name__}"
        gk, wk = {_key(k): k for k in got}, {_key(k): k for k in want}
        if set(gk) != set(wk):
            return f"`{name}` should have the keys {sorted(map(str, want))}, got {sorted(map(str, got))}"
        for k in sorted(wk, key=str):
            msg = compare(got[gk[k]], want[wk[k]], tol, f"{name}[{wk[k]!r}]")
            if msg:
                return msg
        return None
    if isinstance(want, list | tuple):
        if not isinstance(got, list | tuple) or len(got) != len(want):
            return f"`{name}` should be a list of {len(want)} items"
        for i, (g, w) in enumerate(zip(got, want)):
            msg = compare(g, w, tol, f"{name}[{i}]")
            if msg:
                return msg
        return None
    return None if got == want else f"`{name}` is not right"


def _standard_names() -> dict[str, Any]:
    """The modules an `expected` expression may use whether or not the notebook imported them."""
    import math

    import torch
    import torch.nn.functional as F

    from .. import losses
    from ..info import bounds
    from ..info import closed_forms as gt

    return {"math": math, "np": np, "torch": torch, "F": F, "losses": losses, "bounds": bounds, "gt": gt}


def expected_value(ex: Exercise, namespace: Mapping[str, Any]) -> Any:
    """The value `ex.answer` should have: its `expected` expression, else the solution's run (notebook 00)."""
    scope = {**_standard_names(), **dict(namespace)}               # the student's variables stay untouched
    if ex.expected:
        return eval(ex.expected, scope)                             # noqa: S307 - our own spec, not user input
    code = ex.solution
    if not code:
        raise KeyError(f"checks.json has no solution code for exercise {ex.key}: run `tcmax series sync-book`.")
    try:
        from IPython.utils.capture import capture_output
    except ImportError:                                            # outside IPython: only stdout to silence
        import contextlib
        import io

        def capture_output():
            return contextlib.redirect_stdout(io.StringIO())
    with capture_output():
        exec(compile(code, f"<solution {ex.key}>", "exec"), scope)  # noqa: S102
    if ex.answer not in scope:
        raise KeyError(f"the solution of exercise {ex.key} does not define `{ex.answer}`; fix exercises.toml.")
    return scope[ex.answer]


_UNSET = object()


def check(key: str, namespace: Mapping[str, Any], want: Any = _UNSET) -> CheckResult:
    """Check exercise `key`'s answer in `namespace` (pass `globals()`) against the solution's (notebook 00).

    `want` is the expected value when the caller computed it already (`expected_value`): the grader
    compares several answers with one run of the solution.
    """
    if key not in exercises():
        raise KeyError(f"no exercise {key!r} in {CHECKS.name}; known: {', '.join(exercises())}.")
    ex = exercises()[key]
    if not ex.answer:
        raise ValueError(f"exercise {key} has no computed answer: its self-check is the 'Self-check' cell.")
    hint = f" Hint: {ex.hint}" if ex.hint else ""
    if ex.answer not in namespace:
        return CheckResult(key, "not yet", f"there is no `{ex.answer}` yet: assign {ex.what} to it.")
    got = namespace[ex.answer]
    if got is None:
        return CheckResult(key, "not yet", f"`{ex.answer}` is still None: assign {ex.what} to it.")
    try:
        want = expected_value(ex, namespace) if want is _UNSET else want
    except Exception as exc:                                        # the notebook's own cells are not run yet
        return CheckResult(key, "cannot check", f"{type(exc).__name__}: {exc}. Run the notebook's cells above this "
                           "exercise and define what the exercise names, then this check again")
    problem = compare(got, want, ex.tol, ex.answer)
    return CheckResult(key, "correct", "") if problem is None else CheckResult(key, "not yet", problem + "." + hint)


def outcomes(text: str) -> dict[str, str]:
    """Read 'Exercise NN.k: outcome' lines (check cells' outputs) into {key: outcome} (notebook 00)."""
    return {m.group(1): m.group(2) for m in LINE.finditer(text)}
