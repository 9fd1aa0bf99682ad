"""The interface every training method implements, and helpers the methods share (notebooks 03, 07).

The trainer (`train.train_epoch`) calls, per epoch and per step:

    method.on_epoch_start(model, train, epoch)          # e.g. PMR recomputes its prototypes
    loss, logs = method.loss(model, out, y)              # the objective of one batch
    loss.backward()
    logs |= method.after_backward(model, out, y, epoch)  # e.g. OGM-GE / AGM rescale encoder gradients
    opt.step()

A method that must take several optimiser steps per batch (MLA's alternating unimodal steps) sets
`owns_step = True` and implements `step(...)`; the trainer then hands it the batch and the optimiser.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from .. import checks
from ..data.splits import Split
from ..models import ModelOutput, MultimodalClassifier

# guard(loss, after_backward) raises TrainingDivergedError on a non-finite loss or gradient (train.py)
Guard = Callable[[torch.Tensor, bool], None]


class Method:
    """Base class: `loss(model, out, y)` -> (loss, logs); `after_backward(model, out, y, epoch)` -> logs (nb 03)."""

    name = "base"
    owns_step = False

    def loss(self, model: MultimodalClassifier, out: ModelOutput, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def after_backward(self, model: MultimodalClassifier, out: ModelOutput, y: torch.Tensor, epoch: int) -> dict:
        return {}

    def on_epoch_start(self, model: MultimodalClassifier, train: Split, epoch: int) -> dict:
        """Called before each training epoch (PMR's prototypes); returns logs."""
        return {}

    def step(self, model: MultimodalClassifier, batch: Sequence[torch.Tensor], y: torch.Tensor,
             opt: torch.optim.Optimizer, guard: Guard, epoch: int, step: int, steps_per_epoch: int
             ) -> tuple[torch.Tensor, dict]:
        """A whole optimisation step on one batch, for methods with `owns_step = True` (MLA)."""
        raise NotImplementedError(f"{type(self).__name__} does not own its optimisation step.")

    def predict_logits(self, out: ModelOutput) -> torch.Tensor:
        """Logits used for prediction (fused head by default)."""
        return out.logits


def check_window(method: Method, start: int, end: int) -> tuple[int, int]:
    """A method's epoch window [start, end] as ints, 0 <= start <= end; an error naming the method (notebook 04)."""
    start, end = checks.integer(start, "start", minimum=0), checks.integer(end, "end", minimum=0)
    if start > end:
        raise ValueError(f"{method.name}: start={start} > end={end}; the modulation window [start, end] is empty.")
    return start, end


def ogm_ratio(modality_logits: Sequence[torch.Tensor], y: torch.Tensor) -> float:
    """OGM discrepancy ratio s_0 / s_1, s_m = sum_i softmax(logits_m)[y_i]; > 1: modality 0 dominates (nb 05)."""
    if len(modality_logits) != 2:
        raise ValueError(f"the OGM ratio compares two modalities, got {len(modality_logits)}.")
    s = [lg.detach().float().softmax(1).gather(1, y[:, None]).sum() for lg in modality_logits]
    return float(s[0] / s[1].clamp_min(1e-12))


def modality_ce(out: ModelOutput, y: torch.Tensor) -> dict:
    """Detached cross-entropy of each modality's logits, for logging (notebook 03)."""
    return {f"ce_{m}": F.cross_entropy(lg.detach().float(), y) for m, lg in enumerate(out.modality_logits)}


def encoder_params(model: MultimodalClassifier) -> list[list[torch.nn.Parameter]]:
    """Trainable parameters of each modality's encoder, M lists (the head excluded) (notebook 07)."""
    return [[p for p in enc.parameters() if p.requires_grad] for enc in model.encoders]
