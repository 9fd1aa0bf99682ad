"""Test defaults, set before any notebook kernel starts (kernels inherit the environment)."""

import os

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


def pytest_sessionfinish(session, exitstatus):
    """Fail the session if a notebook was executed more than once (the suite executes each one once)."""
    from tcmax_lib.course.suite import executed_twice

    twice = executed_twice(_LOG)
    if twice:
        print(f"\nnotebooks executed more than once in this session: {twice} (each should run once)")
        session.exitstatus = 1
