"""Models: offline loading of embedded and user models, prompt formatting, a tiny test model."""

from __future__ import annotations

from steering_reliability.models.formatting import (
    PLAIN_TEMPLATE,
    encode_prompt,
    format_prompt,
    prompt_format,
)
from steering_reliability.models.loader import (
    LoadedModel,
    ModelInfo,
    boot_bridge,
    default_cache_dir,
    load,
)
from steering_reliability.models.registry import DEFAULT_MODEL, EMBEDDED
from steering_reliability.models.tiny import tiny_model, tiny_tokenizer

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED",
    "PLAIN_TEMPLATE",
    "LoadedModel",
    "ModelInfo",
    "boot_bridge",
    "default_cache_dir",
    "encode_prompt",
    "format_prompt",
    "load",
    "prompt_format",
    "tiny_model",
    "tiny_tokenizer",
]
