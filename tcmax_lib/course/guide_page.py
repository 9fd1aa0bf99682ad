"""The instructor's guide rendered: docs/instructors.md and the README's teaching block (notebook 00).

The facts come from `guide` (outcomes, plans, prerequisites, reading and run times); `tcmax readme`
writes both parts and `tests/test_guide.py` checks that they are current.
"""

from __future__ import annotations

from pathlib import Path

from ..files import write_text
from ..runtime import repo_root
from .guide import (
    GUIDE,
    MARK,
    OUTCOMES,
    PLANS,
    TEACH_BEGIN,
    TEACH_END,
    WORDS_PER_MINUTE,
    _nb_paths,
    duration,
    exercise_title,
    prerequisites,
    reading_minutes,
    run_times,
    session_load,
    title,
)

WORKED_EXAMPLE = {           # "Adding an exercise", tested by tests/test_guide.py on a copy of notebook 00
    "prompt": "**Exercise 4** *(predict, then run)*. How many bits is one nat? Predict, then compute it.",
    "solution": "bits_per_nat = gt.nats_to_bits(1.0)\nprint(f\"1 nat = {bits_per_nat:.4f} bits\")",
    "toml": '[[exercise]]\nkey = "00.4"\nanswer = "bits_per_nat"\nwhat = "a float: how many bits one nat is"\n'
            'tol = 0.001          # the answer is 1 / ln 2; three decimals are enough\n'
            'hint = "A nat uses the natural logarithm, a bit log base 2: change the base."',
}


def _reading(nb: Path) -> str:
    """'22 min', or '22 min (+8 min optional appendix)' for a notebook with cells tagged optional."""
    extra = reading_minutes(nb, optional=True)
    return f"{reading_minutes(nb)} min" + (f" (+{extra} min optional appendix)" if extra else "")


def guide_markdown() -> str:
    """The instructor's guide page, from OUTCOMES, PLANS, the notebooks and results/ (notebook 00)."""
    paths, times = _nb_paths(), run_times()
    out = ["# Instructor's guide", "", MARK, "",
           "The series comes in two editions built from the same notebooks. The **instructor edition** "
           "(`notebooks/`) has every worked solution, collapsed. The **student edition** (`student/` in the "
           "repository, or `make student` into `build/student/`) has none: each exercise is followed by an answer "
           "cell and, where it computes something, a check cell that answers *correct* or *not yet* with a hint; "
           "each derivation has a self-check behind a click. Each chapter's page offers both for download, and "
           "the README's table opens either in Colab.", "",
           "## Chapters at a glance", "",
           f"Reading time counts the Markdown and code of the instructor edition at {WORDS_PER_MINUTE} words a "
           "minute (math-heavy sections take longer). Run times are read from `results/`: FAST from "
           "`results/fast_timings.json`, FULL from `results/<notebook>.json`, with the device of each run.", "",
           "| chapter | a student can then derive · implement · measure | needs | reading | FAST run | "
           "FULL run, CPU | FULL run, GPU |", "|---|---|---|---|---|---|---|"]
    for num, nb in paths.items():
        d, i, m = OUTCOMES[num]
        pre = ", ".join(prerequisites(nb)) or "—"
        t = times[num]
        out.append(f"| {num} {title(nb)} | **derive** {d}; **implement** {i}; **measure** {m} "
                   f"| {pre} | {_reading(nb)} | {t['fast']} | {t['full_cpu']} | {t['full_gpu']} |")
    gpu_runs = [num for num, t in times.items() if t["full_gpu"] != "not measured"]
    out += ["", ("No GPU run is recorded in `results/` yet, so the GPU column says *not measured*; it fills in "
                 "when a FULL run on a GPU is committed." if not gpu_runs else
                 f"A GPU run is recorded for {', '.join(gpu_runs)}; *not measured* marks the chapters without one."),
            "", "## Order of dependence", ""]
    for num, nb in paths.items():
        pre = prerequisites(nb)
        out.append(f"- **{num}** needs {', '.join(pre) if pre else 'nothing but Python, PyTorch and probability'}.")
    out += ["", "## Two course plans", "",
            "Each session lists the sections read in class, the FAST run of its chapters (students run it in "
            "class, on a laptop CPU) and the homework. The load line adds the sections' reading time and the FAST "
            "run times; `tests/test_guide.py` checks that it fits the session, that every section and exercise "
            "exists, and that every chapter's prerequisites are taught earlier or bridged.", ""]
    for plan in PLANS:
        out += [f"### {plan.name}", ""]
        for k, s in enumerate(plan.sessions, 1):
            reading, fast = session_load(s)
            secs = "; ".join(f"{n} §" + ", §".join(map(str, v)) for n, v in s.sections.items())
            hw = ", ".join(exercise_title(e) for e in s.homework)
            out += [f"{k}. **{s.title}** ({s.minutes} min). In class: {secs}. Homework: {hw}. "
                    f"Load: {reading} min reading + {duration(fast)} of FAST runs (the rest of the session is "
                    "discussion and exercises)."]
        for skipped, how in plan.bridges.items():
            out += ["", f"*Bridge for chapter {skipped}:* {how}."]
        if plan.project:
            out += ["", f"*Project:* {plan.project}"]
        out += [""]
    out += ["## Chapters that need a GPU or a download", "",
            "- **05** downloads FSDD (spoken digits) and MNIST once, verified against SHA-256 manifests; set "
            "`TCMAX_DATA_MIRROR` to a folder holding them to work offline (a lab machine without internet).",
            "- **06** FULL needs a GPU and the full CREMA-D data set (2.4 GB, `tcmax cremad download`); its FAST "
            "mode runs the whole pipeline on six clips. Without a GPU: run FAST, read the committed text, and use "
            "Exercises 06.1-06.3, which need no training.",
            f"- **07** FULL runs on a CPU ({times['07']['full_cpu']}); in class, run FAST and read the committed "
            "FULL run, which every table and figure of the notebook shows without running. To re-run it on a "
            "course server over several sittings, repeat `tcmax series run --full --only 07`: finished trainings "
            "are kept in `build/run-store/` and loaded, not repeated (README, *FAST and FULL mode*).", "",
            "## Grading", "",
            "- `make student` (or `tcmax course student --out DIR`) writes the student edition; `student/` is the "
            "committed copy that Colab opens. Hand students either.",
            "- A check cell prints one line: `Exercise NN.k: correct.`, `Exercise NN.k: not yet. <what is wrong>. "
            "Hint: ...` or `Exercise NN.k: cannot check` (the cells above it were not run). It compares with the "
            "solution's value, computed in the student's own kernel, within the tolerance in "
            "`tcmax_lib/course/exercises.toml`; it never prints that value.",
            "- **Batch:** collect the submitted notebooks in one folder and run "
            "`tcmax course grade submissions/*.ipynb --out build/grades [--time-limit 900]`. Each notebook is executed "
            "from scratch in FAST mode (its saved outputs do not count); after each answer cell the grader evaluates "
            "the check itself and keeps the outcome where the notebook cannot write, so what a cell prints, or a "
            "rebound `tl.check`, changes nothing. `build/grades/grades.csv` gets one row per exercise of the chapter "
            "(read from the notebook, not its file name): submission, chapter, exercise, outcome, points and the "
            "reason (a deleted answer cell is *missing*; a cell that raised, a dead kernel or the time limit are "
            "named). A broken or endless submission is its own rows; the batch goes on. Points per submission are "
            "printed.",
            "- **Grading runs student code with your rights.** Each submission runs in its own folder under "
            "`--out` (working directory, HOME, temporary files, data cache), and the grader refuses writes outside "
            "it and the start of other processes; that stops accidents and cheap tricks, not a determined attacker, "
            "who can still read your files or tamper with the grading process from inside. For submissions you do "
            "not trust, grade in a throw-away container with no network and only the submissions and `--out` "
            "mounted (the README, *Grading untrusted submissions*).",
            "- The checks run on the student's machine too, and the solutions ship inside the installed package "
            "(`checks.json`): a determined student can read them. Grade from `tcmax course grade`, and grade "
            "derivations by reading them.", "",
            "## Adding an exercise", "",
            "1. In the instructor notebook, add the prompt as a Markdown cell after the last exercise, starting "
            "with `**Exercise k**` (add `*(derivation)*` for a derivation).",
            "2. Add the solution right after it: cells tagged `solution`, collapsed (`jupyter.source_hidden`). "
            "A solution that computes something assigns the answer to one variable.",
            "3. Describe the check in `tcmax_lib/course/exercises.toml`: `answer` (that variable), `what`, `tol`, "
            "`hint`; a derivation gets `reveal`, its key intermediate result.",
            "4. Run `tcmax series sync-book`: it rebuilds `checks.json` and `student/`, and refuses an exercise "
            "without a check, a derivation without a self-check, or a solution that never assigns its answer.",
            "5. `make test` executes the student edition with the solutions filled in (every check must say "
            "*correct*) and with one wrong answer (it must say *not yet*).", "",
            "Worked example, tested by `tests/test_guide.py` on a copy of notebook 00. The prompt cell:", "",
            f"> {WORKED_EXAMPLE['prompt']}", "", "The solution cell (tagged `solution`):", "", "```python",
            WORKED_EXAMPLE["solution"], "```", "", "The entry in `exercises.toml`:", "", "```toml",
            WORKED_EXAMPLE["toml"], "```", ""]
    return "\n".join(out)


def teaching_block() -> str:
    """The README's generated teaching summary: per chapter reading and run times, the plans (notebook 00)."""
    paths, times = _nb_paths(), run_times()
    out = [TEACH_BEGIN, "", "| chapter | reading | FAST run | FULL run, CPU | FULL run, GPU |", "|---|---|---|---|---|"]
    out += [f"| {n} · {title(p)} | {_reading(p)} | {times[n]['fast']} | {times[n]['full_cpu']} | "
            f"{times[n]['full_gpu']} |" for n, p in paths.items()]
    out += [""] + [f"- **{p.name}**: {len(p.sessions)} sessions" + (", with a project" if p.project else "")
                   for p in PLANS]
    return "\n".join(out + ["", TEACH_END])


def update_guide(check: bool = False) -> bool:
    """Write docs/instructors.md and the README's teaching block; with check=True only compare (nb 00)."""
    root = repo_root()
    page, readme = root / GUIDE, root / "README.md"
    text = readme.read_text()
    if TEACH_BEGIN not in text or TEACH_END not in text:
        raise ValueError(f"README.md lacks the markers {TEACH_BEGIN!r} ... {TEACH_END!r} of the teaching table.")
    head, rest = text.split(TEACH_BEGIN, 1)
    new_readme = head + teaching_block() + rest.split(TEACH_END, 1)[1]
    new_page = guide_markdown() + "\n"
    current = new_readme == text and page.exists() and page.read_text() == new_page
    if not check:
        write_text(page, new_page)                 # each atomic: a full disk or SIGTERM leaves the old file whole
        write_text(readme, new_readme)
    return current
