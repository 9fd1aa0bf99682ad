"""What machine this is: CPU model, the CPU's bf16 kind, device names for reports (notebooks 00-01).

Speed figures in benchmarks/ and results/ name the CPU kind, since the precision policy's gains differ
between a CPU with AMX, one with AVX512-BF16 only, and one without native bf16.
"""

from __future__ import annotations

from pathlib import Path

import torch


def cpu_bf16_support() -> str | None:
    """Name of this CPU's native bf16 matmul instructions ('AMX-BF16', 'AVX512-BF16') as torch detects them, else None.

    Asks torch's own CPU-feature detection (cpuinfo), never the model name, and requires oneDNN (mkldnn),
    the library that runs bf16 matmuls and convolutions on CPU. Introduced in notebook 01.
    """
    cpu = getattr(torch, "cpu", None)
    if cpu is None or not torch.backends.mkldnn.is_available():
        return None
    amx = getattr(cpu, "_is_amx_tile_supported", None)
    avx = getattr(cpu, "_is_avx512_bf16_supported", None)
    if avx is not None and avx():
        return "AMX-BF16" if amx is not None and amx() else "AVX512-BF16"
    return None


def cpu_kind() -> str:
    """This CPU's bf16 kind for reports: 'AMX-BF16', 'AVX512-BF16, no AMX' or 'no native bf16' (notebook 01).

    Speed figures (benchmarks/, results/) name it, since the precision policy's gains differ between kinds.
    """
    return {"AMX-BF16": "AMX-BF16", "AVX512-BF16": "AVX512-BF16, no AMX"}.get(cpu_bf16_support() or "",
                                                                              "no native bf16")


def device_name(device: str | torch.device) -> str:
    """Human-readable name of a device for reports: the GPU model, or the CPU with its bf16 kind and thread count
    (notebook 00)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"CPU {cpu_model()} ({cpu_kind()}), {torch.get_num_threads()} threads"
    return device.type.upper()


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux) or platform, '' when unknown (notebook 00)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor()
