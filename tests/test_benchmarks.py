"""Every benchmark script runs end to end at tiny sizes on the CPU (the GPU figures need the real sizes).

These are smoke runs: they check that the scripts and their table formats work, not their timings.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MIRROR = os.environ.get("TCMAX_DATA_MIRROR")


def _run(*args: str, timeout: int = 300, env: dict | None = None) -> str:
    res = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), **(env or {})})
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


KIND = re.compile(r"device: CPU .*\((AMX-BF16|AVX512-BF16, no AMX|no native bf16)\)")


def test_bench_estimators_tiny():
    out = _run("benchmarks/bench_estimators.py", "--device", "cpu", "--steps", "3", "--rounds", "1", "--hidden", "16",
               "--no-compile")                     # compilation is tested in test_estimators.py
    assert KIND.search(out.splitlines()[0]), out.splitlines()[0]          # the header names the CPU's bf16 kind
    for row in ("plain fp32 loop", "project loop, fp32", "project loop, bf16", "project batched (vmap), bf16"):
        assert row in out, row
    assert "compiled" not in out
    assert re.fullmatch(r"staircase-4 speedup vs plain fp32 loop: \d+\.\d\dx", out.strip().splitlines()[-1])


def test_bench_tcmax_loss_tiny():
    out = _run("benchmarks/bench_tcmax_loss.py", "--device", "cpu", "--batch-sizes", "8", "--classes", "3",
               "--reps", "1", "--pairwise-batch", "8")
    assert "materialised ms" in out
    assert KIND.search(out), out[:300]


@pytest.mark.skipif(not MIRROR, reason="needs TCMAX_DATA_MIRROR with the offline CREMA-D clips and FSDD/MNIST")
def test_bench_cremad_tiny(tmp_path):
    # an empty data folder, so the cache is always built here: the script decodes clips in-process, then builds the
    # cache with worker processes, which hung in CI and in 2 of 3 runs by hand while they were forked (FFmpeg's
    # locks); with a cache already built by another test, that path never ran
    out = _run("benchmarks/bench_cremad.py", "--device", "cpu", "--batch-size", "2", "--frame-size", "32",
               "--steps", "1", "--workers", "0", timeout=120, env={"TCMAX_DATA_DIR": str(tmp_path)})
    assert "samples/s" in out
    assert KIND.search(out), out[:300]


@pytest.mark.skipif(not MIRROR, reason="needs TCMAX_DATA_MIRROR with FSDD and MNIST")
def test_bench_train_tiny():
    out = _run("benchmarks/bench_train.py", "--device", "cpu", "--epochs", "1", "--skip-preprocessing",
               "--max-train", "128", "--rounds", "1")
    assert KIND.search(out), out[:300]
    for row in ("fp32, NCHW (before)", "fp32, channels_last", "bf16 (forced)", "auto"):
        assert f"AV digits (CNN)  joint   {row}" in out, row
    assert re.search(r"toy \(MLP\) +joint +auto +fp32", out)          # auto keeps the small MLPs in fp32 on CPU
    for method in ("joint", "agm", "mla", "mmpareto", "pmr", "tcmax"):
        assert f"\n{method}" in out, method
