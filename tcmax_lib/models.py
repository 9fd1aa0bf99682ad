"""Encoders, fusion heads and the multimodal classifier used by every training chapter.

Linear heads (Concat, Sum, Shared) expose per-modality logits that sum to the fused logits, so
TCMax can use its factorised O(M B C) form. Non-linear heads (FiLM, Gated, MLP) do not; TCMax then
uses the pairwise form and per-modality logits come from zeroing the other modality's features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from . import checks
from .layers import mlp
from .runtime import seeded


# ----------------------------------------------------------------------------- encoders
class MLPEncoder(nn.Module):
    """MLP feature extractor: [B, in_dim] -> [B, out_dim] (ReLU after the last layer too) (notebook 03)."""

    def __init__(self, in_dim: int, hidden: int = 64, out_dim: int = 32, layers: int = 2):
        super().__init__()
        in_dim, hidden, out_dim = (checks.integer(v, k) for k, v in
                                   (("in_dim", in_dim), ("hidden", hidden), ("out_dim", out_dim)))
        self.net = nn.Sequential(mlp([in_dim] + [hidden] * (layers - 1) + [out_dim]), nn.ReLU())
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        checks.feature_widths((x,), (self.in_dim,), "MLPEncoder")
        return self.net(x)                                                # [B, out_dim]


class SmallCNN(nn.Module):
    """Four conv blocks + global average pool: [B, C_in, H, W] -> [B, out_dim] (notebook 03)."""

    def __init__(self, in_channels: int = 1, width: int = 32, out_dim: int = 64):
        super().__init__()
        chans = [in_channels, width, 2 * width, 2 * width, out_dim]
        blocks = []
        for i, (a, b) in enumerate(zip(chans[:-1], chans[1:])):
            blocks += [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
            if i < len(chans) - 2:
                blocks.append(nn.MaxPool2d(2))
        self.net = nn.Sequential(*blocks)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(dim=(2, 3))                               # [B, C, H, W] -> [B, out_dim]


# ----------------------------------------------------------------------------- fusion heads
class ConcatHead(nn.Module):
    """Linear layer on [z_1; ...; z_M]; modality m's logits use its column slice and 1/M of the bias (notebook 03)."""

    linear_fusion = True

    def __init__(self, dims: Sequence[int], num_classes: int):
        super().__init__()
        self.dims = list(dims)
        self.fc = nn.Linear(sum(dims), num_classes)

    def modality_logits(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        weights = self.fc.weight.split(self.dims, dim=1)                  # M x [C, d_m]
        bias = self.fc.bias / len(self.dims)
        return [z @ w.T + bias for z, w in zip(feats, weights)]           # M x [B, C]

    def forward(self, *feats: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat(feats, dim=1))                           # [B, C]


class SumHead(ConcatHead):
    """One linear layer per modality, logits added (the same function class as Concat) (notebook 03)."""

    def __init__(self, dims: Sequence[int], num_classes: int):
        nn.Module.__init__(self)
        self.dims = list(dims)
        self.fcs = nn.ModuleList([nn.Linear(d, num_classes) for d in dims])

    def modality_logits(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [fc(z) for fc, z in zip(self.fcs, feats)]

    def forward(self, *feats: torch.Tensor) -> torch.Tensor:
        return sum(self.modality_logits(feats))


class SharedHead(ConcatHead):
    """One linear layer shared by all modalities; fused logits = the sum, in training and at test (notebook 03)."""

    def __init__(self, dims: Sequence[int], num_classes: int):
        nn.Module.__init__(self)
        if len(set(dims)) != 1:
            raise ValueError(f"SharedHead needs equal feature sizes, got {list(dims)}.")
        self.dims = list(dims)
        self.fc = nn.Linear(dims[0], num_classes)

    def modality_logits(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [self.fc(z) for z in feats]

    def forward(self, *feats: torch.Tensor) -> torch.Tensor:
        return sum(self.modality_logits(feats))


class FiLMHead(nn.Module):
    """FiLM (Perez et al. 2018): modality 1 produces (gamma, beta) that modulate modality 2 (notebook 03)."""

    linear_fusion = False

    def __init__(self, dims: Sequence[int], num_classes: int):
        super().__init__()
        da, dv = dims
        self.film = nn.Linear(da, 2 * dv)
        self.fc = nn.Linear(dv, num_classes)

    def forward(self, za: torch.Tensor, zv: torch.Tensor) -> torch.Tensor:
        da, dv = self.film.in_features, self.fc.in_features
        if za.ndim != 2 or zv.ndim != 2 or za.shape[1] != da or zv.shape[1] != dv:
            raise ValueError(f"FiLMHead was built for features of widths ({da}, {dv}) and got {tuple(za.shape)} and "
                             f"{tuple(zv.shape)}: build it with dims=[{za.shape[-1]}, {zv.shape[-1]}] (the encoders' "
                             "output widths), or pass the features in the order (audio, visual).")
        gamma, beta = self.film(za).chunk(2, dim=1)                       # [B, dv] each
        return self.fc(gamma * zv + beta)                                 # [B, C]


class GatedHead(nn.Module):
    """Gated fusion (Kiela et al. 2018): sigmoid(W_a z_a) gates W_v z_v before the classifier (notebook 03)."""

    linear_fusion = False

    def __init__(self, dims: Sequence[int], num_classes: int, hidden: int = 64):
        super().__init__()
        da, dv = dims
        self.gate = nn.Linear(da, hidden)
        self.value = nn.Linear(dv, hidden)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, za: torch.Tensor, zv: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.sigmoid(self.gate(za)) * self.value(zv))    # [B, C]


class MLPHead(nn.Module):
    """Non-linear fusion: a one-hidden-layer MLP on the concatenated features (can model interactions) (notebook 03)."""

    linear_fusion = False

    def __init__(self, dims: Sequence[int], num_classes: int, hidden: int = 64):
        super().__init__()
        self.net = mlp([sum(dims), hidden, num_classes])

    def forward(self, *feats: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat(feats, dim=1))                          # [B, C]


class ConcatMSHHead(nn.Module):
    """Concat head + one linear head per modality for the unimodal losses (hubaak's `concat_msh`) (nb 07).

    Prediction uses the concat head; `modality_logits` come from the modality-specific heads, so they
    do not sum to the fused logits (TCMax then uses its pairwise form). MMPareto is built on it.
    """

    linear_fusion = False

    def __init__(self, dims: Sequence[int], num_classes: int):
        super().__init__()
        self.fc = nn.Linear(sum(dims), num_classes)
        self.fcs = nn.ModuleList([nn.Linear(d, num_classes) for d in dims])

    def modality_logits(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [fc(z) for fc, z in zip(self.fcs, feats)]                   # M x [B, C]

    def forward(self, *feats: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat(feats, dim=1))                           # [B, C]


HEADS = {"concat": ConcatHead, "sum": SumHead, "shared": SharedHead, "film": FiLMHead,
         "gated": GatedHead, "mlp": MLPHead, "concat_msh": ConcatMSHHead}


# ----------------------------------------------------------------------------- the classifier
@dataclass
class ModelOutput:
    """Features per modality, fused logits [B, C] and per-modality logits (M x [B, C]) (notebook 03)."""

    feats: list[torch.Tensor]
    logits: torch.Tensor
    modality_logits: list[torch.Tensor]


class MultimodalClassifier(nn.Module):
    """Encoders (one per modality) + a fusion head; prediction = argmax of the fused logits (notebook 03)."""

    def __init__(self, encoders: Sequence[nn.Module], head: nn.Module):
        super().__init__()
        self.encoders = nn.ModuleList(encoders)
        self.head = head

    @property
    def linear_fusion(self) -> bool:
        return bool(getattr(self.head, "linear_fusion", False))

    def modality_logits(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per-modality logits: the head's own (slices, msh heads) if it has them, else others zeroed."""
        if hasattr(self.head, "modality_logits"):
            return self.head.modality_logits(feats)
        out = []
        for m in range(len(feats)):
            masked = [z if k == m else torch.zeros_like(z) for k, z in enumerate(feats)]
            out.append(self.head(*masked))
        return out

    def forward(self, *xs: torch.Tensor) -> ModelOutput:
        if len(xs) != len(self.encoders):
            raise ValueError(f"model has {len(self.encoders)} encoders but got {len(xs)} inputs.")
        for m, (enc, x) in enumerate(zip(self.encoders, xs)):
            if hasattr(enc, "in_dim") and (x.ndim != 2 or x.shape[1] != enc.in_dim):
                raise ValueError(f"modality {m}: input of shape {tuple(x.shape)}, its encoder was built for "
                                 f"[B, {enc.in_dim}].")
        feats = [enc(x) for enc, x in zip(self.encoders, xs)]             # M x [B, d_m]
        return ModelOutput(feats=feats, logits=self.head(*feats), modality_logits=self.modality_logits(feats))


def make_model(encoders: Sequence[nn.Module], head: str, num_classes: int) -> MultimodalClassifier:
    """Wrap encoders (each with .out_dim) with a fusion head picked by name (see HEADS) (notebook 03)."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose from {sorted(HEADS)}.")
    num_classes = checks.integer(num_classes, "num_classes", minimum=2, hint="a classifier needs two classes")
    return MultimodalClassifier(encoders, HEADS[head]([e.out_dim for e in encoders], num_classes))


def mlp_pair_model(dims: Sequence[int], num_classes: int, head: str = "concat", hidden: int = 64, feat: int = 32,
                   seed: int = 0) -> MultimodalClassifier:
    """Two MLP encoders + a fusion head, initialised under `seed` (the toy problem; notebook 03)."""
    with seeded(seed):
        return make_model([MLPEncoder(d, hidden, feat) for d in dims], head, num_classes)


def cnn_pair_model(num_classes: int = 10, head: str = "concat", width: int = 16, feat: int = 64,
                   seed: int = 0) -> MultimodalClassifier:
    """Two small CNNs (spectrogram, image) + a fusion head, initialised under `seed` (AV digits; notebook 05)."""
    with seeded(seed):
        return make_model([SmallCNN(1, width, feat), SmallCNN(1, width, feat)], head, num_classes)


@torch.no_grad()
def encode(model: MultimodalClassifier, xs: Sequence[torch.Tensor], batch_size: int = 512) -> list[torch.Tensor]:
    """Frozen features of every modality: M x [N, d_m], without autograd (nothing flows back) (notebook 03)."""
    model.eval()
    device = next(model.parameters()).device
    feats = [[] for _ in xs]
    for start in range(0, xs[0].shape[0], batch_size):
        for m, (enc, x) in enumerate(zip(model.encoders, xs)):
            feats[m].append(enc(x[start:start + batch_size].to(device)).float())
    return [torch.cat(f) for f in feats]
