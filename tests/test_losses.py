"""TCMax loss: factorised and pairwise forms against a brute-force B^M x C computation written here."""

import itertools
import math

import pytest
import torch

from tcmax_lib import losses
from tcmax_lib.models import FiLMHead, GatedHead


def brute_force(logits, labels, prior=None):
    """Direct transcription of the formula with explicit loops over all index tuples and classes.

    `prior` [C] is the label marginal q(c) of the product measure (None: uniform, the paper's 1/C).
    """
    m = len(logits)
    b, c = logits[0].shape
    q = [1.0 / c] * c if prior is None else prior
    positive = sum(sum(lg[i, labels[i]] for lg in logits) for i in range(b)) / b
    terms = []
    for idx in itertools.product(range(b), repeat=m):
        for cls in range(c):
            if q[cls] > 0:  # a class of prior zero contributes nothing
                terms.append(math.log(q[cls]) + sum(logits[k][idx[k], cls] for k in range(m)))
    return -positive + torch.logsumexp(torch.stack(terms), 0) - m * math.log(b)


def materialized(logits, labels):
    """The same loss on the explicit B^M x C grid with a stable logsumexp (notebook 04 shows its memory)."""
    m = len(logits)
    b, c = logits[0].shape
    grid = torch.zeros((b,) * m + (c,), dtype=logits[0].dtype)
    for k, lg in enumerate(logits):
        shape = [1] * m + [c]
        shape[k] = b
        grid = grid + lg.view(shape)                                     # [B]*M + [C]
    positive = sum(lg.gather(1, labels[:, None]).squeeze(1) for lg in logits).mean()
    return -positive + torch.logsumexp(grid.flatten(), 0) - (m * math.log(b) + math.log(c))


def public_code(out_a, out_v, labels):
    """The released code's form (exp(x - mean), normalise, log): it returns the loss + log(B C), unstably."""
    b = out_a.shape[0]
    out = out_a[:, None, :] + out_v[None, :, :]                          # [B, B, C]
    p = torch.exp(out - out.mean())
    p = p / p.sum()
    idx = torch.arange(b)
    return -torch.log(p[idx, idx, labels]).mean() - math.log(b)


@pytest.mark.parametrize("m,b,c", [(2, 5, 3), (3, 4, 3), (2, 7, 6)])
def test_factorised_equals_brute_force_values_and_grads(m, b, c):
    gen = torch.Generator().manual_seed(m * 100 + b)
    logits = [torch.randn(b, c, dtype=torch.float64, generator=gen, requires_grad=True) for _ in range(m)]
    labels = torch.randint(0, c, (b,), generator=gen)
    fast = losses.tcmax_loss(logits, labels).loss
    grads_fast = torch.autograd.grad(fast, logits)
    slow = brute_force(logits, labels)
    grads_slow = torch.autograd.grad(slow, logits)
    # the factorised form computes in float32 internally: 1e-5 relative covers float32 rounding
    assert fast.item() == pytest.approx(slow.item(), rel=1e-5, abs=1e-5)
    for gf, gs in zip(grads_fast, grads_slow):
        torch.testing.assert_close(gf, gs, rtol=1e-4, atol=1e-6)
    mat = materialized(logits, labels)
    assert mat.item() == pytest.approx(slow.item(), rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("m,b,c", [(2, 6, 4), (3, 4, 5)])
def test_batch_label_prior_equals_brute_force_with_absent_classes(m, b, c):
    gen = torch.Generator().manual_seed(10 * m + b)
    logits = [torch.randn(b, c, dtype=torch.float64, generator=gen, requires_grad=True) for _ in range(m)]
    labels = torch.tensor(([0, 0, 0, 1, 2, 0] * 2)[:b])                    # imbalanced; class c-1 absent
    prior = [float((labels == k).sum()) / b for k in range(c)]
    assert prior[-1] == 0.0
    fast = losses.tcmax_loss(logits, labels, label_prior="batch").loss
    slow = brute_force(logits, labels, prior)
    # float64 throughout: agreement to rounding
    assert fast.item() == pytest.approx(slow.item(), abs=1e-10)
    for gf, gs in zip(torch.autograd.grad(fast, logits), torch.autograd.grad(slow, logits)):
        torch.testing.assert_close(gf, gs, rtol=1e-9, atol=1e-12)
    # on a batch holding every class equally often the two priors are the same measure
    balanced = torch.arange(b) % 2
    two = [lg[:, :2] for lg in logits]
    assert losses.tcmax_loss(two, balanced, label_prior="batch").loss.item() == pytest.approx(
        losses.tcmax_loss(two, balanced).loss.item(), abs=1e-12)


def test_pairwise_batch_prior_equals_brute_force():
    torch.manual_seed(1)
    b, c, d = 5, 4, 3
    head = FiLMHead([d, d], c).double()
    za, zv = torch.randn(b, d, dtype=torch.float64), torch.randn(b, d, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 0, 2])                                      # class 3 absent
    q = [float((y == k).sum()) / b for k in range(c)]
    fast = losses.tcmax_loss_pairwise(head, [za, zv], y, chunk_size=2, label_prior="batch").loss
    pos = torch.stack([head(za[i:i + 1], zv[i:i + 1])[0, y[i]] for i in range(b)]).mean()
    terms = [math.log(q[k]) + head(za[j:j + 1], zv[jv:jv + 1])[0, k]
             for j in range(b) for jv in range(b) for k in range(c) if q[k] > 0]
    slow = -pos + torch.logsumexp(torch.stack(terms), 0) - 2 * math.log(b)
    assert fast.item() == pytest.approx(slow.item(), abs=1e-10)
    with pytest.raises(ValueError, match="label_prior"):
        losses.tcmax_loss([za, zv], y, label_prior="empirical")


def test_float64_is_kept_and_half_is_upcast():
    # logits 1e7 +- 1e-3: float32 cannot resolve the spread, float64 can (exact value by brute force)
    gen = torch.Generator().manual_seed(0)
    logits = [1e7 + 1e-3 * torch.randn(4, 3, dtype=torch.float64, generator=gen) for _ in range(2)]
    y = torch.tensor([0, 1, 2, 0])
    assert losses.tcmax_loss(logits, y).loss.item() == pytest.approx(brute_force(logits, y).item(), abs=1e-9)
    half = [torch.randn(4, 3, generator=gen).to(torch.bfloat16) for _ in range(2)]
    assert losses.tcmax_loss(half, y).loss.dtype == torch.float32


def test_constant_term_and_cap():
    b, c = 8, 4
    zeros = [torch.zeros(b, c), torch.zeros(b, c)]
    labels = torch.arange(b) % c
    # constant logits: every tuple has the same score, so L = -0 + log(B^2 C) - log(B^2 C) = 0
    assert losses.tcmax_loss(zeros, labels).loss.item() == pytest.approx(0.0, abs=1e-6)
    # perfectly separated logits approach the cap -L -> log(B C)... only if every joint tuple is unique;
    # in general -L <= log(B^(M-1) C)
    big = [20 * torch.nn.functional.one_hot(torch.arange(b) % b, b).float()[:, :c] for _ in range(2)]
    tc = losses.tcmax_loss(big, labels).tc_estimate.item()
    assert tc <= losses.tc_estimate_cap(b, c) + 1e-6


def test_finite_at_logit_scale_1e3_and_public_code_is_not():
    gen = torch.Generator().manual_seed(0)
    la = (torch.randn(16, 6, generator=gen) * 1e3).requires_grad_(True)
    lv = (torch.randn(16, 6, generator=gen) * 1e3).requires_grad_(True)
    y = torch.randint(0, 6, (16,), generator=gen)
    out = losses.tcmax_loss([la, lv], y)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(la.grad).all() and torch.isfinite(lv.grad).all()
    assert not torch.isfinite(public_code(la.detach(), lv.detach(), y))


def test_public_code_equals_paper_plus_log_bc_when_stable():
    gen = torch.Generator().manual_seed(3)
    la, lv = torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)
    y = torch.randint(0, 4, (6,), generator=gen)
    paper = losses.tcmax_loss([la, lv], y).loss.item()
    assert public_code(la, lv, y).item() == pytest.approx(paper + math.log(6 * 4), abs=1e-5)


@pytest.mark.parametrize("head_cls", [FiLMHead, GatedHead])
@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_pairwise_equals_brute_force(head_cls, chunk):
    torch.manual_seed(0)
    b, c, d = 6, 4, 5
    head = head_cls([d, d], c).double()
    za = torch.randn(b, d, dtype=torch.float64, requires_grad=True)
    zv = torch.randn(b, d, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, c, (b,))
    fast = losses.tcmax_loss_pairwise(head, [za, zv], y, chunk_size=chunk).loss
    g_fast = torch.autograd.grad(fast, [za, zv, *head.parameters()])
    pos = torch.stack([head(za[i:i + 1], zv[i:i + 1])[0, y[i]] for i in range(b)]).mean()
    pairs = [head(za[j:j + 1], zv[k:k + 1])[0] for j in range(b) for k in range(b)]
    neg = torch.logsumexp(torch.stack(pairs).flatten(), 0)
    slow = -pos + neg - math.log(b * b * c)
    g_slow = torch.autograd.grad(slow, [za, zv, *head.parameters()])
    assert fast.item() == pytest.approx(slow.item(), rel=1e-5)
    for a, s in zip(g_fast, g_slow):
        torch.testing.assert_close(a, s, rtol=1e-4, atol=1e-6)


def test_shape_errors_are_explained():
    with pytest.raises(ValueError, match="same \\[B, C\\]"):
        losses.tcmax_loss([torch.zeros(4, 3), torch.zeros(5, 3)], torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must have shape"):
        losses.tcmax_loss([torch.zeros(4, 3)], torch.zeros(5, dtype=torch.long))


# ----------------------------------------------------------------------------- sampled negatives (notebook 07)
def _sampled_setup(b=12, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    za = torch.randn(b, 5, generator=g, dtype=torch.float64)
    zv = torch.randn(b, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(0, c, (b,), generator=g)
    torch.manual_seed(seed)
    head = FiLMHead([5, 6], c).double()
    return head, (za, zv), labels


@pytest.mark.parametrize("n", [None, 0, -3])
def test_sampled_with_no_positive_n_is_the_exact_loss(n):
    head, feats, labels = _sampled_setup()
    exact = losses.tcmax_loss_pairwise(head, feats, labels).loss
    assert torch.equal(losses.tcmax_loss_sampled(head, feats, labels, n).loss, exact)


def test_sampled_loss_bias_matches_the_delta_method_and_shrinks_with_n():
    """E[L_N] - L = E[log mean_N w] - log E[w] ~ -Var(w) / (2 N E[w]^2) (Jensen: <= 0), w over the B^2 pairs."""
    head, (za, zv), labels = _sampled_setup()
    b = za.shape[0]
    with torch.no_grad():
        exact = float(losses.tcmax_loss_pairwise(head, (za, zv), labels).loss)
        grid = head(za.repeat_interleave(b, 0), zv.repeat(b, 1))                  # [B*B, C], all pairs
        w = grid.exp().mean(1)                                                   # sum_c (1/C) e^{f_c}
        rel_var = float(w.var(unbiased=False) / w.mean() ** 2)
        gen = torch.Generator().manual_seed(1)
        for n in (16, 256):
            draws = torch.tensor([float(losses.tcmax_loss_sampled(head, (za, zv), labels, n, generator=gen).loss)
                                  for _ in range(3000)], dtype=torch.float64)
            bias, se = float(draws.mean()) - exact, float(draws.std() / math.sqrt(len(draws)))
            predicted = -rel_var / (2 * n)
            # 4 standard errors of the Monte Carlo mean + the O(1/N^2) remainder of the delta method
            assert abs(bias - predicted) < 4 * se + 3 * rel_var ** 2 / n ** 2, (n, bias, predicted, se)
            assert bias < 0
            # the spread of one draw is the delta method's sqrt(rel_var / N)
            assert float(draws.std()) == pytest.approx(math.sqrt(rel_var / n), rel=0.15)


def test_sampled_loss_converges_to_exact_and_is_seeded():
    head, feats, labels = _sampled_setup(b=8)
    exact = float(losses.tcmax_loss_pairwise(head, feats, labels).loss.detach())
    big = losses.tcmax_loss_sampled(head, feats, labels, 200_000, generator=torch.Generator().manual_seed(0))
    assert float(big.loss.detach()) == pytest.approx(exact, abs=0.02)
    a = losses.tcmax_loss_sampled(head, feats, labels, 32, generator=torch.Generator().manual_seed(5)).loss
    b = losses.tcmax_loss_sampled(head, feats, labels, 32, generator=torch.Generator().manual_seed(5)).loss
    assert torch.equal(a, b)


def test_sampled_loss_refuses_bad_input():
    head, (za, zv), labels = _sampled_setup()
    with pytest.raises(ValueError, match="batch sizes differ"):
        losses.tcmax_loss_sampled(head, (za, zv[:-1]), labels, 8)
    with pytest.raises(ValueError, match="lie in"):
        losses.tcmax_loss_sampled(head, (za, zv), labels + 10, 8)
