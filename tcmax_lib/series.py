"""Execute the notebook series with papermill (`python -m tcmax_lib.series run [--full]`) and
refresh the stored outputs that nbval checks (`store-outputs`)."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from .runtime import repo_root


def notebooks(only: str | None = None) -> list[Path]:
    """The series' notebooks in order (optionally those whose name contains `only`)."""
    found = sorted((repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    return [p for p in found if only is None or only in p.name]


def execute(nb: Path, out_dir: Path, fast: bool, seed: int = 0, timeout: int = 3600) -> tuple[Path, float]:
    """Run one notebook with papermill (kernel python3, cwd notebooks/); return (output path, seconds)."""
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / nb.name
    t0 = time.perf_counter()
    pm.execute_notebook(str(nb), str(out), parameters={"FAST": fast, "SEED": seed}, kernel_name="python3",
                        cwd=str(nb.parent), progress_bar=False, execution_timeout=timeout)
    return out, time.perf_counter() - t0


def store_outputs(nb: Path) -> None:
    """Execute `nb` in FAST mode and write back only the outputs of cells tagged `keep_output`."""
    import nbformat

    out, _ = execute(nb, repo_root() / "build" / "store", fast=True)
    executed = nbformat.read(out, as_version=4)
    source = nbformat.read(nb, as_version=4)
    by_id = {c.get("id"): c for c in executed.cells}
    for cell in source.cells:
        if cell.cell_type != "code":
            continue
        cell.execution_count = None
        cell.outputs = []
        tags = cell.get("metadata", {}).get("tags", [])
        if "keep_output" in tags and cell.get("id") in by_id:  # nbval compares only executed cells
            cell.outputs = by_id[cell["id"]].outputs
            cell.execution_count = by_id[cell["id"]].execution_count
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    source.metadata.pop("papermill", None)
    nbformat.write(source, nb)


def main(argv: list[str] | None = None) -> None:
    """Command line: run [--full] [--only NAME] | store-outputs [--only NAME]."""
    ap = argparse.ArgumentParser(prog="python -m tcmax_lib.series")
    ap.add_argument("command", choices=["run", "store-outputs"])
    ap.add_argument("--full", action="store_true", help="FULL mode (default FAST)")
    ap.add_argument("--only", default=None, help="run only notebooks whose file name contains this")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "0")
    selected = notebooks(args.only)
    if not selected:
        raise SystemExit(f"no notebook matches {args.only!r}")
    timings = {}
    for nb in selected:
        if args.command == "store-outputs":
            store_outputs(nb)
            print(f"stored outputs of {nb.name}")
            continue
        out, sec = execute(nb, repo_root() / "build" / "executed", fast=not args.full, seed=args.seed)
        timings[nb.name] = round(sec, 1)
        print(f"{nb.name}: {sec:.1f} s -> {out}")
    if timings:
        path = repo_root() / "build" / f"timings_{'full' if args.full else 'fast'}.json"
        path.write_text(json.dumps(timings, indent=1))


if __name__ == "__main__":
    main()
