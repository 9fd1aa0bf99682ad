"""Distributed TCMax (gloo, 2 and 3 processes on this CPU) against one process on the global batch.

Every rank ends up with the global loss. Gradients reaching a rank's own inputs are world_size x the
single-process gradient of that slice (every rank's copy of the loss sends gradient back through the
gather), and parameter gradients are averaged across ranks as DistributedDataParallel does; both must
equal the single-process gradients of the global batch (float64, tolerance 1e-10: only the order of
the floating-point sums differs).
"""

import os
import runpy
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tcmax_lib import distributed, losses
from tcmax_lib.methods import make_method
from tcmax_lib.models import FiLMHead
from tcmax_lib.train import TrainConfig, _check_distributed

ROOT = Path(__file__).resolve().parent.parent


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def _mean_over_ranks(t, group):
    t = t.clone()
    dist.all_reduce(t, group=group)
    return t / dist.get_world_size(group)


def _check_factorised(rank, world, m, prior, group):
    g = torch.Generator().manual_seed(10 + m)
    b_local, c = 5, 4
    full = [torch.randn(world * b_local, c, generator=g, dtype=torch.float64) * 3 for _ in range(m)]
    labels = torch.randint(0, c, (world * b_local,), generator=g)
    ref_in = [t.clone().requires_grad_() for t in full]
    ref = losses.tcmax_loss(ref_in, labels, label_prior=prior)
    ref.loss.backward()
    sl = slice(rank * b_local, (rank + 1) * b_local)
    mine = [t[sl].clone().requires_grad_() for t in full]
    out = losses.tcmax_loss(mine, labels[sl], label_prior=prior, group=group)
    out.loss.backward()
    _close(out.loss, ref.loss)
    for a, r in zip(mine, ref_in):
        _close(a.grad / world, r.grad[sl])


def _check_pair(rank, world, prior, negatives, group):
    g = torch.Generator().manual_seed(3)
    b_local = 4
    za_full = torch.randn(world * b_local, 5, generator=g, dtype=torch.float64)
    zv_full = torch.randn(world * b_local, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (world * b_local,), generator=g)
    torch.manual_seed(0)
    head = FiLMHead([5, 6], 3).double()
    ref_head = FiLMHead([5, 6], 3).double()
    ref_head.load_state_dict(head.state_dict())
    ra, rv = za_full.clone().requires_grad_(), zv_full.clone().requires_grad_()
    sl = slice(rank * b_local, (rank + 1) * b_local)
    a, v = za_full[sl].clone().requires_grad_(), zv_full[sl].clone().requires_grad_()
    if negatives is None:
        ref = losses.tcmax_loss_pairwise(ref_head, (ra, rv), labels, chunk_size=3, label_prior=prior)
        out = losses.tcmax_loss_pairwise(head, (a, v), labels[sl], chunk_size=3, label_prior=prior,
                                         group=group)
    else:
        ref = losses.tcmax_loss_sampled(ref_head, (ra, rv), labels, negatives, label_prior=prior,
                                        generator=torch.Generator().manual_seed(7))
        out = losses.tcmax_loss_sampled(head, (a, v), labels[sl], negatives, label_prior=prior,
                                        generator=torch.Generator().manual_seed(7), group=group)
    ref.loss.backward()
    out.loss.backward()
    _close(out.loss, ref.loss)
    _close(a.grad / world, ra.grad[sl])
    _close(v.grad / world, rv.grad[sl])
    for p, r in zip(head.parameters(), ref_head.parameters()):
        _close(_mean_over_ranks(p.grad, group), r.grad)


def _check_losses(rank, world, group):
    for prior in ("uniform", "batch"):
        for m in (2, 3):
            _check_factorised(rank, world, m, prior, group)
        _check_pair(rank, world, prior, None, group)
        _check_pair(rank, world, prior, 50, group)


def _worker(rank, world, init_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        assert distributed.active() and distributed.world_size() == world
        _check_losses(rank, world, dist.group.WORLD)
        # 2 processes: a group of ranks 0 and 1 inside the same job (every rank creates it; rank 2 idles), which
        # also checks that the losses gather over the group they are given, not the whole job
        pair = dist.new_group([0, 1])
        if rank < 2:
            _check_losses(rank, 2, pair)
        dist.barrier()
        with distributed.local():
            assert not distributed.active() and distributed.group_or_none() is None
        # ragged shards are refused, on every rank, with a message that says what to do
        t = torch.zeros(3 + rank, 2)
        with pytest.raises(ValueError, match="same local batch size"):
            distributed.gather_cat(t, dist.group.WORLD)
        idx = torch.arange(4 * world)
        assert distributed.shard(idx).tolist() == list(range(4 * rank, 4 * rank + 4))
        with pytest.raises(ValueError, match="multiple of the world size"):
            distributed.shard(torch.arange(4 * world + 1))
        # a failure on one process is seen by all (no process is left waiting in a collective)
        assert distributed.all_true(True) and not distributed.all_true(rank != 0)
        # methods that rescale gradients per process are refused; the global batch must split evenly
        for name in ("ogm_ge", "agm", "mmpareto", "mla", "pmr"):
            with pytest.raises(ValueError, match="one process"):
                _check_distributed(make_method(name), TrainConfig(batch_size=6 * world))
        _check_distributed(make_method("tcmax"), TrainConfig(batch_size=6 * world))
        with pytest.raises(ValueError, match="multiple of"):
            _check_distributed(make_method("joint"), TrainConfig(batch_size=6 * world + 1))
    finally:
        dist.destroy_process_group()


def test_distributed_losses_equal_the_global_batch(tmp_path):
    """3 processes, and 2 as a group inside them (one job: 3 process starts instead of 5)."""
    mp.spawn(_worker, args=(3, str(tmp_path / "init")), nprocs=3, join=True)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_training_matches_one_process(tmp_path, monkeypatch):
    """`torchrun --nproc_per_node=2` trains the toy to the same weights as one process on the global batch, with
    the factorised loss (concat head) and the pairwise loss with the head in the loss (gated head)."""
    script, heads = ROOT / "tests" / "dist_train_toy.py", ["concat", "gated"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    threads = torch.get_num_threads()
    monkeypatch.setattr(sys, "argv", [str(script), str(tmp_path / "one.pt"), ",".join(heads)])
    try:                                   # the one-process reference in this process: one torch start fewer
        runpy.run_path(str(script), run_name="__main__")
    finally:
        torch.set_num_threads(threads)     # the script runs on one thread, as each torchrun process does
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          f"--master_port={_free_port()}", str(script), str(tmp_path / "two.pt"), ",".join(heads)],
                         env=env, capture_output=True, text=True, timeout=180)
    assert two.returncode == 0, two.stderr[-3000:]
    ones, twos = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert set(ones) == set(twos) == set(heads)
    for head in heads:
        a, b = ones[head], twos[head]
        assert a["best_epoch"] == b["best_epoch"], head
        for k in a["state"]:
            # float32 training, 2 epochs of 16 steps: only summation order differs between the runs
            torch.testing.assert_close(a["state"][k], b["state"][k], rtol=1e-4, atol=1e-5,
                                       msg=lambda m, h=head, k=k: f"{h} {k}: {m}")
