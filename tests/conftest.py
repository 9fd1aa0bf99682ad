"""Test defaults, set before any notebook kernel starts (kernels inherit the environment)."""

import os
import time

os.environ.setdefault("TCMAX_FAST", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("PYTHONHASHSEED", "0")
os.environ.setdefault("SOURCE_DATE_EPOCH", "0")
os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")


# every notebook is executed at most once per session (tests/test_notebooks.py; tcmax_lib.course.suite)
_LOG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "suite", "executions.log")
os.makedirs(os.path.dirname(_LOG), exist_ok=True)
open(_LOG, "w").close()
os.environ["TCMAX_EXECUTION_LOG"] = _LOG


_START = time.time()


def pytest_sessionfinish(session, exitstatus):
    """Fail the session if a notebook ran twice; record the time of a passing `make test` / `make unit`."""
    from tcmax_lib.course import timings
    from tcmax_lib.course.suite import executed_twice

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
