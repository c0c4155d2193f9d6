"""`python -m tests.fuzz [--cases N] [--target NAME ...] [--seed S] [--list]`.

Runs every target (or the named ones) for N cases each (default 100000), printing per target
the cases run, the time, cases per second and the failures, with each failure's input and
traceback. Exit status 1 if any target failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys

from tests.fuzz.registry import TARGETS
from tests.fuzz.runner import SLOW_SECONDS, print_report, run_target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--cases", type=int, default=100_000, help="cases per target")
    parser.add_argument("--target", action="append", default=[], metavar="NAME")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slow", type=float, default=SLOW_SECONDS, help="per-case budget (s)")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args(argv)
    if args.list:
        for target in TARGETS.values():
            print(f"{target.name:<20} {target.boundary}")
        return 0
    unknown = [name for name in args.target if name not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; see --list")
    names = args.target or list(TARGETS)
    print(f"fuzzing {len(names)} target(s), {args.cases} cases each, seed {args.seed}", flush=True)
    failed = 0
    for name in names:
        report = run_target(TARGETS[name], args.cases, args.seed, slow=args.slow)
        print_report(report)
        failed += report.failures > 0
    print(f"{failed} of {len(names)} target(s) failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
