"""The fusion head decides what TCMax bounds: DV over additive critics reaches I(a;y) + I(v;y), over full
critics TC(a, v, y). Checked on random discrete tables against closed forms."""

import pytest
import torch

from tcmax_lib.info import closed_forms as gt
from tcmax_lib.info import critic_families as cf


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(2, 2, 2), (3, 4, 3)])
def test_dv_supremum_matches_closed_forms(seed, shape):
    p = cf.random_table(shape, seed=seed)
    tc = gt.total_correlation(p)
    unimodal = gt.mutual_information(p, [0], [2]) + gt.mutual_information(p, [1], [2])
    cond = gt.mutual_information(p, [0], [1], given=[2])
    assert tc == pytest.approx(unimodal + cond, abs=1e-12)            # the decomposition used in the proof
    # float64 L-BFGS on a concave objective from T = 0 converges to ~1e-10; 1e-6 leaves room for line search
    assert cf.dv_supremum(p, "full") == pytest.approx(tc, abs=1e-6)
    assert cf.dv_supremum(p, "additive") == pytest.approx(unimodal, abs=1e-6)
    if cond > 1e-3:  # the gap is exactly the alignment term the additive family cannot see
        assert cf.dv_supremum(p, "full") - cf.dv_supremum(p, "additive") == pytest.approx(cond, abs=1e-6)


def test_additive_critic_makes_modalities_conditionally_independent():
    p = torch.as_tensor(cf.random_table((3, 3, 2), seed=5))
    g = torch.Generator().manual_seed(0)
    t = cf.critic_table("additive", [torch.randn(3, 2, generator=g, dtype=torch.float64),
                                     torch.randn(3, 2, generator=g, dtype=torch.float64)])
    q = p.sum((1, 2))[:, None, None] * p.sum((0, 2))[None, :, None] * p.sum((0, 1))[None, None, :]
    qt = (q * t.exp()) / (q * t.exp()).sum()
    assert gt.mutual_information(qt.numpy(), [0], [1], given=[2]) == pytest.approx(0.0, abs=1e-12)


def test_bad_inputs_are_explained():
    with pytest.raises(ValueError, match="joint probability table"):
        cf.dv_supremum(torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match="critic family"):
        cf.dv_supremum(cf.random_table((2, 2, 2)), "bilinear")
