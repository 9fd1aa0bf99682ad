"""No silent failure, round 2 (issue #24): the README's results, the command line and its output paths.

Each test here failed before the fix (a mistyped folder regenerated an empty README, the CLI trained before it
checked where to write, `--only 0` selected every notebook).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tcmax_lib.course import cli, results, series
from tcmax_lib.runtime import repo_root

README = repo_root() / "README.md"


def _tcmax(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tcmax_lib", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=repo_root(), timeout=300)


# ----------------------------------------------------------------------------- defect 1: results and README
@pytest.mark.parametrize("command", [["readme"], ["readme", "--check"]])
def test_a_mistyped_results_folder_never_rewrites_the_readme(command, tmp_path):
    before = README.read_bytes()
    res = _tcmax(*command, env={"TCMAX_RESULTS_DIR": str(tmp_path / "nonexistent")})
    assert res.returncode != 0
    assert f"TCMAX_RESULTS_DIR={tmp_path / 'nonexistent'}: no results folder at" in res.stderr
    assert "run `tcmax readme`" not in res.stderr + res.stdout              # no advice to run the wipe
    assert README.read_bytes() == before


def test_an_empty_results_folder_is_an_error_not_an_empty_table(tmp_path, monkeypatch):
    monkeypatch.setenv("TCMAX_RESULTS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"holds no results \(\*.json\)"):
        results.readme_block(["04_tcmax"])
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("TCMAX_RESULTS_DIR", str(tmp_path / "file"))
    with pytest.raises(NotADirectoryError, match="is a file, not a results folder"):
        results.load_results("04_tcmax")


@pytest.mark.parametrize("content,message", [
    ('{"meta": {"mode": "FULL"', "is not valid JSON"),
    ('{"metrics": {}}', r"lacks \['meta'\]"),
    ('[1, 2]', r"lacks \['meta', 'metrics'\]"),
])
def test_a_malformed_results_file_is_named(content, message, tmp_path, monkeypatch):
    monkeypatch.setenv("TCMAX_RESULTS_DIR", str(tmp_path))
    bad = tmp_path / "04_tcmax.json"
    bad.write_text(content)
    with pytest.raises(ValueError, match=f"{bad}.*{message}"):
        results.load_results("04_tcmax")
    res = _tcmax("readme", "--check", env={"TCMAX_RESULTS_DIR": str(tmp_path)})
    assert res.returncode != 0 and str(bad) in res.stderr and "Traceback" not in res.stderr


def test_the_real_results_still_read(monkeypatch):
    monkeypatch.delenv("TCMAX_RESULTS_DIR", raising=False)
    assert results.load_results("04_tcmax")["meta"]["mode"] == "FULL"
    assert results.load_results("06_cremad") is None                     # never run in FULL: None, not an error


# ----------------------------------------------------------------------------- defect 2: the CREMA-D command
@pytest.mark.parametrize("args,message", [
    (["--seeds", "0"], "argument --seeds: 0 is outside"),
    (["--seeds", "-1"], "argument --seeds: -1 is outside"),
    (["--seeds", "103"], "argument --seeds: 103 is outside"),
    (["--lr-step", "-1"], "argument --lr-step: -1 is outside"),
    (["--epochs", "0"], "argument --epochs: 0 is outside"),
    (["--epochs", "2.5"], "argument --epochs: '2.5' is not a whole number"),
    (["--batch-size", "0"], "argument --batch-size: 0 is outside"),
    (["--lr", "0"], "argument --lr: 0 must be a positive finite number"),
    (["--lr", "nan"], "argument --lr: nan must be a positive finite number"),
    (["--workers", "0"], "argument --workers: 0 is outside"),
])
def test_cremad_train_refuses_bad_numbers_at_parse_time(args, message, capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["cremad", "train", *args])
    assert message in capsys.readouterr().err


def _train_fails_before_any_work(tmp_path, monkeypatch, *args: str) -> str:
    """Run `cremad train` with data preparation replaced by a tripwire: the error must come first."""
    from tcmax_lib.data import cremad_cache

    def tripwire(*a, **k):
        raise AssertionError("data were prepared before the arguments were checked")

    monkeypatch.setattr(cremad_cache, "prepare", tripwire)
    with pytest.raises(SystemExit) as info:
        cli.main(["cremad", "train", *args])
    return str(info.value)


def test_cremad_train_checks_its_output_path_before_training(tmp_path, monkeypatch):
    regular = tmp_path / "a_file"
    regular.write_text("x")
    msg = _train_fails_before_any_work(tmp_path, monkeypatch, "--out", str(regular / "res.csv"))
    assert f"{regular} is a file, so no folder can be made there" in msg
    msg = _train_fails_before_any_work(tmp_path, monkeypatch, "--out", str(tmp_path))
    assert "is a folder; give a file name" in msg
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):                                   # root ignores permissions: a read-only mount
            pytest.skip("permission bits do not stop this user")
        msg = _train_fails_before_any_work(tmp_path, monkeypatch, "--out", str(locked / "r.csv"))
        assert "cannot write in" in msg
    finally:
        locked.chmod(0o700)


def test_cremad_train_checks_methods_and_head_before_training(tmp_path, monkeypatch):
    out = str(tmp_path / "r.csv")
    assert "unknown method(s) ['tcmaxx']" in _train_fails_before_any_work(tmp_path, monkeypatch, "--method",
                                                                            "joint,tcmaxx", "--out", out)
    assert "--head 'film2' unknown" in _train_fails_before_any_work(tmp_path, monkeypatch, "--head", "film2",
                                                                     "--out", out)
    assert not Path(out).exists()


def test_cremad_train_checks_the_protocol_before_training(tmp_path, monkeypatch):
    out = str(tmp_path / "r.csv")
    msg = _train_fails_before_any_work(tmp_path, monkeypatch, "--lr", "0.1", "--lr-grid", "0.1,1", "--out", out)
    assert "--lr and --lr-grid exclude each other" in msg
    msg = _train_fails_before_any_work(tmp_path, monkeypatch, "--lr-grid", "0.1,1", "--selection-seed", "3141",
                                       "--seeds", "2", "--out", out)
    assert "selection_seed=3141 is also a reported seed" in msg
    msg = _train_fails_before_any_work(tmp_path, monkeypatch, "--lr-grid", "0.1,0.1,1", "--out", out)
    assert "each once" in msg
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["cremad", "train", "--lr-grid", "0.1,-1"])
    assert not Path(out).exists()


def test_results_csv_is_written_atomically(tmp_path):
    import pandas as pd

    out = tmp_path / "r.csv"
    out.write_text("old complete file\n")

    class Exploding(pd.DataFrame):
        def to_csv(self, path, **kw):
            Path(path).write_text("method,se")                          # half written, then the disk fills
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        cli.write_csv_atomically(Exploding({"a": [1]}), out)
    assert out.read_text() == "old complete file\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]            # no temporary file left behind
    cli.write_csv_atomically(pd.DataFrame({"method": ["joint"], "acc": [0.5]}), out)
    assert out.read_text().splitlines() == ["method,acc", "joint,0.5"]


# ----------------------------------------------------------------------------- selectors
@pytest.mark.parametrize("only,expected", [
    ("04", ["04_tcmax"]), ("4", ["04_tcmax"]), ("04_tcmax", ["04_tcmax"]), ("04_tcmax.ipynb", ["04_tcmax"]),
    ("tcmax", ["04_tcmax"]), ("05,04", ["04_tcmax", "05_av_digits"]), ("0", ["00_overview"]),
])
def test_only_selects_by_exact_number_or_name(only, expected):
    assert [p.stem for p in series.notebooks(only)] == expected


@pytest.mark.parametrize("only", ["", "9", "tcm", "04,", "overview.ipynb"])
def test_only_that_names_no_notebook_is_an_error(only):
    with pytest.raises(ValueError, match="names no notebook; give numbers or names"):
        series.notebooks(only)


def test_the_series_command_says_what_it_selected(monkeypatch, capsys):
    from tcmax_lib.course import book, student

    # in-process, with the book's writers stubbed: this test reads the selection line, not the sync itself
    monkeypatch.setattr(book, "sync_notebook", lambda nb: False)
    monkeypatch.setattr(book, "sync_readme_badges", lambda path: False)
    monkeypatch.setattr(student, "write_checks", lambda: False)
    monkeypatch.setattr(student, "build_student", lambda out, only: [])
    cli.main(["series", "sync-book", "--only", "0"])
    out = capsys.readouterr().out
    assert "--only '0' selects: 00_overview.ipynb" in out and "00_overview.ipynb: up to date" in out
    assert "01_" not in out
    with pytest.raises(SystemExit, match="names no notebook"):    # `main` turns the ValueError into exit status 1
        cli.main(["series", "run", "--only", ""])

