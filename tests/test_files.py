"""Files that are never half-written and records checked when read (tcmax_lib.files, records.check_record)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import pytest

from tcmax_lib import files, protocol, records, runtime
from tcmax_lib.course import results

# ----------------------------------------------------------------------------- concurrent writers


def _record_many(folder: str, tag: str, n: int) -> None:
    os.environ["TCMAX_METRICS_DIR"] = folder
    runtime.STATE.notebook = "99_concurrent"
    for i in range(n):
        runtime.record(f"{tag}_{i}", i)


def _publish_many(folder: str, tag: str, n: int) -> None:
    os.environ["TCMAX_RESULTS_DIR"] = folder
    for i in range(n):
        results.publish_fast_timings({f"{tag}_{i}.ipynb": float(i)}, "CPU test", "2.x")


@pytest.mark.parametrize("writer,n", [(_record_many, 300), (_publish_many, 60)], ids=["tl.record", "fast timings"])
def test_two_processes_writing_one_json_file_keep_every_key(tmp_path, writer, n):
    """Before the lock, 2 x 300 records kept 377 keys and raised FileNotFoundError; 2 x 60 timings kept 60."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=writer, args=(str(tmp_path), tag, n)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    (path,) = [p for p in tmp_path.glob("*.json")]
    data = json.loads(path.read_text())
    keys = data if writer is _record_many else data["notebooks"]
    assert sum(k.startswith(("a_", "b_")) for k in keys) == 2 * n
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


# ----------------------------------------------------------------------------- strict JSON


def test_non_finite_numbers_are_refused_with_their_key(tmp_path, monkeypatch):
    monkeypatch.setenv("TCMAX_METRICS_DIR", str(tmp_path))
    runtime.STATE.notebook = "99_strict"
    with pytest.raises(ValueError, match=r"tl.record\('ratio'\).*\['b'\]\[1\] is NaN or infinite"):
        runtime.record("ratio", {"a": 1.0, "b": [0.5, float("inf")]})
    assert not (tmp_path / "99_strict.json").exists()                  # nothing was written
    with pytest.raises(ValueError, match="NaN or infinite"):
        results._write(tmp_path / "x.json", {"metrics": {"acc": float("nan")}})
    (tmp_path / "bad.json").write_text('{"meta": {}, "metrics": {"v": -Infinity}}')
    with pytest.raises(ValueError, match="bad.json holds -Infinity, which is not JSON"):
        results._read(tmp_path / "bad.json")
    assert files.loads_json('{"a": [1, 2.5, null]}', "ok") == {"a": [1, 2.5, None]}


# ----------------------------------------------------------------------------- interrupted writes


def test_an_interrupted_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    target = tmp_path / "README.md"
    target.write_text("the old text\n")

    def half_then_die(self, text, *a, **k):                          # a full disk or a SIGTERM mid-write
        Path.write_bytes(self, text[: len(text) // 2].encode())
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_die)
    with pytest.raises(OSError, match="no space left for README.md"):
        files.write_text(target, "a much longer new text " * 10)
    monkeypatch.undo()
    assert target.read_text() == "the old text\n"
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]        # no temporary file left behind


def test_readme_refuses_to_drop_a_full_run_whose_results_file_vanished(tmp_path, monkeypatch):
    (tmp_path / "results").mkdir()
    for name in ("00_overview", "01_mutual_information_and_mine"):
        src = results.results_dir() / f"{name}.json"
        (tmp_path / "results" / f"{name}.json").write_text(src.read_text())
    readme = tmp_path / "README.md"
    monkeypatch.setattr(results, "repo_root", lambda: tmp_path)
    monkeypatch.setenv("TCMAX_RESULTS_DIR", str(tmp_path / "results"))
    names = ["00_overview", "01_mutual_information_and_mine"]
    readme.write_text(f"intro\n{results.BEGIN}\n{results.END}\ntail\n")
    assert results.update_readme(names)
    assert "| 01_mutual_information_and_mine |" in readme.read_text() and " not run |" not in readme.read_text()
    (tmp_path / "results" / "01_mutual_information_and_mine.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"FULL runs of \['01_mutual_information_and_mine'\]"):
        results.update_readme(names)
    with pytest.raises(FileNotFoundError, match="no file for them"):
        results.update_readme(names, check=True)


# ----------------------------------------------------------------------------- records checked when read


def _record() -> dict:
    return {"seeds": [0, 1, 2, 3, 4], "selection_seed": 1000, "epochs": 4, "lr_grid": [0.1, 1.0],
            "lr": {"joint": 0.1, "tcmax": 1.0}, "val_acc_by_lr": {"joint": {"0.1": 0.7, "1": None},
                                                                  "tcmax": {"0.1": 0.6, "1": 0.8}},
            "selection_best_epoch": {"joint": 1, "tcmax": 2},
            "per_seed": {"joint": {"acc": [0.70, 0.72, 0.71, 0.69, 0.70]},
                         "tcmax": {"acc": [0.75, 0.78, 0.76, 0.74, 0.77]}}}


@pytest.mark.parametrize("damage,message", [
    (lambda r: r["per_seed"]["tcmax"]["acc"].pop(), r"method 'tcmax', column 'acc': 4 values for 5 seeds"),
    (lambda r: r.update(seeds=[0, 1, 2, 3, 1000]), "the selection seed 1000 is also a reported seed"),
    (lambda r: r["per_seed"]["joint"]["acc"].__setitem__(2, float("nan")), r"'joint', column 'acc': non-finite"),
    (lambda r: r.pop("seeds"), r"lacks \['seeds'\]"),
    (lambda r: r.pop("selection_best_epoch"), r"lacks \['selection_best_epoch'\]"),
    (lambda r: r["val_acc_by_lr"]["tcmax"].__setitem__("1", float("-inf")), "are not finite"),
    (lambda r: r.update(seeds=[0, 0, 1, 2, 3]), "distinct integers"),
])
def test_every_reader_refuses_a_damaged_record(damage, message):
    rec = _record()
    damage(rec)
    for read in (protocol.frame, protocol.verdict, protocol.choice_frame, protocol.curve_shortfalls,
                 lambda r: protocol.difference_frame(r, ["acc"]), lambda r: protocol.seed_plan(r, "tcmax", ["joint"])):
        with pytest.raises(ValueError, match=message):
            read(rec)


def test_a_diverged_rate_is_stored_as_none_and_shown_as_diverged():
    rec = _record()
    assert records.check_record(rec) is rec
    assert protocol.choice_frame(rec).loc["joint", "val acc per lr"] == "0.700 / diverged"


def test_load_results_names_the_file_the_data_set_the_method_and_the_column(tmp_path, monkeypatch):
    data = json.loads((results.results_dir() / "07_paper_figures.json").read_text())
    data["metrics"]["main"]["toy B"]["per_seed"]["mla"]["js"].pop()
    (tmp_path / "07_paper_figures.json").write_text(json.dumps(data))
    monkeypatch.setenv("TCMAX_RESULTS_DIR", str(tmp_path))
    with pytest.raises(ValueError, match=r"07_paper_figures.json: metrics\['main'\]\['toy B'\]: method 'mla', "
                                         r"column 'js': 4 values for 5 seeds"):
        results.load_results("07_paper_figures")


def test_summarize_refuses_groups_of_different_sizes():
    import pandas as pd

    from tcmax_lib import experiments

    frame = pd.DataFrame({"method": ["a"] * 5 + ["b"] * 4, "acc": [0.5] * 9})
    with pytest.raises(ValueError, match=r"'a': 5, 'b': 4"):
        experiments.summarize(frame)
