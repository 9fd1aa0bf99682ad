"""The instructor's guide is current, and its course plans hold together (tcmax_lib.course.guide)."""

from pathlib import Path

import nbformat
import pytest

from tcmax_lib.course import exercises as xs
from tcmax_lib.course import guide, guide_page, student

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = guide._nb_paths()


def test_guide_page_and_readme_block_are_current():
    assert guide_page.update_guide(check=True), "docs/instructors.md or the README's teaching block is stale: " \
                                                "run `tcmax readme`"


def test_prerequisites_are_read_from_the_notebooks():
    assert guide.prerequisites(NOTEBOOKS["00"]) == []
    assert guide.prerequisites(NOTEBOOKS["03"]) == ["00", "01", "02"]
    assert guide.prerequisites(NOTEBOOKS["07"]) == ["03", "04", "05"]       # "§10 of notebook 04" is no chapter
    for num, nb in NOTEBOOKS.items():
        assert all(p < num for p in guide.prerequisites(nb)), f"{num} depends on a later chapter"


def test_every_time_in_the_guide_comes_from_results():
    times = guide.run_times()
    page = guide_page.guide_markdown()
    for num, t in times.items():
        assert f"| {t['fast']} | {t['full_cpu']} | {t['full_gpu']} |" in page, num
    assert guide.duration(45) == "45 s" and guide.duration(1265.1) == "21 min"


def test_the_gpu_sentence_follows_the_results(monkeypatch):
    times = guide.run_times()
    assert all(t["full_gpu"] == "not measured" for t in times.values())      # no GPU run committed today
    assert "No GPU run is recorded" in guide_page.guide_markdown()
    gpu = {**times, "05": {**times["05"], "full_gpu": "9 min (CUDA NVIDIA H100)", "full_cpu": "not measured"}}
    monkeypatch.setattr(guide_page, "run_times", lambda: gpu)
    page = guide_page.guide_markdown()
    assert "No GPU run is recorded" not in page and "A GPU run is recorded for 05;" in page


@pytest.mark.parametrize("plan", guide.PLANS, ids=lambda p: p.name.split(" (")[0])
def test_course_plan_holds_together(plan):
    taught: set[str] = set()
    assigned: list[str] = []
    for s in plan.sessions:
        for num, secs in s.sections.items():
            known = guide.sections(NOTEBOOKS[num])
            assert set(secs) <= set(known), f"{s.title}: {num} has no section(s) {set(secs) - set(known)}"
            missing = [p for p in guide.prerequisites(NOTEBOOKS[num]) if p not in taught | {num}
                       and p not in plan.bridges]
            assert not missing, f"{s.title}: chapter {num} needs {missing}, neither taught before nor bridged"
            taught.add(num)                             # chapters of one session are taught in the listed order
        for key in s.homework:
            ex = xs.exercises()[key]                    # exists, with a check or a self-check
            assert ex.answer or ex.reveal
            assert key[:2] in taught or key[:2] in plan.bridges, f"{key} set before chapter {key[:2]} is taught"
        assigned += s.homework
        reading, fast = guide.session_load(s)
        assert reading + fast / 60 <= s.minutes, f"{s.title}: {reading} min reading + {fast:.0f} s FAST"
    assert len(assigned) == len(set(assigned)), "an exercise is set twice"


def test_the_worked_example_of_adding_an_exercise_works(tmp_path):
    """The guide's worked example, applied to a copy of notebook 00, passes with its solution and fails wrongly."""
    ex = guide_page.WORKED_EXAMPLE
    nb = nbformat.read(NOTEBOOKS["00"], as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if c.source.startswith("## Summary"))
    sol = nbformat.v4.new_code_cell(ex["solution"], metadata={"tags": ["solution"], "jupyter": {"source_hidden": True}})
    nb.cells[at:at] = [nbformat.v4.new_markdown_cell(ex["prompt"]), sol]
    copy = tmp_path / NOTEBOOKS["00"].name
    nbformat.write(nb, copy)
    spec = tmp_path / "exercises.toml"
    spec.write_text(xs.SPEC.read_text() + "\n" + ex["toml"] + "\n")
    others = [p for n, p in NOTEBOOKS.items() if n != "00"]
    entry = student.collect_checks(spec, [copy, *others])["00.4"]
    added = xs.Exercise(**entry)
    from tcmax_lib.info import closed_forms as gt

    assert xs.compare(1.4427, xs.expected_value(added, {"gt": gt}), added.tol, added.answer) is None
    assert xs.compare(0.6931, xs.expected_value(added, {"gt": gt}), added.tol, added.answer) is not None
    with pytest.raises(ValueError, match="Exercise 4 has no entry '00.4'"):
        student.collect_checks(xs.SPEC, [copy, *others])
