"""`tcmax course grade` (tcmax_lib.course.grading) tried as a student who wants a better grade would.

Each submission is chapter 00's student edition (its FAST run takes seconds) with one trick added: forged
output, rebound checks, a renamed file, deleted cells, writes outside its folder, a dying kernel, an endless
loop, a truncated file, and two submissions with one file name. The grade must not move, the batch must go
on, and nothing may be written outside --out.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import nbformat
import pytest

from tcmax_lib.course import grading, student

pytestmark = pytest.mark.notebooks                      # each test starts Jupyter kernels
ROOT = Path(__file__).resolve().parent.parent
KEYS = grading.chapter_exercises("00")


def submission(tmp_path: Path, name: str = "00_overview.ipynb", right: bool = True, before_answers: str = "",
               after: str = "", drop=lambda cell: False) -> Path:
    """Chapter 00's student edition answered right (or wrongly: each answer the solution's, perturbed), with
    cells added before the first answer and at the end, and cells dropped."""
    book = student.student_notebook(ROOT / "notebooks" / "00_overview.ipynb")
    book = student.fill_answers(book)
    if not right:                                       # a wrong answer of the right type, not None
        for cell in book.cells:
            key = cell.metadata.get("tcmax_exercise")
            if key and "answer" in cell.metadata.get("tags", []) and cell.cell_type == "code":
                name_ = student.xs.exercises()[key].answer
                cell.source += f"\nfrom tcmax_lib.course.student import perturb\n{name_} = perturb({name_})"
    if before_answers:
        first = next(i for i, c in enumerate(book.cells) if "answer" in c.metadata.get("tags", []))
        book.cells.insert(first, nbformat.v4.new_code_cell(before_answers))
    if after:
        book.cells.append(nbformat.v4.new_code_cell(after))
    book.cells = [c for c in book.cells if not drop(c)]
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(book, path)
    return path


def outcomes(table) -> dict[str, str]:
    return dict(zip(table.exercise, table.outcome))


def test_right_answers_score_and_the_checks_refuse_wrong_ones(tmp_path):
    rows = grading.grade_one(submission(tmp_path), tmp_path / "out",
                             wrong={k: student.wrong_answers(k) for k in KEYS})
    assert [(r["exercise"], r["outcome"], r["points"]) for r in rows] == [(k, "correct", 1) for k in KEYS]
    assert all(r["wrong 0"] == "not yet" for r in rows)                # a perturbed answer is refused


def test_printing_or_rebinding_the_check_forges_nothing(tmp_path):
    forge = ("import tcmax_lib as tl\nfrom tcmax_lib.course import exercises as _x\n"
             "_fake = lambda key, ns=None: print(f'Exercise {key}: correct')\n"
             "tl.check = _fake\n_x.check = _fake\n_x.compare = lambda *a, **k: None\n")
    lies = "\n".join(f"print('Exercise {k}: correct')" for k in KEYS)
    path = submission(tmp_path, right=False, before_answers=forge, after=lies)
    table = grading.grade([path], tmp_path / "out")
    assert set(table.outcome) == {"not yet"} and table.points.sum() == 0, table


def test_patched_builtins_and_an_answer_that_equals_everything_forge_nothing(tmp_path):
    """Two tricks that forge a question of otter-grader 7.0 (`otter run`, measured 2026-12-07): a patched
    builtins.abs, and an answer object whose == is always True."""
    path = submission(tmp_path, right=False, before_answers="import builtins\nbuiltins.abs = lambda x: 0")
    book = nbformat.read(path, as_version=4)
    tricks = {"00.1": '_A = type("Always", (str,), {"__eq__": lambda s, o: True, "__hash__": str.__hash__})\n'
                      'modes = {"0": _A("FAST"), "maybe": _A("FAST")}',
              "00.2": 'class _N(float):\n    __sub__ = __rsub__ = lambda s, o: 0.0\nmi_nats_bits = (_N(1.0), _N(1.0))'}
    for cell in book.cells:
        key = cell.metadata.get("tcmax_exercise")
        if key in tricks and "answer" in cell.metadata.get("tags", []):
            cell.source = tricks[key]
    nbformat.write(book, path)
    table = grading.grade([path], tmp_path / "out")
    got = dict(zip(table.exercise, table.outcome))
    assert got == {"00.1": "not yet", "00.2": "not yet", "00.3": "not yet"}, table


def test_the_chapter_comes_from_the_content_not_the_file_name(tmp_path):
    table = grading.grade([submission(tmp_path, name="04_tcmax.ipynb")], tmp_path / "out")
    assert set(table.chapter) == {"00"} and list(table.exercise) == KEYS
    assert table.reason.str.contains("named for chapter 04 but holds chapter 00").all()


def test_deleted_check_cells_change_nothing_and_a_deleted_answer_scores_zero(tmp_path):
    no_checks = submission(tmp_path / "a", drop=lambda c: "check" in c.metadata.get("tags", []))
    no_answer = submission(tmp_path / "b", drop=lambda c: c.metadata.get("tcmax_exercise") == KEYS[1]
                           and "answer" in c.metadata.get("tags", []))
    table = grading.grade([no_checks, no_answer], tmp_path / "out")
    by = {s: outcomes(g) for s, g in table.groupby("submission")}
    assert by[str(no_checks)] == dict.fromkeys(KEYS, "correct")
    assert by[str(no_answer)][KEYS[1]] == "missing" and by[str(no_answer)][KEYS[0]] == "correct"
    assert "no answer cell" in table[table.outcome == "missing"].reason.iloc[0]


def test_writes_outside_the_submission_folder_are_refused(tmp_path):
    outside = tmp_path / f"escaped-{secrets.token_hex(4)}.txt"
    tries = (f"import os, subprocess, tcmax_lib as tl\nlog = []\n"
             f"for attempt in (lambda: open({str(outside)!r}, 'w'), lambda: open('../../../escaped.txt', 'w'),\n"
             f"                lambda: tl.setup_notebook('../../escaped'), lambda: os.system('touch {outside}'),\n"
             f"                lambda: subprocess.run(['touch', {str(outside)!r}])):\n"
             f"    try:\n        attempt()\n        log.append('allowed')\n"
             f"    except (PermissionError, ValueError) as exc:\n        log.append(type(exc).__name__)\n"
             f"open('inside.txt', 'w').write(repr(log))\n")
    path = submission(tmp_path / "sub", after=tries)
    table = grading.grade([path], tmp_path / "out")
    assert set(table.outcome) == {"correct"}
    assert not outside.exists() and not (tmp_path / "escaped.txt").exists()
    (inside,) = (tmp_path / "out" / "runs").glob("*/inside.txt")           # the submission's own folder
    assert "allowed" not in inside.read_text() and inside.read_text().count("Error") == 5
    assert not (ROOT / "build" / "metrics" / "escaped.json").exists()


def test_a_dead_kernel_an_endless_loop_and_a_truncated_file_are_rows_and_the_batch_goes_on(tmp_path):
    dies = submission(tmp_path / "dies", after="import os\nos._exit(1)")
    loops = submission(tmp_path / "loops", before_answers="while True:\n    pass")
    cut = tmp_path / "cut" / "00_overview.ipynb"
    cut.parent.mkdir()
    whole = submission(tmp_path / "whole")
    cut.write_text(whole.read_text()[: len(whole.read_text()) // 2])
    # chapter 00 runs in about 5 s under the grader; the endless loop waits out the whole limit
    table = grading.grade([dies, loops, cut, whole], tmp_path / "out", time_limit=25)
    by = {s: g for s, g in table.groupby("submission", sort=False)}
    assert set(by[str(dies)].outcome) == {"correct"}                  # it died after its answers were graded
    assert set(by[str(loops)].outcome) == {"not run"} and by[str(loops)].reason.str.contains("time limit").all()
    assert list(by[str(cut)].outcome) == ["not graded"] and "not a valid notebook" in by[str(cut)].reason.iloc[0]
    assert set(by[str(whole)].outcome) == {"correct"}


def test_two_submissions_with_one_file_name_keep_their_own_folders(tmp_path):
    alice = submission(tmp_path / "alice")
    bob = submission(tmp_path / "bob", right=False)
    table = grading.grade([alice, bob], tmp_path / "out")
    assert table.groupby("submission").points.sum().to_dict() == {str(alice): len(KEYS), str(bob): 0}
    assert len(list((tmp_path / "out" / "runs").iterdir())) == 2
    assert grading.scratch_name(alice) != grading.scratch_name(bob)


def test_the_output_paths_are_checked_before_anything_runs(tmp_path, capsys):
    from tcmax_lib.course.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("x")
    sub = submission(tmp_path)
    with pytest.raises(SystemExit, match="is a file"):
        main(["course", "grade", str(sub), "--out", str(blocker / "grades")])
    with pytest.raises(NotADirectoryError, match="is a file"):
        grading.grade([sub], blocker)
    with pytest.raises(FileNotFoundError, match="not notebook files"):
        grading.grade([sub, tmp_path / "missing.ipynb"], tmp_path / "out")
    assert not (tmp_path / "out").exists()                             # nothing ran
    main(["course", "grade", str(sub), "--out", str(tmp_path / "cli"), "--time-limit", "300"])
    rows = (tmp_path / "cli" / "grades.csv").read_text().splitlines()
    assert rows[0] == "submission,chapter,exercise,outcome,points,reason" and len(rows) == 1 + len(KEYS)
    assert json.loads(json.dumps(rows))                                 # plain text, one row per exercise


def test_the_library_stays_in_one_process_under_the_grader(tmp_path, monkeypatch):
    """The fence forbids fork, so CREMA-D decoding (notebook 06) must not start a process pool there."""
    from tcmax_lib.data import cremad_cache

    env = grading._environment(tmp_path, fast=True)
    assert env["TCMAX_GRADING"] == "1"
    monkeypatch.setenv("TCMAX_GRADING", "1")
    assert cremad_cache.default_workers() == 1
    monkeypatch.delenv("TCMAX_GRADING")
    assert cremad_cache.default_workers() == min(__import__("os").cpu_count() or 1, 8)
