"""python -m steering_reliability.behaviours [calibrate|list|data]: `calibrate` [--scorer NAME]
[--threshold T] prints the toxicity scorer's accuracy on the labelled calibration set and every
text it gets wrong; `list` the registered behaviours; `data` [--out_dir DIR] [--seed N] writes
the toxicity behaviour's sets and pairs (same seed, same bytes)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from steering_reliability.atomic import file_sha256
from steering_reliability.behaviours import get, registered
from steering_reliability.behaviours.toxicity import calibrate
from steering_reliability.behaviours.toxicity_data import write
from steering_reliability.errors import SteeringReliabilityError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m steering_reliability.behaviours",
                                     description=__doc__)  # fmt: skip
    parser.add_argument(
        "command", nargs="?", default="calibrate", choices=["calibrate", "list", "data"]
    )
    parser.add_argument("--scorer", default=None, help="toxicity scorer (default: profanity_check)")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--out_dir", "--out-dir", default="data/behaviours/toxicity", type=Path,
                        help="data: where the toxicity sets are written")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="data: the generator's seed")
    args = parser.parse_args(argv)
    if args.command == "data":
        for path in write(args.out_dir, seed=args.seed).values():
            print(f"wrote {path}  sha256 {file_sha256(path)[:16]}")
        return 0
    if args.command == "list":
        for name, b in registered().items():
            print(f"{name}: {b.description} (splits {list(b.split_names)}, {b.recipe})")
        return 0
    try:
        cal = calibrate(get("toxicity").scorer(args.scorer), threshold=args.threshold)
    except SteeringReliabilityError as exc:
        print(f"behaviours: {exc}", file=sys.stderr)
        return 2
    print("\n".join(cal.lines()))
    for cat, text, label, score in cal.errors:
        said = "toxic" if label else "not toxic"
        print(f"  wrong ({cat}, labelled {said}, score {score:.2f}): {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
