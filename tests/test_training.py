import math

import pytest
import torch

from tcmax_lib import diagnostics, methods, models
from tcmax_lib.data.splits import Split
from tcmax_lib.data.toy import ToyConfig, bayes_accuracy, bayes_posterior, sample_toy
from tcmax_lib.methods.base import ogm_ratio
from tcmax_lib.train import TrainConfig, fit


@pytest.mark.parametrize("head", ["concat", "sum", "shared"])
def test_linear_heads_modality_logits_sum_to_fused(head):
    torch.manual_seed(0)
    model = models.make_model([models.MLPEncoder(5, 8, 6), models.MLPEncoder(7, 8, 6)], head, 4)
    out = model(torch.randn(3, 5), torch.randn(3, 7))
    torch.testing.assert_close(sum(out.modality_logits), out.logits)


@pytest.mark.parametrize("head", ["film", "gated", "mlp"])
def test_nonlinear_heads_zero_the_other_modality(head):
    torch.manual_seed(0)
    model = models.make_model([models.MLPEncoder(5, 8, 6), models.MLPEncoder(7, 8, 6)], head, 4)
    out = model(torch.randn(3, 5), torch.randn(3, 7))
    torch.testing.assert_close(out.modality_logits[0], model.head(out.feats[0], torch.zeros_like(out.feats[1])))


def test_small_cnn_shapes():
    assert models.SmallCNN(1, 8, 16)(torch.randn(2, 1, 28, 28)).shape == (2, 16)


def test_ogm_ge_coefficient_and_window():
    torch.manual_seed(0)
    model = models.make_model([models.MLPEncoder(2, 4, 3), models.MLPEncoder(2, 4, 3)], "concat", 2)
    x = torch.randn(8, 2)
    y = torch.zeros(8, dtype=torch.long)
    with torch.no_grad():  # make modality 0 confident and right, modality 1 uninformative
        model.head.fc.weight.zero_()
        model.head.fc.bias.zero_()
        model.head.fc.weight[0, :3] = 5.0
    out = model(x.abs() + 1, x)
    m = methods.OGMGE(alpha=0.8, noise=False, start=0, end=0)
    loss, _ = m.loss(model, out, y)
    loss.backward()
    before = [p.grad.clone() for p in model.encoders[0].parameters()]
    logs = m.after_backward(model, out, y, epoch=0)
    ratio = ogm_ratio(out.modality_logits, y)
    assert logs["ogm_ratio"] == pytest.approx(ratio) and ratio > 1
    assert logs["coeff_0"] == pytest.approx(1 - math.tanh(0.8 * ratio)) and logs["coeff_1"] == 1.0
    for p, g in zip(model.encoders[0].parameters(), before):
        expected = g * logs["coeff_0"] if g.ndim >= 2 else g
        torch.testing.assert_close(p.grad, expected)
    # outside the window nothing is touched
    g_now = [p.grad.clone() for p in model.encoders[0].parameters()]
    m.after_backward(model, out, y, epoch=5)
    for p, g in zip(model.encoders[0].parameters(), g_now):
        torch.testing.assert_close(p.grad, g)


def test_ogm_ge_noise_matches_official_rule():
    """GE noise on both encoders, each with the std of its gradient before damping (official main.py)."""
    torch.manual_seed(0)
    model = models.make_model([models.MLPEncoder(2, 4, 3), models.MLPEncoder(2, 4, 3)], "concat", 2)
    x = torch.randn(8, 2)
    y = torch.zeros(8, dtype=torch.long)
    with torch.no_grad():
        model.head.fc.weight[0, :3] = 5.0
    out = model(x.abs() + 1, x)
    m = methods.OGMGE(alpha=0.8, noise=True)
    m.loss(model, out, y)[0].backward()
    before = [[p.grad.clone() for p in enc.parameters()] for enc in model.encoders]
    torch.manual_seed(123)
    logs = m.after_backward(model, out, y, epoch=0)
    torch.manual_seed(123)
    for enc, grads, k in zip(model.encoders, before, (logs["coeff_0"], logs["coeff_1"])):
        for p, g in zip(enc.parameters(), grads):
            if g.ndim < 2:
                torch.testing.assert_close(p.grad, g)                        # biases untouched
                continue
            expected = g * k + torch.randn_like(g) * (g.std() + 1e-8)       # same draws, in the same order
            torch.testing.assert_close(p.grad, expected)
    assert logs["coeff_1"] == 1.0  # the weak encoder is not damped, but it does get the noise (checked above)


def test_fit_restores_best_validation_weights():
    cfg = ToyConfig(interaction=False, n_noise=2)
    gen = torch.Generator().manual_seed(0)
    xa, xv, y, _, _ = sample_toy(512, cfg, gen)
    train = Split((xa, xv), y)
    xa, xv, y, _, _ = sample_toy(256, cfg, gen)
    val = Split((xa, xv), y)
    torch.manual_seed(0)
    model = models.make_model([models.MLPEncoder(cfg.dims[0], 16, 8), models.MLPEncoder(cfg.dims[1], 16, 8)],
                              "concat", 2)
    snapshots = {}

    def snap(epoch, m):
        snapshots[epoch] = {k: v.detach().clone() for k, v in m.state_dict().items()}
        return {}

    method = methods.Joint()
    model, hist = fit(model, method, train, val,
                      TrainConfig(epochs=6, batch_size=64, lr=0.05, optimizer="sgd", progress=False), snap)
    best = int(hist["best_epoch"].iloc[0])
    assert best == int(hist["val_acc"].idxmax())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, snapshots[best][k])
    if best != len(hist) - 1:  # the restored weights are not the last epoch's
        assert any(not torch.equal(model.state_dict()[k], snapshots[len(hist) - 1][k]) for k in snapshots[best])


def test_toy_bayes_closed_forms_agree_with_monte_carlo():
    cfg = ToyConfig()
    acc = bayes_accuracy(cfg, n_mc=200_000)
    # 2e5 samples: binomial SE <= 0.0011, tolerance ~4 SE
    assert acc["audio"] == pytest.approx(acc["audio_closed_form"], abs=0.005)
    assert acc["visual"] == pytest.approx(acc["visual_closed_form"], abs=0.005)
    assert acc["both"] > max(acc["audio"], acc["visual"]) + 0.4


def test_toy_posterior_is_normalised_and_interaction_hidden_from_one_modality():
    cfg = ToyConfig()
    xa, xv, y, b1, b2 = sample_toy(20_000, cfg, torch.Generator().manual_seed(1))
    for use in ("audio", "visual", "both"):
        p = bayes_posterior(xa, xv, cfg, use)
        torch.testing.assert_close(p.sum(1), torch.ones(len(y), dtype=p.dtype))
    # b2 is independent of each modality alone: the correlation of b2 with any single coordinate is ~0
    for x in (xa, xv):
        corr = torch.corrcoef(torch.cat([x.T, b2[None].float()]))[-1, :-1]
        assert corr.abs().max() < 0.03


def test_shapley_sums_to_gain_over_chance():
    torch.manual_seed(0)
    model = models.make_model([models.MLPEncoder(3, 8, 4), models.MLPEncoder(3, 8, 4)], "concat", 3)
    xs = [torch.randn(50, 3), torch.randn(50, 3)]
    y = torch.randint(0, 3, (50,))
    phi = diagnostics.shapley_contributions(model, xs, y)
    with torch.no_grad():
        full = float((model(*xs).logits.argmax(1) == y).float().mean())
    assert sum(phi) == pytest.approx(full - 1 / 3, abs=1e-6)


def test_confusion_matrix_counts():
    cm = diagnostics.confusion_matrix(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), 3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


# ----------------------------------------------------------------------------- precision policy in the trainer
def _image_split(n: int, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    img = torch.randn(n, 1, 12, 12, generator=g) + 3 * y[:, None, None, None].float()  # class shifts the mean
    return Split((img, torch.randn(n, 1, 12, 12, generator=g)), y)


def _cnn_model() -> models.MultimodalClassifier:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return models.make_model([models.SmallCNN(1, 4, 8), models.SmallCNN(1, 4, 8)], "concat", 3)


def test_fit_bf16_keeps_fp32_weights_and_reports_precision():
    model = _cnn_model()
    cfg = TrainConfig(epochs=6, batch_size=16, lr=3e-3, precision="bf16", progress=False)
    model, hist = fit(model, methods.make_method("tcmax"), _image_split(96, 0), _image_split(48, 1), cfg)
    assert set(hist["precision"]) == {"bf16"}
    assert all(p.dtype == torch.float32 for p in model.parameters())         # autocast casts copies only
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)     # the default for conv models
    # it learns: chance is 1/3; this easy task (class means 3 apart) reached 0.98 in fp32 and in bf16 (measured)
    assert math.isfinite(hist["val_loss"].iloc[-1]) and hist["val_acc"].max() > 0.6


def test_channels_last_does_not_change_fp32_training():
    """NHWC is a memory order, not a different computation: same weights up to conv summation order.

    Tolerance: a weight whose gradient is ~0 can get a rounding-noise gradient of either sign, and AdamW
    turns it into a step of up to lr = 1e-3; 4 steps (64 samples, batch 16) bound that at 4e-3. All
    other weights agree to ~1e-6, so the median difference is checked tightly.
    """
    runs = []
    for nhwc in (False, True):
        cfg = TrainConfig(epochs=1, batch_size=16, precision="fp32", channels_last=nhwc, progress=False)
        model, _ = fit(_cnn_model(), methods.make_method("joint"), _image_split(64, 0), _image_split(32, 1), cfg)
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    diff = (runs[0] - runs[1]).abs()
    assert float(diff.max()) < 4e-3 and float(diff.median()) < 1e-5


def test_fit_rejects_unknown_precision_before_training(monkeypatch):
    monkeypatch.setenv("TCMAX_PRECISION", "fp8")
    with pytest.raises(ValueError, match="TCMAX_PRECISION='fp8' is not a precision"):
        fit(_cnn_model(), methods.make_method("joint"), _image_split(32, 0), _image_split(16, 1),
            TrainConfig(epochs=1, batch_size=16, progress=False))


def test_auto_precision_keeps_small_mlps_in_fp32_on_cpu(monkeypatch):
    """bench_train measured bf16 slower for the toy MLPs on CPU: `auto` keeps them fp32, `bf16` is honoured;
    on CUDA `auto` stays bf16 (no such measurement there)."""
    from tcmax_lib import hardware, runtime
    from tcmax_lib.train import trainer_precision

    monkeypatch.setattr(hardware, "cpu_bf16_support", lambda: "AMX-BF16")
    monkeypatch.delenv("TCMAX_PRECISION", raising=False)
    monkeypatch.setattr(runtime.STATE, "precision_pref", None)
    mlp = models.mlp_pair_model((4, 5), 3)
    assert trainer_precision(mlp, TrainConfig()).name == "fp32"
    assert trainer_precision(mlp, TrainConfig(precision="bf16")).name == "bf16"
    assert trainer_precision(_cnn_model(), TrainConfig()).name == "bf16"
    monkeypatch.setattr(hardware, "cpu_bf16_support", lambda: None)
    assert trainer_precision(_cnn_model(), TrainConfig()).name == "fp32"
    cuda = runtime.Precision("cuda", True, "auto: bf16 tensor cores")
    assert cuda.unless_small(False) is cuda
