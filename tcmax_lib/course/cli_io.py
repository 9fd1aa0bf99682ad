"""Argument types, output-path checks and atomic CSV writes shared by the `tcmax` commands (notebooks 00 and 06).

Every number and path a command takes is checked here, when it is parsed or before any work starts.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

SEEDS = [0, 3141, 5926, *range(1, 100)]    # the paper's scripts: 0, 3141, 5926; then 1, 2, ...


def _count(minimum: int, maximum: int | None = None):
    """An argparse type: a whole number in [minimum, maximum]; argparse names the option in its error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"{value} is outside [{minimum}, {maximum if maximum else 'inf'}]")
        return value
    parse.__name__ = "whole number"
    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"{text} must be a positive finite number")
    return value


def _lr_grid(text: str) -> list[float]:
    """An argparse type: comma-separated positive learning rates."""
    return [_positive_float(v) for v in text.split(",")]


def check_output_path(path: str | Path) -> Path:
    """Refuse an unwritable output file path before any work: a folder, a file as parent, no access (nb 06)."""
    out = Path(path).expanduser()
    if out.is_dir():
        raise SystemExit(f"--out {path}: is a folder; give a file name, e.g. {out / 'results.csv'}.")
    parent = out.parent
    for folder in (parent, *parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise SystemExit(f"--out {path}: {folder} is a file, so no folder can be made there; choose another "
                                 "path.")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".tcmax-write-test-"):
            pass
    except OSError as exc:
        raise SystemExit(f"--out {path}: cannot write in {parent} ({exc.strerror}); choose a writable folder.") \
            from None
    return out


def write_csv_atomically(frame, out: Path) -> None:
    """Write a DataFrame to `out` through a temporary file renamed into place: never half a CSV (notebook 06)."""
    from ..data.integrity import write_atomically

    write_atomically(out, lambda tmp: frame.to_csv(tmp, index=False))


def read_result(csv: str | Path):
    """A `tcmax cremad train` result: (its CSV as a DataFrame, its protocol record or None) (notebook 07).

    The two files are one result: each names the run that wrote it (`run_id`), and a pair from different
    runs (a rerun without --lr-grid beside an old record, a run stopped between its two writes) is refused.
    """
    import pandas as pd

    from ..files import loads_json
    from ..records import check_record

    csv = Path(csv)
    frame = pd.read_csv(csv)
    rec_path = csv.with_name(csv.stem + ".protocol.json")
    record = loads_json(rec_path.read_text(), str(rec_path)) if rec_path.exists() else None
    ids = set(frame["run_id"]) if "run_id" in frame else {None}
    if record is not None:
        check_record(record, str(rec_path))
        if ids != {record.get("run_id")}:
            raise ValueError(f"{csv.name} (run {sorted(map(str, ids))}) and {rec_path.name} (run "
                             f"{record.get('run_id')}) come from different runs: re-run `tcmax cremad train` to "
                             "write both, or delete the one that is stale.")
    if len(ids) != 1:
        raise ValueError(f"{csv.name} mixes rows of the runs {sorted(map(str, ids))}: each run writes its own file.")
    return frame, record


def choose_run_store(args: argparse.Namespace) -> None:
    """FULL runs keep their trainings in a run store (`runstore`), so a stopped run resumes; FAST never (nb 00)."""
    from ..runstore import ENV
    from ..runtime import repo_root

    if args.run_store is not None and (not args.full or not args.use_run_store):
        raise SystemExit(f"--run-store {args.run_store} needs --full and no --no-run-store: FAST runs are minutes "
                         "and always train.")
    if args.full and args.use_run_store:
        folder = Path(args.run_store or repo_root() / "build" / "run-store").absolute()
        os.environ[ENV] = str(folder)                  # the kernels papermill starts inherit it
        print(f"run store: {folder} (finished trainings are loaded, not repeated; --no-run-store to retrain all)")
    else:
        os.environ.pop(ENV, None)                      # FAST, or asked to retrain: nothing loaded, nothing stored
