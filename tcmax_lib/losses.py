"""The TCMax loss: the negative TCNE (Donsker-Varadhan) bound on TC(z_1, ..., z_M, y) with the
classifier's logits as the critic (Yu et al., ICLR 2026, arXiv 2602.13015).

    L = -(1/B) sum_i f(z_1i, ..., z_Mi)_{y_i}
        + log sum_{j_1..j_M, c} exp f(z_1j_1, ..., z_Mj_M)_c  -  log(B^M |Y|)

For a linear fusion f = sum_m f_m(z_m) (concat, sum, shared heads) the normaliser factorises:
log sum_c prod_m sum_j exp f_m(z_mj)_c = logsumexp_c sum_m logsumexp_j f_m[j, c]  ->  O(M B C).
The label marginal of the product measure is uniform over the C classes by default (the paper's
choice, the `- log |Y|` above); then -L bounds TC + KL(p_y || Uniform), not TC, on imbalanced data.
`label_prior="batch"` uses the batch's class frequencies p_hat(c) instead,

    normaliser = log sum_c p_hat(c) prod_m sum_j exp f_m[j, c] - M log B,

where classes absent from the batch contribute nothing, and -L is a batch bound on TC itself.
-L can never exceed log(B^(M-1) |Y|) (uniform prior), an upper bound a linear head cannot reach (notebook 02,
section 4). `tcmax_loss_sampled` is the paper's sampled-negative variant: N random (audio, visual) index pairs
estimate the normaliser, O(N) instead of O(B^2). The reference forms the
fast ones are checked against (brute force, the materialised grid, the released code's form) are
written out where they teach (notebook 04) and in tests/test_losses.py, not here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from . import checks, distributed


@dataclass
class TCMaxOutput:
    """Loss (to minimise) and the batch TC estimate (= -loss, detached, nats) (notebook 04)."""

    loss: torch.Tensor
    tc_estimate: torch.Tensor


def _check_logits(logits: Sequence[torch.Tensor], labels: torch.Tensor) -> tuple[int, int, torch.Tensor]:
    if len(logits) < 1:
        raise ValueError("tcmax_loss needs at least one per-modality logit tensor.")
    b, c = logits[0].shape[-2:] if logits[0].ndim == 2 else (None, None)
    for m, lg in enumerate(logits):
        if lg.ndim != 2 or lg.shape != logits[0].shape:
            raise ValueError(f"logits[{m}] has shape {tuple(lg.shape)}; every modality needs the same [B, C] "
                             f"shape (got {tuple(logits[0].shape)} for modality 0).")
    if not torch.is_tensor(labels) or labels.shape != (b,):
        raise ValueError(f"labels must have shape [B]=({b},), got {tuple(getattr(labels, 'shape', ()))}.")
    return b, c, _check_labels(labels, c, logits)


def _check_labels(labels: torch.Tensor, num_classes: int, logits: Sequence[torch.Tensor] = ()) -> torch.Tensor:
    """Labels as int64 indices in [0, C) of a non-empty batch (any integer dtype), and finite logits; else an error.

    The promise of these losses: finite for finite logits (in float32 up to |logit| = 1e30, where sums of
    B*M terms cannot overflow). A NaN/inf logit is refused here rather than turned into a NaN loss (one
    host sync for all modalities).
    """
    if labels.numel() == 0:
        raise ValueError("the batch is empty: TCMax needs at least one sample (B >= 1).")
    if logits and torch.is_tensor(labels) and labels.device != logits[0].device:
        raise ValueError(f"the labels are on {labels.device} and the logits on {logits[0].device}: move the labels "
                         f"to the logits' device (labels.to(logits.device)) before the loss.")
    labels = checks.class_labels(labels, num_classes)
    if logits and not bool(torch.stack([torch.isfinite(lg).all() for lg in logits]).all()):
        bad = [m for m, lg in enumerate(logits) if not bool(torch.isfinite(lg).all())]
        raise ValueError(f"logits of modality {bad} hold NaN/inf; the TCMax loss is finite only for finite logits. "
                         "The model diverged (lower the learning rate) or its input holds NaN/inf (clean the data).")
    return labels


def _upcast(t: torch.Tensor) -> torch.Tensor:
    """Half precision -> float32 (logsumexp needs the range); float32 and float64 are kept as they are."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


LABEL_PRIORS = ("uniform", "batch")


def log_label_prior(labels: torch.Tensor, num_classes: int, label_prior: str = "uniform",
                    dtype: torch.dtype = torch.float32, group=None) -> torch.Tensor:
    """log q(c) [C] of the product measure's label marginal: uniform, or the batch frequencies (notebook 04).

    With a process `group` the batch frequencies are those of the global batch (C counts summed).
    """
    if label_prior == "uniform":
        return torch.full((num_classes,), -math.log(num_classes), dtype=dtype, device=labels.device)
    if label_prior == "batch":
        counts = torch.bincount(labels, minlength=num_classes)
        if group is not None:
            counts = distributed.sum_no_grad(counts, group)
        counts = counts.to(dtype)
        return torch.log(counts / counts.sum())                          # -inf for classes absent from the batch
    raise ValueError(f"label_prior={label_prior!r}; use one of {LABEL_PRIORS}.")


def _global_batch(b: int, device: torch.device, group) -> int:
    """The global batch size: b summed over the processes of `group` (b itself without a group)."""
    if group is None:
        return b
    return int(distributed.sum_no_grad(torch.tensor([b], device=device), group))


def tcmax_loss(logits: Sequence[torch.Tensor], labels: torch.Tensor, label_prior: str = "uniform",
               group=None) -> TCMaxOutput:
    """Exact TCMax loss for a linear fusion, from per-modality logits [B, C]; O(M B C) time and memory (nb 04).

    With a process `group` (torch.distributed) the loss is that of the global batch: only the [M, C]
    per-class logsumexps, the positive sum and the batch size are communicated (see `distributed`).
    """
    b, c, labels = _check_logits(logits, labels)
    m = len(logits)
    stacked = torch.stack([_upcast(lg) for lg in logits])                # [M, B, C]
    positive = stacked.gather(2, labels.view(1, b, 1).expand(m, b, 1))   # [M, B, 1]
    pos_sum = positive.sum()                                             # sum_i f(z_i)_{y_i}
    lse_batch = torch.logsumexp(stacked, dim=1)                          # [M, C]: log sum_j e^{f_m[j, c]}
    if group is not None:
        pos_sum = distributed.all_reduce_sum(pos_sum, group)
        lse_batch = torch.logsumexp(distributed.gather_stack(lse_batch, group), dim=0)   # [world, M, C] -> [M, C]
        b = _global_batch(b, stacked.device, group)
    log_q = log_label_prior(labels, c, label_prior, stacked.dtype, group)   # [C]
    log_norm = torch.logsumexp(log_q + lse_batch.sum(0), dim=0)          # log sum_c q(c) prod_m sum_j e^{...}
    loss = -pos_sum / b + log_norm - m * math.log(b)
    return TCMaxOutput(loss=loss, tc_estimate=-loss.detach())


def tcmax_loss_pairwise(head: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], feats: Sequence[torch.Tensor],
                        labels: torch.Tensor, chunk_size: int = 64, label_prior: str = "uniform",
                        group=None) -> TCMaxOutput:
    """Exact TCMax loss for any (non-linear) fusion head of two modalities (notebook 04).

    The normaliser runs `head` on all B x B feature pairs, `chunk_size` rows of modality 1 at a time,
    combining chunks with a streaming logsumexp. Each chunk is checkpointed, so autograd keeps only
    one scalar per chunk and recomputes the chunk in backward: peak memory is one chunk's activations.
    With a process `group`, each rank scores its own audio rows against the gathered visual features
    of the global batch, and the per-rank partial logsumexps are combined (see `distributed`).
    """
    if len(feats) != 2:
        raise ValueError(f"tcmax_loss_pairwise handles two modalities, got {len(feats)}.")
    za, zv = feats
    b = za.shape[0]
    if zv.shape[0] != b or labels.shape != (b,):
        raise ValueError(f"batch sizes differ: za {tuple(za.shape)}, zv {tuple(zv.shape)}, "
                         f"labels {tuple(labels.shape)}.")
    chunk_size = checks.integer(chunk_size, "chunk_size", hint="rows of modality 1 per chunk, e.g. 64")
    if b == 0:
        raise ValueError("the batch is empty: TCMax needs at least one sample (B >= 1).")
    fused = _upcast(head(za, zv))                                        # [B, C] aligned pairs
    _check_head_output(fused, b)
    c = fused.shape[1]
    labels = _check_labels(labels, c, [fused])
    pos_sum = fused.gather(1, labels[:, None]).sum()
    log_q = log_label_prior(labels, c, label_prior, fused.dtype, group)  # [C]
    if group is not None:
        zv = distributed.gather_cat(zv, group)                            # [B_global, Dv], gradients flow back
    b_all = zv.shape[0]

    def chunk_lse(za_chunk: torch.Tensor, zv_all: torch.Tensor) -> torch.Tensor:
        j = za_chunk.shape[0]
        a = za_chunk[:, None, :].expand(j, b_all, za_chunk.shape[1]).reshape(j * b_all, -1)   # [J*B, Da]
        v = zv_all[None, :, :].expand(j, b_all, zv_all.shape[1]).reshape(j * b_all, -1)       # [J*B, Dv]
        return torch.logsumexp((_upcast(head(a, v)) + log_q).flatten(), 0)          # scalar

    parts = []
    for start in range(0, b, chunk_size):
        za_chunk = za[start:start + chunk_size]
        if torch.is_grad_enabled():
            parts.append(checkpoint(chunk_lse, za_chunk, zv, use_reentrant=False))
        else:
            parts.append(chunk_lse(za_chunk, zv))
    log_norm = torch.logsumexp(torch.stack(parts), 0)
    if group is not None:
        pos_sum = distributed.all_reduce_sum(pos_sum, group)
        log_norm = torch.logsumexp(distributed.gather_stack(log_norm, group), 0)
    loss = -pos_sum / b_all + log_norm - 2 * math.log(b_all)
    return TCMaxOutput(loss=loss, tc_estimate=-loss.detach())


def tcmax_loss_sampled(head: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], feats: Sequence[torch.Tensor],
                       labels: torch.Tensor, num_negatives: int | None, label_prior: str = "uniform",
                       generator: torch.Generator | None = None, chunk_size: int = 64, group=None) -> TCMaxOutput:
    """TCMax with N sampled negative pairs (the paper's `TCMax_loss_sample`); N <= 0 or None: exact (nb 07).

    N (audio-index, visual-index) pairs are drawn uniformly *with replacement* from B x B (aligned
    pairs can be drawn), and the normaliser log (1/B^2) sum_{j,k} sum_c q(c) e^{f(z_aj, z_vk)_c} is
    replaced by its plug-in estimate log (1/N) sum_n sum_c q(c) e^{f(z_a j_n, z_v k_n)_c}. The mean
    inside the log is unbiased, so by Jensen the loss is biased *low* (the TC estimate high); to first
    order the bias is -Var(w) / (2 N E[w]^2), w = sum_c q(c) e^{f_c} of one random pair: O(1/N).
    Cost O(N) head evaluations instead of O(B^2). Indices come from `generator` (torch's global RNG,
    which `fit` seeds from TrainConfig.seed, when None). The released code's N <= 0 draws B pairs
    (one random visual partner per audio feature); here N <= 0 means the exact loss, as the series uses
    it for the "exact" end of the negatives sweep. With a process `group` both feature tensors are
    gathered and every rank scores the same N pairs of the global batch: the generator (or the
    global RNG) must be in the same state on every rank, as `fit` ensures by seeding each rank alike.
    """
    if num_negatives is not None:
        num_negatives = checks.integer(num_negatives, "num_negatives", None, "sampled pairs; None or <= 0: exact")
    if num_negatives is None or num_negatives <= 0:
        return tcmax_loss_pairwise(head, feats, labels, chunk_size=chunk_size, label_prior=label_prior, group=group)
    if len(feats) != 2:
        raise ValueError(f"tcmax_loss_sampled handles two modalities, got {len(feats)}.")
    za, zv = feats
    b = za.shape[0]
    if b == 0:
        raise ValueError("the batch is empty: TCMax needs at least one sample (B >= 1).")
    if zv.shape[0] != b or labels.shape != (b,):
        raise ValueError(f"batch sizes differ: za {tuple(za.shape)}, zv {tuple(zv.shape)}, "
                         f"labels {tuple(labels.shape)}.")
    if group is not None:
        za, zv = distributed.gather_cat(za, group), distributed.gather_cat(zv, group)
        labels = distributed.gather_cat(labels, group)
        b = za.shape[0]
    fused = _upcast(head(za, zv))                                        # [B, C] aligned pairs
    _check_head_output(fused, b)
    c = fused.shape[1]
    labels = _check_labels(labels, c, [fused])
    positive = fused.gather(1, labels[:, None]).mean()
    dev = generator.device if generator is not None else za.device
    j = torch.randint(0, b, (num_negatives,), generator=generator, device=dev).to(za.device)   # [N]
    k = torch.randint(0, b, (num_negatives,), generator=generator, device=dev).to(za.device)   # [N]
    neg = _upcast(head(za[j], zv[k]))                                    # [N, C]
    if neg.shape != (num_negatives, c):
        raise ValueError(f"the head returned shape {tuple(neg.shape)} for {num_negatives} sampled pairs; it must "
                         f"return [N, C] = [{num_negatives}, {c}] (one row of logits per pair, as for the batch).")
    log_q = log_label_prior(labels, c, label_prior, neg.dtype)           # [C]
    log_norm = torch.logsumexp((neg + log_q).flatten(), 0) - math.log(num_negatives)
    loss = -positive + log_norm
    return TCMaxOutput(loss=loss, tc_estimate=-loss.detach())


def _check_head_output(fused: torch.Tensor, b: int) -> None:
    if not torch.is_tensor(fused) or fused.ndim != 2 or fused.shape[0] != b:
        raise ValueError(f"the head returned shape {tuple(getattr(fused, 'shape', ()))} for a batch of {b}; it must "
                         f"return logits [B, C] = [{b}, num_classes].")


def tc_estimate_cap(batch_size: int, num_classes: int, num_modalities: int = 2) -> float:
    """Largest value the batch TC estimate -L can take: log(B^(M-1) |Y|) nats (notebook 04)."""
    batch_size, num_classes = checks.integer(batch_size, "batch_size"), checks.integer(num_classes, "num_classes")
    num_modalities = checks.integer(num_modalities, "num_modalities")
    return (num_modalities - 1) * math.log(batch_size) + math.log(num_classes)
