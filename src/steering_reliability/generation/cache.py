"""The generation cache: a batch of generations computed once across processes and runs, named by
the hash of everything it depends on, published atomically under a file lock."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from steering_reliability.atomic import atomic_write
from steering_reliability.generation.decode import Generation, generate
from steering_reliability.models.loader import LoadedModel, default_cache_dir

GENERATION_CACHE_VERSION = 2  # bump when the engine's numerics change


@dataclass(frozen=True)
class GenerationRequest:
    """Everything a batch of generations depends on (its hash names the cache file)."""

    model_sha256: str
    prompt_ids: tuple[str, ...]
    prompts: tuple[str, ...]
    system_prompt: str | None
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int
    steering: str  # a readable description of the steering ("none" for the baseline)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}
        d["extra"] = dict(self.extra)
        d["version"] = GENERATION_CACHE_VERSION
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.blake2b(blob.encode(), digest_size=12).hexdigest()


def cached_generate(
    model: LoadedModel,
    request: GenerationRequest,
    *,
    steerings: Sequence[Any] = (),
    batch_size: int = 64,
    track_token_ids: Sequence[int] | None = None,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> list[Any]:
    """generate() once across processes: content-addressed file under a lock, published atomically.

    Used for the alpha = 0 baseline, which every case of every worker compares against.
    """
    folder = (cache_dir or default_cache_dir()) / "generations"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{request.key()}.pt"

    def read() -> list[Any] | None:
        if not path.exists():
            return None
        rows: list[dict[str, Any]] = torch.load(path, weights_only=True)
        return [Generation(**_untuple(r, back=True)) for r in rows]

    found = read()
    if found is not None:
        return found
    with FileLock(str(path) + ".lock"):
        found = read()
        if found is not None:
            return found
        gens = generate(
            model,
            list(request.prompts),
            prompt_ids=list(request.prompt_ids),
            max_new_tokens=request.max_new_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            steerings=steerings,
            system_prompt=request.system_prompt,
            batch_size=batch_size,
            track_token_ids=track_token_ids,
            progress=progress,
        )
        atomic_write(path, lambda fh: torch.save([_untuple(g.__dict__) for g in gens], fh))
        return gens


def _untuple(d: Mapping[str, Any], *, back: bool = False) -> dict[str, Any]:
    """Generation fields <-> plain lists (weights_only torch.load reads lists, not tuples)."""
    if back:
        return {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
