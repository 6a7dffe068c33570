"""python -m steering_reliability.behaviours [calibrate] [--scorer NAME] [--threshold T]:
the toxicity scorer's accuracy on the labelled calibration set, and every text it gets wrong."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import SteeringReliabilityError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m steering_reliability.behaviours",
                                     description=__doc__)  # fmt: skip
    parser.add_argument("command", nargs="?", default="calibrate", choices=["calibrate", "list"])
    parser.add_argument("--scorer", default=None, help="toxicity scorer (default: profanity_check)")
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args(argv)
    from . import get, registered
    from .toxicity import calibrate

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
