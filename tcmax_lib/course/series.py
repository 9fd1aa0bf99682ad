"""Execute the notebook series with papermill and refresh the stored outputs nbval checks (notebook 00).

Command line: `tcmax series run [--full]` / `tcmax series store-outputs` (see `cli`).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..runtime import repo_root


def notebooks(only: str | None = None) -> list[Path]:
    """The series' notebooks in order (optionally those whose name contains `only`) (notebook 00)."""
    found = sorted((repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    return [p for p in found if only is None or only in p.name]


def execute(nb: Path, out_dir: Path, fast: bool, seed: int = 0, timeout: int = 3600) -> tuple[Path, float]:
    """Run one notebook with papermill (kernel python3, cwd notebooks/); return (output path, seconds) (notebook 00)."""
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / nb.name
    t0 = time.perf_counter()
    pm.execute_notebook(str(nb), str(out), parameters={"FAST": fast, "SEED": seed}, kernel_name="python3",
                        cwd=str(nb.parent), progress_bar=False, execution_timeout=timeout)
    return out, time.perf_counter() - t0


def store_outputs(nb: Path) -> None:
    """Execute `nb` in FAST mode and write back only the outputs of cells tagged `keep_output` (notebook 00)."""
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
