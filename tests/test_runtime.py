import json

import matplotlib.pyplot as plt
import pytest
import torch

import tcmax_lib as tl
from tcmax_lib import hardware, plotting, runtime


@pytest.mark.parametrize("value,expected", [(True, True), (False, False), ("1", True), ("true", True),
                                            ("FALSE", False), ("0", False), (1, True), (0, False),
                                            ("fast", True), ("FULL", False)])
def test_resolve_fast_explicit(value, expected):
    assert tl.resolve_fast(value) is expected


def test_resolve_fast_env(monkeypatch):
    monkeypatch.setenv("TCMAX_FAST", "0")
    assert tl.resolve_fast(None) is False
    monkeypatch.setenv("TCMAX_FAST", "yes")
    assert tl.resolve_fast(None) is True
    monkeypatch.delenv("TCMAX_FAST")
    assert tl.resolve_fast(None) is True  # FAST unless asked otherwise


def test_resolve_fast_rejects_garbage():
    for bad in ("maybe", "", " "):
        with pytest.raises(ValueError, match="not understood"):
            tl.resolve_fast(bad)


def test_pick_device_cpu(capsys):
    assert tl.pick_device("cpu").type == "cpu"
    assert "device: cpu" in capsys.readouterr().out
    assert tl.pick_device("auto", verbose=False).type in {"cpu", "cuda", "mps"}


def test_pick_device_missing_cuda():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="no GPU|no CUDA support"):
        tl.pick_device("cuda")


def test_seed_everything_reproducible():
    g1 = tl.seed_everything(3)
    a = torch.randn(4), torch.randn(4, generator=g1)
    g2 = tl.seed_everything(3)
    b = torch.randn(4), torch.randn(4, generator=g2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_record_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("TCMAX_METRICS_DIR", str(tmp_path))
    runtime.STATE.notebook = "99_test"
    tl.resolve_fast(True)
    tl.record("x", torch.tensor(1.5))
    tl.record("table", {"a": [1, 2]})
    data = json.loads((tmp_path / "99_test.json").read_text())
    assert data == {"x": 1.5, "table": {"a": [1, 2]}, "_fast": True, "_device": runtime.STATE.device,
                    "_precision": runtime.STATE.precision, "_torch": torch.__version__}
    assert tl.load_metrics("99_test", tmp_path)["x"] == 1.5


def test_savefig_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("TCMAX_FIGURES_DIR", str(tmp_path))
    plotting.set_style()
    blobs = []
    for _ in range(2):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        png = tl.savefig(fig, "line")
        plt.close(fig)
        blobs.append((png.read_bytes(), (tmp_path / "line.pdf").read_bytes()))
    assert blobs[0] == blobs[1]


def test_figures_dir_follows_mode(monkeypatch):
    monkeypatch.delenv("TCMAX_FIGURES_DIR", raising=False)
    tl.resolve_fast(True)
    assert plotting.figures_dir().parts[-2:] == ("build", "figures")
    tl.resolve_fast(False)
    assert plotting.figures_dir().name == "figures" and plotting.figures_dir().parent.name != "build"
    tl.resolve_fast(True)


# ----------------------------------------------------------------------------- precision policy (notebook 01)
def test_precision_explicit_and_env(monkeypatch):
    monkeypatch.delenv("TCMAX_PRECISION", raising=False)
    assert runtime.pick_precision("cpu", "fp32").bf16 is False
    assert runtime.pick_precision("cpu", "bf16").bf16 is True
    monkeypatch.setenv("TCMAX_PRECISION", "fp32")
    p = runtime.pick_precision("cpu")
    assert p.name == "fp32" and "TCMAX_PRECISION" in p.reason
    assert runtime.pick_precision("cpu", "BF16").name == "bf16"          # the parameter wins over the environment


def test_precision_auto_follows_cpu_detection(monkeypatch):
    monkeypatch.delenv("TCMAX_PRECISION", raising=False)
    monkeypatch.setattr(hardware, "cpu_bf16_support", lambda: "AMX-BF16")
    p = runtime.pick_precision("cpu")
    assert p.bf16 and "AMX-BF16" in str(p)
    monkeypatch.setattr(hardware, "cpu_bf16_support", lambda: None)
    assert runtime.pick_precision("cpu").name == "fp32"
    forced = runtime.pick_precision("cpu", "bf16")
    assert forced.bf16 and "emulated" in forced.reason                   # allowed, but the report says it is slow


def test_cpu_bf16_detection_matches_cpuinfo():
    flags = set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pytest.skip("no /proc/cpuinfo on this system")
    found = hardware.cpu_bf16_support()
    assert (found is not None) == ("avx512_bf16" in flags and torch.backends.mkldnn.is_available())
    if found == "AMX-BF16":
        assert "amx_tile" in flags


@pytest.mark.parametrize("bad", ["fp16", "half", ""])
def test_precision_rejects_unknown_values(monkeypatch, bad):
    monkeypatch.setenv("TCMAX_PRECISION", bad)
    with pytest.raises(ValueError, match="TCMAX_PRECISION=.*'auto', 'fp32' or 'bf16'"):
        runtime.pick_precision("cpu")
    with pytest.raises(ValueError, match="TCMAX_PRECISION"):          # the device report fails before any work
        runtime.pick_device("cpu", verbose=False)


def test_precision_bf16_refused_on_mps():
    with pytest.raises(ValueError, match="only on CPU and CUDA"):
        runtime.pick_precision("mps", "bf16")
    assert runtime.pick_precision("mps", "auto").name == "fp32"


def test_precision_autocast_runs_matmuls_in_bf16_only_when_on():
    a = torch.randn(8, 8)
    with runtime.pick_precision("cpu", "bf16").autocast():
        assert (a @ a).dtype == torch.bfloat16
    with runtime.pick_precision("cpu", "fp32").autocast():
        assert (a @ a).dtype == torch.float32


def test_auto_estimator_precision_is_bf16_for_concat_critics_only(monkeypatch):
    from tcmax_lib.info import training as E

    monkeypatch.setattr(hardware, "cpu_bf16_support", lambda: "AMX-BF16")
    auto = runtime.pick_precision("cpu", "auto")
    assert auto.unless_small(True).bf16 and not auto.unless_small(False).bf16
    assert runtime.pick_precision("cpu", "bf16").unless_small(False).bf16          # explicit bf16 is honoured
    seen = []
    monkeypatch.setattr(runtime.Precision, "autocast", lambda self: seen.append(self.name) or torch.autocast(
        "cpu", enabled=False))
    for critic in ("concat", "separable"):
        E.train_estimators(E.make_estimators(["nwj"], critic=critic, hidden=8), E.mi_staircase([1.0], 1),
                           precision="auto", progress=False)
    assert seen == ["bf16", "fp32"]


def test_device_report_names_precision(capsys, monkeypatch):
    monkeypatch.setenv("TCMAX_PRECISION", "fp32")
    runtime.pick_device("cpu")
    assert "precision fp32 (TCMAX_PRECISION=fp32)" in capsys.readouterr().out


def test_notebook_precision_parameter_becomes_the_default(monkeypatch):
    monkeypatch.setenv("TCMAX_PRECISION", "bf16")
    monkeypatch.setattr(runtime.STATE, "precision_pref", None)
    runtime.pick_device("cpu", verbose=False, precision="fp32")        # a notebook's PRECISION = "fp32"
    assert runtime.pick_precision("cpu").name == "fp32"                 # the trainer's call, no argument
    runtime.pick_device("cpu", verbose=False)                           # PRECISION = None: the environment again
    assert runtime.pick_precision("cpu").name == "bf16"


def test_cpu_kind_is_named_in_device_names_and_run_records(monkeypatch):
    """Speed figures name the CPU's bf16 kind: the device name, results/ meta and the README's label."""
    from tcmax_lib.course import results

    for native, kind in [("AMX-BF16", "AMX-BF16"), ("AVX512-BF16", "AVX512-BF16, no AMX"), (None, "no native bf16")]:
        monkeypatch.setattr(hardware, "cpu_bf16_support", lambda n=native: n)
        assert hardware.cpu_kind() == kind
        name = hardware.device_name("cpu")
        assert f"({kind})" in name and name.startswith("CPU ")
        meta = results.run_meta(1.0, name, "2.x", "FULL")
        assert meta["cpu_bf16"] == kind and results.device_label(meta) == name
    old = {"device": "CPU Intel(R) Xeon(R) Processor, 2 threads"}           # recorded before cpu_bf16 existed
    assert results.device_label(old) == "CPU Intel(R) Xeon(R) Processor (bf16 kind not recorded), 2 threads"
    old["precision"] = "bf16 (auto: AMX-BF16; small models stay fp32 (unless_small))"
    assert results.device_label(old) == "CPU Intel(R) Xeon(R) Processor (AMX-BF16), 2 threads"
    assert results.device_label({"device": "NVIDIA H200"}) == "NVIDIA H200"
    assert "cpu_bf16" not in results.run_meta(1.0, "NVIDIA H200", "2.x", "FULL")


def test_progress_bars_honour_tqdm_disable(monkeypatch):
    """Library loops pass `disable=progress_off(progress)`: off when asked, and off under TQDM_DISABLE (the test
    layers set it), which an explicit `disable=None` would otherwise override."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert runtime.progress_off(False) is True and runtime.progress_off(True) is None
    for value, off in [("1", True), ("true", True), ("0", None), ("", None)]:
        monkeypatch.setenv("TQDM_DISABLE", value)
        assert runtime.progress_off(True) is off, value
