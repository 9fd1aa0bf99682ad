"""No silent failure, round 2 (issue #24): the loss, the trainer and the experiment layer validate their inputs.

Each test here failed before the fix: the case trained or evaluated silently, or died in a raw torch error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tcmax_lib import checks, experiments, losses, methods, models
from tcmax_lib.data.splits import Split, Splits
from tcmax_lib.train import TrainConfig, evaluate, fit

INT_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]


def _toy(n: int, seed: int = 0, classes: int = 2) -> Split:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    xa = torch.randn(n, 4, generator=g) + y[:, None].float()
    xv = torch.randn(n, 4, generator=g) + y[:, None].float()
    return Split((xa, xv), y)


def _model(classes: int = 2):
    return models.mlp_pair_model([4, 4], classes, "concat", hidden=8, feat=4, seed=0)


CFG = TrainConfig(epochs=1, batch_size=16, progress=False)


# ----------------------------------------------------------------------------- defect 3: NaN in val / test
def test_nan_in_the_validation_split_is_refused_before_training():
    val = _toy(32, seed=1)
    val.inputs[0][[4, 9]] = float("nan")
    with pytest.raises(ValueError, match=r"the validation split: modality 0 holds NaN/inf in 2 of 32 rows "
                                         r"\(first rows \[4, 9\]\)"):
        fit(_model(), methods.Joint(), _toy(64), val, CFG)


def test_nan_in_the_test_split_is_refused_before_training():
    test = _toy(32, seed=2)
    test.inputs[1][:] = float("nan")
    splits = Splits(_toy(64), _toy(32, seed=1), test)
    trained = []
    with pytest.raises(ValueError, match=r"the test split: modality 1 holds NaN/inf in 32 of 32 rows"):
        experiments.run("joint", splits, lambda seed: trained.append(seed) or _model(), CFG)
    assert trained == [0]                                                # the model was built, never trained


def test_evaluate_refuses_nan_inputs():
    split = _toy(16)
    split.inputs[0][0, 0] = float("inf")
    with pytest.raises(ValueError, match="the evaluated split: modality 0 holds NaN/inf in 1 of 16 rows"):
        evaluate(_model(), methods.Joint(), split)


# ----------------------------------------------------------------------------- defect 4: labels in the trainer
@pytest.mark.parametrize("method", ["joint", "tcmax", "ogm_ge", "unimodal"])
@pytest.mark.parametrize("bad,message", [
    ("ignore", r"got values in \[-100, 1\] \(-100 is cross-entropy's ignore index"),
    ("range", r"must lie in \[0, 1\] for 2 classes, got values in \[0, 5\]"),
    ("float", r"must be integer class indices .* got dtype torch.float32"),
    ("column", r"must have shape \[N\], got \(64, 1\)"),
])
def test_bad_training_labels_are_refused_by_every_method(method, bad, message):
    train = _toy(64)
    y = {"ignore": train.y.masked_fill(torch.arange(64) % 2 == 0, -100),
         "range": train.y * 5, "float": train.y.float(), "column": train.y[:, None]}[bad]
    with pytest.raises(ValueError, match=message):                      # (Split accepts [N, 1] labels)
        fit(_model(), methods.make_method(method), Split(train.inputs, y), _toy(32, seed=1), CFG)


def test_bad_validation_labels_are_refused_too():
    val = _toy(32, seed=1)
    val = Split(val.inputs, val.y + 2)
    with pytest.raises(ValueError, match=r"the validation split's labels must lie in \[0, 1\]"):
        fit(_model(), methods.Joint(), _toy(64), val, CFG)


# ----------------------------------------------------------------------------- defect 5: every integer dtype
@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("method", ["joint", "tcmax"])
def test_every_integer_label_dtype_trains_like_int64(dtype, method):
    train, val = _toy(64), _toy(32, seed=1)
    ref = fit(_model(), methods.make_method(method), train, val, CFG)[1]
    got = fit(_model(), methods.make_method(method), Split(train.inputs, train.y.to(dtype)),
              Split(val.inputs, val.y.to(dtype)), CFG)[1]
    assert got["train_loss"].tolist() == ref["train_loss"].tolist()
    assert got["val_acc"].tolist() == ref["val_acc"].tolist()


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_the_loss_accepts_every_integer_dtype(dtype):
    g = torch.Generator().manual_seed(0)
    logits = [torch.randn(8, 3, generator=g) for _ in range(2)]
    y = torch.randint(0, 3, (8,), generator=g)
    ref = losses.tcmax_loss(logits, y).loss
    assert torch.equal(losses.tcmax_loss(logits, y.to(dtype)).loss, ref)
    head = models.ConcatHead([3, 3], 3)
    pair = losses.tcmax_loss_pairwise(head, logits, y.to(dtype)).loss
    assert torch.allclose(pair, losses.tcmax_loss_pairwise(head, logits, y).loss)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool, torch.float64])
def test_the_loss_and_the_trainer_refuse_the_same_dtypes_with_one_message(dtype):
    y = torch.tensor([0, 1, 1, 0]).to(dtype)
    with pytest.raises(ValueError, match=f"must be integer class indices .* got dtype {dtype}"):
        losses.tcmax_loss([torch.randn(4, 2), torch.randn(4, 2)], y)
    with pytest.raises(ValueError, match=f"must be integer class indices .* got dtype {dtype}"):
        checks.class_labels(y, 2)


# ----------------------------------------------------------------------------- defect 6: configs
@pytest.mark.parametrize("change,error,message", [
    ({"lr_step": -1}, ValueError, "lr_step=-1 must be at least 1"),
    ({"lr_step": 0}, ValueError, "lr_step=0 must be at least 1 .*None = constant"),
    ({"lr": 0.0}, ValueError, "lr=0 must be positive"),
    ({"lr": float("nan")}, ValueError, "lr=nan must be a finite number"),
    ({"lr": "1e-3"}, TypeError, "lr='1e-3' .* must be a number"),
    ({"epochs": 2.5}, TypeError, r"epochs=2.5 \(float\) must be a whole number"),
    ({"epochs": 0}, ValueError, "epochs=0 must be at least 1"),
    ({"batch_size": 16.0}, TypeError, r"batch_size=16.0 \(float\) must be a whole number"),
    ({"batch_size": 0}, ValueError, "batch_size=0 must be at least 1"),
    ({"epochs": True}, TypeError, "epochs=True"),
    ({"weight_decay": -1e-4}, ValueError, "weight_decay=-0.0001 must be at least 0"),
    ({"optimizer": "adam"}, ValueError, "optimizer 'adam' unknown"),
    ({"augment": "flip"}, TypeError, "augment='flip' must be a function"),
])
def test_nonsensical_configs_are_refused_when_built(change, error, message):
    with pytest.raises(error, match=message):
        TrainConfig(**change)


def test_numpy_integers_are_numbers():
    cfg = TrainConfig(epochs=np.int64(2), batch_size=np.int32(16), lr=np.float32(1e-3), lr_step=np.int64(1))
    assert (type(cfg.epochs), type(cfg.batch_size), type(cfg.lr)) == (int, int, float)
    out = losses.tcmax_loss_pairwise(models.ConcatHead([2, 2], 2), [torch.randn(4, 2), torch.randn(4, 2)],
                                     torch.tensor([0, 1, 0, 1]), chunk_size=np.int64(2))
    assert math.isfinite(float(out.tc_estimate))


def test_a_cuda_device_on_a_cpu_build_is_refused_with_the_fix():
    if torch.backends.cuda.is_built() and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="TrainConfig.device='cuda'.* (no CUDA support|sees no GPU)"):
        fit(_model(), methods.Joint(), _toy(64), _toy(32, seed=1), TrainConfig(epochs=1, batch_size=16,
                                                                                device="cuda", progress=False))


# ----------------------------------------------------------------------------- numerics and heads of the loss
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_a_non_finite_logit_is_refused_not_turned_into_a_nan_loss(value):
    logits = [torch.randn(8, 3), torch.randn(8, 3)]
    logits[1][2, 0] = value
    with pytest.raises(ValueError, match=r"logits of modality \[1\] hold NaN/inf; the TCMax loss is finite only"):
        losses.tcmax_loss(logits, torch.randint(0, 3, (8,)))


@pytest.mark.parametrize("seed", range(10))
def test_the_loss_is_finite_for_finite_logits_up_to_1e30(seed):
    # the promise is for |logit| <= 1e30 in float32: sums of B*M such terms stay far from the float32 maximum
    # (3.4e38); logits of +-3e38 can overflow those sums, and no trained network comes near either
    g = torch.Generator().manual_seed(seed)
    logits = [torch.randint(-1, 2, (64, 5), generator=g).float() * 1e30 for _ in range(3)]
    y = torch.randint(0, 5, (64,), generator=g)
    out = losses.tcmax_loss(logits, y)
    assert math.isfinite(float(out.tc_estimate))
    head = models.ConcatHead([5, 5], 5)
    with torch.no_grad():
        head.fc.weight.copy_(torch.cat([torch.eye(5), torch.eye(5)], 1))
        head.fc.bias.zero_()
    assert math.isfinite(float(losses.tcmax_loss_pairwise(head, logits[:2], y).tc_estimate))


def test_sampled_negatives_check_the_count_and_the_head_shape():
    head = models.ConcatHead([4, 4], 3)
    za, zv, y = torch.randn(6, 4), torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    with pytest.raises(TypeError, match=r"num_negatives=16.0 \(float\) must be a whole number"):
        losses.tcmax_loss_sampled(head, [za, zv], y, 16.0)
    calls = []

    def short_head(a, v):                                                # right on the batch, wrong on the negatives
        calls.append(len(a))
        return head(a, v) if len(calls) == 1 else head(a, v)[:-1]

    with pytest.raises(ValueError, match=r"the head returned shape \(15, 3\) for 16 sampled pairs"):
        losses.tcmax_loss_sampled(short_head, [za, zv], y, 16)
    with pytest.raises(ValueError, match=r"the head returned shape \(6,\) for a batch of 6"):
        losses.tcmax_loss_sampled(lambda a, v: head(a, v)[:, 0], [za, zv], y, 16)


# ----------------------------------------------------------------------------- defect 7: estimator loops
def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_one_nan_sample_stops_tcne_before_it_spoils_the_critic():
    from tcmax_lib.info import critics
    from tcmax_lib.info import training as E
    from tcmax_lib.info.closed_forms import sample_gaussian_modalities

    def critic_and_sampler(nan_at_call: int | None):
        critic = critics.PairwiseTCCritic([4, 4, 4], hidden=16, embed=4)
        calls = []

        def sampler(n, tc, g):                                           # clean batches, one NaN sample at a call
            zs = sample_gaussian_modalities(n, 3, 4, 0.3, generator=g)
            calls.append(1)
            if len(calls) == nan_at_call:
                zs[1][5, 2] = float("nan")
            return zs
        with torch.no_grad():                                            # the same start for both runs
            for k, p in enumerate(critic.parameters()):
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(k)) * 0.1)
        return critic, sampler

    clean, sampler = critic_and_sampler(None)
    E.train_tc_estimator(clean, [0.5] * 3, dim=4, batch_size=8, progress=False, sampler=sampler)
    spoilt, sampler = critic_and_sampler(4)
    with pytest.raises(checks.TrainingDivergedError,
                       match=r"step 3: estimate TCNE = nan .* input 1 of the batch holds NaN/inf \(rows \[5\]\)"):
        E.train_tc_estimator(spoilt, [0.5] * 10, dim=4, batch_size=8, progress=False, sampler=sampler)
    # the critic keeps the weights of the 3 clean steps: the NaN step changed nothing
    assert all(torch.equal(a, b) for a, b in zip(_params(spoilt), _params(clean)))


@pytest.mark.parametrize("bound", ["dv", "nwj", "infonce", "smile", "mine"])
def test_an_exploding_estimator_stops_with_the_step_and_a_fix(bound):
    from tcmax_lib.info import training as E

    specs = E.make_estimators([bound], critic="concat", dim=5, hidden=32)
    with pytest.raises(checks.TrainingDivergedError,
                       match=rf"step \d+: estimate {bound} = .*lower the learning rate \(now lr=500\)"):
        E.train_estimators(specs, np.full(300, 4.0), dim=5, batch_size=16, lr=500.0, progress=False)
    assert all(bool(torch.isfinite(p).all()) for p in specs[0].critic.parameters())


# ----------------------------------------------------------------------------- errors that name the cause
@pytest.mark.parametrize("call,error,message", [
    (lambda gt: gt.gaussian_mi(0.5, -1), ValueError, r"dim=-1 must be at least 1 \(coordinates\)"),
    (lambda gt: gt.gaussian_mi(0.5, 2.5), TypeError, r"dim=2.5 \(float\) must be a whole number"),
    (lambda gt: gt.sample_correlated_gaussian(4, 3, 2.0), ValueError, r"rho=2 is a correlation .* \[-1, 1\]"),
    (lambda gt: gt.sample_correlated_gaussian(-1, 3, 0.5), ValueError, "n=-1 must be at least 1"),
    (lambda gt: gt.equicorrelated_tc(1, 0.3), ValueError, "n=1 must be at least 2"),
    (lambda gt: gt.sample_gaussian_modalities(4, 3, 2, -0.5), ValueError, r"r=-0.5: .* must lie in \[0, 1\]"),
    (lambda gt: gt.sample_gaussian_modalities(4, 3, 2, 1.5), ValueError, r"r=1.5: .* must lie in \[0, 1\]"),
    (lambda gt: gt.sample_paired_gaussians(4, -1.0), ValueError, "tc=-1 must be at least 0"),
    (lambda gt: gt.equicorrelated_log_ratio([torch.randn(4, 2)] * 3, 1.0), ValueError, "no positive-definite"),
    (lambda gt: gt.gaussian_tc(np.eye(4), [2, -2, 4]), ValueError, "a block size=-2 must be at least 1"),
    (lambda gt: gt.gaussian_tc(np.full((2, 2), np.nan), [1, 1]), ValueError, "finite, symmetric"),
    (lambda gt: gt.xor_table(2.0), ValueError, r"flip=2 is a probability"),
    (lambda gt: gt.sample_table(gt.xor_table(), 0), ValueError, "n=0 must be at least 1"),
])
def test_closed_forms_and_samplers_name_impossible_settings(call, error, message):
    from tcmax_lib.info import closed_forms as gt

    with pytest.raises(error, match=message):
        call(gt)


def test_a_negative_dimension_no_longer_returns_a_negative_mi():
    from tcmax_lib.info import closed_forms as gt

    with pytest.raises(ValueError):
        gt.gaussian_mi(0.5, -3)
    assert gt.gaussian_mi(0.5, np.int64(3)) == pytest.approx(-1.5 * math.log(0.75))


def test_critics_name_an_input_of_the_wrong_width():
    from tcmax_lib.info import critics

    for kind in ("concat", "separable"):
        critic = critics.make_critic(kind, 5, 16)
        with pytest.raises(ValueError, match=r"input 1 has shape \(4, 6\); it was built for \[K, 5\]"):
            critic(torch.randn(4, 5), torch.randn(4, 6))
    tc = critics.PairwiseTCCritic([4, 4, 4], hidden=8, embed=2)
    with pytest.raises(ValueError, match=r"PairwiseTCCritic: input 2 has shape \(4, 5\)"):
        tc([torch.randn(4, 4), torch.randn(4, 4), torch.randn(4, 5)])
    with pytest.raises(ValueError, match="built for 3 inputs, got 2"):
        tc.score_tuples([torch.randn(4, 4)] * 2, torch.zeros(3, 3, dtype=torch.long))


def test_models_toy_and_cap_name_bad_sizes():
    from tcmax_lib.data import toy

    with pytest.raises(ValueError, match=r"modality 1: input of shape \(3, 5\), its encoder was built for \[B, 4\]"):
        _model()(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="num_classes=0 must be at least 2"):
        models.mlp_pair_model([4, 4], 0)
    with pytest.raises(ValueError, match="in_dim=-4 must be at least 1"):
        models.mlp_pair_model([4, -4], 2)
    with pytest.raises(ValueError, match="n_noise=-2 must be at least 0"):
        toy.ToyConfig(n_noise=-2)
    with pytest.raises(ValueError, match="n=-1 must be at least 1"):
        toy.sample_toy(-1, toy.ToyConfig())
    with pytest.raises(ValueError, match="batch_size=0 must be at least 1"):
        losses.tc_estimate_cap(0, 3)


def test_estimators_refuse_a_cuda_device_on_a_cpu_build():
    from tcmax_lib.info import training as E

    if torch.backends.cuda.is_built():
        pytest.skip("this torch build has CUDA")
    with pytest.raises(RuntimeError, match="no CUDA support"):
        E.train_estimators(E.make_estimators(["dv"], dim=2, hidden=4), np.ones(2), dim=2, device="cuda")


@pytest.mark.parametrize("name,kw,message", [
    ("ogm_ge", {"alpha": -1}, "OGMGE.alpha=-1 must be at least 0"),
    ("ogm_ge", {"start": 5, "end": 2}, r"start=5 > end=2"),
    ("agm", {"end": 2.5}, r"end=2.5 \(float\) must be a whole number"),
    ("mmpareto", {"gamma": 0}, "MMPareto.gamma=0 must be positive"),
    ("pmr", {"momentum": 1.0}, r"momentum=1 must lie in \[0, 1\)"),
    ("pmr", {"fraction": 0.0}, r"fraction=0 in \(0, 1\]"),
    ("tcmax", {"label_prior": "empirical"}, "TCMax.label_prior='empirical'"),
    ("tcmax", {"chunk_size": 0}, "TCMax.chunk_size=0 must be at least 1"),
    ("tcmax", {"negatives": 64.0}, r"TCMax.negatives=64.0 \(float\) must be a whole number"),
])
def test_method_settings_are_checked_when_the_method_is_made(name, kw, message):
    with pytest.raises((ValueError, TypeError), match=message):
        methods.make_method(name, **kw)


def test_an_unknown_method_setting_names_the_settings():
    with pytest.raises(TypeError, match=r"method 'ogm_ge' has no setting \['alpah'\]; its settings are \['alpha'"):
        methods.make_method("ogm_ge", alpah=0.5)


def test_the_experiment_layer_checks_its_grid_before_the_first_run():
    splits = Splits(_toy(64), _toy(32, seed=1), _toy(32, seed=2))
    built = []
    for methods_, seeds, message in [(["joint", "tcmaxx"], [0], r"unknown method\(s\) \['tcmaxx'\]"),
                                     (["joint"], [], "at least one method and one seed"),
                                     (["joint"], [0, 0], "each seed once"),
                                     (["joint"], [0.5], r"a seed=0.5 \(float\) must be a whole number")]:
        with pytest.raises((ValueError, TypeError), match=message):
            experiments.run_grid(methods_, seeds, splits, lambda s: built.append(s) or _model(), CFG)
    assert built == []                                                   # no model was built, none trained
    res = experiments.run_grid(["joint"], [0, 1], splits, lambda s: _model(), CFG)[0]
    with pytest.raises(ValueError, match=r"ci=95: a confidence level lies strictly between 0 and 1"):
        experiments.summarize(res, ci=95)
    with pytest.raises(ValueError, match=r"no column \['accuracy'\]"):
        experiments.summarize(res, ("accuracy",))


def test_a_probe_checks_its_labels_and_widths():
    from tcmax_lib.diagnostics import linear_probe

    x, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    with pytest.raises(ValueError, match=r"linear_probe's test labels must lie in \[0, 1\]"):
        linear_probe(x, y, x, y + 2, 2)
    with pytest.raises(ValueError, match="the same d"):
        linear_probe(x, y, x[:, :2], y, 2)
