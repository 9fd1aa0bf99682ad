"""Grading submitted student notebooks: `tcmax course grade` (notebook 00).

    grade(submissions, out, time_limit=900)  -> one row per (submission, exercise): outcome, points, reason
    read_submission(path)                   -> the notebook and its chapter, read from its content, or the problem

How a grade is made, and what a submission cannot do to it:

* **The grader evaluates every check itself.** After each answer cell it inserts its own cell, which loads
  the checking code afresh from `exercises.py` (so rebinding `tl.check`, or patching the library in the
  notebook, changes nothing) and appends the outcome to a file whose path only that cell knows, outside
  the submission's folder. What a cell prints is never read: printing "Exercise 00.1: correct" scores nothing.
* **Every exercise of the chapter gets a row.** The chapter is read from the notebook's content (its
  `tcmax` metadata, else its exercises), not from its file name; an exercise whose answer cell was deleted
  scores 0 with the reason, and so does one whose cell never ran.
* **Each submission runs in its own folder**, `<out>/runs/<name from its path>`, as its working directory,
  HOME, TMPDIR, data cache, metrics and figures; a Python audit hook installed before any student cell
  refuses writes outside that folder and refuses to start processes. Two files with one name in different
  folders never share a folder.
* **One bad submission is one row.** An invalid or truncated file, a kernel that dies and a submission
  that runs past `time_limit` seconds (all its cells together) each give rows with the reason; the batch
  goes on. `--out` and `grades.csv` are checked before the first submission runs.

Grading runs student code with your rights. The fence above stops accidents and the cheap tricks, not a
determined attacker: code in the kernel can still read files, use the network, or tamper with the
process it runs in. For submissions you do not trust, grade inside a container (README, "Grading").
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import exercises as xs

TIME_LIMIT_S = 900.0
COLUMNS = ["submission", "chapter", "exercise", "outcome", "points", "reason"]
FENCE = '''# tcmax grader: installed before any cell of the submission (not part of it)
def _tcmax_fence(roots, extra):
    import os, sys
    roots = tuple(os.path.realpath(r) + os.sep for r in roots)
    extra = {os.path.realpath(p) for p in extra}
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    def inside(p):
        p = os.path.realpath(os.fsdecode(p))
        return p in extra or any((p + os.sep).startswith(r) for r in roots)
    def hook(event, args):
        if event == "open" and args[0] is not None and not isinstance(args[0], int):
            flags = args[2] if isinstance(args[2], int) else 0
            mode = args[1] if isinstance(args[1], str) else ""
            if (flags & writes or any(c in mode for c in "wax+")) and not inside(args[0]):
                raise PermissionError(f"grading: writing {args[0]} is not allowed; write inside the working folder")
        elif event in ("os.remove", "os.rmdir", "os.mkdir", "os.truncate", "os.chmod", "os.chown", "os.utime",
                       "shutil.rmtree") and args and isinstance(args[0], (str, bytes, os.PathLike)) \\
                and not inside(args[0]):
            raise PermissionError(f"grading: {event} on {args[0]} is not allowed outside the working folder")
        elif event in ("os.rename", "os.link", "os.symlink") and not (inside(args[0]) and inside(args[1])):
            raise PermissionError(f"grading: {event} {args[0]} -> {args[1]} is not allowed")
        elif event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                       "os.forkpty", "pty.spawn", "os.kill", "os.killpg"):
            raise PermissionError(f"grading: {event} is not allowed while a submission is graded")
    sys.addaudithook(hook)
    import builtins, types                            # the builtins before any student cell, for the checks
    sys.modules["tcmax_lib.course._grader_builtins"] = types.SimpleNamespace(names=dict(vars(builtins)))
_tcmax_fence(__ROOTS__, __EXTRA__)
del _tcmax_fence
'''
EVALUATE = '''# tcmax grader: evaluates Exercise {key} (inserted by `tcmax course grade`; not part of the submission)
def _tcmax_evaluate():
    import importlib.util, json, sys
    spec = importlib.util.spec_from_file_location("tcmax_lib.course._grader_{tag}", {source!r})
    fresh = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = fresh                    # its own copy: the notebook's rebinding does not reach it
    fresh.__builtins__ = sys.modules["tcmax_lib.course._grader_builtins"].names   # nor a patched builtins.abs
    spec.loader.exec_module(fresh)
    from tcmax_lib.course.student import perturb
    ns, rows = globals(), []
    try:                                              # the solution runs once; every answer is compared with it
        want = fresh.expected_value(fresh.exercises()[{key!r}], ns)
    except BaseException:
        want = fresh._UNSET                           # then check() says why it cannot check
    for label, expr in [("answer", None)] + [(f"wrong {{i}}", w) for i, w in enumerate({wrong!r})]:
        scope = dict(ns)
        try:
            if expr is not None:                      # a wrong answer, tried on a copy (the self-test of the checks)
                names = {{**fresh._standard_names(), **scope, "perturb": perturb, "tol": {tol!r}}}
                scope[{name!r}] = eval(expr, names)
            res = fresh.check({key!r}, scope, want)
            rows.append({{"key": {key!r}, "as": label, "outcome": res.outcome, "message": res.message}})
        except BaseException as exc:
            rows.append({{"key": {key!r}, "as": label, "outcome": "cannot check",
                         "message": f"{{type(exc).__name__}}: {{exc}}"[:300]}})
    with open({result!r}, "a") as f:
        f.write("".join(json.dumps(r) + "\\n" for r in rows))
_tcmax_evaluate()
del _tcmax_evaluate
'''


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def chapter_exercises(chapter: str) -> list[str]:
    """The keys of the exercises of a chapter that have a computed check, in order (notebook 00)."""
    return [k for k, ex in xs.exercises().items() if k.startswith(f"{chapter}.") and ex.answer]


def read_submission(path: Path) -> tuple[Any, str | None, str | None]:
    """(notebook, chapter "NN", problem): the chapter from the content, never from the file name (notebook 00)."""
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:                              # truncated JSON, not a notebook, schema errors
        return None, None, f"not a valid notebook ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
    meta = nb.metadata.get("tcmax", {}) if isinstance(nb.metadata.get("tcmax"), dict) else {}
    keys = [c.metadata.get("tcmax_exercise") for c in nb.cells if isinstance(c.metadata.get("tcmax_exercise"), str)]
    keys += re.findall(r'tl\.check\("(\d\d)\.\d+"', "\n".join(c.source for c in nb.cells if c.cell_type == "code"))
    from_meta = str(meta.get("notebook", ""))[:2]
    from_cells = {k[:2] for k in keys}
    chapter = from_meta if re.fullmatch(r"\d\d", from_meta) else (from_cells.pop() if len(from_cells) == 1 else None)
    if chapter is None:
        return nb, None, "cannot tell which chapter this is: no student-edition metadata and no exercise cells"
    if not chapter_exercises(chapter) and not any(k.startswith(chapter) for k in xs.exercises()):
        return nb, None, f"chapter {chapter} has no exercises in this version of the series"
    return nb, chapter, None


def scratch_name(path: Path) -> str:
    """A folder name for a submission, from its whole path: two files with one name never share one (nb 00)."""
    full = str(Path(path).resolve())
    stem = re.sub(r"[^\w.-]+", "_", "__".join(Path(path).parts[-3:]).removesuffix(".ipynb"))[-80:]
    return f"{stem}-{hashlib.sha256(full.encode()).hexdigest()[:8]}"


def prepare(nb, chapter: str, folder: Path, result: Path, wrong: dict[str, list] | None = None,
            data_dir: Path | None = None):
    """The submission with the grader's fence first and its evaluation after each answer cell (notebook 00)."""
    import nbformat

    source = str(Path(xs.__file__).resolve())
    roots = [str(folder)] + ([str(data_dir)] if data_dir is not None else [])
    fence = FENCE.replace("__ROOTS__", repr(roots)).replace("__EXTRA__", repr([str(result)]))
    cells = [nbformat.v4.new_code_cell(fence)]
    found = set()
    for cell in nb.cells:
        cells.append(cell)
        key = cell.metadata.get("tcmax_exercise")
        if cell.cell_type == "code" and "answer" in _tags(cell) and isinstance(key, str) and key.startswith(chapter):
            ex = xs.exercises().get(key)
            if ex is None or not ex.answer or key in found:
                continue
            found.add(key)
            cells.append(nbformat.v4.new_code_cell(EVALUATE.format(
                key=key, name=ex.answer, source=source, result=str(result), tag=secrets.token_hex(4),
                tol=ex.tol, wrong=list((wrong or {}).get(key, [])))))
    for cell in cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    out = nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata)
    return out, found


def _environment(folder: Path, fast: bool, data_dir: Path | None = None,
                 base: Mapping[str, str] | None = None) -> dict[str, str]:
    own = ("TCMAX_METRICS", "TCMAX_FIGURES", "TCMAX_RESULTS")
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith(own)}
    home, tmp = folder / "home", folder / "tmp"
    for d in (home, tmp, folder / "data", folder / "metrics", folder / "figures"):
        d.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), TMPDIR=str(tmp), IPYTHONDIR=str(home / ".ipython"),
               MPLCONFIGDIR=str(home / ".matplotlib"), XDG_CACHE_HOME=str(home / ".cache"),
               TCMAX_DATA_DIR=str(data_dir or folder / "data"), TCMAX_METRICS_DIR=str(folder / "metrics"),
               TCMAX_FIGURES_DIR=str(folder / "figures"), TCMAX_FAST="1" if fast else "0", TQDM_DISABLE="1",
               TCMAX_GRADING="1")                  # the library then works in one process: the fence forbids fork
    return env


def execute(nb, folder: Path, deadline: float, fast: bool = True, data_dir: Path | None = None,
            env: Mapping[str, str] | None = None) -> tuple[Any, str]:
    """Run a prepared notebook in `folder` until done or `deadline` (time.monotonic()); (notebook, problem) (nb 00).

    The kernel's environment is `env` (default: this process's) with the grader's folders and flags on top.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    client = NotebookClient(nb, kernel_name="python3", allow_errors=True, interrupt_on_timeout=False,
                            timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
                            resources={"metadata": {"path": str(folder)}})
    problem = ""
    try:
        client.execute(env=_environment(folder, fast, data_dir, env), cwd=str(folder))
    except CellTimeoutError:
        problem = "stopped at the time limit (the remaining cells did not run)"
    except DeadKernelError:
        problem = "the kernel died (the remaining cells did not run)"
    except Exception as exc:                                  # a kernel that would not start, a broken client
        problem = f"could not be run ({type(exc).__name__}: {str(exc)[:160]})"
    return nb, problem


def _first_error(nb) -> str:
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if o.get("output_type") == "error":
                return f"cell {i} raised {o.get('ename')}: {str(o.get('evalue'))[:120]}"
    return ""


def grade_one(path: Path, out: Path, time_limit: float = TIME_LIMIT_S, fast: bool = True,
              wrong: dict[str, list] | None = None, data_dir: Path | None = None,
              env: Mapping[str, str] | None = None) -> list[dict]:
    """Grade one submission; never raises for the submission's faults: they become the rows' reasons (nb 00).

    `wrong` maps an exercise to answers its check must refuse, tried in the same run (the self-test);
    `data_dir` shares one data cache (trusted runs, the test suite), else each submission gets its own;
    `env` is the environment the kernel starts from (default: this process's, read when the kernel starts).
    """
    import nbformat

    nb, chapter, problem = read_submission(path)
    name = str(path)
    if problem:
        keys = chapter_exercises(chapter) if chapter else []
        return [dict(submission=name, chapter=chapter or "", exercise=k, outcome="not run", points=0, reason=problem)
                for k in keys] or [dict(submission=name, chapter=chapter or "", exercise="", outcome="not graded",
                                        points=0, reason=problem)]
    folder = out / "runs" / scratch_name(path)
    folder.mkdir(parents=True, exist_ok=True)
    private = out / ".grader"
    private.mkdir(parents=True, exist_ok=True)
    result = private / f"{secrets.token_hex(16)}.jsonl"      # the kernel never sees this name before it is used
    prepared, present = prepare(nb, chapter, folder, result, wrong, data_dir)
    executed, problem = execute(prepared, folder, time.monotonic() + time_limit, fast, data_dir, env)
    nbformat.write(executed, folder / Path(path).name)           # what ran, for the instructor to look at
    got: dict[str, dict] = {}
    if result.exists():
        for line in result.read_text().splitlines():
            row = json.loads(line)
            got.setdefault(row["key"], {})[row["as"]] = row
        result.unlink()
    error = _first_error(executed)
    named = re.match(r"(\d\d)_", Path(path).name)
    note = f"; the file is named for chapter {named.group(1)} but holds chapter {chapter}" \
        if named and named.group(1) != chapter else ""
    rows = []
    for key in chapter_exercises(chapter):
        r = got.get(key, {}).get("answer")
        if key not in present:
            outcome, reason = "missing", f"no answer cell for Exercise {key} (deleted or moved out of its cell)"
        elif r is None:
            outcome, reason = "not run", problem or "its evaluation did not run"
        else:
            outcome, reason = r["outcome"], r["message"]
            if outcome != "correct" and error:
                reason = f"{reason} ({error})"
        extra = {}
        for i in range(len((wrong or {}).get(key, []))):           # the self-test: what a wrong answer is told
            w = got.get(key, {}).get(f"wrong {i}", {})
            extra[f"wrong {i}"], extra[f"wrong {i} message"] = w.get("outcome", ""), w.get("message", "")
        rows.append(dict(submission=name, chapter=chapter, exercise=key, outcome=outcome,
                         points=int(outcome == "correct"), reason=(reason or "") + note, **extra))
    return rows


def grade(submissions: list[Path], out: Path, time_limit: float = TIME_LIMIT_S, fast: bool = True):
    """Grade every submission into one table; the batch never stops for one submission (notebook 00)."""
    import pandas as pd

    subs = [Path(s) for s in submissions]
    bad = [str(s) for s in subs if not s.is_file() or s.suffix != ".ipynb"]
    if bad:                                                    # every file checked before any is run
        raise FileNotFoundError(f"{bad}: not notebook files; give the submitted .ipynb files.")
    if not time_limit > 0:
        raise ValueError(f"time_limit={time_limit}: give a positive number of seconds per submission.")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; give a folder for the runs and grades.csv.")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for sub in subs:
        rows += grade_one(sub, out, time_limit, fast)
    return pd.DataFrame(rows, columns=COLUMNS)
