"""The one trainer shared by every training chapter (notebook 03).

Data are tensors kept on the device (no DataLoader workers), batches come from a seeded
permutation, bf16 autocast is used on CUDA, and the weights of the best validation epoch are
copied (not referenced: the public code's `state_dict()` aliasing bug) and restored at the end.
`train_epoch` is one pass over the training split; `fit` runs epochs, evaluates and keeps the best.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import pandas as pd
import torch
from tqdm.auto import tqdm

from .data.splits import Split
from .methods import Method
from .models import MultimodalClassifier
from .runtime import seeded


@dataclass
class TrainConfig:
    """Optimisation settings of one run (notebook 03)."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adamw"           # 'adamw' or 'sgd' (momentum 0.9, as in the paper's scripts)
    weight_decay: float = 1e-4
    lr_step: int | None = None         # StepLR step (x0.1), None = constant
    seed: int = 0                      # batch order and any randomness of the method (e.g. OGM-GE's noise)
    device: str | torch.device = "cpu"
    bf16: bool | None = None           # None: bf16 autocast on CUDA only
    progress: bool = True
    # on-device augmentation of a batch: augment(inputs, generator) -> inputs; the generator is seeded by `seed`
    augment: Callable | None = field(default=None, repr=False)


def autocast(device: torch.device, enabled: bool) -> AbstractContextManager:
    """The one mixed-precision context of the trainer: bf16 autocast on `device` when enabled (notebook 03)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


@torch.no_grad()
def evaluate(model: MultimodalClassifier, method: Method, split: Split, batch_size: int = 64,
             bf16: bool = False, with_loss: bool = True) -> dict:
    """Fused and per-modality accuracy and (with_loss) the method's mean loss on a split, one forward pass (nb 03).

    For the loss, batches must have the training batch size because batch-level losses such as TCMax
    depend on it; every sample counts for the accuracies, and the loss is the mean over the full-size
    batches (a ragged last batch would be a different objective, so it does not enter the loss).
    """
    model.eval()
    device = next(model.parameters()).device
    n = len(split)
    correct, correct_m, losses = 0, None, []
    for start in range(0, n, batch_size):
        xs = [x[start:start + batch_size] for x in split.inputs]
        y = split.y[start:start + batch_size]
        with autocast(device, bf16):
            out = model(*xs)
            if with_loss and y.shape[0] == batch_size:
                losses.append(method.loss(model, out, y)[0].float())
        correct += (method.predict_logits(out).argmax(1) == y).sum()
        cm = torch.stack([(lg.argmax(1) == y).sum() for lg in out.modality_logits])
        correct_m = cm if correct_m is None else correct_m + cm
    res = {"acc": float(correct) / n}
    if with_loss:
        res["loss"] = float(torch.stack(losses).mean()) if losses else float("nan")
    res.update({f"acc_{m}": float(c) / n for m, c in enumerate(correct_m)})
    return res


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD (momentum 0.9) with the config's learning rate and weight decay (notebook 03)."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer {cfg.optimizer!r} unknown; use 'adamw' or 'sgd'.")


def train_epoch(model: MultimodalClassifier, method: Method, train: Split, opt: torch.optim.Optimizer,
                cfg: TrainConfig, epoch: int, generator: torch.Generator,
                augment_generator: torch.Generator | None = None) -> dict:
    """One pass over `train` in a seeded random order (ragged last batch dropped); epoch means of the logs (nb 03)."""
    device = torch.device(cfg.device)
    bf16 = (device.type == "cuda") if cfg.bf16 is None else cfg.bf16
    model.train()
    n = len(train)
    perm = torch.randperm(n, generator=generator).to(device)
    sums: dict[str, torch.Tensor | float] = {}
    steps = 0
    for start in range(0, n - cfg.batch_size + 1, cfg.batch_size):
        idx = perm[start:start + cfg.batch_size]
        batch = [x[idx] for x in train.inputs]
        y = train.y[idx]
        if cfg.augment is not None:
            batch = cfg.augment(batch, augment_generator)
        with autocast(device, bf16):
            out = model(*batch)                                          # features, fused and per-modality logits
            loss, logs = method.loss(model, out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        logs = {**logs, **method.after_backward(model, out, y, epoch), "train_loss": loss.detach()}
        opt.step()
        for k, v in logs.items():
            v = v.detach().float() if torch.is_tensor(v) else v
            sums[k] = sums.get(k, 0.0) + v
        steps += 1
    return {k: float(v) / max(steps, 1) for k, v in sums.items()}


def fit(model: MultimodalClassifier, method: Method, train: Split, val: Split, cfg: TrainConfig,
        on_epoch_end: Callable[[int, MultimodalClassifier], dict] | None = None
        ) -> tuple[MultimodalClassifier, pd.DataFrame]:
    """Train with `method`, evaluate every epoch, restore the best-validation weights (notebook 03).

    Returns (model, history). The history has one row per epoch: train/val fused and per-modality
    accuracy and loss, the epoch means of the method's logs (e.g. OGM ratio, TC estimate), wall time,
    and `best_epoch`. Randomness inside training (batch order, a method's noise) comes from
    `cfg.seed`; the caller's global RNG state is left as it was.
    """
    device = torch.device(cfg.device)
    bf16 = (device.type == "cuda") if cfg.bf16 is None else cfg.bf16
    model.to(device)
    train, val = train.to(device), val.to(device)
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.StepLR(opt, cfg.lr_step, 0.1) if cfg.lr_step else None
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed) if cfg.augment is not None else None
    rows, best_acc, best_state, best_epoch = [], -1.0, None, -1
    with seeded(cfg.seed):
        for epoch in tqdm(range(cfg.epochs), desc=method.name, disable=not cfg.progress or None, leave=False):
            t0 = time.perf_counter()
            row = {"epoch": epoch, **train_epoch(model, method, train, opt, cfg, epoch, gen, aug_gen)}
            row["seconds"] = time.perf_counter() - t0
            if sched is not None:
                sched.step()
            # train: accuracies only (its loss is the epoch mean of the training steps, already in `row`);
            # val: accuracies and the loss at the training batch size, from the same forward pass
            row.update({f"train_{k}": v for k, v in evaluate(model, method, train, 1024, bf16, False).items()})
            row.update({f"val_{k}": v for k, v in evaluate(model, method, val, cfg.batch_size, bf16).items()})
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
