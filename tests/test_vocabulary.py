"""One vocabulary for every comparison (tcmax_lib.readings): the notebooks never read an unresolved difference as
equality. "Level with", "as good as", "tied", "matches" and their kin are claims of equality; each is allowed only
in a sentence that names the equivalence margin a TOST backs ("equivalent within ±0.02"). Notebook 07, section 3,
teaches the vocabulary; `readings.VERDICTS` is its list."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EQUALITY = re.compile(r"\b(level with|as good as|about as good|on par|indistinguishable|tied|tie set|tie rule|"
                      r"match(?:es|ed|ing)?|no different)\b", re.I)
# design terms that are not claims: the learning-rate selection's rule for exact ties of validation accuracy, and
# code matching a shape or a name (Fig. 4's level is called "common", not "matched": the word reads as equality)
NOT_CLAIMS = re.compile(r"ties (?:go )?to the smaller rate|"
                        r"match(?:es|ed)? (?:the|its|their) (?:shape|names?|regex|pattern|stored|committed|file)", re.I)
MARGIN = re.compile(r"within ±|equivalent within|equivalence margin|TOST", re.I)


def sentences(text: str) -> list[str]:
    """Markdown split into sentences and table cells (a cell or list item is read on its own)."""
    text = re.sub(r"\$[^$]*\$", "x", text)                              # maths is not prose
    parts = re.split(r"(?<=[.!?])\s+|\n+|\s\|\s", text)
    return [p.strip() for p in parts if p.strip()]


def equality_claims(text: str) -> list[str]:
    """The sentences of `text` that claim equality without naming an equivalence margin."""
    out = []
    for s in sentences(text):
        if MARGIN.search(s):
            continue
        stripped = NOT_CLAIMS.sub("", s)
        if EQUALITY.search(stripped):
            out.append(s)
    return out


def test_the_rule_catches_what_it_should_and_spares_what_it_should():
    assert equality_claims("TCMax's probe is level with unimodal training's.")
    assert equality_claims("The two are tied for best.")
    assert equality_claims("The exact loss is matched from 256 pairs on toy B.")
    assert not equality_claims("TCMax and unimodal training are equivalent within ±0.02 (TOST).")
    assert equality_claims("We compare the gap at matched validation accuracy.")   # say "a common accuracy"
    assert not equality_claims("We compare the gap at a common validation accuracy (`fig4.matched_epoch`).")
    assert not equality_claims("Ties go to the smaller rate.")
    assert not equality_claims("Not resolved: -0.027 ± 0.037; the data allow -0.064 to +0.010.")


@pytest.mark.parametrize("nb", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_no_unbacked_equality_in_the_notebooks(nb):
    cells = json.loads(nb.read_text())["cells"]
    bad = [(i, s) for i, c in enumerate(cells) if c["cell_type"] == "markdown"
           for s in equality_claims("".join(c["source"]))]
    assert not bad, "equality claimed without an equivalence margin (readings vocabulary):\n" + "\n".join(
        f"  cell {i}: {s[:160]}" for i, s in bad)
