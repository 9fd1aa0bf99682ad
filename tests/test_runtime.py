import json

import matplotlib.pyplot as plt
import pytest
import torch

import tcmax_lib as tl
from tcmax_lib import plotting, runtime


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
    with pytest.raises(RuntimeError, match="no GPU"):
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
                    "_torch": torch.__version__}
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
