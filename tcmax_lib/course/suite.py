"""The test suite's one execution of each notebook, and everything read from it (notebook 00).

    run_chapter(nb, out)                 -> ChapterRun: the chapter executed once, in FAST mode, graded
    Lane(out).start(notebooks); .get(nb) -> the same runs, made by a background thread and the caller together
    instructor_view(nb, executed)        -> the executed instructor notebook, rebuilt for the site
    output_mismatches(nb, executed)      -> the stored outputs (cells tagged nbval-check-output) that changed

One FAST execution per notebook serves every layer of `make test`: it is the student edition with every
answer cell filled from the solutions (its check cells left out: the grader's evaluation of each exercise
gives the line `tl.check` would print), graded by `grading.grade_one` (every check must say *correct*, and
in the same run each wrong answer of `student.wrong_answers` must say *not yet*); its metrics are the ones
the notebook tests assert; its cells that the instructor edition shares (same cell ids) are compared with
the committed outputs the way nbval compares them (each stream's text joined, the regular expressions of
`tests/nbval_sanitize.cfg` applied);
and the instructor notebook rebuilt from it is what the site shows. `TCMAX_EXECUTION_LOG` names a file
that gets one line per execution, so a test can show that no notebook ran twice.
"""

from __future__ import annotations

import configparser
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..files import loads_json, write_text
from . import grading, student

CHECK_OUTPUT = "nbval-check-output"


@dataclass
class ChapterRun:
    """One chapter executed once: its grade rows, the executed notebook, its metrics, seconds (notebook 00)."""

    notebook: Path
    rows: list[dict]
    executed: Path
    metrics: dict
    seconds: float
    errors: list[str]                  # every cell that raised: none may (the grader lets a run go on after one)


def run_chapter(nb: Path, out: Path, data_dir: Path | None = None, time_limit: float = 3600.0,
                env: Mapping[str, str] | None = None) -> ChapterRun:
    """Execute chapter `nb` once: its student edition answered from the solutions, graded, in FAST (nb 00).

    `data_dir` shares one data cache between chapters (the suite's trusted runs); graded submissions get
    their own. `env` is the kernel's starting environment (default: this process's). Appends the
    notebook's name to the file named by TCMAX_EXECUTION_LOG in that environment, if set.
    """
    import nbformat

    env = dict(os.environ if env is None else env)
    keys = grading.chapter_exercises(nb.name[:2])
    path = Path(out) / "submissions" / nb.name
    path.parent.mkdir(parents=True, exist_ok=True)
    book = student.fill_answers(student.student_notebook(nb))
    # the student's check cells would run each solution once more: the grader's evaluation prints the same line
    book.cells = [c for c in book.cells if "check" not in c.metadata.get("tags", [])]
    nbformat.write(book, path)
    if env.get("TCMAX_EXECUTION_LOG"):
        with open(env["TCMAX_EXECUTION_LOG"], "a") as log:
            log.write(nb.name + "\n")
    t0 = time.perf_counter()
    rows = grading.grade_one(path, Path(out), time_limit, fast=True,
                             wrong={k: student.wrong_answers(k) for k in keys}, data_dir=data_dir, env=env)
    seconds = time.perf_counter() - t0
    folder = Path(out) / "runs" / grading.scratch_name(path)
    metrics_file = folder / "metrics" / f"{nb.stem}.json"
    metrics = loads_json(metrics_file.read_text(), str(metrics_file)) if metrics_file.exists() else {}
    return ChapterRun(nb, rows, folder / nb.name, metrics, seconds, cell_errors(folder / nb.name))


class Lane:
    """Chapters executed by a background thread while the caller does other work: two cores, two lanes (nb 00).

    `start(notebooks)` queues chapters in that order (longest first balances best); `get(nb)` returns a
    chapter's run, and while it is not ready the calling thread runs the first queued chapter the lane
    has not begun: both threads drain one queue, longest first, and no chapter runs twice. The environment is
    read once, when the lane is made, with `threads` as each kernel's thread count: a test that changes
    os.environ later cannot reach a kernel the lane starts. `after(nb, run)` runs once per chapter, in
    the thread that ran it (the suite writes the instructor view there).
    """

    def __init__(self, out: Path, data_dir: Path | None = None, threads: int = 1,
                 after: Callable[[Path, ChapterRun], None] | None = None):
        if threads < 1:
            raise ValueError(f"Lane: threads={threads}; each kernel needs at least one thread.")
        self.out, self.data_dir, self.after = Path(out), data_dir, after
        self.env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tcmax-lane")
        self._runs: dict[Path, Future] = {}
        self._order: list[Path] = []                       # the queue, in the order given (longest first)
        self._lock = threading.Lock()
        self.log: list[tuple[str, str, float]] = []      # (notebook, thread that ran it, seconds), in finishing order

    def _run(self, nb: Path) -> ChapterRun:
        run = run_chapter(nb, self.out, self.data_dir, env=self.env)
        if self.after is not None:
            self.after(nb, run)
        self.log.append((nb.name, threading.current_thread().name, run.seconds))
        return run

    def start(self, notebooks: Sequence[Path]) -> None:
        """Queue `notebooks` for the background thread, in this order (notebook 00)."""
        with self._lock:
            for nb in map(Path, notebooks):
                if nb not in self._runs:
                    self._runs[nb] = self._pool.submit(self._run, nb)
                    self._order.append(nb)

    def get(self, nb: Path) -> ChapterRun:
        """The run of chapter `nb`; until it is ready this thread runs queued chapters itself, longest first (nb 00).

        So the caller never idles while a chapter waits to be begun: it takes the first chapter of the queue
        that the lane has not begun (`nb` itself, or a longer one), and waits only when every chapter left is
        running in the lane.
        """
        nb = Path(nb)
        while True:
            with self._lock:
                if nb not in self._runs:                     # never queued: queue it here, last
                    self._runs[nb] = Future()
                    self._order.append(nb)
                if self._runs[nb].done():
                    break
                take = next((k for k in self._order if self._runs[k].cancel()), None)   # not begun: take it
                if take is not None:
                    fut = self._runs[take] = Future()
                    fut.set_running_or_notify_cancel()
            if take is None:
                break                                        # all that is left runs in the lane: wait for nb
            try:
                fut.set_result(self._run(take))
            except BaseException as exc:                     # the chapter's tests report it, each time
                fut.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
        return self._runs[nb].result()

    def close(self) -> None:
        """Drop the chapters not yet begun; one already running finishes (notebook 00)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def cell_errors(executed: Path) -> list[str]:
    """'cell k (id): ErrorName: message' for every cell of an executed notebook that raised (notebook 00)."""
    import nbformat

    if not Path(executed).exists():
        return [f"{Path(executed).name} was not written: the run did not finish"]
    out = []
    for i, cell in enumerate(nbformat.read(executed, as_version=4).cells):
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if o.get("output_type") == "error":
                out.append(f"cell {i} ({cell.get('id')}): {o.get('ename')}: {str(o.get('evalue'))[:200]}")
    return out


def instructor_view(nb: Path, executed: Path):
    """The instructor notebook `nb` with the outputs of the executed student edition, for the site (nb 00).

    Cells the editions share keep their ids, so their outputs carry over; a solution's outputs are those
    of the answer cell that ran its code (on the last solution cell of the exercise). The grader's cells,
    the answer and check cells do not appear.
    """
    import nbformat

    book = nbformat.read(nb, as_version=4)
    ran = nbformat.read(executed, as_version=4)
    by_id = {c.get("id"): c for c in ran.cells if c.cell_type == "code"}
    answers = {c.metadata.get("tcmax_exercise"): c for c in ran.cells
               if c.cell_type == "code" and "answer" in c.metadata.get("tags", [])}
    solution_of = {}
    for _, k, sol in student.exercise_blocks(book):
        code = [j for j in sol if book.cells[j].cell_type == "code"]
        if code:
            solution_of[code[-1]] = f"{nb.name[:2]}.{k}"
    for i, cell in enumerate(book.cells):
        if cell.cell_type != "code":
            continue
        src = answers.get(solution_of[i]) if i in solution_of else by_id.get(cell.get("id"))
        cell.outputs = list(src.outputs) if src is not None else []
        cell.execution_count = src.execution_count if src is not None else None
    return book


def _patterns(cfg: Path) -> list[tuple[re.Pattern, str]]:
    parser = configparser.ConfigParser()
    parser.read(cfg)
    return [(re.compile(parser[s]["regex"]), parser[s]["replace"]) for s in parser.sections()]


def _streams(outputs: list, patterns: list[tuple[re.Pattern, str]]) -> dict[str, str]:
    """The text of each stream (stdout, stderr), its pieces joined in order as nbval coalesces them, sanitised."""
    merged: dict[str, str] = {}
    for o in outputs:
        if o.get("output_type") == "stream":
            name = o.get("name", "stdout")
            merged[name] = merged.get(name, "") + "".join(o.get("text", ""))
    for name, text in merged.items():
        for rx, rep in patterns:
            text = rx.sub(rep, text)
        merged[name] = text
    return merged


def output_mismatches(nb: Path, executed: Path, sanitize: Path) -> list[str]:
    """The cells tagged nbval-check-output whose fresh streams differ from the committed ones (notebook 00)."""
    import nbformat

    committed = nbformat.read(nb, as_version=4)
    by_id = {c.get("id"): c for c in nbformat.read(executed, as_version=4).cells}
    patterns, out = _patterns(sanitize), []
    for cell in committed.cells:
        if cell.cell_type != "code" or CHECK_OUTPUT not in cell.metadata.get("tags", []):
            continue
        ran = by_id.get(cell.get("id"))
        if ran is None:
            out.append(f"{nb.name}: cell {cell.get('id')} did not run")
            continue
        want, got = _streams(cell.outputs, patterns), _streams(ran.outputs, patterns)
        if want != got:
            out.append(f"{nb.name}: cell {cell.get('id')} printed\n{got}\ninstead of the stored\n{want}\n(refresh with "
                       f"`tcmax series store-outputs --only {nb.name[:2]}` if the change is meant)")
    return out


def write_instructor_view(nb: Path, executed: Path, out_dir: Path) -> Path:
    """Write `instructor_view` to `out_dir`/<notebook> (build/executed/, what the site builds from) (nb 00)."""
    import nbformat

    out_dir.mkdir(parents=True, exist_ok=True)
    return write_text(out_dir / nb.name, nbformat.writes(instructor_view(nb, executed)))


def executed_twice(log: Path) -> list[str]:
    """The notebooks named more than once in an execution log (`TCMAX_EXECUTION_LOG`) (notebook 00)."""
    names = [line.strip() for line in Path(log).read_text().splitlines() if line.strip()]
    return sorted({n for n in names if names.count(n) > 1})
