"""Batched, left-padded, KV-cached generation under steering hooks; per-prompt seeds.

Runs on the plain HF model (`LoadedModel.hf_model`, see models.sites) with its own decode
loop. What makes it fast on a CPU: the chat template's shared prefix (system prompt) is computed
once and its KV reused by every row; prompts are sorted by length into batches and prefilled in
chunks of similar length; only the last position is unembedded in prefill; K/V live in
preallocated buffers (no per-step concatenation); finished rows are dropped from the batch.
Sampling draws from one torch.Generator per prompt, seeded from (seed, prompt id), so a prompt's
output does not depend on batch size, order or worker.
"""

from __future__ import annotations

from steering_reliability.generation.decode import Generation, generate, next_token_logits
from steering_reliability.generation.forced import TeacherForced, teacher_forced_scores
from steering_reliability.generation.runtime import eos_ids, prompt_seed
from steering_reliability.models import encode_prompt as encode

__all__ = [
    "Generation",
    "TeacherForced",
    "encode",
    "eos_ids",
    "generate",
    "next_token_logits",
    "prompt_seed",
    "teacher_forced_scores",
]
