"""MNIST (LeCun, Cortes & Burges; CC BY-SA 3.0), verified on its decompressed bytes (notebook 05)."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from importlib import resources
from pathlib import Path

import torch

from .download import fetch, read_sha256sums

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _parse_idx(raw: bytes) -> torch.Tensor:
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return torch.frombuffer(bytearray(raw[4 + 4 * dims:]), dtype=torch.uint8).view(*shape)


def mnist(cache_dir: Path | None = None) -> dict[str, torch.Tensor]:
    """MNIST as uint8 tensors {train_x [60000, 28, 28], train_y, test_x, test_y}, verified on the raw bytes.

    Introduced in notebook 05.
    """
    with resources.as_file(resources.files("tcmax_lib.data") / "manifests" / "mnist_uncompressed.sha256") as path:
        manifest = read_sha256sums(path)
    out = {}
    for name in MNIST_FILES:
        def check(path: Path, name: str = name) -> None:
            try:
                raw = gzip.decompress(path.read_bytes())
            except (OSError, EOFError, zlib.error) as exc:
                raise ValueError(f"not a valid gzip file ({exc})") from exc
            if hashlib.sha256(raw).hexdigest() != manifest[name]:
                raise ValueError(f"decompressed SHA-256 mismatch (expected {manifest[name]})")

        gz = fetch(MNIST_URL + name + ".gz", sha256=None, dataset="mnist", filename=name + ".gz",
                   cache_dir=cache_dir, check=check)
        raw = gzip.decompress(gz.read_bytes())
        split = "train" if name.startswith("train") else "test"
        out[f"{split}_{'x' if 'images' in name else 'y'}"] = _parse_idx(raw)
    return out
