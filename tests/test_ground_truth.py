import math

import numpy as np
import pytest
import torch

from tcmax_lib.info import closed_forms as gt


def test_gaussian_mi_values_and_inverse():
    assert gt.gaussian_mi(0.5, 1) == pytest.approx(0.1438, abs=1e-4)
    assert gt.gaussian_mi(0.9, 10) == pytest.approx(8.304, abs=1e-3)
    for mi in (0.1, 2, 10):
        assert gt.gaussian_mi(gt.rho_for_mi(mi, 20), 20) == pytest.approx(mi, rel=1e-12)
    assert gt.rho_for_mi(2, 20) == pytest.approx(0.4258, abs=1e-4)  # Poole et al.'s staircase
    assert gt.nats_to_bits(math.log(2)) == pytest.approx(1.0)


def test_sampler_matches_formula():
    # the mean of the exact log ratio over joint samples is the MI; 2e5 samples: SE ~ sqrt(2 I)/sqrt(n) ~ 0.004
    rho, dim, n = 0.6, 5, 200_000
    x, y = gt.sample_correlated_gaussian(n, dim, rho, generator=torch.Generator().manual_seed(0))
    s2 = 1 - rho ** 2
    log_ratio = (-0.5 * ((y - rho * x) ** 2).sum(1) / s2 - 0.5 * dim * math.log(s2) + 0.5 * (y ** 2).sum(1))
    assert log_ratio.double().mean().item() == pytest.approx(gt.gaussian_mi(rho, dim), abs=0.02)
    assert torch.corrcoef(torch.stack([x[:, 0], y[:, 0]]))[0, 1].item() == pytest.approx(rho, abs=0.01)


def test_gaussian_log_ratio_matches_sampler_formula():
    x, y = gt.sample_correlated_gaussian(8, 3, 0.3, generator=torch.Generator().manual_seed(1))
    s = gt.gaussian_log_ratio(x.double(), y.double(), 0.3)
    i, j = 2, 5
    manual = (-0.5 * ((y[j] - 0.3 * x[i]) ** 2).sum() / 0.91 - 1.5 * math.log(0.91) + 0.5 * (y[j] ** 2).sum())
    assert s[i, j].item() == pytest.approx(manual.item(), abs=1e-5)


def test_tc_closed_forms():
    assert gt.equicorrelated_tc(3, 0.5) == pytest.approx(0.3466, abs=1e-4)
    assert gt.equicorrelated_tc(4, 0.9) == pytest.approx(2.7997, abs=1e-4)
    assert gt.equicorrelated_tc(2, 0.8) == pytest.approx(gt.gaussian_mi(0.8), rel=1e-12)  # TC of 2 = MI
    r = 0.4
    cov = np.full((3, 3), r) + (1 - r) * np.eye(3)
    assert gt.gaussian_tc(cov, [1, 1, 1]) == pytest.approx(gt.equicorrelated_tc(3, r), rel=1e-10)
    assert gt.gaussian_tc(np.eye(6), [2, 2, 2]) == pytest.approx(0.0, abs=1e-12)
    assert gt.equicorrelated_tc(3, gt.r_for_tc(6.0, 3, 20), 20) == pytest.approx(6.0, abs=1e-9)
    with pytest.raises(ValueError, match="blocks"):
        gt.gaussian_tc(np.eye(3), [1, 1])


def test_modality_sampler_correlation_and_optimal_critic():
    r = 0.5
    zs = gt.sample_gaussian_modalities(100_000, 3, 4, r, generator=torch.Generator().manual_seed(0))
    assert torch.corrcoef(torch.stack([zs[0][:, 1], zs[2][:, 1]]))[0, 1].item() == pytest.approx(r, abs=0.01)
    tc = gt.equicorrelated_log_ratio([z.double() for z in zs], r).mean().item()
    assert tc == pytest.approx(gt.equicorrelated_tc(3, r, 4), abs=0.03)


def test_xor_and_decompositions():
    p = gt.xor_table()
    assert gt.total_correlation(p) == pytest.approx(math.log(2))
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert gt.mutual_information(p, (a,), (b,)) == pytest.approx(0.0, abs=1e-12)
    # the paper's two identities on a random 3-way table: TC = I(y; a, v) + I(a; v) = I(y;a)+I(y;v)+I(a;v|y)
    rng = np.random.default_rng(0)
    q = rng.random((3, 4, 2))
    q /= q.sum()
    tc = gt.total_correlation(q)
    a, v, y = (0,), (1,), (2,)
    assert tc == pytest.approx(gt.mutual_information(q, y, a + v) + gt.mutual_information(q, a, v))
    assert tc == pytest.approx(gt.mutual_information(q, y, a) + gt.mutual_information(q, y, v)
                               + gt.mutual_information(q, a, v, given=y))


def test_sample_table_frequencies():
    p = gt.xor_table(flip=0.1)
    idx = gt.sample_table(p, 100_000, torch.Generator().manual_seed(0))
    freq = np.zeros_like(p)
    np.add.at(freq, tuple(idx.T.numpy()), 1)
    assert np.abs(freq / 100_000 - p).max() < 0.01
