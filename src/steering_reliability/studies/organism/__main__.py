"""`python -m steering_reliability.studies.organism [NAME] [--accept-weak] [--set FIELD=VALUE]`
(`make organism`): build the organism, or find it in the weight cache, and print its card.

Exit status: 0 with a usable organism, 1 when it misses an acceptance target and was not kept
with --accept-weak, 2 on a bad recipe setting.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from steering_reliability.errors import InputError
from steering_reliability.models.registry import ORGANISMS
from steering_reliability.studies.organism.build import build
from steering_reliability.studies.organism.recipe import recipe_for, recipe_with


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(
        prog="python -m steering_reliability.studies.organism",
        description="Build (or find in the weight cache) a refusing model organism and print its card.",
    )
    parser.add_argument("name", nargs="?", default=next(iter(ORGANISMS)), choices=sorted(ORGANISMS))
    parser.add_argument("--accept-weak", action="store_true",
                        help="keep an organism that misses its acceptance targets, and exit 0")  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="try another recipe (e.g. --set epochs=4): built under its own key, "
                             "and not what the organism's name loads")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        recipe = recipe_with(recipe_for(args.name), args.set)
        found = build(args.name, recipe=recipe, accept_weak=args.accept_weak, progress=True)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print((found.path / "card.md").read_text())
    print(f"weights and card: {found.path}")
    if not found.usable:
        print(f"error: {args.name} misses its acceptance targets: {'; '.join(found.failures())}. "
              "Rerun with --accept-weak (make organism ORGANISM_ARGS=--accept-weak) to use it anyway.",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
