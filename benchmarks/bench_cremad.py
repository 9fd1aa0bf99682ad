"""CREMA-D training throughput (samples/s), end to end, two pipelines on the same ResNet-18 pair:

* per-item (the public code's style): a DataLoader whose __getitem__ decodes the .flv (3 frames +
  audio), resizes, computes the STFT, augments on the CPU; fp32 model.
* fast path (this project): the preprocessed cache held on the device, augmentation on the device,
  bf16 autocast + channels_last on CUDA (optionally torch.compile).

    python benchmarks/bench_cremad.py --device cuda --batch-size 64 --steps 30 [--compile]
    python benchmarks/bench_cremad.py --device cpu --batch-size 4 --frame-size 112 --steps 3   # smoke run

Only the 6 offline clips are needed (TCMAX_DATA_MIRROR); they are cycled to fill the batches, which
is fine for throughput. Shapes: audio 1 x 257 x 188, 3 frames of 3 x S x S (S = 224 by default).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from tcmax_lib.data import cremad as cd
from tcmax_lib.data import cremad_cache as cc
from tcmax_lib.hardware import device_name
from tcmax_lib.resnet import resnet_pair_model
from tcmax_lib.train import autocast


class PerItemDataset(torch.utils.data.Dataset):
    """Decode + preprocess one clip per item, as the public loaders do (no cache)."""

    def __init__(self, paths, length: int, size: int):
        self.paths, self.length, self.size = paths, length, size
        self.preset = cd.PRESETS["ogm"]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        path = self.paths[i % len(self.paths)]
        frames = cd.resize_frames(cd.decode_frames(path, 3, 1.0), self.size)       # uint8 [3, 3, S, S]
        frames = cc.augment_frames(frames[None])[0]                                  # CPU augmentation
        spec = cd.spectrogram(cd.decode_audio(path, 22050), self.preset).float()
        return spec, frames, cd.parse(path.stem)["label"]


def train_steps(model, batches, steps: int, device, bf16: bool, augment=None) -> float:
    """Run `steps` SGD steps (after 2 warm-up steps); return samples per second."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    gen = torch.Generator(device=device).manual_seed(0)
    seen, t0 = 0, None
    for step, (spec, frames, y) in enumerate(batches):
        if step == 2:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, seen = time.perf_counter(), 0
        spec, frames, y = spec.to(device, non_blocking=True), frames.to(device, non_blocking=True), y.to(device)
        if augment is not None:
            spec, frames = augment([spec, frames], gen)
        with autocast(device, bf16):
            out = model(spec, frames)
            loss = F.cross_entropy(out.logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += y.shape[0]
        if step == steps + 1:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--frame-size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    name = device_name(args.device)
    print(f"# CREMA-D training throughput; device: {name}; batch {args.batch_size}, frames {args.frame_size}px")
    clips = cd.subset("offline")
    paths = cd.download(clips, progress=False)
    n = args.batch_size * (args.steps + 3)

    # per-item pipeline, fp32
    loader = torch.utils.data.DataLoader(PerItemDataset(paths, n, args.frame_size), batch_size=args.batch_size,
                                         num_workers=args.workers, pin_memory=device.type == "cuda")
    model = resnet_pair_model().to(device)
    slow = train_steps(model, iter(loader), args.steps, device, bf16=False)
    print(f"{'per-item decoding, fp32':36s} {slow:9.1f} samples/s")

    # fast path: cache on the device, device augmentation, bf16 + channels_last on CUDA
    cache = cc.load_cache(cc.build_cache(clips, cd.with_size(cd.PRESETS["ogm"], args.frame_size), progress=False))
    reps = -(-n // len(clips))
    specs = cache["specs"].repeat(reps, 1, 1, 1)[:n].to(device)
    frames = cache["frames"].repeat(reps, 1, 1, 1, 1)[:n].to(device)
    labels = cache["labels"].repeat(reps)[:n].to(device)
    model = resnet_pair_model(channels_last=device.type == "cuda").to(device)
    if args.compile:
        model.encoders = torch.nn.ModuleList([torch.compile(e) for e in model.encoders])
    batches = ((specs[i:i + args.batch_size], frames[i:i + args.batch_size], labels[i:i + args.batch_size])
               for i in range(0, n, args.batch_size))
    fast = train_steps(model, batches, args.steps, device, bf16=device.type == "cuda",
                       augment=cc.augment_batch)
    label = "cache on device" + (", bf16 + channels_last" if device.type == "cuda" else "") + \
        (", compiled" if args.compile else "")
    print(f"{label:36s} {fast:9.1f} samples/s   ({fast / slow:.1f}x)")


if __name__ == "__main__":
    main()
