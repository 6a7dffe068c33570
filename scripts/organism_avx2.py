"""Build the model organism as a CPU without native bf16 and without AVX-512 would: an estimate
of `make organism` on the AVX2 kind of CPU, measured on a newer one.

The instruction set is capped at AVX2 for ATen (ATEN_CPU_CAPABILITY), MKL
(MKL_ENABLE_INSTRUCTIONS) and oneDNN (ONEDNN_MAX_CPU_ISA), set before torch loads, and the
native-bf16 probe answers no, so training runs in fp32 as it would there. The clock, caches and
memory stay this machine's, so it estimates, not measures, the older CPU. The organism's key
includes the training precision and the kernel family (ATen's and MKL's instruction sets among
them), so this builds (and caches) an organism of its own beside this machine's; point
STEERING_RELIABILITY_CACHE at an empty folder to time a cold build.

    .venv/bin/python scripts/organism_avx2.py --accept-weak    # then read the card's times
    .venv/bin/python scripts/organism_avx2.py --matmul         # why it trains in fp32 there

`--matmul` times, under the same cap, the forward and backward of one of the organism's MLP
halves (576 -> 1536 -> 576, 600 tokens) in fp32 and under bf16 autocast, side by side: without
native bf16 the autocast path is far slower than fp32, which is why
`studies.organism.train.training_precision` trains in fp32 on such a CPU.
"""

from __future__ import annotations

import os
import sys

os.environ.update(
    ATEN_CPU_CAPABILITY="avx2", MKL_ENABLE_INSTRUCTIONS="AVX2", ONEDNN_MAX_CPU_ISA="AVX2"
)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def matmul_ratio(repeats: int = 20) -> tuple[float, float]:
    """Best-of-3 seconds for `repeats` forward+backward passes, (fp32, bf16 autocast)."""
    import time

    import torch

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(576, 1536), torch.nn.Linear(1536, 576))
    x = torch.randn(600, 576, requires_grad=True)

    def once(autocast: bool) -> float:
        t0 = time.perf_counter()
        for _ in range(repeats):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                y = mlp(x)
            y.float().sum().backward()
        return time.perf_counter() - t0

    once(False), once(True)  # warm-up
    return min(once(False) for _ in range(3)), min(once(True) for _ in range(3))


def main(argv: list[str]) -> int:
    import torch

    from steering_reliability.studies.organism import train
    from steering_reliability.studies.organism.__main__ import main as organism_main

    train.native_bf16 = lambda device="cpu": False  # as on a CPU without it
    print(f"instruction set: {torch.backends.cpu.get_cpu_capability()}; native bf16: no")
    if "--matmul" in argv:  # the microbenchmark alone: nothing is built
        fp32, bf16 = matmul_ratio()
        print(f"fp32 {fp32:.2f} s, bf16 autocast {bf16:.2f} s: bf16 takes {bf16 / fp32:.1f}x fp32")
        return 0
    return organism_main(["smollm2-135m-refusal", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
