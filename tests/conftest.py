"""Test defaults, set before any notebook kernel starts (kernels inherit the environment)."""

import os

os.environ.setdefault("TCMAX_FAST", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("PYTHONHASHSEED", "0")
os.environ.setdefault("SOURCE_DATE_EPOCH", "0")
os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
