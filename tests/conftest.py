"""Shared test settings: Hypothesis profiles (CI sets `CI`, which selects the `ci` profile),
torch thread pinning, and the fixtures several test modules share."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def _pin_threads() -> None:
    """Each xdist worker gets cores // workers torch threads (two workers on two cores otherwise
    fight over four threads)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


_pin_threads()


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny ops on a busy 2-core machine are ~100x slower with 2 threads than with 1."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def smollm2() -> Any:
    """The embedded default model, loaded once per worker. Read-only: tests must not modify it."""
    from steering_reliability.models import load

    return load("smollm2-135m-instruct")
