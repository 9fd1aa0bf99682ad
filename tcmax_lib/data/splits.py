"""Typed data splits shared by every data module and the trainer (introduced in notebook 03).

A `Split` holds the per-modality inputs, the labels and optional per-sample extras (e.g. the toy's
latent bits); `Splits` holds train/val/test and metadata. Every data module returns `Splits`, so no
code indexes tuples by position ("y is last") or filters a "meta" key out of a dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Split:
    """Inputs of each modality (M x [N, ...]), labels y [N] and per-sample extras {name: [N, ...]} (notebook 03)."""

    inputs: tuple[torch.Tensor, ...]
    y: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        n = self.y.shape[0]
        for name, t in [*((f"inputs[{m}]", x) for m, x in enumerate(self.inputs)), *self.extras.items()]:
            if t.shape[0] != n:
                raise ValueError(f"Split: {name} has {t.shape[0]} rows but y has {n}; every tensor needs one row "
                                 "per sample.")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def index(self, idx: torch.Tensor) -> Split:
        """The samples at `idx` (a LongTensor or bool mask), inputs, labels and extras alike (notebook 03)."""
        return Split(tuple(x[idx] for x in self.inputs), self.y[idx], {k: v[idx] for k, v in self.extras.items()})

    def to(self, device: torch.device | str) -> Split:
        """The same split with every tensor on `device` (notebook 03)."""
        return Split(tuple(x.to(device, non_blocking=True) for x in self.inputs), self.y.to(device, non_blocking=True),
                     {k: v.to(device, non_blocking=True) for k, v in self.extras.items()})

    def class_counts(self, num_classes: int | None = None) -> list[int]:
        """Number of samples of each class (notebook 05)."""
        return torch.bincount(self.y.cpu(), minlength=num_classes or 0).tolist()

    def stratified_subset(self, n: int, seed: int = 0) -> Split:
        """A seeded subsample of `n` samples that keeps the class proportions (notebook 05).

        Each class gets floor(n * share) samples; the remainder goes to the classes with the largest
        fractional parts, so every class present in the split stays present whenever n >= #classes.
        """
        total = len(self)
        if n >= total:
            return self
        if n <= 0:
            raise ValueError(f"stratified_subset: n={n} must be positive.")
        gen = torch.Generator().manual_seed(seed)
        y = self.y.cpu()
        classes, counts = torch.unique(y, return_counts=True)
        if n < len(classes):
            raise ValueError(f"stratified_subset: n={n} is smaller than the {len(classes)} classes present; "
                             "every class could not be kept.")
        exact = counts.double() * n / total
        take = exact.floor().long().clamp_min(1)
        short = n - int(take.sum())
        if short > 0:
            order = torch.argsort(exact - exact.floor(), descending=True, stable=True)
            take[order[:short]] += 1
        while int(take.sum()) > n:  # the clamp to 1 can overshoot: trim the largest classes
            take[int(torch.argmax(take))] -= 1
        picks = [(y == c).nonzero().squeeze(1)[torch.randperm(int(k_all), generator=gen)[:int(k)]]
                 for c, k_all, k in zip(classes, counts, take)]
        idx = torch.cat(picks)
        idx = idx[torch.randperm(len(idx), generator=gen)]                 # no class-sorted order
        return self.index(idx)


@dataclass(frozen=True)
class Splits:
    """train / val / test `Split`s of one data set, plus free-form metadata (notebook 03)."""

    train: Split
    val: Split
    test: Split
    meta: dict = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        """{'train': n, 'val': n, 'test': n} (notebook 05)."""
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def replace(self, **parts: Split) -> Splits:
        """The same splits with some parts replaced, e.g. `splits.replace(train=subset)` (notebook 05)."""
        return Splits(parts.get("train", self.train), parts.get("val", self.val), parts.get("test", self.test),
                      self.meta)


def shuffled(split: Split, seed: int) -> Split:
    """A seeded permutation of a split: data modules call it once so no split is sorted by class (notebook 05)."""
    return split.index(torch.randperm(len(split), generator=torch.Generator().manual_seed(seed)))
