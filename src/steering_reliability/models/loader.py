"""load(name) -> LoadedModel: a TransformerBridge over an HF model, offline, with a weight cache.

GGUF dequantisation (~30 s) and tokenizer conversion (~10 s) happen once per weights file; the
fp32 result is saved as safetensors in a content-addressed folder (published atomically under a
file lock), so every later process loads in about a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steering_reliability.atomic import atomic_write_bytes, file_sha256, publish_dir_once
from steering_reliability.errors import ModelLoadError, suggest
from steering_reliability.models.formatting import prompt_format
from steering_reliability.models.precision import resolve_device, resolve_dtype
from steering_reliability.models.registry import DEFAULT_MODEL, EMBEDDED, ORGANISMS, EmbeddedModel
from steering_reliability.models.sites import shadow_tree
from steering_reliability.paths import REPO_ROOT
from steering_reliability.timing import timed

CACHE_FORMAT = 1  # bump when the cached layout changes


def default_cache_dir() -> Path:
    """artifacts/cache under the repo, or $STEERING_RELIABILITY_CACHE."""
    env = os.environ.get("STEERING_RELIABILITY_CACHE")
    if env:
        return Path(env)
    return REPO_ROOT / "artifacts" / "cache"


@dataclass(frozen=True)
class ModelInfo:
    """What the rest of the suite needs to know about a loaded model."""

    name: str
    source: str  # embedded:<name>, gguf:<path>, hub:<id>, dir:<path>
    n_layers: int
    d_model: int
    n_ctx: int
    vocab_size: int
    weights_sha256: str
    prompt_format: str  # "chat" or "plain"
    load_seconds: float
    dtype: str = "float32"
    device: str = "cpu"


@dataclass(frozen=True)
class LoadedModel:
    """A plain HF model, a bridge over the same tensors (hook names, run_with_cache), tokenizer, info.

    Read-only by convention: session fixtures share it across tests; never edit its weights.
    """

    bridge: Any
    hf_model: Any
    tokenizer: Any
    info: ModelInfo
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def _file_digest(path: Path, cache_dir: Path) -> str:
    """sha256 of a weights file, memoised by (path, size, mtime) so reloads skip the read."""
    st = path.stat()
    memo = (
        cache_dir
        / "sha256"
        / (hashlib.blake2b(str(path.resolve()).encode(), digest_size=8).hexdigest() + ".json")
    )
    key = {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        saved = json.loads(memo.read_text())
        if saved.get("key") == key:
            return str(saved["sha256"])
    except (OSError, ValueError):
        pass
    digest = file_sha256(path)
    atomic_write_bytes(memo, json.dumps({"key": key, "sha256": digest}).encode())
    return digest


def _dequantise_to(gguf: Path, out_dir: Path, architecture: str | None) -> None:
    """GGUF -> fp32 safetensors + tokenizer + config in out_dir (a fresh temp folder)."""
    import torch
    from safetensors.torch import save_model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": gguf.name}
    tok = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    config = AutoConfig.from_pretrained(gguf.parent, **kwargs)
    if architecture and not getattr(config, "architectures", None):
        config.architectures = [architecture]
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, config=config, dtype=torch.float32, **kwargs
    )
    # save_pretrained refuses GGUF-loaded models; write the pieces ourselves.
    model.config.save_pretrained(out_dir)
    model.generation_config.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    save_model(model, str(out_dir / "model.safetensors"))


def _cached_fp32_dir(gguf: Path, digest: str, cache_dir: Path, architecture: str | None) -> Path:
    """The content-addressed fp32 copy of a GGUF file, creating it once across processes."""

    def fill(tmp: Path) -> None:
        _dequantise_to(gguf, tmp, architecture)
        (tmp / "source.json").write_text(json.dumps({"gguf": str(gguf), "sha256": digest}))

    final = cache_dir / "models" / f"{digest[:16]}-v{CACHE_FORMAT}"
    return publish_dir_once(final, fill, marker="model.safetensors")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def check_model_name(name: str) -> None:
    """Refuse, without loading anything, a model name `load` could not resolve: not embedded,
    not an existing .gguf file or folder, and not a hub id (owner/name) in the local cache
    while offline. Raises ModelLoadError with the same message `load` would give."""
    if name in EMBEDDED or name in ORGANISMS:
        return
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.exists():
            raise ModelLoadError(f"GGUF file not found: {path}")
        return
    if path.is_dir():
        return
    if "/" not in name:
        raise ModelLoadError(
            f"unknown model {name!r}: not an embedded model or organism, a .gguf file, a local "
            f"directory or a hub id (owner/name); {suggest(name, [*EMBEDDED, *ORGANISMS])}"
        )
    if _offline():
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name, "config.json"), str):
            raise ModelLoadError(
                f"hub model {name!r} is not in the local Hugging Face cache and the hub cannot "
                f"be reached (HF_HUB_OFFLINE=1). Use an embedded model instead: "
                f"{', '.join(EMBEDDED)}; or download it on a connected machine first."
            )


def _resolve(name: str, cache_dir: Path) -> tuple[Path, str, str, str, str | None]:
    """name -> (hf directory, hub id for the bridge, source tag, weights sha256, architecture)."""
    entry: EmbeddedModel | None = EMBEDDED.get(name)
    if entry is not None:
        gguf = entry.locate(cache_dir)
        digest = _file_digest(gguf, cache_dir)
        return (
            _cached_fp32_dir(gguf, digest, cache_dir, entry.architecture),
            entry.hub_id,
            f"embedded:{name}",
            digest,
            entry.architecture,
        )
    organism = ORGANISMS.get(name)
    if organism is not None:
        folder = organism_folder(name, cache_dir)
        digest = _resolve(str(folder), cache_dir)[3]  # as a model folder: the card's hash
        return folder, EMBEDDED[organism.base].hub_id, f"organism:{name}", digest, None
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.exists():
            raise ModelLoadError(f"GGUF file not found: {path}")
        digest = _file_digest(path, cache_dir)
        fp32 = _cached_fp32_dir(path, digest, cache_dir, None)
        return fp32, str(fp32), f"gguf:{path}", digest, None
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        if not files:
            raise ModelLoadError(f"{path} holds no *.safetensors or *.bin weights")
        h = hashlib.sha256()
        for f in files:
            h.update(_file_digest(f, cache_dir).encode())
        return path, str(path), f"dir:{path}", h.hexdigest(), None
    if "/" not in name:
        check_model_name(name)  # raises: the unknown-name message
    try:
        from huggingface_hub import snapshot_download

        local = Path(
            snapshot_download(
                name,
                local_files_only=_offline(),
                allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"],
            )
        )
    except Exception as exc:
        raise ModelLoadError(
            f"hub model {name!r} is not in the local Hugging Face cache and the hub cannot be reached "
            f"({'HF_HUB_OFFLINE=1' if _offline() else type(exc).__name__}). Use an embedded model instead: "
            f"{', '.join(EMBEDDED)}; or download it on a connected machine first."
        ) from exc
    hf_dir, _, _, digest, _ = _resolve(str(local), cache_dir)
    return hf_dir, name, f"hub:{name}", digest, None


def card_of(model: Any) -> dict[str, Any] | None:
    """The card of a loaded model organism (LoadedModel.extra names it); None for other models."""
    path = model.extra.get("card")
    return None if path is None else json.loads(Path(path).read_text(encoding="utf-8"))


def organism_pointer(name: str, cache_dir: Path) -> Path:
    """The file that names the folder of the organism `name` built last for its current recipe
    (written by the organism study after each build or cache hit)."""
    return cache_dir / "models" / f"organism-{name}.current.json"


def organism_folder(name: str, cache_dir: Path) -> Path:
    """The folder of a built, usable model organism. The loader only locates it: building is the
    organism study's (`make organism`; an experiment whose config names it builds it first)."""
    pointer = organism_pointer(name, cache_dir)
    try:
        folder = cache_dir / "models" / json.loads(pointer.read_text(encoding="utf-8"))["folder"]
        card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        raise ModelLoadError(
            f"the model organism {name} is not built in {cache_dir}: run `make organism "
            f"ORGANISM={name}` first (an experiment whose config names it builds it itself)"
        ) from None
    if not card.get("accepted") and not card.get("accepted_weak"):
        raise ModelLoadError(
            f"the model organism {name} misses its acceptance targets (card: {folder / 'card.md'})."
            " To use it anyway: make organism ORGANISM_ARGS=--accept-weak"
        )
    return folder


def weights_sha256(name: str, cache_dir: Path) -> str:
    """The weights hash `load(name)` would record, without loading the model (the first call
    for a GGUF file still creates its fp32 copy)."""
    return _resolve(name, cache_dir)[3]


@timed("model load")
def load(
    name: str = DEFAULT_MODEL,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    cache_dir: str | Path | None = None,
) -> LoadedModel:
    """Load an embedded model, a .gguf file, a local HF directory or a cached hub id, offline.

    dtype: "float32", "bfloat16" or "auto" (models.precision.resolve_dtype). The weight cache is
    fp32 either way; the weights are read into the requested type.
    """
    import torch
    from transformer_lens.model_bridge import TransformerBridge  # noqa: F401  (import cost kept out of load_seconds)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # load_seconds: resolving, reading (or first creating) the fp32 copy, tokenizer, bridge boot.
    t0 = time.perf_counter()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    hf_dir, hub_id, source, digest, _arch = _resolve(name, cache)

    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    tok = AutoTokenizer.from_pretrained(hf_dir)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    # Read straight into the run's type (the files stay as they are; a 7-8B model in bf16 never
    # needs its fp32 size in memory), then every floating tensor cast to it and moved: buffers
    # too (rotary inv_freq), as a model read in fp32 and cast would have them.
    model: Any = AutoModelForCausalLM.from_pretrained(
        hf_dir, dtype=getattr(torch, dtype), attn_implementation="sdpa"
    )
    model = model.to(device=device, dtype=getattr(torch, dtype)).eval()
    model.requires_grad_(False)
    bridge = boot_bridge(hub_id, model, tok)
    cfg = model.config
    text_cfg = getattr(cfg, "text_config", cfg)
    info = ModelInfo(
        name=name,
        source=source,
        n_layers=int(text_cfg.num_hidden_layers),
        d_model=int(text_cfg.hidden_size),
        n_ctx=int(getattr(text_cfg, "max_position_embeddings", 2048)),
        vocab_size=int(text_cfg.vocab_size),
        weights_sha256=digest,
        prompt_format=prompt_format(tok),
        load_seconds=round(time.perf_counter() - t0, 3),
        dtype=dtype,
        device=str(device),
    )
    known = EMBEDDED.get(name)
    if known is not None and known.n_layers not in (None, info.n_layers):
        raise ModelLoadError(
            f"{name}: the registry says {known.n_layers} layers but the weights have "
            f"{info.n_layers}; fix EmbeddedModel.n_layers in models/registry.py"
        )
    extra = {"card": str(hf_dir / "card.json")} if source.startswith("organism:") else {}
    return LoadedModel(bridge=bridge, hf_model=model, tokenizer=tok, info=info, extra=extra)


def plain_checkpoint(net: Any) -> Any:
    """`net` as an ordinary checkpoint, to save or train: a model read from a GGUF file (or its
    fp32 copy) keeps its dequantising quantizer, though its weights are plain floats by now."""
    net.hf_quantizer = None
    if hasattr(net.config, "quantization_config"):
        del net.config.quantization_config
    return net


def boot_bridge(hub_id: str, model: Any, tokenizer: Any) -> Any:
    """A TransformerBridge over an already-loaded HF model, without touching the network.

    Booted over `models.sites.shadow_tree(model)` (the same tensors), so `model` itself stays a
    plain HF model. Raw HF numerics (no compatibility mode): the bridge's forward equals the HF
    forward.
    """
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_transformers(
        hub_id, hf_model=shadow_tree(model), tokenizer=tokenizer
    )


def layer_count(name: str) -> int:
    """The number of decoder layers of a model, without loading its weights (for collection:
    one case per layer): the registry's for an embedded model, else its config.json."""
    known = EMBEDDED.get(name)
    if name in ORGANISMS:
        known = EMBEDDED[ORGANISMS[name].base]
    if known is not None and known.n_layers is not None:
        return known.n_layers
    check_model_name(name)
    try:
        from transformers import AutoConfig

        path = Path(name).expanduser()
        source = path.parent if path.suffix == ".gguf" else name
        kwargs = {"gguf_file": path.name} if path.suffix == ".gguf" else {}
        cfg = AutoConfig.from_pretrained(source, local_files_only=True, **kwargs)
        n = getattr(cfg.get_text_config(), "num_hidden_layers", None)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read the layer count of {name!r}: {exc}") from exc
    if not isinstance(n, int):
        raise ModelLoadError(f"{name!r}: its config has no num_hidden_layers")
    return n
