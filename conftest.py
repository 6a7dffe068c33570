"""Root conftest: no network at test time, and quiet tokenizers in worker processes.

The experiment plugin itself is registered through the `pytest11` entry point
(steering_reliability.pytest_plugin), so it works from any directory.
"""

from __future__ import annotations

import os

# Set before transformers/huggingface_hub are imported: a hub id that is not cached fails fast
# with a clear message instead of trying the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
