"""CREMA-D experiments: on-device augmentation, ResNet-18 pair, training runs, results with 95 % CIs, CLI.

    python -m tcmax_lib.cremad download   --subset teaching
    python -m tcmax_lib.cremad preprocess --subset all --preset ogm --workers 8
    python -m tcmax_lib.cremad train --method tcmax --epochs 100 --seeds 3 --subset all --split ogm
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from .data import cremad as cd
from .diagnostics import report
from .methods import make_method
from .models import make_model
from .resnet import AudioResNet, VisualResNet
from .train import TrainConfig, fit

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def augment_frames(frames: torch.Tensor, generator: torch.Generator | None = None,
                   scale: tuple[float, float] = (0.08, 1.0),
                   ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """RandomResizedCrop + horizontal flip, independently per frame, on the device: uint8 -> float [0, 1]."""
    b, k, c, h, w = frames.shape
    n = b * k
    dev = frames.device
    rand = torch.rand(n, 5, generator=generator, device=generator.device if generator else "cpu").to(dev)
    area = scale[0] + (scale[1] - scale[0]) * rand[:, 0]
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * rand[:, 1]
    aspect = torch.exp(log_r)
    sw = torch.sqrt(area * aspect).clamp(max=1.0)                         # crop width / image width
    sh = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (rand[:, 2] * 2 - 1) * (1 - sw)                                  # crop centre in [-1, 1] coordinates
    cy = (rand[:, 3] * 2 - 1) * (1 - sh)
    flip = torch.where(rand[:, 4] < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = sw * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = sh, cy
    x = frames.reshape(n, c, h, w).float() / 255.0                        # [B*K, 3, H, W]
    grid = F.affine_grid(theta, (n, c, h, w), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", align_corners=False).view(b, k, c, h, w)


def make_augment(seed: int = 0, device: str | torch.device = "cpu"):
    """Trainer hook: augment the frames of a batch [spec, frames] with a seeded generator on the device."""
    gen = torch.Generator(device=torch.device(device)).manual_seed(seed)

    def augment(batch: list[torch.Tensor]) -> list[torch.Tensor]:
        spec, frames = batch
        return [spec, augment_frames(frames, gen)]
    return augment


def cremad_model(head: str = "concat", seed: int = 0):
    """ResNet-18 audio and visual encoders (from scratch) + a fusion head over the 6 emotions."""
    torch.manual_seed(seed)
    return make_model([AudioResNet(), VisualResNet()], head, len(cd.EMOTIONS))


def prepare(subset: str = "offline", preset: str = "ogm", split: str = "ogm", frame_size: int | None = None,
            cache_dir: Path | None = None, workers: int | None = None, seed: int = 0, progress: bool = True) -> dict:
    """Download + preprocess (cached) + split: {split: (specs fp16, frames uint8, labels)} plus metadata."""
    p = cd.PRESETS[preset] if frame_size is None else cd.with_size(cd.PRESETS[preset], frame_size)
    clips = cd.drop_bad(cd.subset(subset))
    cache = cd.load_cache(cd.build_cache(clips, p, cache_dir, workers, progress))
    idx = cd.split_indices(cache["clips"], split, seed=seed)
    out = {k: (cache["specs"][i], cache["frames"][i], cache["labels"][i]) for k, i in idx.items()}
    out["meta"] = {"preset": p, "clips": {k: [cache["clips"][j] for j in i.tolist()] for k, i in idx.items()}}
    return out


def run(method: str, data: dict, epochs: int = 100, seed: int = 0, lr: float = 1e-3, batch_size: int = 32,
        lr_step: int | None = 70, optimizer: str = "sgd", device: str | torch.device = "cpu", head: str = "concat",
        compile: bool = False, progress: bool = False):
    """One training run with the paper's protocol (SGD 0.9, wd 1e-4, StepLR); returns (history, metrics)."""
    device = torch.device(device)
    model = cremad_model(head, seed)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if compile:
        model.encoders = torch.nn.ModuleList([torch.compile(e) for e in model.encoders])
    cfg = TrainConfig(epochs=epochs, batch_size=min(batch_size, len(data["train"][2])), lr=lr, optimizer=optimizer,
                      lr_step=lr_step, seed=seed, device=device, progress=progress,
                      augment=make_augment(seed, device))
    meth = make_method(method)
    model, hist = fit(model, meth, data["train"], data["val"], cfg)
    metrics = report(model, meth, data["train"], data["test"], len(cd.EMOTIONS))
    metrics.pop("pred")
    metrics["best_epoch"] = int(hist["best_epoch"].iloc[0])
    return hist, metrics


def summarize(results: pd.DataFrame, cols=("acc", "acc_audio_head", "acc_visual_head")) -> pd.DataFrame:
    """Mean and 95 % t-interval half-width over seeds, per method."""
    rows = {}
    for method, g in results.groupby("method", sort=False):
        n = len(g)
        row = {}
        for c in cols:
            half = T975.get(n - 1, 1.96) * g[c].std(ddof=1) / math.sqrt(n) if n > 1 else float("nan")
            row[c] = f"{100 * g[c].mean():.1f} ± {100 * half:.1f}" if n > 1 else f"{100 * g[c].mean():.1f}"
        rows[method] = row
    return pd.DataFrame(rows).T


def main(argv: list[str] | None = None) -> None:
    """Command line: download / preprocess / train."""
    ap = argparse.ArgumentParser(prog="python -m tcmax_lib.cremad", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["download", "preprocess", "train"])
    ap.add_argument("--subset", default="offline", choices=["offline", "teaching", "actors20", "all"])
    ap.add_argument("--preset", default="ogm", choices=sorted(cd.PRESETS))
    ap.add_argument("--split", default="ogm", choices=["ogm", "speaker"])
    ap.add_argument("--frame-size", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--method", default="tcmax", help="joint, unimodal, ogm_ge, tcmax, or a comma list")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-step", type=int, default=70)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--out", default="build/cremad_results.csv")
    args = ap.parse_args(argv)
    if args.command == "download":
        cd.download(cd.subset(args.subset))
        return
    data = prepare(args.subset, args.preset, args.split, args.frame_size, workers=args.workers)
    if args.command == "preprocess":
        print({k: len(v[2]) for k, v in data.items() if k != "meta"})
        return
    from .runtime import pick_device

    device = pick_device(args.device)
    rows = []
    seeds = [0, 3141, 5926, *range(1, 100)][: args.seeds]  # the paper's scripts: 0, 3141, 5926
    for method in args.method.split(","):
        for seed in seeds:
            hist, metrics = run(method, data, args.epochs, seed, args.lr, args.batch_size, args.lr_step,
                                device=device, compile=args.compile, progress=True)
            rows.append({"method": method, "seed": seed, **metrics})
            print(f"{method} seed {seed}: test acc {metrics['acc']:.4f} (best val epoch {metrics['best_epoch']})")
    results = pd.DataFrame(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    results.to_csv(args.out, index=False)
    print(summarize(results).to_string())


if __name__ == "__main__":
    main()
