import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

from tcmax_lib.info import bounds, critics
from tcmax_lib.info import closed_forms as gt
from tcmax_lib.info import precision_check as PC
from tcmax_lib.info import training as E


@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_bounds_finite_for_extreme_scores(scale):
    s = torch.randn(16, 16, generator=torch.Generator().manual_seed(0)) * scale
    for name, fn in bounds.BOUNDS.items():
        assert torch.isfinite(fn(s)), name
    s = s.clone().requires_grad_(True)
    value = bounds.MINE()(s)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(s.grad).all()


def test_naive_partition_overflows_where_logspace_does_not():
    s = torch.full((8, 8), 100.0)
    naive = torch.log(torch.exp(s).mean())
    assert not torch.isfinite(naive)
    assert bounds.logmeanexp_offdiag(s).item() == pytest.approx(100.0)


def test_dv_matches_brute_force():
    s = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    off = [s[i, j] for i in range(6) for j in range(6) if i != j]
    brute = s.diagonal().mean() - torch.log(torch.stack(off).exp().mean())
    assert bounds.dv_bound(s).item() == pytest.approx(brute.item(), abs=1e-12)
    rows = [s[i, i] - torch.log(s[i].exp().mean()) for i in range(6)]
    assert bounds.infonce_bound(s).item() == pytest.approx(torch.stack(rows).mean().item(), abs=1e-12)


def _optimal(mi, k, n_batches, seed=0, dim=20):
    gen = torch.Generator().manual_seed(seed)
    rho = gt.rho_for_mi(mi, dim)
    out = {"infonce": [], "nwj": [], "dv": []}
    for _ in range(n_batches):
        x, y = gt.sample_correlated_gaussian(k, dim, rho, generator=gen)
        s = gt.gaussian_log_ratio(x.double(), y.double(), rho)
        out["infonce"].append(bounds.infonce_bound(s))
        out["nwj"].append(bounds.nwj_bound(s + 1.0))  # NWJ's optimal critic is 1 + log ratio
        out["dv"].append(bounds.dv_bound(s))
    return {k_: torch.stack(v) for k_, v in out.items()}


def test_optimal_critic_bias_pattern():
    # 400 batches of K=64 at 2 nats: SD ~0.25 (NWJ, DV), so the standard error is ~0.013
    v = _optimal(2.0, 64, 400)
    assert v["nwj"].mean().item() == pytest.approx(2.0, abs=0.06)  # unbiased
    assert v["infonce"].max().item() <= math.log(64) + 1e-9 and v["infonce"].mean().item() < 1.95
    # at 10 nats InfoNCE saturates just under log K and the minibatch DV is biased up (+1.3 nats)
    v = _optimal(10.0, 64, 200, seed=1)
    assert math.log(64) - 0.15 < v["infonce"].mean().item() <= math.log(64)
    assert v["dv"].mean().item() > 10.5
    # and the DV bias shrinks with more negatives
    v_big = _optimal(10.0, 512, 20, seed=2)
    assert abs(v_big["dv"].mean().item() - 10) < abs(v["dv"].mean().item() - 10)


def test_optimal_critic_table_helper():
    t = E.optimal_critic_table([2.0], [64], n_batches=200)
    nwj = t[(t.bound == "nwj")]["mean"].item()
    assert nwj == pytest.approx(2.0, abs=0.1)


def test_mine_gradient_is_ema_corrected():
    torch.manual_seed(0)
    theta = torch.tensor(0.7, requires_grad=True)
    base = torch.randn(5, 5)
    mine = bounds.MINE(ema_rate=0.5)
    mine.log_ema = torch.tensor(0.3)  # pretend history
    s = theta * base
    value = mine(s)
    value.backward()
    off = ~torch.eye(5, dtype=torch.bool)
    t = (0.7 * base)[off]
    batch_mean = t.exp().mean()
    ema = 0.5 * math.exp(0.3) + 0.5 * batch_mean
    expected = base.diagonal().mean() - (base[off] * t.exp()).mean() / ema
    assert theta.grad.item() == pytest.approx(expected.item(), rel=1e-5)
    assert value.item() == pytest.approx(bounds.dv_bound(s.detach()).item(), rel=1e-6)


def test_trained_estimators_on_independent_data_give_zero():
    specs = E.make_estimators(["infonce", "mine"], critic="separable", dim=5, hidden=64)
    E.train_estimators(specs, E.mi_staircase([0.0], 300), dim=5, lr=1e-3, progress=False)
    ev = E.evaluate_estimators(specs, 0.0, dim=5, n_batches=50)
    assert ev["mean"].abs().max() < 0.1


def test_trained_estimators_on_two_nats():
    # 1,000 steps on a 5-d, 2-nat Gaussian; tolerance 0.35 nats covers InfoNCE's small-K bias (~0.2 at K=64)
    specs = E.make_estimators(["infonce", "mine", "smile"], critic="concat", dim=5, hidden=64)
    E.train_estimators(specs, E.mi_staircase([2.0], 1000), dim=5, batch_size=64, lr=1e-3, progress=False)
    ev = E.evaluate_estimators(specs, 2.0, dim=5, batch_size=64, n_batches=60).set_index("estimator")
    for name in ("infonce", "mine", "smile"):
        assert ev.loc[name, "mean"] == pytest.approx(2.0, abs=0.35), name


def test_pairwise_tc_critic_matches_loop():
    torch.manual_seed(0)
    critic = critics.PairwiseTCCritic([3, 4, 2], hidden=8, embed=5)
    zs = [torch.randn(5, d) for d in (3, 4, 2)]
    full = critic(zs)
    outs = [net(z) for net, z in zip(critic.nets, zs)]
    e = 5
    for j in itertools.product(range(5), repeat=3):
        val = sum(outs[a][j[a], -1] for a in range(3))
        for a, b in itertools.combinations(range(3), 2):
            sa, sb = critic._slot(a, b), critic._slot(b, a)
            val = val + outs[a][j[a], sa * e:(sa + 1) * e] @ outs[b][j[b], sb * e:(sb + 1) * e]
        assert full[j].item() == pytest.approx(val.item(), abs=1e-5)


def test_distinct_mask_and_diagonal():
    mask = bounds.distinct_index_mask(5, 3)
    assert mask.sum().item() == 5 * 4 * 3
    scores = torch.arange(125.0).view(5, 5, 5)
    diag_expected = torch.stack([scores[i, i, i] for i in range(5)])
    marg = scores[mask]
    assert bounds.tcne_from_tensor(scores, mask).item() == pytest.approx(
        (diag_expected.mean() - (torch.logsumexp(marg, 0) - math.log(marg.numel()))).item())


def _optimal_tcne(k, r=0.5, dim=4, seed=0):
    zs = gt.sample_gaussian_modalities(k, 3, dim, r, generator=torch.Generator().manual_seed(seed))
    grids = torch.meshgrid(*[torch.arange(k)] * 3, indexing="ij")
    tuples = [z.double()[g.flatten()] for z, g in zip(zs, grids)]
    scores = gt.equicorrelated_log_ratio(tuples, r).view(k, k, k)
    return bounds.tcne_from_tensor(scores).item()


def test_tcne_optimal_critic_approaches_truth():
    truth = gt.equicorrelated_tc(3, 0.5, 4)  # 1.386 nats
    small = sum(_optimal_tcne(8, seed=s) for s in range(30)) / 30
    large = sum(_optimal_tcne(48, seed=s) for s in range(10)) / 10
    assert abs(large - truth) < abs(small - truth)
    assert large == pytest.approx(truth, abs=0.15)


def test_tcne_independent_is_zero():
    zs = gt.sample_gaussian_modalities(48, 3, 4, 0.0, generator=torch.Generator().manual_seed(0))
    critic = critics.PairwiseTCCritic([4, 4, 4], hidden=32, embed=8)
    h = E.train_tc_estimator(critic, [0.0] * 200, num_vars=3, dim=4, batch_size=48, lr=1e-3, progress=False)
    assert abs(h["estimate"].tail(50).mean()) < 0.1
    del zs


def test_xor_tcne_sees_log2_pairwise_sees_nothing():
    p = gt.xor_table()
    gen = torch.Generator().manual_seed(0)
    crit3, crit2 = critics.TableCritic([2, 2, 2]), critics.TableCritic([2, 2])
    opt = torch.optim.Adam([*crit3.parameters(), *crit2.parameters()], lr=0.05)
    mask3 = bounds.distinct_index_mask(64, 3)
    vals3, vals2 = [], []
    for _ in range(300):
        x = gt.sample_table(p, 64, gen)
        tc = bounds.tcne_from_tensor(crit3([x[:, 0], x[:, 1], x[:, 2]]), mask3)
        mi = bounds.dv_bound(crit2([x[:, 0], x[:, 2]]))
        opt.zero_grad()
        (-(tc + mi)).backward()
        opt.step()
        vals3.append(tc.item())
        vals2.append(mi.item())
    assert sum(vals3[-100:]) / 100 == pytest.approx(math.log(2), abs=0.1)
    assert abs(sum(vals2[-100:]) / 100) < 0.05


# ----------------------------------------------------------------------------- precision and batching (issue 16)
BOUNDS4 = ["mine", "nwj", "infonce", "smile"]


def _row_centred_scores(critic: torch.nn.Module) -> torch.Tensor:
    g = torch.Generator().manual_seed(99)
    x, y = torch.randn(16, 20, generator=g), torch.randn(16, 20, generator=g)
    with torch.no_grad():
        s = critic(x, y)                                                  # [16, 16]
    return s - s.mean(1, keepdim=True)


@pytest.mark.parametrize("critic", ["concat", "separable"])
def test_batched_four_critics_equal_four_separate_runs(critic):
    """One vmapped step over stacked critics = four separate runs with the same seeds (fp32).

    Same initial weights and batches; only the matmul summation order differs (bmm vs mm), about 1e-6
    relative per step. Training amplifies it slowly, so 60 steps stay within 1e-4 nats (measured:
    ~1e-6 after 10 steps, ~4e-2 after 300 steps of a 10-nat MINE). The trained critics (written back
    into the modules) agree on a held-out batch up to a per-row shift: DV and MINE are invariant to
    T -> T + c and InfoNCE to T -> T + f(x_i), so the parameters producing such shifts (e.g. the concat
    output bias) get rounding-noise gradients that Adam normalises into full lr-sized steps.
    """
    true = E.mi_staircase([2.0, 6.0], 30)
    separate, weights = [], []
    for i in range(4):
        spec = E.make_estimators(BOUNDS4, critic=critic, hidden=32, seed=3)[i]
        hist = E.train_estimators([spec], true, progress=False, precision="fp32", batched=False, seed=5)
        separate.append(torch.tensor(hist["estimate"].to_numpy()))
        weights.append(_row_centred_scores(spec.critic))
    specs = E.make_estimators(BOUNDS4, critic=critic, hidden=32, seed=3)
    hist = E.train_estimators(specs, true, progress=False, precision="fp32", batched=True, seed=5)
    for i, b in enumerate(BOUNDS4):
        together = torch.tensor(hist[hist.estimator == b]["estimate"].to_numpy())
        assert torch.allclose(together, separate[i], atol=1e-4, rtol=0), b
        assert torch.allclose(_row_centred_scores(specs[i].critic), weights[i], atol=1e-3, rtol=0), b


def test_batched_refuses_mixed_critics():
    specs = E.make_estimators(["nwj"], critic="concat", hidden=16) + E.make_estimators(["nwj"], critic="separable",
                                                                                           hidden=16)
    with pytest.raises(ValueError, match="identical parameter shapes; use batched=False"):
        E.train_estimators(specs, E.mi_staircase([2.0], 2), progress=False, batched=True)


def test_bf16_staircase_within_seed_spread_of_fp32():
    """bf16 tail means per level equal fp32 ones within 3 standard errors of the seed-to-seed spread."""
    runs = PC.precision_comparison(BOUNDS4, (2.0, 6.0), 80, seeds=[0, 1, 2], hidden=32, progress=False)
    verdict = PC.precision_verdict(runs)
    assert len(verdict) == 8 and verdict["se"].gt(0).all()
    assert verdict["within"].all(), verdict.round(3).to_string()


def test_optimal_critic_table_ignores_autocast():
    """The closed-form table is float64 arithmetic: an ambient bf16 autocast must not change it."""
    plain = E.optimal_critic_table([2.0, 8.0], [16], n_batches=5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = E.optimal_critic_table([2.0, 8.0], [16], n_batches=5)
    assert plain.equals(under)


def test_compiled_critic_equals_eager_run():
    """`compile=True` (torch.compile of the critic) trains the same estimator as the eager loop (fp32)."""
    true = E.mi_staircase([2.0], 20)
    eager = E.make_estimators(["nwj"], critic="concat", hidden=16, seed=3)
    ref = E.train_estimators(eager, true, progress=False, precision="fp32", batched=False, seed=5)
    comp = E.make_estimators(["nwj"], critic="concat", hidden=16, seed=3)
    hist = E.train_estimators(comp, true, progress=False, precision="fp32", batched=False, seed=5, compile=True)
    assert hist.attrs["compile_s"] > 0
    assert torch.allclose(torch.tensor(hist["estimate"].to_numpy()), torch.tensor(ref["estimate"].to_numpy()),
                          atol=1e-4, rtol=0)


def test_failed_compile_falls_back_to_eager_with_a_warning(monkeypatch):
    """Where torch.compile fails (no compiler, an unsupported op) training goes on eagerly and says so."""
    class Broken(torch.nn.Module):
        def forward(self, *args):
            raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", lambda module, **kw: Broken())
    true = E.mi_staircase([2.0], 5)
    ref = E.train_estimators(E.make_estimators(["nwj"], hidden=16, seed=3), true, progress=False, precision="fp32",
                             batched=False, seed=5)
    with pytest.warns(RuntimeWarning, match="torch.compile failed .*no C\\+\\+ compiler.*without compilation"):
        hist = E.train_estimators(E.make_estimators(["nwj"], hidden=16, seed=3), true, progress=False,
                                  precision="fp32", batched=False, seed=5, compile=True)
    assert hist["estimate"].tolist() == ref["estimate"].tolist()
    with pytest.raises(ValueError, match="batched=False"):
        E.train_estimators(E.make_estimators(["nwj"], hidden=16), true, progress=False, batched=True, compile=True)


def test_precision_verdict_pairs_seeds_like_scipy():
    """The paired reading equals scipy's paired t-test interval; seeds are matched by value, not by row order."""
    from scipy import stats as st

    rng = np.random.default_rng(0)
    fp32 = rng.normal(5.0, 1.0, 4)
    bf16 = fp32 + rng.normal(0.3, 0.05, 4)                          # a small shift, far below the seed spread
    rows = [{"precision": p, "seed": s, "estimator": "nwj", "true": 6.0, "mean": v}
            for p, vals, order in (("fp32", fp32, [0, 1, 2, 3]), ("bf16", bf16, [0, 1, 2, 3]))
            for s, v in zip(order, vals)]
    shuffled = pd.DataFrame(rows).sample(frac=1.0, random_state=1)
    out = PC.precision_verdict(shuffled).iloc[0]
    ci = st.ttest_rel(bf16, fp32).confidence_interval(0.95)
    assert out["paired lo"] == pytest.approx(ci.low) and out["paired hi"] == pytest.approx(ci.high)
    assert not out["paired_contains_0"] and out["within"]           # paired resolves what the unpaired SE hides
    with pytest.raises(ValueError, match="the seeds of fp32"):
        PC.precision_verdict(shuffled[~((shuffled.precision == "bf16") & (shuffled.seed == 3))])
