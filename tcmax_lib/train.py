"""A compact trainer shared by every training chapter.

Data are tensors kept on the device (no DataLoader workers), batches come from a seeded
permutation, bf16 autocast is used on CUDA, and the weights of the best validation epoch are
copied (not referenced: the public code's `state_dict()` aliasing bug) and restored at the end.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
from tqdm.auto import tqdm

from .methods import Method
from .models import MultimodalClassifier


@dataclass
class TrainConfig:
    """Optimisation settings of one run."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"            # 'adam' or 'sgd' (momentum 0.9, as in the paper's scripts)
    weight_decay: float = 1e-4
    lr_step: int | None = None         # StepLR step (x0.1), None = constant
    seed: int = 0
    device: str | torch.device = "cpu"
    bf16: bool | None = None           # None: bf16 autocast on CUDA only
    progress: bool = True
    augment: Callable | None = field(default=None, repr=False)  # on-device augmentation of the inputs


Split = Sequence[torch.Tensor]         # (x_1, ..., x_M, y)


def to_device(split: Split, device: torch.device | str) -> list[torch.Tensor]:
    """Move every tensor of a split to the device once."""
    return [t.to(device, non_blocking=True) for t in split]


@torch.no_grad()
def evaluate(model: MultimodalClassifier, method: Method, split: Split, batch_size: int = 1024,
             bf16: bool = False, loss_batch: int = 64, loss_samples: int = 1024) -> dict:
    """Fused and per-modality accuracy on a split, and the method's mean loss.

    The loss is averaged over batches of `loss_batch` samples (the training batch size: batch-level
    losses such as TCMax depend on it) drawn from the first `loss_samples` samples.
    """
    model.eval()
    *xs, y = split
    n = y.shape[0]
    correct, correct_m = 0, None
    for start in range(0, n, batch_size):
        sl = slice(start, start + batch_size)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            out = model(*(x[sl] for x in xs))
        correct += (method.predict_logits(out).argmax(1) == y[sl]).sum()
        cm = torch.stack([(lg.argmax(1) == y[sl]).sum() for lg in out.modality_logits])
        correct_m = cm if correct_m is None else correct_m + cm
    losses = []
    for start in range(0, min(n, loss_samples) - loss_batch + 1, loss_batch):
        sl = slice(start, start + loss_batch)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            losses.append(method.loss(model, model(*(x[sl] for x in xs)), y[sl])[0].float())
    loss = float(torch.stack(losses).mean()) if losses else float("nan")
    res = {"acc": float(correct) / n, "loss": loss}
    res.update({f"acc_{m}": float(c) / n for m, c in enumerate(correct_m)})
    return res


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer {cfg.optimizer!r} unknown; use 'adam' or 'sgd'.")


def fit(model: MultimodalClassifier, method: Method, train: Split, val: Split, cfg: TrainConfig,
        on_epoch_end: Callable[[int, MultimodalClassifier], dict] | None = None
        ) -> tuple[MultimodalClassifier, pd.DataFrame]:
    """Train with `method`, evaluate every epoch, restore the best-validation weights; return (model, history).

    The history has one row per epoch: train/val fused and per-modality accuracy, losses, the
    epoch means of the method's logs (e.g. OGM ratio, TC estimate), wall time, and `best_epoch`.
    """
    device = torch.device(cfg.device)
    bf16 = (device.type == "cuda") if cfg.bf16 is None else cfg.bf16
    torch.manual_seed(cfg.seed)
    model.to(device)
    train, val = to_device(train, device), to_device(val, device)
    *xs, y = train
    n = y.shape[0]
    opt = _optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.StepLR(opt, cfg.lr_step, 0.1) if cfg.lr_step else None
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    rows, best_acc, best_state, best_epoch = [], -1.0, None, -1
    bar = tqdm(range(cfg.epochs), desc=method.name, disable=not cfg.progress or None, leave=False)
    for epoch in bar:
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen).to(device)
        sums: dict[str, torch.Tensor | float] = {}
        steps = 0
        for start in range(0, n - cfg.batch_size + 1, cfg.batch_size):  # drop the ragged last batch
            idx = perm[start:start + cfg.batch_size]
            batch = [x[idx] for x in xs]
            if cfg.augment is not None:
                batch = cfg.augment(batch)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                out = model(*batch)
                loss, logs = method.loss(model, out, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            logs = {**logs, **method.after_backward(model, out, y[idx], epoch), "train_loss": loss.detach()}
            opt.step()
            for k, v in logs.items():
                v = v.detach().float() if torch.is_tensor(v) else v
                sums[k] = sums.get(k, 0.0) + v
            steps += 1
        if sched is not None:
            sched.step()
        row = {"epoch": epoch, "seconds": time.perf_counter() - t0}
        row.update({k: float(v) / max(steps, 1) for k, v in sums.items()})
        for name, split in (("train", train), ("val", val)):
            res = evaluate(model, method, split, bf16=bf16, loss_batch=cfg.batch_size)
            row.update({f"{name}_{k}": v for k, v in res.items()})
        if on_epoch_end is not None:
            row.update(on_epoch_end(epoch, model))
        if row["val_acc"] > best_acc:
            best_acc, best_epoch = row["val_acc"], epoch
            best_state = copy.deepcopy(model.state_dict())  # a real copy, not references to live tensors
        rows.append(row)
    if best_state is not None:
        model.load_state_dict(best_state)
    history = pd.DataFrame(rows)
    history["best_epoch"] = best_epoch
    return model, history
