"""The paper's baselines (AGM, MLA, MMPareto, PMR) and the prediction-agreement metrics: each defining
mechanism checked against a direct computation written here (notebook 07)."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from tcmax_lib import diagnostics, models
from tcmax_lib.data.splits import Split
from tcmax_lib.methods import agm as agm_m
from tcmax_lib.methods import make_method
from tcmax_lib.methods import mla as mla_m
from tcmax_lib.methods import mmpareto as mmpareto_m
from tcmax_lib.methods import pmr as pmr_m
from tcmax_lib.train import TrainConfig, fit


def _model(head="concat", seed=0, classes=3):
    torch.manual_seed(seed)
    return models.make_model([models.MLPEncoder(4, 8, 6), models.MLPEncoder(5, 8, 6)], head, classes)


def _batch(n=12, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    xa = torch.randn(n, 4, generator=g) + y[:, None].float()             # audio informative
    xv = torch.randn(n, 5, generator=g)                                  # visual noise
    return xa, xv, y


# ----------------------------------------------------------------------------- AGM
def test_agm_shapley_responses_of_a_linear_head_are_its_slices_without_bias():
    model = _model()
    xa, xv, _ = _batch()
    out = model(xa, xv)
    r_a, r_v = agm_m.shapley_responses(model.head, out.feats)
    w_a, w_v = model.head.fc.weight.split([6, 6], dim=1)
    torch.testing.assert_close(r_a, out.feats[0] @ w_a.T)
    torch.testing.assert_close(r_v, out.feats[1] @ w_v.T)


def test_agm_shapley_responses_sum_to_the_gain_over_the_empty_input():
    model = _model("gated")
    xa, xv, _ = _batch()
    out = model(xa, xv)
    r_a, r_v = agm_m.shapley_responses(model.head, out.feats)
    empty = model.head(torch.zeros_like(out.feats[0]), torch.zeros_like(out.feats[1]))
    torch.testing.assert_close(r_a + r_v, out.logits - empty)


def test_agm_scales_each_encoder_by_exp_alpha_times_ratio_gap_and_keeps_a_running_mean():
    model = _model()
    xa, xv, y = _batch()
    agm = agm_m.AGM(alpha=0.7, end=3)
    out = model(xa, xv)
    loss, _ = agm.loss(model, out, y)
    loss.backward()
    raw = [[p.grad.clone() for p in enc.parameters()] for enc in model.encoders]
    head_grad = model.head.fc.weight.grad.clone()
    logs = agm.after_backward(model, out, y, epoch=0)
    resp = agm_m.shapley_responses(model.head, [f.detach() for f in out.feats])
    scores = [float(-F.log_softmax(r, 1)[torch.arange(len(y)), y].mean().detach()) for r in resp]
    ratio_a = math.exp(scores[1] - scores[0])
    # first step: the running scores start at 0, so the reference ratio is 1
    expected = [math.exp(0.7 * (1 - ratio_a)), math.exp(0.7 * (1 - 1 / ratio_a))]
    assert logs["agm_ratio"] == pytest.approx(ratio_a)
    assert [logs["coeff_0"], logs["coeff_1"]] == pytest.approx(expected)
    for enc, gs, k in zip(model.encoders, raw, expected):
        for p, g in zip(enc.parameters(), gs):
            torch.testing.assert_close(p.grad, g * k)
    torch.testing.assert_close(model.head.fc.weight.grad, head_grad)     # the head is not modulated
    assert agm.running == pytest.approx(scores) and agm.iterations == 1
    # outside the window: gradients and running mean untouched
    before = [p.grad.clone() for p in model.parameters()]
    agm.after_backward(model, out, y, epoch=4)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), before)) and agm.iterations == 1


# ----------------------------------------------------------------------------- MLA
class _Recorder(torch.optim.SGD):
    """SGD that records, at every step, which parameters have a gradient and the head's weight gradient."""

    def __init__(self, model, lr=0.1):
        super().__init__(model.parameters(), lr=lr)
        self.model, self.log = model, []

    def step(self, closure=None):
        has = [any(p.grad is not None for p in enc.parameters()) for enc in self.model.encoders]
        self.log.append((has, self.model.head.fc.weight.grad.clone()))
        return super().step(closure)


def _mla_step(projection, steps=1):
    model = _model("shared")
    xa, xv, y = _batch()
    mla = mla_m.MLA(projection=projection)
    opt = _Recorder(model)
    for s in range(steps):
        mla.step(model, [xa, xv], y, opt, lambda loss, after: None, epoch=0, step=s, steps_per_epoch=4)
    return model, opt.log, (xa, xv, y)


def test_mla_alternates_modalities_through_the_shared_head():
    _, log, _ = _mla_step(projection="none")
    assert [has for has, _ in log] == [[True, False], [False, True]]     # audio step, then visual step


@pytest.mark.parametrize("form,update", [("owm", mla_m.owm_update), ("released", mla_m.owm_update_released)])
def test_mla_projects_the_head_gradient_after_the_first_update(form, update):
    _, raw, (xa, xv, y) = _mla_step(projection="none")
    model0 = _model("shared")
    _, proj, _ = _mla_step(projection=form)
    torch.testing.assert_close(proj[0][1], raw[0][1])                    # the very first update is not projected
    with torch.no_grad():
        p = update(torch.eye(6), model0.encoders[1](xv), 0.1 ** (1 + 0 / 4))
    torch.testing.assert_close(proj[1][1], raw[1][1] @ p.T)


def test_mla_default_is_the_released_behaviour_no_projection():
    assert mla_m.MLA().projection == "none"
    with pytest.raises(ValueError, match="'none' .*'released' .*'owm'"):
        mla_m.MLA(projection=True)                                        # the old bool is refused, not guessed


def test_released_projector_divides_elementwise_by_the_outer_product():
    """Slow, obvious loops against the vectorised step: entry (i, j) is divided by alpha + k_i r_j."""
    g = torch.Generator().manual_seed(3)
    proj, feats, alpha = torch.eye(4) + 0.1 * torch.randn(4, 4, generator=g), torch.randn(5, 4, generator=g), 0.1
    r = feats.mean(0)
    k = proj @ r
    slow = torch.empty(4, 4)
    for i in range(4):
        for j in range(4):
            slow[i, j] = proj[i, j] - k[i] * k[j] / (alpha + k[i] * r[j])
    torch.testing.assert_close(mla_m.owm_update_released(proj, feats, alpha), slow / slow.norm())
    owm = mla_m.owm_update(proj, feats, alpha)                           # the paper's scalar form differs
    assert float((owm - slow / slow.norm()).abs().max()) > 1e-2


def test_owm_update_removes_the_batch_feature_direction():
    r = torch.tensor([[3.0, 4.0, 0.0]])
    alpha = 0.1
    p = mla_m.owm_update(torch.eye(3), r, alpha)
    unnormalised = torch.eye(3) - r.T @ r / (alpha + float(r @ r.T))
    torch.testing.assert_close(p, unnormalised / unnormalised.norm())
    # P r = r * alpha / (alpha + |r|^2): the update barely moves outputs on the previous features
    torch.testing.assert_close(p @ r.T, r.T * alpha / (alpha + 25.0) / unnormalised.norm())


def test_mla_needs_a_shared_head_and_predicts_with_entropy_weights():
    model = _model("concat")
    xa, xv, y = _batch()
    with pytest.raises(ValueError, match="head='shared'"):
        mla_m.MLA().loss(model, model(xa, xv), y)
    confident, unsure = torch.tensor([[4.0, 0.0, 0.0]]), torch.tensor([[0.1, 0.0, 0.2]])
    h = [float(diagnostics.prediction_entropy(lg)) for lg in (confident, unsure)]
    w = torch.softmax(-torch.tensor(h), 0)
    torch.testing.assert_close(mla_m.mla_fusion([confident, unsure]), w[0] * confident + w[1] * unsure)


# ----------------------------------------------------------------------------- MMPareto
def test_pareto_weights_never_conflict_with_either_task():
    g = torch.Generator().manual_seed(0)
    conflicts = 0
    for _ in range(200):
        g1, g2 = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
        k1, k2, cos = mmpareto_m.pareto_weights(g1, g2)
        d = k1 * g1 + k2 * g2
        assert k1 + k2 == pytest.approx(1.0) and 0 <= k1 <= 1
        assert float(d @ g1) >= -1e-9 and float(d @ g2) >= -1e-9
        if cos <= 0:
            conflicts += 1
            assert float(d @ g1) == pytest.approx(float(d @ d)) and float(d @ g2) == pytest.approx(float(d @ d))
        else:
            assert (k1, k2) == (0.5, 0.5)
    assert conflicts > 50                                                # both branches were exercised


def test_mmpareto_gradient_is_the_rescaled_pareto_combination():
    model = _model("concat_msh")
    xa, xv, y = _batch()
    ref = copy.deepcopy(model)
    method = mmpareto_m.MMPareto()
    out = model(xa, xv)
    loss, logs = method.loss(model, out, y)
    loss.backward()
    method.after_backward(model, out, y, epoch=0)
    # direct computation on a copy
    out_r = ref(xa, xv)
    l_mm = F.cross_entropy(out_r.logits, y)
    l_uni = [F.cross_entropy(lg, y) for lg in out_r.modality_logits]
    for m, enc in enumerate(ref.encoders):
        ps = list(enc.parameters())
        gm = torch.autograd.grad(l_mm, ps, retain_graph=True)
        gu = torch.autograd.grad(l_uni[m], ps, retain_graph=True)
        gs = torch.autograd.grad(l_mm + sum(l_uni), ps, retain_graph=True)
        flat_mm, flat_uni = torch.cat([g.flatten() for g in gm]), torch.cat([g.flatten() for g in gu])
        k1, k2, _ = mmpareto_m.pareto_weights(flat_mm, flat_uni)
        for p, a, b, s in zip(model.encoders[m].parameters(), gm, gu, gs):
            new = 2 * (k1 * a + k2 * b)
            scale = max(float(s.norm() / new.norm()), 1.0)
            torch.testing.assert_close(p.grad, new * scale * 1.5)
    # heads keep the plain summed gradient
    hs = torch.autograd.grad(l_mm + sum(l_uni), list(ref.head.parameters()))
    for p, g in zip(model.head.parameters(), hs):
        torch.testing.assert_close(p.grad, g)


# ----------------------------------------------------------------------------- PMR
def test_pmr_prototypes_are_class_means_and_the_weaker_modality_gets_the_prototype_loss():
    model = _model()
    xa, xv, y = _batch(n=30)
    train = Split((xa, xv), y)
    pmr = pmr_m.PMR(alpha=2.0, fraction=1.0)
    pmr.on_epoch_start(model, train, epoch=0)
    model.eval()
    with torch.no_grad():
        feats = [enc(x) for enc, x in zip(model.encoders, (xa, xv))]
    for f, proto in zip(feats, pmr.prototypes):
        torch.testing.assert_close(proto, torch.stack([f[y == c].mean(0) for c in range(3)]))
    out = model(xa, xv)
    loss, logs = pmr.loss(model, out, y)
    sims = [-torch.cdist(f, c) for f, c in zip(out.feats, pmr.prototypes)]
    score = [float(s.detach().softmax(1)[torch.arange(30), y].sum()) for s in sims]
    rho = score[0] / score[1]
    assert logs["pmr_ratio"] == pytest.approx(rho)
    pce = [F.cross_entropy(s, y) for s in sims]
    weak = 1 if rho > 1 else 0
    w = min(max(rho, 1 / rho) - 1, 1.0)
    torch.testing.assert_close(loss, F.cross_entropy(out.logits, y) + 2.0 * w * pce[weak])
    # a prototypical loss above max_proto_loss is dropped for the step
    pmr.max_proto_loss = float(pce[weak].detach()) / 2
    torch.testing.assert_close(pmr.loss(model, out, y)[0], F.cross_entropy(out.logits, y))


def test_pmr_refuses_a_split_without_some_class():
    model = _model()
    xa, xv, y = _batch()
    y = y.clamp(max=1)                                                  # class 2 never appears
    with pytest.raises(ValueError, match="no training sample"):
        pmr_m.PMR(fraction=1.0).on_epoch_start(model, Split((xa, xv), y), epoch=0)


# ----------------------------------------------------------------------------- every method trains
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name,head", [("agm", "concat"), ("mla", "shared"), ("mmpareto", "concat_msh"),
                                       ("pmr", "concat")])
def test_every_baseline_trains_through_fit(name, head, precision):
    """Also under bf16 autocast: gradient surgery (MLA's projection, MMPareto's rescaling) must stay fp32."""
    xa, xv, y = _batch(n=96, seed=1)
    train, val = Split((xa, xv), y), Split((xa[:24], xv[:24]), y[:24])
    cfg = TrainConfig(epochs=6, batch_size=16, lr=1e-2, progress=False, precision=precision)
    model, hist = fit(_model(head), make_method(name), train, val, cfg)
    assert len(hist) == 6 and hist["train_loss"].notna().all() and set(hist["precision"]) == {precision}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert hist["val_acc"].max() > 0.7                                   # audio is informative (chance 1/3)


# ----------------------------------------------------------------------------- agreement metrics
def test_js_divergence_hand_cases():
    same = torch.tensor([[1.0, 2.0, 0.5]])
    assert float(diagnostics.js_divergence(same, same)) == pytest.approx(0.0, abs=1e-7)
    big = 60.0                                                           # (almost) disjoint one-hots
    assert float(diagnostics.js_divergence(torch.tensor([[big, 0.0]]), torch.tensor([[0.0, big]]))) == pytest.approx(
        math.log(2), abs=1e-6)
    p, q = torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1])
    m = (p + q) / 2
    direct = 0.5 * float((p * (p / m).log()).sum() + (q * (q / m).log()).sum())
    got = diagnostics.js_divergence(p.log()[None], q.log()[None])
    assert float(got) == pytest.approx(direct, rel=1e-6)
    assert float(diagnostics.js_divergence(q.log()[None], p.log()[None])) == pytest.approx(direct, rel=1e-6)


def test_entropy_ratio_hand_cases():
    uniform = torch.zeros(4, 5)
    assert float(diagnostics.prediction_entropy(uniform)[0]) == pytest.approx(math.log(5))
    p = torch.tensor([[0.5, 0.5, 0.0 + 1e-30]])
    half = float(diagnostics.prediction_entropy(p.log())[0])
    assert half == pytest.approx(math.log(2), abs=1e-6)
    assert diagnostics.entropy_ratio(torch.zeros(1, 3), p.log()) == pytest.approx(math.log(3) / math.log(2), rel=1e-6)
    assert diagnostics.entropy_ratio(p.log(), torch.zeros(1, 3)) == pytest.approx(math.log(3) / math.log(2), rel=1e-6)


def test_mla_step_stops_at_a_non_finite_input():
    from tcmax_lib.train import TrainingDivergedError
    xa, xv, y = _batch(n=32, seed=2)
    train, val = Split((xa, xv), y), Split((xa[:8], xv[:8]), y[:8])

    def augment(batch, generator):                                       # clean data that turn NaN in a step
        return [batch[0], batch[1].masked_fill(torch.arange(len(batch[1]))[:, None] == 3, float("nan"))]

    cfg = TrainConfig(epochs=1, batch_size=32, progress=False, augment=augment)
    with pytest.raises(TrainingDivergedError, match="input 1 holds NaN"):
        fit(_model("shared"), make_method("mla"), train, val, cfg)
