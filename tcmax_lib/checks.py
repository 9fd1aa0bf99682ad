"""Input checks shared by the whole library: one helper per kind of input, one message per mistake (notebook 03).

Every public entry point validates what it is given with these before any work, so a bad value fails
at once with an error that names the value and what is accepted, never halfway through a run.
Plain Python and numpy numbers are accepted alike (`numbers.Integral` / `numbers.Real`); booleans are not
numbers here (`epochs=True` is a mistake, not 1).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from . import distributed

if TYPE_CHECKING:
    from .data.splits import Split

INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite (or exploding) quantity; raised at the first step where it happens (nb 03)."""


def integer(value: object, name: str, minimum: int | None = 1, hint: str = "") -> int:
    """`value` as an int (numpy integers too), at least `minimum`; a TypeError / ValueError naming it (nb 03).

    `hint` (what the value means) is added to the message.
    """
    hint = f" ({hint})" if hint else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r} ({type(value).__name__}) must be a whole number{hint}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}={value} must be at least {minimum}{hint}.")
    return int(value)


def real(value: object, name: str, minimum: float | None = None, positive: bool = False) -> float:
    """`value` as a finite float, > 0 when `positive`, >= `minimum` when given; else an error naming it (nb 03)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} ({type(value).__name__}) must be a number.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}={value} must be a finite number.")
    if positive and value <= 0:
        raise ValueError(f"{name}={value:g} must be positive.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}={value:g} must be at least {minimum:g}.")
    return value


def open_interval(value: object, name: str, lo: float, hi: float) -> float:
    """`value` as a float strictly between `lo` and `hi`; an error naming the range otherwise (notebook 00)."""
    value = real(value, name)
    if not lo < value < hi:
        raise ValueError(f"{name}={value:g} must lie strictly between {lo:g} and {hi:g}.")
    return value


def feature_widths(xs: Sequence[torch.Tensor], dims: Sequence[int], what: str) -> None:
    """Raise ValueError when the inputs are not M tensors [K, d_m] of the widths a module was built for (nb 01)."""
    if len(xs) != len(dims):
        raise ValueError(f"{what} was built for {len(dims)} inputs, got {len(xs)}.")
    for m, (x, d) in enumerate(zip(xs, dims)):
        if not torch.is_tensor(x) or x.ndim != 2 or x.shape[1] != d:
            raise ValueError(f"{what}: input {m} has shape {tuple(getattr(x, 'shape', ()))}; it was built for "
                             f"[K, {d}] (batch, {d} features).")


def class_labels(labels: object, num_classes: int, what: str = "labels") -> torch.Tensor:
    """Labels as int64 class indices [N] in [0, num_classes): every integer dtype accepted, one message (nb 03).

    Float, bool and complex labels, labels of shape [N, 1], negative labels (cross-entropy's ignore index
    -100 included) and labels beyond the head's classes are refused with the fix in the message.
    """
    if not torch.is_tensor(labels):
        raise TypeError(f"{what} must be a tensor of class indices, got {type(labels).__name__}; use "
                        "torch.as_tensor(labels).")
    if labels.dtype not in INTEGER_DTYPES:
        raise ValueError(f"{what} must be integer class indices (int64, int32, int16, int8 or uint8), got dtype "
                         f"{labels.dtype}; convert with labels.long() (after checking that they hold whole numbers).")
    if labels.ndim != 1:
        raise ValueError(f"{what} must have shape [N], got {tuple(labels.shape)}; flatten a column of labels "
                         "with labels.view(-1).")
    if labels.numel():
        lo, hi = (int(v) for v in torch.stack([labels.min(), labels.max()]).tolist())
        if lo < 0 or hi >= num_classes:
            hint = (" (-100 is cross-entropy's ignore index: this library trains on every sample, so drop "
                    "unlabelled samples from the split)" if lo == -100 else "")
            raise ValueError(f"{what} must lie in [0, {num_classes - 1}] for {num_classes} classes, got values in "
                             f"[{lo}, {hi}]{hint}: check the label encoding or the head's number of classes.")
    return labels.long()


def bad_rows(x: torch.Tensor) -> torch.Tensor:
    """Indices of the rows of `x` [N, ...] that hold NaN or inf (empty for integer tensors) (notebook 03)."""
    if not x.is_floating_point() or x.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    return (~torch.isfinite(x.reshape(x.shape[0], -1))).any(1).nonzero().squeeze(1)   # [n_bad]


def finite_rows(x: torch.Tensor, what: str) -> None:
    """Raise ValueError naming `what` and the first rows when a floating tensor holds NaN or inf (notebook 03)."""
    rows = bad_rows(x)
    if len(rows):
        raise ValueError(f"{what} holds NaN/inf in {len(rows)} of {x.shape[0]} rows (first rows "
                         f"{rows[:5].tolist()}). Clean the data (drop or impute those samples) before training "
                         "or evaluating: a NaN input would silently count as a wrong prediction.")


def finite_inputs(inputs: Sequence[torch.Tensor], what: str) -> None:
    """`finite_rows` for every modality of a split or batch (notebook 03)."""
    for m, x in enumerate(inputs):
        finite_rows(x, f"{what}: modality {m}")


@torch.no_grad()
def check_split(model: torch.nn.Module, split: Split, what: str) -> None:
    """Refuse a split with NaN/inf inputs or labels the model cannot predict (dtype, shape, range) (notebook 03).

    The model's class count is read off one forward pass of the first sample.
    """
    if len(split) == 0:
        raise ValueError(f"the {what} split is empty; give it at least one sample.")
    finite_inputs(split.inputs, f"the {what} split")
    device, was_training = next(model.parameters()).device, model.training
    model.eval()
    num_classes = model(*[x[:1].to(device) for x in split.inputs]).logits.shape[1]
    model.train(was_training)
    class_labels(split.y, num_classes, f"the {what} split's labels")


def _diverged(epoch: int, step: int, what: str, lr: float) -> TrainingDivergedError:
    return TrainingDivergedError(
        f"epoch {epoch}, step {step}: {what}. Training was stopped before the weights were used. Fix: "
        + ("clean the data (drop or impute the non-finite samples)" if "input" in what else
           f"lower the learning rate (now {lr:g}), or check the method's settings")
        + "; set TrainConfig(check_finite=False) only to reproduce the failure.")


def check_step(model: torch.nn.Module, batch: Sequence[torch.Tensor], loss: torch.Tensor, lr: float,
               max_abs_loss: float, epoch: int, step: int, after_backward: bool) -> None:
    """Raise TrainingDivergedError naming the first non-finite quantity of a step: input, loss or gradient (nb 03).

    Before backward it checks the loss (and, when that is bad, names the input row at fault); after
    backward every parameter gradient. Under torch.distributed all processes stop together.
    """
    if not after_backward:
        value = float(loss.detach())
        ok = math.isfinite(value) and abs(value) <= max_abs_loss
        if distributed.all_true(ok):                                  # every process must stop together
            return
        if ok:
            raise _diverged(epoch, step, "another process of the distributed job had a non-finite loss", lr)
        for m, x in enumerate(batch):
            if len(rows := bad_rows(x)):
                raise _diverged(epoch, step, f"input {m} holds NaN/inf (batch rows {rows[:5].tolist()})", lr)
        what = (f"the loss is {value:.3g} (|loss| > max_abs_loss={max_abs_loss:g})" if math.isfinite(value)
                else f"the loss is {value}")
        raise _diverged(epoch, step, what, lr)
    named = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
    norms = torch._foreach_norm([g for _, g in named])
    ok = torch.isfinite(torch.stack(norms))
    if not bool(ok.all()):
        raise _diverged(epoch, step, f"the gradient of {named[int((~ok).nonzero()[0])][0]} is not finite", lr)


def check_estimates(values: Sequence[torch.Tensor], names: Sequence[str], step: int, lr: float,
                    inputs: Sequence[torch.Tensor] = (), max_abs: float = 1e6) -> None:
    """Raise TrainingDivergedError before a step's update when an estimate is NaN/inf or beyond `max_abs` nats (nb 01).

    One host sync for all estimates. The error names the step, the estimator and, when an input row
    is NaN/inf, that row; the critics keep the weights they had before this step.
    """
    got = torch.stack([v.detach().float() for v in values]).tolist()
    bad = [(n, v) for n, v in zip(names, got) if not (math.isfinite(v) and abs(v) <= max_abs)]
    if not bad:
        return
    for m, z in enumerate(inputs):
        if len(rows := bad_rows(z)):
            cause = f"input {m} of the batch holds NaN/inf (rows {rows[:5].tolist()}). Fix: clean the sampler's data"
            break
    else:
        cause = f"the critic diverged. Fix: lower the learning rate (now lr={lr:g})"
    what = ", ".join(f"{n} = {v:.3g}" for n, v in bad)
    raise TrainingDivergedError(f"step {step}: estimate {what} (NaN/inf or |estimate| > {max_abs:g} nats): {cause}. "
                                "Training stopped before this step's update: the critics keep their last finite "
                                "weights.")
