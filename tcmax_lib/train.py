"""The one trainer shared by every training chapter (notebook 03).

Data are tensors kept on the device (no DataLoader workers), batches come from a seeded
permutation, the precision policy of `runtime.pick_precision` decides bf16 autocast (CUDA and
bf16-capable CPUs; losses and metrics stay fp32), convolutional models run channels_last, and the
weights of the best validation epoch are copied (not referenced: the public code's `state_dict()`
aliasing bug) and restored at the end.
`train_epoch` is one pass over the training split; `fit` runs epochs, evaluates and keeps the best.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import checks, distributed, runstore
from .checks import TrainingDivergedError
from .data.splits import Split
from .methods.base import Method
from .models import MultimodalClassifier
from .runtime import Precision, check_device, pick_precision, progress_off, seeded


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
    precision: str | None = None       # 'auto'/'fp32'/'bf16'; None: notebook PRECISION, TCMAX_PRECISION, 'auto'
    channels_last: bool | None = None  # None: on for models with Conv2d layers (oneDNN / cuDNN prefer NHWC)
    progress: bool = True
    check_finite: bool = True          # stop at the first non-finite input, loss or gradient (one sync a step)
    track_train: bool = True           # evaluate the training split every epoch (train_acc curves); off: a
                                       # quarter less time on AV digits, same weights (evaluation changes nothing)
    max_abs_loss: float = 1e6          # |loss| above this is divergence for these objectives (CE, TCMax: O(10))
    # on-device augmentation of a batch: augment(inputs, generator) -> inputs; the generator is seeded by `seed`
    augment: Callable | None = field(default=None, repr=False)

    def __post_init__(self) -> None:  # every setting checked when the config is built, before any work
        self.epochs, self.batch_size = checks.integer(self.epochs, "epochs"), checks.integer(self.batch_size,
                                                                                               "batch_size")
        self.lr = checks.real(self.lr, "lr", positive=True)              # lr=0 would train nothing
        self.weight_decay = checks.real(self.weight_decay, "weight_decay", minimum=0.0)
        self.max_abs_loss = checks.real(self.max_abs_loss, "max_abs_loss", positive=True)
        self.seed = checks.integer(self.seed, "seed", minimum=None)
        if self.lr_step is not None:                                     # lr_step=-1 would divide lr by 10 each epoch
            self.lr_step = checks.integer(self.lr_step, "lr_step", hint="epochs between x0.1 steps; None = constant")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer {self.optimizer!r} unknown; use 'adamw' or 'sgd'.")
        if self.augment is not None and not callable(self.augment):
            raise TypeError(f"augment={self.augment!r} must be a function (inputs, generator) -> inputs, or None.")


def autocast(device: torch.device, enabled: bool) -> AbstractContextManager:
    """bf16 autocast on `device` when enabled (benchmarks); the trainer uses `Precision.autocast` (notebook 03)."""
    return Precision(device.type, enabled, "explicit").autocast()


def trainer_precision(model: torch.nn.Module, cfg: TrainConfig) -> Precision:
    """The policy for this model: `auto` on a CPU keeps models without convolutions in fp32 (notebook 03).

    See `Precision.unless_small`: bf16 trained the AV-digits CNNs 1.8x as fast as fp32 on a 2-core AMX
    CPU, the toy MLPs (64-wide layers on batches of 64) at 0.6x (benchmarks/bench_train.py).
    """
    return pick_precision(torch.device(cfg.device), cfg.precision).unless_small(_has_conv(model))


def _has_conv(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def _channels_last(model: torch.nn.Module, cfg: TrainConfig) -> bool:
    """Whether this run stores conv weights and 4-D inputs channels_last (NHWC)."""
    if cfg.channels_last is not None:
        return cfg.channels_last
    return _has_conv(model)


def _nhwc(xs: list[torch.Tensor], on: bool) -> list[torch.Tensor]:
    """4-D inputs in channels_last memory order when `on` (values unchanged)."""
    return [x.contiguous(memory_format=torch.channels_last) if on and x.ndim == 4 else x for x in xs]


@torch.no_grad()
def evaluate(model: MultimodalClassifier, method: Method, split: Split, batch_size: int = 64,
             precision: Precision | None = None, with_loss: bool = True, channels_last: bool = False,
             check: bool = True) -> dict:
    """Fused and per-modality accuracy and (with_loss) the method's mean loss on a split, one forward pass (nb 03).

    For the loss, batches must have the training batch size because batch-level losses such as TCMax
    depend on it; every sample counts for the accuracies, and the loss is the mean over the full-size
    batches (a ragged last batch would be a different objective, so it does not enter the loss).
    `check` first refuses NaN inputs and bad labels (`checks.check_split`); `fit` checks once, before training.
    """
    if check:
        checks.check_split(model, split, "evaluated")
    model.eval()
    device = next(model.parameters()).device
    precision = precision or Precision(device.type, False, "default")
    n = len(split)
    correct, correct_m, losses, peak = 0, None, [], torch.zeros(())
    for start in range(0, n, batch_size):
        xs = _nhwc([x[start:start + batch_size] for x in split.inputs], channels_last)
        y = split.y[start:start + batch_size].long()
        with precision.autocast():
            out = model(*xs)
            if with_loss and y.shape[0] == batch_size:
                losses.append(method.loss(model, out, y)[0].float())
        correct += (method.predict_logits(out).argmax(1) == y).sum()
        peak = torch.maximum(peak, out.logits.detach().float().abs().nan_to_num(float("inf")).max().cpu())
        cm = torch.stack([(lg.argmax(1) == y).sum() for lg in out.modality_logits])
        correct_m = cm if correct_m is None else correct_m + cm
    res = {"acc": float(correct) / n, "max_abs_logit": float(peak)}
    if with_loss:
        res["loss"] = float(torch.stack(losses).mean()) if losses else float("nan")
    res.update({f"acc_{m}": float(c) / n for m, c in enumerate(correct_m)})
    return res


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD (momentum 0.9) with the config's learning rate and weight decay (notebook 03)."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)   # checked: adamw


def train_epoch(model: MultimodalClassifier, method: Method, train: Split, opt: torch.optim.Optimizer,
                cfg: TrainConfig, epoch: int, generator: torch.Generator,
                augment_generator: torch.Generator | None = None, net: torch.nn.Module | None = None) -> dict:
    """One pass over `train` in a seeded random order (ragged last batch dropped); epoch means of the logs (nb 03).

    Under torch.distributed every process draws the same permutation and takes its equal share of each
    global batch of `cfg.batch_size` (`distributed.shard`); `net` is then the DistributedDataParallel
    wrapper of `model`, and the logs are averaged over the processes.
    """
    net = model if net is None else net
    device = torch.device(cfg.device)
    precision = trainer_precision(model, cfg)
    nhwc = _channels_last(model, cfg)
    start_logs = method.on_epoch_start(model, train, epoch)            # e.g. PMR recomputes its prototypes
    sums: dict[str, torch.Tensor | float] = {}
    model.train()
    n = len(train)
    perm = torch.randperm(n, generator=generator).to(device)
    steps, steps_per_epoch = 0, n // cfg.batch_size
    for start in range(0, n - cfg.batch_size + 1, cfg.batch_size):
        idx = distributed.shard(perm[start:start + cfg.batch_size])    # all of it in one process
        batch = _nhwc([x[idx] for x in train.inputs], nhwc)
        y = train.y[idx]
        if cfg.augment is not None:
            batch = cfg.augment(batch, augment_generator)

        def guard(loss: torch.Tensor, after_backward: bool, batch=batch, step=steps) -> None:
            if cfg.check_finite:
                checks.check_step(model, batch, loss, cfg.lr, cfg.max_abs_loss, epoch, step, after_backward)

        if method.owns_step:                                             # MLA: several optimiser steps per batch
            with precision.autocast():
                loss, logs = method.step(model, batch, y, opt, guard, epoch, steps, steps_per_epoch)
            logs = {**logs, "train_loss": loss.detach()}
        else:
            with precision.autocast():
                out = net(*batch)                                        # features, fused and per-modality logits
                loss, logs = method.loss(model, out, y)
            guard(loss, False)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            guard(loss, True)
            logs = {**logs, **method.after_backward(model, out, y, epoch), "train_loss": loss.detach()}
            opt.step()
        for k, v in logs.items():
            v = v.detach().float() if torch.is_tensor(v) else v
            sums[k] = sums.get(k, 0.0) + v
        steps += 1
    means = {k: float(v) / max(steps, 1) for k, v in sums.items()}
    means = dict(zip(means, distributed.mean_of_floats(list(means.values()))))   # same keys on every rank
    return {**start_logs, **means}


def _check_distributed(method: Method, cfg: TrainConfig) -> None:
    """Under torchrun only methods whose step is loss -> backward -> step are exact; refuse the others."""
    plain = (not method.owns_step and type(method).after_backward is Method.after_backward
             and type(method).on_epoch_start is Method.on_epoch_start)
    if not plain:
        raise ValueError(f"method {method.name!r} changes gradients or steps per process (after_backward / "
                         "on_epoch_start / its own step), which data parallelism would desynchronise; run it in "
                         "one process (without torchrun). Distributed training supports joint, unimodal and tcmax.")
    if cfg.batch_size % distributed.world_size():
        raise ValueError(f"batch_size={cfg.batch_size} is the global batch and must be a multiple of the "
                         f"{distributed.world_size()} processes.")


def _check_config(cfg: TrainConfig, train: Split, val: Split) -> None:
    """Refuse settings that would train nothing or evaluate nothing, before any work is done."""
    if len(train) < cfg.batch_size:
        raise ValueError(f"the training split has {len(train)} samples, fewer than batch_size={cfg.batch_size}: no "
                         f"optimiser step would be taken. Use batch_size <= {len(train)} or more training data.")
    if len(val) == 0:
        raise ValueError("the validation split is empty: the best epoch cannot be chosen. Carve a validation "
                         "split from the training data (e.g. val_fraction > 0).")


def fit(model: MultimodalClassifier, method: Method, train: Split, val: Split, cfg: TrainConfig,
        on_epoch_end: Callable[[int, MultimodalClassifier], dict] | None = None
        ) -> tuple[MultimodalClassifier, pd.DataFrame]:
    """Train with `method`, evaluate every epoch, restore the best-validation weights (notebook 03).

    Returns (model, history). The history has one row per epoch: train/val fused and per-modality
    accuracy and loss, the epoch means of the method's logs (e.g. OGM ratio, TC estimate), wall time,
    and `best_epoch`. Randomness inside training (batch order, a method's noise) comes from
    `cfg.seed`; the caller's global RNG state is left as it was. A run store loads a stored one (`runstore`).
    """
    device = check_device(cfg.device, "TrainConfig.device")
    precision = trainer_precision(model, cfg)                           # fails early on a bad TCMAX_PRECISION
    _check_config(cfg, train, val)
    if cfg.check_finite:                                                 # every split once, before any step
        for what, split in (("training", train), ("validation", val)):
            checks.check_split(model.to(device), split, what)
    train, val = (dataclasses.replace(sp, y=sp.y.long()) for sp in (train, val))   # any integer dtype, once
    nhwc = _channels_last(model, cfg)
    model.to(device, memory_format=torch.channels_last) if nhwc else model.to(device)
    train, val = train.to(device), val.to(device)
    return runstore.stored(model, method, train, val, cfg, precision,    # storable: no function in the key
                           on_epoch_end is None and cfg.augment is None and not distributed.active(),
                           lambda: _train(model, method, train, val, cfg, on_epoch_end, device, precision, nhwc))


def _train(model: MultimodalClassifier, method: Method, train: Split, val: Split, cfg: TrainConfig,
           on_epoch_end: Callable[[int, MultimodalClassifier], dict] | None, device: torch.device,
           precision: Precision, nhwc: bool) -> tuple[MultimodalClassifier, pd.DataFrame]:
    """`fit`'s epochs on checked data already on the device: train, evaluate, keep and restore the best."""
    net = model
    if distributed.active():                                             # launched by torchrun
        _check_distributed(method, cfg)
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                         else None)
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.StepLR(opt, cfg.lr_step, 0.1) if cfg.lr_step else None
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    # augmentation: an independent stream per process under torchrun (rank 0 = the single-process stream)
    aug_seed = cfg.seed + 1_000_003 * distributed.rank()
    aug_gen = torch.Generator(device=device).manual_seed(aug_seed) if cfg.augment is not None else None
    rows, best_acc, best_state, best_epoch = [], -1.0, None, -1
    with seeded(cfg.seed):
        show = cfg.progress and distributed.rank() == 0
        for epoch in tqdm(range(cfg.epochs), desc=method.name, disable=progress_off(show), leave=False):
            t0 = time.perf_counter()
            row = {"epoch": epoch, **train_epoch(model, method, train, opt, cfg, epoch, gen, aug_gen, net)}
            row["seconds"] = time.perf_counter() - t0
            row["precision"] = precision.name
            if sched is not None:
                sched.step()
            # train: accuracies only (its loss is the epoch mean of the training steps, already in `row`);
            # val: accuracies and the loss at the training batch size, from the same forward pass.
            # Under torchrun every process evaluates the whole split locally: identical everywhere.
            with distributed.local():
                if cfg.track_train:
                    tr = evaluate(model, method, train, 1024, precision, False, nhwc, check=False)
                    row.update({f"train_{k}": v for k, v in tr.items()})
                va = evaluate(model, method, val, cfg.batch_size, precision, True, nhwc, check=False)
                row.update({f"val_{k}": v for k, v in va.items()})
            if on_epoch_end is not None:
                row.update(on_epoch_end(epoch, model))
            finite = all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())
            val_loss = row.get("val_loss", 0.0)                         # NaN: no full validation batch to judge
            blown = row["val_max_abs_logit"] > cfg.max_abs_loss         # a logit that large is a loss that large
            if not finite or blown or (not math.isnan(val_loss) and abs(val_loss) > cfg.max_abs_loss):
                # blown up by a step the step guard could not see (the last one, or one of a one-step epoch)
                what = "the weights hold NaN/inf" if not finite else \
                    f"a validation logit reaches {row['val_max_abs_logit']:.3g}" if blown else \
                    f"the validation loss is {val_loss:.3g}"
                what += f" (> max_abs_loss={cfg.max_abs_loss:g})" if finite else ""
                raise TrainingDivergedError(f"{method.name} diverged in epoch {epoch + 1} at lr {cfg.lr:g}: {what}. "
                                            "Lower the learning rate; a rate grid counts this rate as diverged.")
            if row["val_acc"] > best_acc:
                best_acc, best_epoch = row["val_acc"], epoch
                best_state = copy.deepcopy(model.state_dict())  # a real copy, not references to live tensors
            rows.append(row)
    if best_state is None:
        raise TrainingDivergedError("no epoch produced finite weights: nothing to restore. Lower the learning rate.")
    model.load_state_dict(best_state)
    history = pd.DataFrame(rows)
    history["best_epoch"] = best_epoch
    return model, history
