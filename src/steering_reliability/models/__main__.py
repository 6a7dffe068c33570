"""python -m steering_reliability.models info NAME: layers, d_model, hook names, hash, load time."""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(prog="python -m steering_reliability.models")
    sub = parser.add_subparsers(dest="cmd", required=True)
    info_p = sub.add_parser("info", help="load a model and describe it")
    info_p.add_argument(
        "name", nargs="?", default=None, help="embedded name, .gguf, directory or hub id"
    )
    sub.add_parser("list", help="list the embedded models")
    args = parser.parse_args(argv)

    from steering_reliability.errors import ModelLoadError
    from steering_reliability.models.registry import DEFAULT_MODEL, EMBEDDED, ORGANISMS

    if args.cmd == "list":
        for name, entry in EMBEDDED.items():
            print(f"{name:24s} {entry.description}  [{entry.install}]")
        for name, organism in ORGANISMS.items():
            print(f"{name:24s} {organism.description}")
        return 0
    t0 = time.perf_counter()
    import torch  # noqa: F401
    import transformer_lens.model_bridge  # noqa: F401
    import transformers  # noqa: F401

    from steering_reliability.models import load

    t_import = time.perf_counter() - t0
    try:
        m = load(args.name or DEFAULT_MODEL)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    i = m.info
    hooks = [n for n in m.bridge.hook_dict if n.startswith("blocks.0.hook_")]
    print(f"model:          {i.name} ({i.source})")
    print(f"layers:         {i.n_layers}")
    print(f"d_model:        {i.d_model}")
    print(f"context:        {i.n_ctx}")
    print(f"vocab:          {i.vocab_size}")
    print(f"prompt format:  {i.prompt_format}")
    print(f"weights sha256: {i.weights_sha256}")
    print(f"block hooks:    {', '.join(h.replace('blocks.0.', 'blocks.{L}.') for h in hooks)}")
    print(
        f"load time:      {i.load_seconds:.2f} s (+ {t_import:.2f} s importing torch, transformers, transformer_lens)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
