"""torch.distributed helpers for exact global-batch TCMax under `torchrun` (notebook 04, appendix).

Under data parallelism each process holds a shard of the batch. TCMax's normaliser is a sum over the
*global* batch, so the losses take a process group and communicate::

    factorised  (`tcmax_loss`):          the [M, C] per-class logsumexps, 1 scalar, C label counts
    pairwise    (`tcmax_loss_pairwise`): the visual features [B_local, D_v] (each rank scores its own
                                         audio rows against all B visual rows), 2 scalars
    sampled     (`tcmax_loss_sampled`):  both feature tensors (every rank scores the same N pairs)

Gathers and reductions are differentiable (`torch.distributed.nn.functional`). Every rank then holds
the global loss, and its gradients are world_size x its share of the global gradient, which the
average of DistributedDataParallel turns into exactly the single-process gradient of the global batch.
Nothing here communicates unless torch.distributed is initialised and not suspended by `local()`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

_SUSPENDED = [False]


def active() -> bool:
    """True inside an initialised torch.distributed job with more than one process, unless `local()` (nb 04)."""
    return (not _SUSPENDED[0]) and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def group_or_none() -> dist.ProcessGroup | None:
    """The default process group when `active()`, else None: what the losses' `group=` expects (notebook 04)."""
    return dist.group.WORLD if active() else None


def rank() -> int:
    """This process's rank (0 outside a distributed job) (notebook 04)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size(group: dist.ProcessGroup | None = None) -> int:
    """Number of processes in `group` (1 outside a distributed job) (notebook 04)."""
    return dist.get_world_size(group) if dist.is_available() and dist.is_initialized() else 1


@contextmanager
def local() -> Iterator[None]:
    """Within this block `active()` is False: losses run on the local tensors only (evaluation) (notebook 04)."""
    old, _SUSPENDED[0] = _SUSPENDED[0], True
    try:
        yield
    finally:
        _SUSPENDED[0] = old


def all_reduce_sum(t: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
    """Differentiable sum over the processes of `group`, as a gather + sum (for small tensors) (notebook 04)."""
    return gather_stack(t, group).sum(0)


def gather_stack(t: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
    """Differentiable all-gather of same-shaped tensors: [world, *t.shape] (notebook 04)."""
    import torch.distributed.nn.functional as dfn

    return torch.stack(dfn.all_gather(t, group=group))


def gather_cat(t: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
    """Differentiable all-gather along dim 0, in rank order; every rank must hold the same shape (nb 04)."""
    sizes = torch.tensor([t.shape[0]], device=t.device)
    gathered = [torch.zeros_like(sizes) for _ in range(world_size(group))]
    dist.all_gather(gathered, sizes, group=group)
    if len({int(s) for s in gathered}) != 1:
        raise ValueError(f"distributed TCMax needs the same local batch size on every process, got "
                         f"{[int(s) for s in gathered]}: drop ragged batches or pad the data to a multiple of "
                         "the world size.")
    if not t.is_floating_point():                                        # labels: nothing to differentiate
        parts = [torch.empty_like(t) for _ in range(world_size(group))]
        dist.all_gather(parts, t.contiguous(), group=group)
        return torch.cat(parts)
    return gather_stack(t, group).flatten(0, 1)


def sum_no_grad(t: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
    """Sum of a tensor over the processes (no gradient), e.g. label counts (notebook 04)."""
    out = t.clone()
    dist.all_reduce(out, group=group)
    return out


def comm_device() -> torch.device:
    """Where small bookkeeping tensors must live for the backend: CUDA for nccl, else the CPU (notebook 04)."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def mean_of_floats(values: list[float]) -> list[float]:
    """Average a list of floats over the processes (same length and order everywhere) (notebook 04)."""
    if not active() or not values:
        return values
    t = sum_no_grad(torch.tensor(values, dtype=torch.float64, device=comm_device()), dist.group.WORLD)
    return (t / world_size()).tolist()


def all_true(flag: bool) -> bool:
    """True when `flag` is true on every process (one tiny all-reduce; True outside a job) (notebook 04)."""
    if not active():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def shard(idx: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous share of a global batch of indices (equal shares; notebook 04)."""
    n = world_size()
    if n == 1 or not active():
        return idx
    if idx.shape[0] % n:
        raise ValueError(f"the global batch of {idx.shape[0]} does not split evenly over {n} processes: "
                         f"choose a batch size that is a multiple of the world size.")
    per = idx.shape[0] // n
    return idx[rank() * per:(rank() + 1) * per]


def init_from_env(device: torch.device | None = None) -> bool:
    """Join the job `torchrun` describes in the environment (gloo on CPU, nccl on CUDA); False if none (nb 04)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return dist.is_available() and dist.is_initialized()
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return True
