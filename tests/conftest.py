"""Test defaults, set before any notebook kernel starts (kernels inherit the environment)."""

import json
import os
import time
from pathlib import Path

import pytest

os.environ.setdefault("TCMAX_FAST", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("PYTHONHASHSEED", "0")
os.environ.setdefault("SOURCE_DATE_EPOCH", "0")
os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
os.environ.pop("TCMAX_RUN_STORE", None)   # a store left set for a FULL run must not serve (or collect) the tests'
                                          # trainings: the suite trains; tests/test_runstore.py sets its own
if os.environ.get("PYTEST_XDIST_WORKER"):                   # `make unit` spreads the unit tests over one worker a
    os.environ["OMP_NUM_THREADS"] = "1"                      # core (pytest-xdist): each worker and what it starts
    os.environ["MKL_NUM_THREADS"] = "1"                      # keep to one thread, or 2 workers x 2 threads fight


# every notebook is executed at most once per session (tests/test_notebooks.py; tcmax_lib.course.suite)
_LOG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "suite", "executions.log")
os.makedirs(os.path.dirname(_LOG), exist_ok=True)
open(_LOG, "w").close()
os.environ["TCMAX_EXECUTION_LOG"] = _LOG


_START = time.time()
ROOT = Path(__file__).resolve().parent.parent
LANE = pytest.StashKey()                                    # the session's suite.Lane


def _fast_seconds() -> dict[str, float]:
    """Each notebook's committed FAST time (results/fast_timings.json), to queue the longest first."""
    try:
        return json.loads((ROOT / "results" / "fast_timings.json").read_text())["notebooks"]
    except (OSError, ValueError, KeyError):
        return {}


@pytest.hookimpl(trylast=True)                             # after -m and -k have deselected
def pytest_collection_modifyitems(session, config, items):
    """Tests that read the chapters' executions go last; the executions start now in a second lane.

    On 2 cores the notebooks run in a background thread (`suite.Lane`, each kernel on one thread) while
    this process runs the unit tests on the other core; when the chapter tests come, this thread runs
    the queued chapters the lane has not begun, longest first. Each chapter still runs once.
    """
    from tcmax_lib.course import series, suite
    from tcmax_lib.data.download import data_dir

    uses = [it for it in items if "chapters" in it.fixturenames]
    if not uses:
        return
    if hasattr(config, "workerinput"):                      # each xdist worker would execute every chapter again
        raise pytest.UsageError(
            f"{len(uses)} selected tests read the chapters' executions, which run once per session in the "
            "suite's lanes and cannot be shared between pytest-xdist workers: run them without -n (`make test`), "
            "or deselect them with -m 'not notebooks' (`make unit`).")
    items[:] = [it for it in items if it not in uses] + uses
    wanted = set(series.notebooks()) if any("site" in it.fixturenames for it in uses) else {
        it.callspec.params["nb"] for it in uses if hasattr(it, "callspec") and "nb" in it.callspec.params}
    fast = _fast_seconds()
    import torch

    torch.set_num_threads(1)                                # this lane: the unit tests, on one core
    os.environ["OMP_NUM_THREADS"] = "1"                     # and the processes they start
    lane = suite.Lane(ROOT / "build" / "suite", data_dir=data_dir(), threads=1,
                      after=lambda nb, run: suite.write_instructor_view(nb, run.executed, ROOT / "build" / "executed"))
    lane.start(sorted(wanted, key=lambda nb: -fast.get(nb.name, 0.0)))
    config.stash[LANE] = lane



@pytest.fixture(scope="session")
def chapters(request):
    """The suite's chapter executions (`suite.Lane`): `chapters.get(nb)` is notebook nb's one FAST run."""
    return request.config.stash[LANE]


def pytest_terminal_summary(terminalreporter):
    """Which thread ran each chapter, and for how long (the two lanes' balance)."""
    lane = terminalreporter.config.stash.get(LANE, None)
    if lane is not None and lane.log:
        terminalreporter.section("chapters executed (suite.Lane)")
        for name, thread, seconds in lane.log:
            terminalreporter.write_line(f"{seconds:7.1f} s  {name}  ({thread})")


def pytest_configure(config):
    """An xdist worker runs its tests on one torch thread (the workers share the cores)."""
    if hasattr(config, "workerinput"):
        import torch

        torch.set_num_threads(1)


def pytest_sessionfinish(session, exitstatus):
    """Fail the session if a notebook ran twice; record the time of a passing `make test` / `make unit`."""
    from tcmax_lib.course import timings
    from tcmax_lib.course.suite import executed_twice

    if hasattr(session.config, "workerinput"):              # an xdist worker: the controller records the session
        return
    lane = session.config.stash.get(LANE, None)
    if lane is not None:
        lane.close()
    twice = executed_twice(_LOG)
    if twice:
        print(f"\nnotebooks executed more than once in this session: {twice} (each should run once)")
        session.exitstatus = 1
    target = os.environ.get("TCMAX_SUITE_TARGET")
    if target and session.exitstatus == 0:                 # only a passing run of the whole target is recorded
        stats = session.config.pluginmanager.get_plugin("terminalreporter").stats
        counts = {k: len(stats.get(k, [])) for k in ("passed", "failed", "skipped")}
        path = timings.record_suite_time(target, time.time() - _START, counts,
                                         timings.since(os.environ.get("TCMAX_CI_START")))
        print(f"\n{target}: {time.time() - _START:.0f} s recorded in {path} and README.md")
