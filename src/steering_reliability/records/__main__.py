"""python -m steering_reliability.records {status,compact} RUN_DIR (no pytest session needed)."""

from __future__ import annotations

import argparse
import sys

from steering_reliability.errors import SteeringReliabilityError


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m steering_reliability.records")
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="which cases of a run are done / missing")
    status.add_argument("run_dir", help="a run directory, e.g. artifacts/runs/latest")
    status.add_argument("--done", action="store_true", help="list the done cases too")
    status.add_argument(
        "--strict", action="store_true", help="exit 1 when a case is missing (for scripts)"
    )
    comp = sub.add_parser("compact", help="(re)write results.parquet from the run's parts")
    comp.add_argument("run_dir")
    args = parser.parse_args(argv)

    from steering_reliability.records.status import format_status, run_status
    from steering_reliability.records.store import RESULTS_NAME, compact, parts_dir

    try:
        st = run_status(args.run_dir)
        if args.command == "compact":
            res = compact(parts_dir(st.run_dir, st.config_hash), f"{st.run_dir}/{RESULTS_NAME}")
            print(f"{res.path}: {res.n_rows} rows from {res.n_parts} parts")
            return 0
    except (SteeringReliabilityError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_status(st, show_done=args.done))
    return 1 if args.strict and not st.complete else 0


if __name__ == "__main__":
    sys.exit(main())
