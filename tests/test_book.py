"""The series reads without running it: Colab badges, committed FULL figures in the notebooks, exercises with
worked solutions, and the link rewriting of the HTML site (tcmax_lib.course.book; browser checks: test_site.py)."""

import json
import re
from pathlib import Path

import nbformat
import pytest

from tcmax_lib.course import book, results, series

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = series.notebooks()
COLAB = re.compile(r"\(https://colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/main/(notebooks/[\w.-]+)\)")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_generated_parts_are_up_to_date(nb):
    """Badge, Colab set-up cell and committed-figure cells equal what `tcmax series sync-book` writes."""
    assert not book.sync_notebook(nb, write=False), f"run `tcmax series sync-book --only {nb.stem[:2]}`"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_colab_badge_opens_this_notebook(nb):
    cells = nbformat.read(nb, as_version=4).cells
    links = COLAB.findall(cells[0].source)
    assert links == [(book.repository_url().removeprefix("https://github.com/"), f"notebooks/{nb.name}")]
    setup = [c for c in cells if book.COLAB_TAG in c.metadata.get("tags", [])]
    assert len(setup) == 1 and setup[0].source.count("%pip install") == 1
    assert f"git+{book.repository_url()}@main" in setup[0].source and '"google.colab" in sys.modules' in setup[0].source


def test_readme_badges_are_generated_from_the_repository_url(tmp_path):
    assert not book.sync_readme_badges(ROOT / "README.md", write=False), "run `tcmax series sync-book`"
    stale = tmp_path / "README.md"
    stale.write_text("| 04 | [TCMax](notebooks/04_tcmax.ipynb) [![Open In Colab](x.svg)](https://old/x) | text |\n")
    assert book.sync_readme_badges(stale)
    assert stale.read_text() == f"| 04 | [TCMax](notebooks/04_tcmax.ipynb) {book.colab_badge('04_tcmax')} | text |\n"


def test_readme_badges_open_their_own_notebooks():
    readme = (ROOT / "README.md").read_text()
    rows = [ln for ln in readme.splitlines() if re.match(r"\| \d\d \|", ln)]
    assert len(rows) == len(NOTEBOOKS)
    for row, nb in zip(rows, NOTEBOOKS):
        assert COLAB.findall(row) == [(book.repository_url().removeprefix("https://github.com/"),
                                       f"notebooks/{nb.name}")], row
        assert f"(notebooks/{nb.name})" in row


def test_every_committed_figure_is_shown_in_its_notebook_with_its_run():
    text = {nb.stem[:2]: nbformat.read(nb, as_version=4) for nb in NOTEBOOKS}
    figures = sorted((ROOT / "figures").glob("*.png"))
    assert figures
    for png in figures:
        nb = text[png.name[:2]]
        cells = [c for c in nb.cells if c.cell_type == "markdown" and f"](../figures/{png.name})" in c.source
                 and c.source.startswith(book.FIGURE_MARK.format(name=png.stem))]
        assert len(cells) == 1, png.name
        meta_path = ROOT / "results" / f"{[p.stem for p in NOTEBOOKS if p.stem.startswith(png.name[:2])][0]}.json"
        meta = json.loads(meta_path.read_text())["meta"]
        assert f"FULL run on {results.device_label(meta)}" in cells[0].source and meta["commit"] in cells[0].source
        # right before the code cell that draws it (after the other figures that cell draws)
        i = nb.cells.index(cells[0]) + 1
        while nb.cells[i].source.startswith("<!-- committed-figure:"):
            i += 1
        assert f'"{png.stem}"' in nb.cells[i].source and nb.cells[i].cell_type == "code"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_exercises_have_collapsed_worked_solutions(nb):
    cells = nbformat.read(nb, as_version=4).cells
    start = next(i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("## Exercises"))
    end = next(i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("## Summary"))
    exercises = [c for c in cells[start:end] if c.cell_type == "markdown" and c.source.startswith("**Exercise ")]
    assert 3 <= len(exercises) <= 5, f"{nb.name}: {len(exercises)} exercises"
    assert any("predict, then run" in c.source.lower() for c in exercises), f"{nb.name}: no predict-then-run"
    for k, ex in enumerate(exercises):
        i = cells.index(ex)
        nxt = cells[i + 1]
        assert "solution" in nxt.metadata.get("tags", []), f"{nb.name}: exercise {k + 1} has no solution after it"
        assert nxt.metadata.get("jupyter", {}).get("source_hidden") is True, f"{nb.name}: solution not collapsed"
    solutions = [c for c in cells if "solution" in c.metadata.get("tags", [])]
    assert all(start < cells.index(c) < end for c in solutions)
    assert any(c.cell_type == "code" for c in solutions), f"{nb.name}: no solution computes anything"


@pytest.mark.parametrize(("text", "prefix", "expected"), [
    ("[a](notebooks/01_x.ipynb)", "", "[a](notebooks/01_x.ipynb)"),
    ("[a](../figures/01_s.png)", "notebooks", "[a](../figures/01_s.png)"),
    ("[a](#section)", "", "[a](#section)"),
    ("[a](https://example.org/x)", "", "[a](https://example.org/x)"),
    ("[a](../README.md#tests)", "notebooks", "[a](../index.md#tests)"),
    ("[a](tcmax_lib/losses.py)", "", "[a]({repo}/blob/main/tcmax_lib/losses.py)"),
    ("[a](../results/07_paper_figures.json)", "notebooks", "[a]({repo}/blob/main/results/07_paper_figures.json)"),
    ("[a](data/README.md)", "", "[a]({repo}/blob/main/data/README.md)"),
])
def test_site_links_point_at_pages_or_github(text, prefix, expected):
    assert book._rewrite_links(text, prefix) == expected.format(repo=book.repository_url())


def test_offline_site_shows_badges_as_plain_links():
    badge = book.colab_badge("01_mutual_information_and_mine")
    out = book._offline_badges(f"x {badge} y")
    name = "01_mutual_information_and_mine"
    assert out == (f"x [Open in Colab]({book.colab_url(name)}) [student edition in Colab]"
                   f"({book.colab_url(name, 'student')}) y")
    assert "colab-badge.svg" not in out


def test_strict_sphinx_build_fails_on_any_warning(tmp_path):
    """`make site` runs Sphinx with -W --keep-going: a broken reference fails the build and every warning is
    listed, so a broken page cannot publish silently; a clean source builds."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text('extensions = ["myst_parser"]\nexclude_patterns = ["_build"]\n')
    (src / "index.md").write_text("# Title\n\nSee {ref}`no-such-label` and [a page](missing.md).\n")
    with pytest.raises(RuntimeError, match="warnings are errors") as err:
        book.run_sphinx(src, tmp_path / "out")
    assert "no-such-label" in str(err.value) and "missing.md" in str(err.value)   # both warnings reported
    assert not (tmp_path / "out").exists()                                      # nothing half-built is left
    (src / "index.md").write_text("# Title\n\nA clean page.\n")
    book.run_sphinx(src, tmp_path / "out")
    assert (tmp_path / "out" / "index.html").exists()


def test_site_refuses_a_notebook_whose_execution_failed(tmp_path):
    """An executed notebook with an error output (a cell that raised) never becomes a page."""
    executed = tmp_path / "executed"
    executed.mkdir()
    for nb in series.notebooks():
        book_ = nbformat.read(nb, as_version=4)
        if nb.name.startswith("03"):
            cell = next(c for c in book_.cells if c.cell_type == "code")
            cell.outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="boom", traceback=[])]
        nbformat.write(book_, executed / nb.name)
    with pytest.raises(RuntimeError, match=r"03_modality_competition.ipynb: cell \d+ failed .*ValueError: boom"):
        book.stage_site(executed, tmp_path / "src")


def test_mathjax_comes_from_pypi_not_npm():
    """MathJax 3 for the offline site is the docs extra's django-static-mathjax: no node tooling is needed."""
    es5 = book.mathjax_dir()
    assert (es5 / "tex-chtml.js").is_file() and (es5.parent / "LICENSE").is_file()
    assert "Apache" in (es5.parent / "LICENSE").read_text()[:2000]
