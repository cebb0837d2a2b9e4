"""Where torch runs and in which precision: one place for every stage.

Ground floor: imports no other fertransfer module, and torch only inside its functions, so that
importing it costs nothing until a device is asked for.
"""

from __future__ import annotations

from typing import Any


def resolve_device(name: str, local_rank: int = 0) -> Any:
    """`[run] device` as a torch.device: auto = CUDA when present, else CPU; cuda = cuda:<local_rank>.
    Asking for CUDA where there is none is a ValueError naming the setting."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"[run].device is '{name}' but CUDA is not available here (use auto or cpu)")
    if name == "cuda":
        name = f"cuda:{local_rank}"
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AMX tiles or AVX512-BF16): there bf16 autocast
    makes CycleGAN and CNN training steps about 1.4-2x faster (docs/benchmarks.md); elsewhere it is
    many times slower."""
    import torch

    checks = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(check() for check in checks if check is not None)


def use_bf16(setting: str, device: Any) -> bool:
    """The `bf16` setting (auto, on, off; or the cyclegan stage's `precision`: auto, bf16, fp32) on
    `device`: auto is bf16 on GPUs that have it and on CPUs with native bf16 (AMX or AVX512-BF16:
    1.75-2x for the CNN at width 32, docs/benchmarks.md); without it the CPU emulates bf16, many
    times slower."""
    setting = {"bf16": "on", "fp32": "off"}.get(setting, setting)
    if setting in ("on", "off"):
        return setting == "on"
    if setting != "auto":
        raise ValueError(f"bf16 must be auto, on or off, got {setting!r}")
    if device.type == "cuda":
        import torch

        return torch.cuda.is_bf16_supported()
    return cpu_has_native_bf16()


__all__ = ["cpu_has_native_bf16", "resolve_device", "use_bf16"]
