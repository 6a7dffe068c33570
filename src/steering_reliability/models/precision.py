"""Which floating-point type the model runs in: `model.dtype: auto | float32 | bfloat16`.

bfloat16 matmuls run natively on CUDA GPUs that support them and on CPUs with AVX-512 BF16 or
AMX; elsewhere torch emulates them, several times slower than fp32. So `auto` can only mean
bf16 where the hardware has it, detected at run time. Whether `auto` then *picks* bf16 is a
research decision, not a speed one: bf16 changes outputs, and the suite uses it by default only
if the fp32/bf16 agreement report (scripts/precision_agreement.py, docs/precision.md) shows the
conclusions do not depend on it. `AUTO_PREFERS_BF16` records that decision.
"""

from __future__ import annotations

from pathlib import Path

from steering_reliability.errors import ConfigError

# The values `model.dtype` and `model.device` accept (the config reads them from here).
DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")

# Set from the measured agreement (docs/precision.md): False keeps fp32 the default and bf16
# opt-in, even where the hardware has it.
AUTO_PREFERS_BF16 = False


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def native_bf16(device: str = "cpu") -> bool:
    """Whether `device` multiplies bf16 matrices in hardware (not emulated)."""
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, probe, None)
        if callable(fn):
            try:
                if fn():
                    return True
            except RuntimeError:
                pass
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def resolve_dtype(requested: str, device: str = "cpu", *, native: bool | None = None) -> str:
    """'float32' or 'bfloat16' for a requested `model.dtype` on `device`.

    auto -> bfloat16 only where the hardware has native bf16 *and* AUTO_PREFERS_BF16; otherwise
    float32. An explicit float32 / bfloat16 is kept (bf16 works anywhere, if slowly).
    """
    if requested not in DTYPES:
        raise ValueError(f"dtype {requested!r} is not one of {DTYPES}")
    if requested != "auto":
        return requested
    has = native_bf16(device) if native is None else native
    return "bfloat16" if has and AUTO_PREFERS_BF16 else "float32"


def resolve_device(requested: str) -> str:
    """'cpu' or 'cuda' for a requested `model.device` ('auto': cuda when available). Asking for
    cuda where torch sees no GPU is refused here, before any model loads."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            "no CUDA device: torch sees no GPU on this machine",
            field="model.device",
            value=requested,
            expected="auto or cpu here (or install a CUDA build of torch: scripts/gpu_check.sh)",
        )
    return requested
