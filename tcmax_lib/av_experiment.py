"""Training runs on AV digits (notebook 05): model, default difficulty, one call per run."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from .data.avdigits import AudioFeatures, AVDigitsConfig
from .diagnostics import confusion_matrix, report
from .methods import make_method
from .models import SmallCNN, make_model
from .train import TrainConfig, fit


def default_av_config(seed: int = 0) -> AVDigitsConfig:
    """The series' AV-digits difficulty: speech in white noise at 0 dB SNR, digits with pixel noise 0.3.

    Images are then the fast, dominant modality (~95 % alone) and speech the slow, weaker one (~80 %).
    """
    return AVDigitsConfig(audio=AudioFeatures(snr_db=0.0), image_noise=0.3, occlusion=0.0, seed=seed)


def av_model(head: str = "concat", width: int = 16, feat: int = 64, seed: int = 0):
    """Two small CNNs (spectrogram, image) and a fusion head, seeded."""
    torch.manual_seed(seed)
    return make_model([SmallCNN(1, width, feat), SmallCNN(1, width, feat)], head, 10)


@dataclass
class AVRun:
    """Trained model, epoch history and test metrics of one run."""

    model: torch.nn.Module
    history: pd.DataFrame
    metrics: dict


def run_av(method: str, data: dict, epochs: int = 20, seed: int = 0, head: str = "concat", lr: float = 1e-3,
           batch_size: int = 64, device: str | torch.device = "cpu", method_kw: dict | None = None,
           progress: bool = False, max_train: int | None = None) -> AVRun:
    """Train `method` on the AV-digits splits; evaluate the restored best-validation model on test once."""
    train = data["train"] if max_train is None else tuple(t[:max_train] for t in data["train"])
    model = av_model(head, seed=seed)
    meth = make_method(method, **(method_kw or {}))
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device, progress=progress)
    model, hist = fit(model, meth, train, data["val"], cfg)
    metrics = report(model, meth, train, data["test"], 10)
    pred = metrics.pop("pred")
    metrics["confusion"] = confusion_matrix(pred, data["test"][2], 10)
    metrics["best_epoch"] = int(hist["best_epoch"].iloc[0])
    return AVRun(model=model, history=hist, metrics=metrics)
