"""The `tcmax` command line: one entry point for the series runner and the CREMA-D experiments.

    tcmax series run [--full] [--only 04]          # execute notebooks with papermill (make run)
    tcmax series store-outputs [--only 04]         # refresh the stored outputs the test suite compares
    tcmax series sync-book [--only 04]             # Colab badge + set-up cell, committed-figure cells
    tcmax site                                     # HTML book into build/site/ (make site)
    tcmax readme [--check]                         # README tables and the instructor's guide from results/
    tcmax course student [--out build/student]     # the student edition (make student)
    tcmax course grade submissions/*.ipynb --out build/grades   # run submitted notebooks, tabulate checks
    tcmax cremad download   --subset teaching
    tcmax cremad preprocess --subset all --preset ogm --workers 8
    tcmax cremad train --method joint,tcmax --epochs 100 --seeds 3 --subset all --split ogm
    tcmax cremad train --method all --seeds 5 --lr-grid 1e-3,3e-3,1e-2,3e-2 --subset all   # the protocol (nb 07)
    torchrun --nproc_per_node=4 -m tcmax_lib cremad train --method tcmax ...   # exact global-batch TCMax

`python -m tcmax_lib ...` is the same command without installing the console script.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
import time
from pathlib import Path

from ..files import dumps_json, file_lock, write_text
from .cli_io import SEEDS, _count, _lr_grid, _positive_float, check_output_path, choose_run_store, write_csv_atomically


def _series(args: argparse.Namespace) -> None:
    from ..runtime import load_metrics, metrics_dir, repo_root
    from . import results, series

    os.environ.setdefault("TQDM_DISABLE", "0")
    selected = series.notebooks(args.only)
    if args.only is not None:
        print(f"--only {args.only!r} selects: {', '.join(nb.name for nb in selected)}")
    timings = {}
    if args.command == "run":
        choose_run_store(args)
    for nb in selected:
        if args.command == "sync-book":
            from . import book

            print(f"{nb.name}: {'updated' if book.sync_notebook(nb) else 'up to date'}")
            continue
        if args.command == "store-outputs":
            series.store_outputs(nb)
            print(f"stored outputs of {nb.name}")
            continue
        (metrics_dir() / f"{nb.stem}.json").unlink(missing_ok=True)     # publish only what this run recorded
        out, sec = series.execute(nb, repo_root() / "build" / "executed", fast=not args.full, seed=args.seed)
        timings[nb.name] = round(sec, 1)
        print(f"{nb.name}: {sec:.1f} s -> {out}")
        recorded = load_metrics(nb.stem)
        if args.full and args.publish:
            print(f"  FULL results -> {results.publish(nb.stem, recorded, sec)}")
    if args.command == "sync-book":
        from . import book, student

        print(f"README.md badges: {'updated' if book.sync_readme_badges(repo_root() / 'README.md') else 'up to date'}")
        print(f"exercise checks: {'updated' if student.write_checks() else 'up to date'} ({student.xs.CHECKS.name})")
        written = student.build_student(repo_root() / "student", args.only)
        print(f"student edition (committed, for Colab): {len(written)} notebook(s) in student/")
    if timings:
        path = repo_root() / "build" / f"timings_{'full' if args.full else 'fast'}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(timings, indent=1))
        if not args.full and args.publish:
            path = results.publish_fast_timings(timings, recorded.get("_device"), recorded.get("_torch"))
            print(f"FAST timings -> {path}")


def _readme(args: argparse.Namespace) -> None:
    from . import guide_page, results, series, timings

    names = [nb.stem for nb in series.notebooks()]
    if args.check:
        if not (results.update_readme(names, check=True) and guide_page.update_guide(check=True)
                and timings.update_readme(check=True)):
            raise SystemExit("README.md or docs/instructors.md is out of date with results/: run `tcmax readme`.")
        print("README.md and docs/instructors.md match results/")
        return
    results.update_readme(names)
    timings.update_readme()
    guide_page.update_guide()
    print("README.md tables and docs/instructors.md regenerated from results/ and the notebooks")


def _course(args: argparse.Namespace) -> None:
    from . import grading, student

    if args.command == "student":
        args.out = args.out or "build/student"
        written = student.build_student(Path(args.out), args.only)
        print(f"student edition: {len(written)} notebook(s) -> {args.out}")
        return
    args.out = args.out or "build/grades"
    if not args.files:
        raise SystemExit("tcmax course grade: give the submitted notebooks, e.g. submissions/*.ipynb.")
    csv = check_output_path(Path(args.out) / "grades.csv")          # before any submission runs
    table = grading.grade([Path(f) for f in args.files], Path(args.out), args.time_limit, fast=not args.full)
    write_csv_atomically(table, csv)
    summary = table.groupby("submission", sort=False).agg(chapter=("chapter", "first"), points=("points", "sum"),
                                                          exercises=("exercise", "count"))
    print(summary.to_string())
    print(f"every exercise's outcome and reason -> {csv}")


def _site(args: argparse.Namespace) -> None:
    from . import book

    print(f"site -> {book.build_site()}/index.html")


def _cremad(args: argparse.Namespace) -> None:
    from .. import protocol as pr
    from ..data import cremad as cd
    from ..data.cremad_cache import prepare
    from ..methods import METHODS

    if args.command == "download":
        cd.download(cd.subset(args.subset))
        return
    if args.command == "train":                                          # every argument checked before any work
        from ..models import HEADS

        out = check_output_path(args.out)
        rec_path = check_output_path(out.with_name(out.stem + ".protocol.json"))   # both before any work
        methods = list(METHODS) if args.method == "all" else args.method.split(",")
        unknown = sorted(set(methods) - set(METHODS))
        if unknown:
            raise SystemExit(f"unknown method(s) {unknown}; choose from {sorted(METHODS)} or 'all'.")
        if args.head not in HEADS:
            raise SystemExit(f"--head {args.head!r} unknown; choose from {sorted(HEADS)}.")
        if args.lr is not None and args.lr_grid is not None:
            raise SystemExit("--lr and --lr-grid exclude each other: give one rate for every method, or a grid "
                             "from which each method's rate is chosen on validation.")
        protocol = pr.Protocol(args.lr_grid, SEEDS[: args.seeds], args.selection_seed) if args.lr_grid else None
    if args.command == "preprocess":
        print(prepare(args.subset, args.preset, args.split, args.frame_size, workers=args.workers).sizes())
        return
    with contextlib.ExitStack() as stack:
        if int(os.environ.get("RANK", "0")) == 0:      # one run per --out: a second one is refused, not merged
            try:
                stack.enter_context(file_lock(out, timeout=0))
            except TimeoutError:
                raise SystemExit(f"--out {out}: another run is writing this result (its lock {out}.lock is held); "
                                 "give this run another --out, or wait for the other one to finish.") from None
        _cremad_train(args, out, rec_path, protocol, methods)


def _cremad_train(args: argparse.Namespace, out: Path, rec_path: Path, protocol, methods: list[str]) -> None:
    """Train the CREMA-D comparison and write its CSV and (with --lr-grid) its record, one run id in both."""
    import torch

    from .. import distributed
    from .. import protocol as pr
    from ..data import cremad as cd
    from ..data.cremad_cache import augment_batch, prepare
    from ..experiments import run_table, summarize
    from ..resnet import resnet_pair_model
    from ..runtime import pick_device
    from ..train import TrainConfig

    run_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(4)}"
    data = prepare(args.subset, args.preset, args.split, args.frame_size, workers=args.workers)
    device = pick_device(args.device, precision=args.precision)
    if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:   # torchrun: one GPU per process
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    distributed.init_from_env(device)

    def make_model(head: str, seed: int) -> torch.nn.Module:
        model = resnet_pair_model(len(cd.EMOTIONS), head, seed, channels_last=device.type == "cuda")
        if args.compile:
            model.encoders = torch.nn.ModuleList([torch.compile(e) for e in model.encoders])
        return model

    cfg = TrainConfig(epochs=args.epochs, batch_size=min(args.batch_size, len(data.train)), lr=args.lr or 1e-3,
                      optimizer="sgd", lr_step=args.lr_step or None, device=device, progress=True,
                      augment=augment_batch, precision=args.precision)
    seeds = SEEDS[: args.seeds]

    def report(method: str, seed: int, res) -> None:
        if distributed.rank() == 0:
            m = res.metrics
            print(f"{method} seed {seed}: test acc {m['acc']:.4f} (best val epoch {m['best_epoch']})")

    if protocol is None:                                                 # one rate for every method
        results, _ = run_table(methods, seeds, data, make_model, args.head, cfg, keep="none", on_run=report)
    else:                                                                # each method's rate chosen on validation
        comparison = pr.compare(methods, data, make_model, args.head, cfg, protocol, keep="none", on_run=report)
        results = comparison.results
    if distributed.rank() != 0:                                          # under torchrun only rank 0 writes
        return
    results = results.assign(run_id=run_id)
    if protocol is not None:                             # the record first, then the CSV: one run id in both
        record = comparison.record(["acc", "acc_audio_head", "acc_visual_head", "js", "entropy_ratio", "best_epoch"])
        record["run_id"] = run_id
        write_text(rec_path, dumps_json(record, str(rec_path), indent=1))
        write_csv_atomically(results, out)
        print(pr.choice_frame(record).to_string())
        short = record["protocol_shortfalls"] + record["curve_shortfalls"]
        print(f"short of the protocol's rules: {'; '.join(short) or 'nothing'}\nrecord -> {rec_path}")
    else:
        write_csv_atomically(results, out)
        rec_path.unlink(missing_ok=True)                 # an earlier run's record no longer describes this CSV
    print(summarize(results, ("acc", "acc_audio_head", "acc_visual_head", "js", "entropy_ratio"), ci=0.95).to_string())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `tcmax` (sub-commands `series` and `cremad`)."""
    ap = argparse.ArgumentParser(prog="tcmax", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="group", required=True)
    s = sub.add_parser("series", help="execute the notebooks (papermill) or refresh stored outputs")
    s.add_argument("command", choices=["run", "store-outputs", "sync-book"],
                   help="run: execute with papermill; store-outputs: refresh the stored outputs; sync-book: "
                        "refresh the Colab badge and set-up cell and the committed-figure cells")
    s.add_argument("--full", action="store_true", help="FULL mode (default FAST)")
    s.add_argument("--only", default=None, help="only notebooks whose file name contains this")
    s.add_argument("--seed", type=_count(0), default=0)
    s.add_argument("--run-store", default=None, metavar="DIR",
                   help="FULL: keep every finished training in DIR and load it instead of retraining when the run is "
                        "repeated (an interrupted run resumes); default build/run-store")
    s.add_argument("--no-run-store", dest="use_run_store", action="store_false",
                   help="FULL: train everything again and store nothing")
    s.add_argument("--no-publish", dest="publish", action="store_false",
                   help="do not write results/ (FULL: results/<notebook>.json; FAST: results/fast_timings.json)")
    s.set_defaults(func=_series)
    r = sub.add_parser("readme", help="regenerate the README's result and run-time tables from results/")
    r.add_argument("--check", action="store_true", help="only check that README.md matches results/")
    r.set_defaults(func=_readme)
    k = sub.add_parser("course", help="teaching: build the student edition, grade submitted notebooks")
    k.add_argument("command", choices=["student", "grade"],
                   help="student: write the student edition; grade: execute submitted notebooks and tabulate checks")
    k.add_argument("files", nargs="*", help="grade: the submitted student notebooks (.ipynb)")
    k.add_argument("--out", default=None, help="student: default build/student; grade: default build/grades")
    k.add_argument("--only", default=None, help="student: only these notebooks (numbers or names, comma-separated)")
    k.add_argument("--full", action="store_true", help="grade: execute in FULL mode (default FAST)")
    k.add_argument("--time-limit", type=_positive_float, default=900.0, metavar="SECONDS",
                   help="grade: the most one submission may run, all its cells together (default 900)")
    k.set_defaults(func=_course)
    w = sub.add_parser("site", help="build the HTML book into build/site/ from build/executed/ (make site)")
    w.set_defaults(func=_site)
    c = sub.add_parser("cremad", help="CREMA-D: download, preprocess, train (notebook 06)")
    c.add_argument("command", choices=["download", "preprocess", "train"])
    c.add_argument("--subset", default="offline", choices=["offline", "teaching", "actors20", "all"])
    c.add_argument("--preset", default="ogm", choices=["ogm", "tcmax"])
    c.add_argument("--split", default="ogm", choices=["ogm", "speaker"])
    c.add_argument("--frame-size", type=_count(1), default=None)
    c.add_argument("--workers", type=_count(1), default=None)
    c.add_argument("--method", default="tcmax", help="a method, a comma list, or 'all' (the table of notebook 07)")
    c.add_argument("--head", default="concat", help="fusion head (MLA and MMPareto always use their own)")
    c.add_argument("--epochs", type=_count(1), default=100)
    c.add_argument("--seeds", type=_count(1, len(SEEDS)), default=3, help=f"how many seeds (1-{len(SEEDS)})")
    c.add_argument("--batch-size", type=_count(1), default=32)
    c.add_argument("--lr", type=_positive_float, default=None, help="one rate for every method (default 1e-3)")
    c.add_argument("--lr-grid", type=_lr_grid, default=None,
                   help="comma-separated rates: each method's rate chosen on validation on --selection-seed, as in "
                        "notebook 07; also writes OUT's .protocol.json record")
    c.add_argument("--selection-seed", type=_count(0), default=1000, help="the unreported seed that picks the rates")
    c.add_argument("--lr-step", type=_count(0), default=70, help="StepLR step in epochs (0: constant learning rate)")
    c.add_argument("--device", default="auto")
    c.add_argument("--precision", default=None, choices=["auto", "fp32", "bf16"],
                   help="default: env TCMAX_PRECISION, else auto (bf16 on CUDA and bf16-capable CPUs)")
    c.add_argument("--compile", action="store_true")
    c.add_argument("--out", default="build/cremad_results.csv")
    c.set_defaults(func=_cremad)
    return ap


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `tcmax` console script and of `python -m tcmax_lib`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for opt in ("--lr-grid", "--lr"):                   # argparse reads '-0.1,0.3' as an option: say what it is
        if opt in argv and argv.index(opt) + 1 < len(argv) and argv[argv.index(opt) + 1].startswith("-"):
            raise SystemExit(f"tcmax: error: {opt} {argv[argv.index(opt) + 1]}: learning rates are positive numbers, "
                             f"e.g. {opt} 0.01,0.1,1 (a value starting with '-' also reads as an option)")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, OSError) as exc:                                 # the library's errors name cause and fix
        if os.environ.get("TCMAX_TRACEBACK"):
            raise
        raise SystemExit(f"tcmax: error: {exc} (set TCMAX_TRACEBACK=1 for the traceback)") from exc


if __name__ == "__main__":
    main()
