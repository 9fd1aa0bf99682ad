"""The run store (tcmax_lib.runstore): a resumed FULL run loads exactly what it would have trained, nothing stale."""

from __future__ import annotations

import json
import types
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from tcmax_lib import experiments, fingerprint, protocol, runstore
from tcmax_lib.course import cli, cli_io, results
from tcmax_lib.data.toy import ToyConfig, make_toy_splits
from tcmax_lib.experiments import native_head
from tcmax_lib.methods import METHODS, make_method
from tcmax_lib.models import cnn_pair_model, mlp_pair_model
from tcmax_lib.train import TrainConfig, TrainingDivergedError, fit

CFG = ToyConfig(interaction=False)
CONFIG = TrainConfig(epochs=2, batch_size=32, optimizer="sgd", lr=0.1, progress=False)


def splits(seed: int = 0):
    return make_toy_splits(CFG, n_train=128, n_val=64, n_test=64, seed=seed)


def model(head: str, seed: int):
    return mlp_pair_model(CFG.dims, CFG.num_classes, head=head, hidden=16, feat=8, seed=seed)


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv(runstore.ENV, str(tmp_path / "store"))
    monkeypatch.setenv("TCMAX_METRICS_DIR", str(tmp_path / "metrics"))
    runstore._STORES.clear()
    yield runstore.active()
    runstore._STORES.clear()


def one_run(method: str, seed: int = 0, data=None, **cfg):
    head = native_head(method, "concat")
    return experiments.run(method, data or splits(seed), lambda s: model(head, s), replace(CONFIG, seed=seed, **cfg))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_stored_training_gives_the_run_training_gives(store, method):
    first = one_run(method)
    assert (store.trained, store.loaded) == (1, 0)
    second = one_run(method)
    assert (store.trained, store.loaded) == (1, 1)                # loaded, not trained again
    assert second.metrics == first.metrics                        # every test metric, probes and Shapley included
    pd.testing.assert_frame_equal(second.history, first.history)  # exact floats, same columns and dtypes
    assert torch.equal(second.pred, first.pred)
    for (k, a), (_, b) in zip(first.model.state_dict().items(), second.model.state_dict().items()):
        assert torch.equal(a, b), k
    assert not second.model.training                              # evaluated last, as fit leaves it


def test_no_store_unless_asked(tmp_path, monkeypatch):
    monkeypatch.delenv(runstore.ENV, raising=False)
    assert runstore.active() is None
    one_run("joint")
    assert not any(tmp_path.iterdir())


def test_the_key_changes_with_everything_that_decides_the_result(store, monkeypatch):
    data = splits(0)
    prec = types.SimpleNamespace(name="fp32")

    def key(mdl=None, meth=None, train=None, cfg=None, precision=prec):
        return store.key(mdl or model("concat", 0), meth or make_method("joint"), train or data.train, data.val,
                         cfg or CONFIG, precision)

    base = key()
    assert key() == base and key(cfg=replace(CONFIG, progress=True)) == base   # progress bars change nothing
    changed = {"initial weights": key(mdl=model("concat", 1)),
               "architecture": key(mdl=model("mlp", 0)),
               "method": key(meth=make_method("unimodal")),
               "method setting": key(meth=make_method("ogm_ge", alpha=0.5)) != key(meth=make_method("ogm_ge")),
               "training data": key(train=data.train.index(torch.arange(64))),
               "learning rate": key(cfg=replace(CONFIG, lr=0.01)),
               "batch order seed": key(cfg=replace(CONFIG, seed=1)),
               "training-split evaluation": key(cfg=replace(CONFIG, track_train=False)),
               "precision": key(precision=types.SimpleNamespace(name="bf16"))}
    for what, k in changed.items():
        assert k is True or k != base, what
    monkeypatch.setattr(runstore.torch, "__version__", "0.0.0")
    assert key() != base, "torch version"


def _fingerprint_with(monkeypatch, changed: str) -> str:
    """The library fingerprint as if module file `changed` (e.g. 'losses.py') held other code."""
    real = Path.read_text

    def read_text(self, *a, **k):
        text = real(self, *a, **k)
        return text + "\n_changed = 1\n" if self.name == changed and self.parent.name in ("tcmax_lib", "methods") \
            else text

    fingerprint.library_fingerprint.cache_clear()
    fingerprint._covered.cache_clear()
    with monkeypatch.context() as m:
        m.setattr(Path, "read_text", read_text)
        out = fingerprint.library_fingerprint()
    fingerprint.library_fingerprint.cache_clear()
    fingerprint._covered.cache_clear()
    return out


def test_the_fingerprint_covers_the_code_a_training_runs_and_nothing_else(monkeypatch):
    pkg = Path(fingerprint.__file__).parent
    mods = fingerprint.reachable(pkg)
    assert {"train", "losses", "models", "layers", "resnet", "methods.ogm_ge", "methods.tcmax", "checks"} <= mods
    assert not mods & {"readings", "records", "stats", "plotting", "diagnostics", "experiments", "protocol"}
    assert not any(m.startswith("course") for m in mods) and "" not in mods
    base = fingerprint.library_fingerprint()
    for name in ("losses.py", "ogm_ge.py", "train.py", "models.py"):         # decide how a network trains
        assert _fingerprint_with(monkeypatch, name) != base, name
    for name in ("readings.py", "diagnostics.py", "plotting.py", "runstore.py"):   # measure, read or store
        assert _fingerprint_with(monkeypatch, name) == base, name


class NotebookHead(torch.nn.Module):          # a class a notebook might define: keyed by its own source
    def forward(self, x):
        return x


def test_a_class_outside_the_fingerprint_is_keyed_by_its_source():
    from tcmax_lib.models import MultimodalClassifier

    assert fingerprint.class_code({MultimodalClassifier, torch.nn.Linear}) == []    # library and torch: covered
    (code,) = fingerprint.class_code({NotebookHead})
    assert code.startswith(f"{__name__}.NotebookHead:")
    made = type("Made", (torch.nn.Module,), {"forward": lambda self, x: x})       # no source to read
    with pytest.raises(fingerprint.NotStorable, match="no source for Made"):
        fingerprint.class_code({made})


def test_a_function_the_key_cannot_describe_is_trained_not_stored(store):
    data = splits(0)
    fit(model("concat", 0), make_method("joint"), data.train, data.val, CONFIG, on_epoch_end=lambda e, m: {})
    fit(model("concat", 0), make_method("joint"), data.train, data.val, replace(CONFIG, augment=lambda b, g: b))
    assert store.trained == 0 and not store.root.exists()


def test_a_stored_divergence_is_raised_again_without_training(store, monkeypatch):
    data = splits(0)
    cfg = replace(CONFIG, lr=1e9)
    with pytest.raises(TrainingDivergedError) as first:
        fit(model("concat", 0), make_method("joint"), data.train, data.val, cfg)
    monkeypatch.setattr("tcmax_lib.train._train", lambda *a, **k: pytest.fail("trained again"))
    with pytest.raises(TrainingDivergedError) as second:
        fit(model("concat", 0), make_method("joint"), data.train, data.val, cfg)
    assert str(second.value) == str(first.value) and store.loaded == 1


def test_select_lr_and_compare_resume_to_the_same_record(store, monkeypatch):
    p = protocol.Protocol((0.03, 0.3, 1e9), (0, 1), selection_seed=7)
    first = protocol.compare(["joint", "tcmax"], splits, model, "concat", CONFIG, p).record(["acc", "best_epoch"])
    trained = store.trained
    monkeypatch.setattr("tcmax_lib.train._train", lambda *a, **k: pytest.fail("trained again"))
    again = protocol.compare(["joint", "tcmax"], splits, model, "concat", CONFIG, p).record(["acc", "best_epoch"])
    assert again == first and store.loaded == trained == 2 * (3 + 2)


def test_an_unreadable_or_renamed_entry_is_an_error_naming_it(store):
    one_run("joint")
    (path,) = store.root.rglob("*.pt")
    whole = path.read_bytes()
    path.write_bytes(whole[:100])                                 # cut short (by hand: the writer is atomic)
    with pytest.raises(RuntimeError, match=rf"{path.name} cannot be read.*delete it"):
        one_run("joint")
    path.write_bytes(whole)
    one_run("joint", seed=1)
    (other,) = set(store.root.rglob("*.pt")) - {path}
    path.write_bytes(other.read_bytes())                          # seed 1's training under seed 0's name
    with pytest.raises(RuntimeError, match=rf"{path.name} holds key .* copied or renamed"):
        one_run("joint")


def test_a_failed_write_keeps_the_training_warns_and_leaves_no_entry(store, monkeypatch):
    def broken_save(obj, f):
        with open(f, "wb") as out:
            out.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runstore.torch, "save", broken_save)
    with pytest.warns(RuntimeWarning, match=r"not stored \(no space left on its disk\).*resumed run will train it"):
        res = one_run("joint")
    assert res.metrics["acc"] >= 0 and store.not_stored == 1 and store.trained == 0
    assert not [p for p in store.root.rglob("*") if p.is_file()]    # no entry, no temporary file


def test_a_notebook_records_what_it_loaded_and_publish_puts_it_in_the_meta(store, tmp_path, monkeypatch):
    from tcmax_lib.runtime import STATE, load_metrics

    monkeypatch.setattr(STATE, "notebook", "99_store")
    monkeypatch.setattr(STATE, "fast", False)
    one_run("joint")
    one_run("joint")
    rec = load_metrics("99_store")["_run_store"]
    assert rec["loaded"] == 1 and rec["trained"] == 1 and sum(rec["loaded_devices"].values()) == 1
    assert store.loaded_seconds > 0 and rec["loaded_seconds"] == round(store.loaded_seconds, 1)
    monkeypatch.setenv("TCMAX_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setattr(results, "results_dir", lambda must_exist=True: tmp_path / "results")
    path = results.publish("99_store", load_metrics("99_store"), 12.0)
    meta = json.loads(path.read_text())["meta"]
    assert meta["run_store"]["loaded"] == 1 and "folder" not in meta["run_store"]
    assert results._resumed(meta).startswith(" + ") and "1 stored trainings" in results._resumed(meta)
    assert results._resumed({"wall_time_s": 1.0}) == ""


def test_the_series_command_uses_a_store_for_full_runs_only(tmp_path, monkeypatch):
    monkeypatch.delenv(runstore.ENV, raising=False)
    parse = cli.build_parser().parse_args
    cli_io.choose_run_store(parse(["series", "run", "--full", "--run-store", str(tmp_path / "s")]))
    assert runstore.os.environ[runstore.ENV] == str((tmp_path / "s").absolute())
    cli_io.choose_run_store(parse(["series", "run"]))                 # FAST: always trains
    assert runstore.ENV not in runstore.os.environ
    cli_io.choose_run_store(parse(["series", "run", "--full"]))
    assert runstore.os.environ[runstore.ENV].endswith("build/run-store")
    cli_io.choose_run_store(parse(["series", "run", "--full", "--no-run-store"]))
    assert runstore.ENV not in runstore.os.environ
    with pytest.raises(SystemExit, match="needs --full"):
        cli_io.choose_run_store(parse(["series", "run", "--run-store", "x"]))


def test_a_conv_model_is_stored_in_its_memory_format(store):
    from tcmax_lib.data.splits import Split, Splits

    g = torch.Generator().manual_seed(0)

    def part(n):
        return Split((torch.randn(n, 1, 28, 28, generator=g), torch.randn(n, 1, 28, 28, generator=g)),
                     torch.arange(n) % 10)

    data = Splits(part(64), part(32), part(32), {"num_classes": 10})
    cfg = replace(CONFIG, epochs=1, precision="fp32")
    first = experiments.run("joint", data, lambda s: cnn_pair_model(10, "concat", seed=s), cfg)
    second = experiments.run("joint", data, lambda s: cnn_pair_model(10, "concat", seed=s), cfg)
    assert store.loaded == 1 and second.metrics == first.metrics


def test_the_library_fingerprint_reads_code_not_comments_or_docstrings():
    src = 'def f(x):\n    """Double."""\n    return 2 * x  # twice\n'
    same = 'def f(x):\n    """Twice x (a new docstring)."""\n\n    return 2 * x\n'
    assert fingerprint.code_digest(src) == fingerprint.code_digest(same)
    assert fingerprint.code_digest(src) != fingerprint.code_digest(src.replace("2 * x", "3 * x"))
    assert fingerprint.code_digest('"""Doc."""\n') != fingerprint.code_digest("x = 1\n")
