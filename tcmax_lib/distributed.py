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

from .files import env_seconds

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


def same_shape(t: torch.Tensor, group: dist.ProcessGroup, what: str = "tensor") -> None:
    """Raise the same ValueError on every process when `t`'s shape differs between them (notebook 04).

    A collective over tensors of different shapes would abort inside the backend (gloo's EnforceNotMet)
    or hang; one small all-gather of the shapes first turns that into a message.
    """
    dims = torch.tensor([t.ndim, *t.shape, *[0] * (8 - t.ndim)], device=comm_device())   # [9]
    parts = [torch.zeros_like(dims) for _ in range(world_size(group))]
    dist.all_gather(parts, dims, group=group)
    shapes = [tuple(p[1:1 + int(p[0])].tolist()) for p in parts]
    if len(set(shapes)) != 1:
        raise ValueError(f"the processes hold {what}s of different shapes {shapes} (by rank): every process must "
                         "use the same model (number of classes, feature sizes) and the same local batch size.")


def gather_stack(t: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
    """Differentiable all-gather of same-shaped tensors: [world, *t.shape]; shapes checked first (notebook 04)."""
    import torch.distributed.nn.functional as dfn

    if t.ndim:
        same_shape(t, group, "per-class logsumexp" if t.ndim == 2 else "tensor")

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


def init_timeout() -> float:
    """Seconds to wait for the other processes of a job: env TCMAX_DIST_TIMEOUT, else 300 (notebook 04)."""
    return env_seconds("TCMAX_DIST_TIMEOUT", 300.0)


def init_from_env(device: torch.device | None = None) -> bool:
    """Join the job `torchrun` describes in the environment (gloo on CPU, nccl on CUDA); False if none (nb 04).

    It says what it waits for, and gives up after `init_timeout()` seconds with the likely cause.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return dist.is_available() and dist.is_initialized()
    import datetime

    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    timeout, world = init_timeout(), os.environ["WORLD_SIZE"]
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    print(f"rank {os.environ.get('RANK', '?')}: waiting for the {world} processes of the job at {where}, at most "
          f"{timeout:.0f} s (TCMAX_DIST_TIMEOUT)", flush=True)
    try:
        dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout))
    except (RuntimeError, TimeoutError, ValueError) as exc:              # torch's DistStoreError is a RuntimeError
        raise TimeoutError(f"the {world} processes of the job did not all join at {where} within {timeout:.0f} s "
                           f"({type(exc).__name__}: {str(exc)[:200]}). Start them together with `torchrun "
                           f"--nproc_per_node={world} ...`, or unset WORLD_SIZE to run in one process.") from exc
    return True
