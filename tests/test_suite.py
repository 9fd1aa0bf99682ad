"""The suite's one execution per notebook (tcmax_lib.course.suite), without running a kernel."""

from __future__ import annotations

from pathlib import Path

import nbformat

from tcmax_lib.course import student, suite

ROOT = Path(__file__).resolve().parent.parent
NB = ROOT / "notebooks" / "00_overview.ipynb"
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"


def _executed(tmp_path: Path, change: str | None = None) -> Path:
    """Chapter 00's filled student edition as if run: every shared cell prints the committed output,
    the answer cells print 'answer <key>'; `change` replaces the stored output of the checked cell."""
    book = student.fill_answers(student.student_notebook(NB))
    committed = {c.get("id"): c for c in nbformat.read(NB, as_version=4).cells}
    for cell in book.cells:
        if cell.cell_type != "code":
            continue
        key = cell.metadata.get("tcmax_exercise")
        if key and "answer" in cell.metadata.get("tags", []):
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"answer {key}\n")]
        elif cell.get("id") in committed:
            cell.outputs = list(committed[cell.get("id")].outputs)
            if change and suite.CHECK_OUTPUT in cell.metadata.get("tags", []):
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=change)]
    path = tmp_path / "executed.ipynb"
    nbformat.write(book, path)
    return path


def test_stored_outputs_match_and_a_changed_print_is_caught(tmp_path):
    assert suite.output_mismatches(NB, _executed(tmp_path), SANITIZE) == []
    (problem,) = suite.output_mismatches(NB, _executed(tmp_path, "I(rho=0.5) = 0.2 nats\n"), SANITIZE)
    assert "I(rho=0.5) = 0.2 nats" in problem and "store-outputs --only 00" in problem


def test_the_sanitizer_masks_timings_as_nbval_did():
    patterns = suite._patterns(SANITIZE)
    a = [{"output_type": "stream", "name": "stdout", "text": "trained in 3.2 s at 0x7f01\n"}]
    b = [{"output_type": "stream", "name": "stdout", "text": "trained in "},
         {"output_type": "stream", "name": "stdout", "text": "41 s at 0x55aa\n"}]
    assert suite._streams(a, patterns) == suite._streams(b, patterns)


def test_the_instructor_view_carries_every_output_to_its_cell(tmp_path):
    view = suite.instructor_view(NB, _executed(tmp_path))
    instructor = nbformat.read(NB, as_version=4)
    assert [c.get("id") for c in view.cells] == [c.get("id") for c in instructor.cells]
    solutions = [c for c in view.cells if c.cell_type == "code" and "solution" in c.metadata.get("tags", [])]
    assert solutions and all(any("answer 00." in o.get("text", "") for o in c.outputs) for c in solutions)
    shared = [c for c in view.cells if c.cell_type == "code" and "keep_output" in c.metadata.get("tags", [])]
    by_id = {c.get("id"): c for c in instructor.cells}
    assert shared and all(c.outputs == by_id[c.get("id")].outputs for c in shared)


def test_a_notebook_run_twice_is_named(tmp_path):
    log = tmp_path / "executions.log"
    log.write_text("00_overview.ipynb\n01_x.ipynb\n00_overview.ipynb\n")
    assert suite.executed_twice(log) == ["00_overview.ipynb"]


def test_a_cell_that_raised_is_named(tmp_path):
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("1 / 0")])
    book.cells[1].outputs = [nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                                                    traceback=[])]
    path = tmp_path / "run.ipynb"
    nbformat.write(book, path)
    assert suite.cell_errors(path) == [f"cell 1 ({book.cells[1].get('id')}): ZeroDivisionError: division by zero"]
    assert suite.cell_errors(tmp_path / "missing.ipynb")[0].endswith("the run did not finish")


def test_the_lane_and_the_caller_share_one_queue_and_run_each_chapter_once(monkeypatch):
    import os
    import threading
    import time

    import pytest

    gate, ran, after = threading.Event(), [], []

    class _Run(str):                                        # what run_chapter returns, as far as the lane looks
        seconds = 0.0

    def fake(nb, out, data_dir=None, time_limit=3600.0, env=None):
        ran.append((nb.name, threading.current_thread().name, env["OMP_NUM_THREADS"], env.get("TCMAX_LATE")))
        if nb.name == "long.ipynb":
            assert gate.wait(10)                             # the lane is busy with the long chapter ...
        if nb.name == "short.ipynb":
            gate.set()                                      # (the last one the caller takes frees the lane)
        if nb.name == "bad.ipynb":
            raise RuntimeError("kernel would not start")
        return _Run(nb.name)

    monkeypatch.setattr(suite, "run_chapter", fake)
    monkeypatch.delenv("TCMAX_LATE", raising=False)
    lane = suite.Lane(Path("out"), threads=1, after=lambda nb, run: after.append(run))
    monkeypatch.setenv("TCMAX_LATE", "1")                    # set after the lane was made: no kernel sees it
    names = [Path(n) for n in ("long.ipynb", "mid.ipynb", "bad.ipynb", "short.ipynb")]
    lane.start(names)
    while not ran:
        time.sleep(0.01)
    # ... so the caller, asking for the long one, runs the rest of the queue itself, in queue order, then waits
    assert lane.get(Path("long.ipynb")) == "long.ipynb"
    assert [n for n, t, _, _ in ran if t == threading.current_thread().name] == ["mid.ipynb", "bad.ipynb",
                                                                                "short.ipynb"]
    assert lane.get(Path("mid.ipynb")) == "mid.ipynb" and lane.get(Path("short.ipynb")) == "short.ipynb"
    with pytest.raises(RuntimeError, match="would not start"):  # a failed chapter fails its tests, every time
        lane.get(Path("bad.ipynb"))
    with pytest.raises(RuntimeError, match="would not start"):
        lane.get(Path("bad.ipynb"))
    assert lane.get(Path("other.ipynb")) == "other.ipynb"   # one never queued is run on demand
    lane.close()
    by = {n: (t, omp, late) for n, t, omp, late in ran}
    assert len(ran) == len(by) == 5                          # each chapter ran once
    assert by["long.ipynb"][0].startswith("tcmax-lane")
    assert all(omp == "1" and late is None for _, omp, late in by.values())
    assert sorted(after) == ["long.ipynb", "mid.ipynb", "other.ipynb", "short.ipynb"]
    assert [n for n, _, _ in lane.log][-1] == "other.ipynb"
    assert os.environ["TCMAX_LATE"] == "1"
    with pytest.raises(ValueError, match="at least one thread"):
        suite.Lane(Path("out"), threads=0)


def test_xdist_workers_refuse_the_chapters_and_leave_the_record_to_the_controller(monkeypatch):
    """`make unit` spreads the unit tests over pytest-xdist workers; the chapters' one execution per session
    cannot be shared between workers, so a worker that collects them stops with the fix, and only the
    controller records the session's time (a worker's share of the tests is not the suite)."""
    from types import SimpleNamespace

    import conftest
    import pytest

    from tcmax_lib.course import timings

    worker = SimpleNamespace(workerinput={"workerid": "gw0"}, stash={})
    item = SimpleNamespace(fixturenames=["chapters", "nb"])
    with pytest.raises(pytest.UsageError, match="run them without -n .*-m 'not notebooks'"):
        conftest.pytest_collection_modifyitems(None, worker, [item])
    unit = SimpleNamespace(fixturenames=["tmp_path"])
    items = [unit]
    conftest.pytest_collection_modifyitems(None, worker, items)        # no chapter test: nothing to refuse
    assert items == [unit]

    def record(*args, **kwargs):
        raise AssertionError("an xdist worker recorded the suite's time")

    monkeypatch.setattr(timings, "record_suite_time", record)
    monkeypatch.setenv("TCMAX_SUITE_TARGET", "make unit")
    conftest.pytest_sessionfinish(SimpleNamespace(config=worker, exitstatus=0), 0)
