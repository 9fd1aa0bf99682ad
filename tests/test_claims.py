"""Every measured claim of a chapter is pinned by a test that reads its number.

Each notebook ends with a table of claims: the claim, its evidence (keys of `results/<notebook>.json` in
backticks, tests, sections) and its kind. A row whose kind says *measured* must name at least one key of the
committed FULL record, and every key it names must be read by the chapter's FULL reading test in
`tests/test_results.py` (`test_NN_reading`, or `test_04_toy_reading`/`test_04_optimizer_reading` for 04), so a
re-run that changes the number fails a test. A row marked *measured in FAST* names keys that the chapter's FAST
check in `tests/test_notebooks.py` reads instead (a measurement added after the committed FULL run).
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest
import test_notebooks
import test_results

from tcmax_lib.course import series

ROOT = Path(__file__).resolve().parent.parent
KEY = re.compile(r"`([A-Za-z0-9_]+)`")


def claim_rows(nb: Path) -> list[tuple[str, str, str]]:
    """(claim, evidence, kind) of each row of the notebook's claims table."""
    rows = []
    for cell in json.loads(nb.read_text())["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] != "markdown" or "| claim | evidence | kind |" not in text:
            continue
        for line in text.split("| claim | evidence | kind |", 1)[1].splitlines()[2:]:
            parts = [p.strip() for p in line.strip().strip("|").split(" | ")]
            if len(parts) == 3:
                rows.append(tuple(parts))
    return rows


def reading_sources(stem: str) -> str:
    """The source of the chapter's FULL reading tests."""
    names = [n for n in dir(test_results) if n.startswith(f"test_{stem[:2]}_") and "reading" in n]
    return "\n".join(inspect.getsource(getattr(test_results, n)) for n in names)


NOTEBOOKS = [nb for nb in series.notebooks() if (ROOT / "results" / f"{nb.stem}.json").exists()]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_measured_claim_names_a_key_a_reading_test_asserts(nb):
    metrics = json.loads((ROOT / "results" / f"{nb.stem}.json").read_text())["metrics"]
    full_tests, fast_check = reading_sources(nb.stem), inspect.getsource(test_notebooks.CHECKS[nb.stem[:2]])
    fast_check += "".join(inspect.getsource(getattr(test_notebooks, n)) for n in dir(test_notebooks)
                          if n == f"check_{nb.stem[:2]}" or n.startswith(f"check_{nb.stem[:2]}_"))
    problems = []
    for claim, evidence, kind in claim_rows(nb):
        if "measured" not in kind:
            continue
        in_fast = "measured in FAST" in kind
        keys = [k for k in KEY.findall(evidence) if (k in metrics or in_fast) and not k.startswith("test_")]
        if not keys:
            problems.append(f"no results key named: {claim[:90]}")
            continue
        source = fast_check if in_fast else full_tests
        unread = [k for k in keys if f'"{k}"' not in source and f"'{k}'" not in source]
        if unread:
            where = "its FAST check" if in_fast else "a FULL reading test"
            problems.append(f"{unread} not asserted by {where}: {claim[:90]}")
    assert not problems, f"{nb.name}:\n  " + "\n  ".join(problems)


def test_the_rule_reads_a_table():
    rows = claim_rows(ROOT / "notebooks" / "03_modality_competition.ipynb")
    assert rows and all(len(r) == 3 for r in rows) and any("measured" in r[2] for r in rows)
