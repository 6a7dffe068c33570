"""Build the model organism as a CPU without native bf16 and without AVX-512 would: an estimate
of `make organism` on the AVX2 kind of CPU, measured on a newer one.

The instruction set is capped at AVX2 for ATen (ATEN_CPU_CAPABILITY), MKL
(MKL_ENABLE_INSTRUCTIONS) and oneDNN (ONEDNN_MAX_CPU_ISA), set before torch loads, and the
native-bf16 probe answers no, so training runs in fp32 as it would there. The clock, caches and
memory stay this machine's, so it estimates, not measures, the older CPU. The organism's key
includes the training precision, so this builds (and caches) the fp32 organism beside the bf16
one; point STEERING_RELIABILITY_CACHE at an empty folder to time a cold build.

    .venv/bin/python scripts/organism_avx2.py --accept-weak    # then read the card's times
"""

from __future__ import annotations

import os
import sys

os.environ.update(
    ATEN_CPU_CAPABILITY="avx2", MKL_ENABLE_INSTRUCTIONS="AVX2", ONEDNN_MAX_CPU_ISA="AVX2"
)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str]) -> int:
    import torch

    from steering_reliability.models import precision
    from steering_reliability.organism import main as organism_main

    precision.native_bf16 = lambda device="cpu": False  # as on a CPU without it
    print(f"instruction set: {torch.backends.cpu.get_cpu_capability()}; native bf16: no")
    return organism_main(["smollm2-135m-refusal", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
