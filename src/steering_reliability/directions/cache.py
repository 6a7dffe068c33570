"""Content-addressed direction cache: computed once across processes, published atomically.

key = blake2b(canonical JSON of everything the vector depends on). The cache file
`<cache_dir>/directions/<key>.pt` is a plain dict (loadable with weights_only=True). A copy for
people is written to `<cache_dir>/../directions/<model>/<method>/<variant>/layer_<L>/v.pt` +
`meta.json`: every variant has its own folder, so a check's variant never overwrites the main
direction the sweep used. meta.json holds no absolute path: prompt files are named relative to
the repository root (with their sha256) and the cache file relative to the export folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import torch

from steering_reliability.atomic import atomic_write, atomic_write_bytes, digest, file_sha256
from steering_reliability.directions.direction import Direction
from steering_reliability.errors import DirectionError
from steering_reliability.models import default_cache_dir
from steering_reliability.paths import REPO_ROOT
from steering_reliability.prompts.benchmarks import content_sha256, is_benchmark

CODE_VERSION = 1  # bump when a builder's numerics change: every cached direction is rebuilt
STATE_FORMAT = 1
EXPORT_FORMAT = 2  # 2: <method>/<variant>/layer_<L>, repo-relative prompt files, no absolute path
RESERVED_VARIANTS: tuple[str, ...] = ("main", "alt")  # main / alternate prefixes (from_config)
_VARIANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
K = TypeVar("K", bound=Hashable)


def direction_key(fields: Mapping[str, Any]) -> str:
    """32 hex chars of blake2b over the canonical JSON of the key fields + CODE_VERSION."""
    return digest({**fields, "code_version": CODE_VERSION}, size=16)


def texts_sha256(texts: Sequence[str]) -> str:
    """sha256 of a list of texts in order (length-prefixed, so boundaries cannot shift)."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little") + b)
    return h.hexdigest()


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where cache files live: <cache_dir or artifacts/cache>/directions."""
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / "directions"


def export_root(cache_dir: str | Path | None = None) -> Path:
    """Where people look: the `directions` folder next to the cache folder (artifacts/directions)."""
    return Path(cache_dir if cache_dir is not None else default_cache_dir()).parent / "directions"


def to_state(d: Direction, key_fields: Mapping[str, Any]) -> dict[str, Any]:
    """A plain dict of tensors and JSON-able values (what torch.save writes)."""
    return {
        "format": STATE_FORMAT,
        "method": d.method,
        "layer": d.layer,
        "hook_point": d.hook_point,
        "position": d.position,
        "vector": d.vector.detach().cpu().contiguous(),
        "norm": d.norm,
        "mean_resid_norm": d.mean_resid_norm,
        "split_half_cosine": d.split_half_cosine,
        "batch_cosines": list(d.batch_cosines),
        "n_prompts": d.n_prompts,
        "key": d.key,
        "meta": json.loads(json.dumps(dict(d.meta), default=str)),
        "key_fields": dict(key_fields),
    }


def from_state(state: Mapping[str, Any]) -> Direction:
    return Direction(
        method=state["method"],
        layer=int(state["layer"]),
        hook_point=state["hook_point"],
        position=state["position"],
        vector=state["vector"],
        norm=float(state["norm"]),
        mean_resid_norm=float(state["mean_resid_norm"]),
        split_half_cosine=float(state["split_half_cosine"]),
        batch_cosines=tuple(float(c) for c in state["batch_cosines"]),
        n_prompts=int(state["n_prompts"]),
        key=state["key"],
        meta=state["meta"],
    )


def load_cached(key: str, cache_dir: str | Path | None = None) -> Direction | None:
    """The cached direction with this key, or None."""
    path = cache_root(cache_dir) / f"{key}.pt"
    if not path.exists():
        return None
    return from_state(torch.load(path, map_location="cpu", weights_only=True))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def check_variant(variant: Any) -> str:
    """The variant name if it is a safe path component, else a DirectionError naming it.

    1-64 characters, letters, digits, '-' and '_', starting with a letter or digit. Case
    variants of the reserved names ('Main', 'ALT') are refused: they would not select those
    prefixes, yet share their folder on a case-insensitive file system.
    """
    expected = "1-64 characters: letters, digits, '-' or '_', starting with a letter or digit"
    hint = "e.g. 'main', 'alt' (alternate prefixes), or a label such as 'seed-half-0'"
    if not isinstance(variant, str) or _VARIANT_RE.fullmatch(variant) is None:
        raise DirectionError(
            "direction variant is not a safe folder name",
            field="variant",
            value=variant,
            expected=expected,
            hint=hint,
        )
    reserved = [r for r in RESERVED_VARIANTS if r == variant.lower()]
    if reserved and variant not in RESERVED_VARIANTS:
        raise DirectionError(
            "direction variant differs from a reserved name only by case",
            field="variant",
            value=variant,
            expected=f"exactly {reserved[0]!r} (reserved) or another name",
            hint=hint,
        )
    return variant


def export_dir_for(
    d: Direction, key_fields: Mapping[str, Any], cache_dir: str | Path | None = None
) -> Path:
    """<model>[-<dtype>]/<method>/<variant>/layer_<L>[_<hook point>][_pos<p>] under the export
    root (the dtype only when it is not float32)."""
    variant = key_fields.get("variant")
    variant = "main" if variant is None else check_variant(variant)
    folder = f"layer_{d.layer}"
    if d.hook_point != "resid_pre":
        folder += f"_{d.hook_point}"
    if d.position != "prefix_mean":
        folder += f"_pos{d.position}"
    model = _safe(str(key_fields.get("model", "model")))
    dtype = key_fields.get("dtype")  # absent for float32: a bf16 build never overwrites it
    if dtype:
        model += f"-{_safe(str(dtype))}"
    return export_root(cache_dir) / model / _safe(d.method) / variant / folder


def portable_path(path: str | Path) -> str:
    """A path for meta.json, never absolute: relative to the repository root ('data/x.jsonl');
    outside the repo relative to it where the file systems allow ('../other/x.jsonl'); else the
    bare file name."""
    p = Path(path).resolve()
    try:
        return p.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        pass
    try:
        rel = Path(os.path.relpath(p, REPO_ROOT))
    except ValueError:  # another drive (Windows): no relative path exists
        return p.name
    return p.name if rel.is_absolute() else rel.as_posix()


def file_meta(name: str, path: str | Path | None) -> dict[str, Any]:
    """{name: portable path, name_sha256: sha256 of the bytes}, both None without a file."""
    if path is None:
        return {name: None, f"{name}_sha256": None}
    if is_benchmark(path):  # benchmark:NAME: the spec, and one digest of its data files
        return {name: str(path), f"{name}_sha256": content_sha256(path)}

    try:
        digest = file_sha256(path)
    except OSError as exc:
        raise DirectionError(
            f"cannot read the {name.replace('_', ' ')}: {exc.strerror or exc}",
            field=name,
            value=str(path),
            hint="pass the prompt file the prompts were loaded from",
        ) from exc
    return {name: portable_path(path), f"{name}_sha256": digest}


def _portable_model(name: Any) -> Any:
    """A model named by an absolute path (a .gguf file, a HF folder) is written portably."""
    if isinstance(name, str) and os.path.isabs(name):
        return portable_path(name)
    return name


def _json_safe(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else x


def export(
    d: Direction,
    key_fields: Mapping[str, Any],
    cache_dir: str | Path | None = None,
    extra_meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write v.pt (the raw vector) and meta.json (everything needed to recompute it) for people.

    No absolute path is written: `cache_file` is relative to the export folder, prompt files
    come (from directions_for_layers) relative to the repository root with their sha256.
    """
    folder = export_dir_for(d, key_fields, cache_dir)
    cache_file = Path(os.path.relpath(cache_root(cache_dir) / f"{d.key}.pt", folder)).as_posix()
    fields = dict(key_fields)
    if "model" in fields:
        fields["model"] = _portable_model(fields["model"])
    meta = {
        "key": d.key,
        "export_format": EXPORT_FORMAT,
        "cache_file": cache_file,
        **fields,
        **dict(extra_meta or {}),
        "code_version": CODE_VERSION,
        "vector": "v.pt holds the raw mean difference (alpha = 1 under alpha_scale 'raw')",
        "alpha1_norm": {"raw": d.norm, "unit": 1.0, "resid_norm": d.mean_resid_norm},
        "norm": d.norm,
        "mean_resid_norm": d.mean_resid_norm,
        "split_half_cosine": _json_safe(d.split_half_cosine),
        "batch_cosines": [_json_safe(c) for c in d.batch_cosines],
        "n_prompts": d.n_prompts,
        "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
    }
    vector = d.vector.detach().cpu().contiguous()
    atomic_write(folder / "v.pt", lambda fh: torch.save(vector, fh))
    text = json.dumps(meta, indent=2, sort_keys=False, default=str) + "\n"
    atomic_write_bytes(folder / "meta.json", text.encode("utf-8"))
    return folder


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


def _export_plan(
    d: Direction,
    key_fields: Mapping[str, Any],
    cache_dir: str | Path | None,
    extra_meta: Mapping[str, Any] | None,
) -> dict[str, Any] | None:
    """The extra meta to export with, or None when the export on disk is already right.

    Re-exported when the folder holds another key or an older format, or when the caller knows
    something (a prompt file, say) that the export lacks or records differently. What the
    caller does not know (None) is taken from an export of the same key rather than erased.
    """
    extra = _jsonable(dict(extra_meta or {}))
    folder = export_dir_for(d, key_fields, cache_dir)
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return extra
    if (
        not isinstance(meta, dict)
        or meta.get("key") != d.key
        or meta.get("export_format") != EXPORT_FORMAT
    ):
        return extra
    if all(v is None or meta.get(k) == v for k, v in extra.items()):
        return None
    return {k: meta.get(k) if v is None else v for k, v in extra.items()}


def get_or_compute_many(
    fields_by_id: Mapping[K, Mapping[str, Any]],
    compute_fn: Callable[[list[K]], Mapping[K, Direction]],
    cache_dir: str | Path | None = None,
    *,
    extra_meta: Mapping[str, Any] | None = None,
    human_copy: bool = True,
) -> dict[K, Direction]:
    """Cached directions for every id; the missing ones computed by ONE compute_fn call.

    Locks are taken on every missing key in sorted order (no deadlock between processes that
    want overlapping sets); after the locks, keys another process published meanwhile are read.
    """
    from filelock import FileLock

    for f in fields_by_id.values():  # before any compute: a bad name must not cost a build
        if f.get("variant") is not None:
            check_variant(f["variant"])
    root = cache_root(cache_dir)
    keys = {i: direction_key(f) for i, f in fields_by_id.items()}
    out: dict[K, Direction] = {}
    for i, key in keys.items():
        if (d := load_cached(key, cache_dir)) is not None:
            out[i] = d
    missing = [i for i in fields_by_id if i not in out]
    if missing:
        root.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            for key in sorted({keys[i] for i in missing}):
                stack.enter_context(FileLock(str(root / f"{key}.pt.lock")))
            todo: list[K] = []
            for i in missing:
                if (d := load_cached(keys[i], cache_dir)) is not None:
                    out[i] = d
                else:
                    todo.append(i)
            if todo:
                computed = compute_fn(todo)
                for i in todo:
                    d = _with_key(computed[i], keys[i], fields_by_id[i])
                    atomic_write(
                        root / f"{keys[i]}.pt", partial(_save, to_state(d, fields_by_id[i]))
                    )
                    out[i] = d
    if human_copy:
        for i, d in out.items():
            plan = _export_plan(d, fields_by_id[i], cache_dir, extra_meta)
            if plan is not None:
                export(d, fields_by_id[i], cache_dir, plan)
    return {i: out[i] for i in fields_by_id}


def _save(obj: Any, fh: BinaryIO) -> None:
    torch.save(obj, fh)


def _with_key(d: Direction, key: str, fields: Mapping[str, Any]) -> Direction:
    return dataclasses.replace(d, key=key, meta={**dict(d.meta), "key_fields": dict(fields)})


def get_or_compute(
    key_fields: Mapping[str, Any],
    compute_fn: Callable[[], Direction],
    cache_dir: str | Path | None = None,
    *,
    extra_meta: Mapping[str, Any] | None = None,
    human_copy: bool = True,
) -> Direction:
    """The cached direction for these key fields, computing it once (across processes) if absent."""
    got = get_or_compute_many(
        {0: key_fields},
        lambda ids: {0: compute_fn()},
        cache_dir,
        extra_meta=extra_meta,
        human_copy=human_copy,
    )
    return got[0]
