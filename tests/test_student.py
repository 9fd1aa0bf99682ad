"""The student edition cannot drift from the instructor edition (tcmax_lib.course.student, .exercises).

Here: the committed student edition and checks.json are current, no solution survives in it, every
computing exercise has a check, and the checks' comparison never prints the answer. The drift test proper
(every check passes with the solutions and refuses the wrong answers) reads the suite's one execution of
each notebook: tests/test_notebooks.py.
"""

import math
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from tcmax_lib.course import exercises as xs
from tcmax_lib.course import series, student

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = series.notebooks()


def test_checks_json_is_current():
    assert not student.write_checks(write=False), "checks.json is stale: run `tcmax series sync-book`"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_committed_student_edition_is_current(nb):
    committed = ROOT / "student" / nb.name
    assert committed.exists(), f"student/{nb.name} is missing: run `tcmax series sync-book`"
    assert committed.read_text() == nbformat.writes(student.student_notebook(nb)), \
        f"student/{nb.name} is stale: run `tcmax series sync-book`"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_student_edition_has_no_solution_and_a_check_per_exercise(nb):
    book = student.student_notebook(nb)
    text = "\n".join(c.source for c in book.cells)
    assert "*Solution.*" not in text and not any("solution" in c.metadata.get("tags", []) for c in book.cells)
    instructor = nbformat.read(nb, as_version=4)
    for i, k, sol in student.exercise_blocks(instructor):
        ex = xs.exercises()[f"{nb.name[:2]}.{k}"]
        computes = any(instructor.cells[j].cell_type == "code" for j in sol)
        assert not computes or ex.answer, f"{ex.key} computes something but has no check"
        assert "(derivation)" not in instructor.cells[i].source or ex.reveal, f"{ex.key}: derivation, no self-check"
        if ex.answer:
            assert f'tl.check("{ex.key}", globals())' in text
        if ex.reveal:
            assert ex.reveal in text and '<details class="self-check">' in text
    assert book.cells[0].source.startswith("[![Open In Colab]") and "/student/" + nb.name in book.cells[0].source


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_no_answer_in_the_student_edition_text(nb):
    """Each exercise's `leaks` (phrases of its answer) appear nowhere in the student edition (review S1-S4)."""
    book = student.student_notebook(nb)
    text = "\n".join(c.source for c in book.cells)
    found = [(k, p) for k, ex in xs.exercises().items() if k.startswith(nb.name[:2]) for p in ex.leaks if p in text]
    assert not found, f"student/{nb.name} states answers: {found}"
    assert "instructor-only" not in text


def test_the_student_build_drops_rows_and_spans_that_state_an_answer():
    md = "Intro<!-- instructor-only --> the answer is 4<!-- /instructor-only -->.\n| a | b |\n| x | up to 4 nats at K |"
    assert student.without_answers(md, ["up to 4 nats at"]) == "Intro.\n| a | b |"


# ---------------------------------------------------------------------- the comparison, without notebooks
@pytest.mark.parametrize("got, want, tol, ok", [
    (8.30, 8.3037, 0.005, True), (8.2, 8.3037, 0.005, False), (np.float32(2.0), 2, 0.0, True),
    (torch.tensor(1.5), 1.5, 1e-6, True), ("full", "FULL", 0, True), ("FAST", "FULL", 0, False),
    ({0: 1.0, 10: 0.316}, {0.0: 1.0, 10.0: 0.3162}, 0.005, True), ({0: 1.0}, {0.0: 1.0, 10.0: 0.3}, 0.005, False),
    (torch.ones(2, 3), torch.ones(2, 3), 1e-6, True), (torch.ones(3, 2), torch.ones(2, 3), 1e-6, False),
    ([1, 2], (1, 2), 0, True), (True, True, 0, True), (1, True, 0, False), (math.nan, 1.0, 0.1, False),
])
def test_compare(got, want, tol, ok):
    assert (xs.compare(got, want, tol, "x") is None) == ok


def test_messages_name_the_problem_never_the_answer():
    assert "number" in xs.compare("8.3", 8.3037, 0.005, "mi")
    assert "shape (2, 3), got (3, 2)" in xs.compare(torch.ones(3, 2), torch.ones(2, 3), 0, "g")
    assert "keys" in xs.compare({224: 1}, {224: 3.36, 112: 0.84}, 0.005, "gb")
    ex = xs.exercises()["00.2"]
    wrong = xs.check("00.2", {"mi_nats_bits": (1.0, 1.4), "gt": __import__("tcmax_lib.info.closed_forms",
                                                                          fromlist=["x"])})
    assert wrong.outcome == "not yet" and ex.hint in wrong.message
    assert "8.30" not in repr(wrong) and "8.3" not in repr(wrong)
    none = xs.check("00.2", {"mi_nats_bits": None})
    assert none.outcome == "not yet" and "still None" in repr(none)
    assert "no `mi_nats_bits` yet" in xs.check("00.2", {}).message
    # the solution reads `trace`, made by section 6's cells, which this namespace lacks: they were not run
    blocked = xs.check("01.5", {"stop": {"step": 100, "reports": 1.0}})
    assert blocked.outcome == "cannot check" and "'trace' is not defined" in blocked.message
    # the modules an `expected` expression uses need not be imported by the notebook
    assert xs.check("03.1", {"audio_bayes_m1": 0.8413}).outcome == "correct"
    with pytest.raises(KeyError, match="no exercise '00.9'"):
        xs.check("00.9", {})
    with pytest.raises(ValueError, match="self-check"):
        xs.check("01.2", {})


def test_solutions_run_in_a_copy_of_the_namespace():
    from tcmax_lib.info import closed_forms as gt

    mi = gt.gaussian_mi(0.9, dim=10)
    namespace = {"gt": gt, "mi_nats_bits": (mi, gt.nats_to_bits(mi)), "print": print}
    res = xs.check("00.2", namespace)
    assert res and repr(res) == "Exercise 00.2: correct."
    assert set(namespace) == {"gt", "mi_nats_bits", "print"}        # the solution's names did not leak


@pytest.mark.parametrize("bad, match", [
    ('key = "1.2"\nanswer = "x"', "key must be"), ('key = "01.2"', "give `answer`"),
    ('key = "01.2"\nanswer = "not a name"', "not a Python variable"), ('key = "01.2"\nanswer = "x"\ntol = -1', "tol"),
    ('key = "01.2"\nanswer = "x"\ntolerance = 1', "unknown field"),
])
def test_malformed_spec_is_refused_with_the_entry_named(tmp_path, bad, match):
    spec = tmp_path / "exercises.toml"
    spec.write_text(f"[[exercise]]\n{bad}\n")
    with pytest.raises(ValueError, match=match):
        xs.read_spec(spec)


def test_perturb_keeps_type_and_shape():
    assert student.perturb(2.0, 0.1) == 4.0 and student.perturb("FULL") != "FULL" and student.perturb(True) is False
    assert student.perturb({0: 1.0, 10: 2.0})[0] == 2.0 and student.perturb(torch.zeros(2)).shape == (2,)


def test_cli_builds_the_student_edition_and_refuses_grade_without_files(tmp_path, capsys):
    from tcmax_lib.course.cli import main

    main(["course", "student", "--out", str(tmp_path / "student"), "--only", "00"])
    built = (tmp_path / "student" / "00_overview.ipynb").read_text()
    assert built == (ROOT / "student" / "00_overview.ipynb").read_text()
    with pytest.raises(SystemExit, match="give the submitted notebooks"):
        main(["course", "grade", "--out", str(tmp_path / "grades")])
