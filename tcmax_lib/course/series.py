"""Execute the notebook series with papermill and refresh the stored outputs the test suite compares (nb 00).

Command line: `tcmax series run [--full]` / `tcmax series store-outputs` (see `cli`).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..files import write_text
from ..runtime import repo_root


def notebooks(only: str | None = None) -> list[Path]:
    """The series' notebooks in order; `only` selects by number or exact name, comma-separated (notebook 00).

    '4', '04', '04_tcmax', '04_tcmax.ipynb' and 'tcmax' each select notebook 04; '04,05' both. A token that
    matches nothing, or an empty one, is an error listing the notebooks (no substring matching: '0' must
    not select every notebook).
    """
    found = sorted((repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if only is None:
        return found
    tokens = [t.strip() for t in str(only).split(",")]
    names = ", ".join(p.stem for p in found)
    chosen: set[Path] = set()
    for token in tokens:
        hits = [p for p in found if _matches(p, token)] if token else []
        if not hits:
            raise ValueError(f"--only {only!r}: {token!r} names no notebook; give numbers or names, e.g. --only 04 "
                             f"or --only 04,05, from: {names}.")
        chosen.update(hits)
    return sorted(chosen)


def _matches(nb: Path, token: str) -> bool:
    number, _, title = nb.stem.partition("_")
    return token in (nb.name, nb.stem, title) or (token.isdigit() and int(token) == int(number))


CELL_TIMEOUT_S = {True: 3600, False: 4 * 3600}   # per cell: FAST / FULL (07's main table runs ~200 trainings)


def execute(nb: Path, out_dir: Path, fast: bool, seed: int = 0, timeout: int | None = None) -> tuple[Path, float]:
    """Run one notebook with papermill (kernel python3, cwd notebooks/); return (output path, seconds) (notebook 00).

    `timeout` bounds each cell (papermill's execution_timeout); None takes CELL_TIMEOUT_S for the mode.
    """
    import papermill as pm

    timeout = CELL_TIMEOUT_S[bool(fast)] if timeout is None else timeout

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
        if "keep_output" in tags and cell.get("id") in by_id:  # the suite compares only these cells
            cell.outputs = by_id[cell["id"]].outputs
            cell.execution_count = by_id[cell["id"]].execution_count
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    source.metadata.pop("papermill", None)
    write_text(nb, nbformat.writes(source))        # atomic: an interrupted store leaves the old notebook whole
