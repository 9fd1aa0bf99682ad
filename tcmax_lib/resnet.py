"""ResNet-18 encoders for CREMA-D (trained from scratch, as in OGM-GE and TCMax): no torchvision needed.

Audio: a 1-channel spectrogram [B, 1, F, T] -> 512-d. Visual: frames [B, K, 3, H, W] (uint8 or float)
are encoded as a batch of K*B images and averaged over time and space -> 512-d.
"""

from __future__ import annotations

import torch
from torch import nn

from .models import make_model
from .runtime import seeded

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (1x1 projection when the shape changes) (notebook 06)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))                         # [B, c_out, H/s, W/s]
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    """ResNet-18 trunk (He et al. 2016) with a configurable stem: [B, C, H, W] -> [B, 512, H/32, W/32] (notebook 06)."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        layers, c = [], 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(c, c_out, stride), BasicBlock(c_out, c_out)]
            c = c_out
        self.layers = nn.Sequential(*layers)
        for m in self.modules():  # the OGM-GE initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x))                                  # [B, 512, h, w]


class AudioResNet(nn.Module):
    """Spectrogram encoder: [B, 1, F, T] -> [B, 512] (notebook 06)."""

    out_dim = 512

    def __init__(self):
        super().__init__()
        self.trunk = ResNet18(1)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.trunk(spec.float()).mean(dim=(2, 3))                  # [B, 512, h, w] -> [B, 512]


class VisualResNet(nn.Module):
    """Frame encoder: [B, K, 3, H, W] (uint8 0-255 or float in [0, 1]) -> [B, 512], mean over K frames (notebook 06)."""

    out_dim = 512

    def __init__(self):
        super().__init__()
        self.trunk = ResNet18(3)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, k = frames.shape[:2]
        x = frames.flatten(0, 1)                                          # [B*K, 3, H, W]
        x = x.float() / 255.0 if frames.dtype == torch.uint8 else x.float()
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        h = self.trunk(x)                                                 # [B*K, 512, h, w]
        return h.view(b, k, *h.shape[1:]).mean(dim=(1, 3, 4))             # [B, 512]


def resnet_pair_model(num_classes: int = 6, head: str = "concat", seed: int = 0,
                      channels_last: bool = False) -> nn.Module:
    """ResNet-18 audio + visual encoders (from scratch) and a fusion head, initialised under `seed` (notebook 06).

    `channels_last=True` (use it on CUDA) stores the conv weights in the layout cuDNN's fastest kernels use.
    """
    with seeded(seed):
        model = make_model([AudioResNet(), VisualResNet()], head, num_classes)
    return model.to(memory_format=torch.channels_last) if channels_last else model
