"""Command line: ``spatial-refine demo`` and ``spatial-refine bench {vision,text}`` (the benchmark runners).

Examples::

    spatial-refine demo --out demo_out
    spatial-refine bench vision --task usps-mnist --protocol quick
    spatial-refine bench text --task books-kitchen --seeds 42 43
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .bench.cli import add_bench_parser, run


def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoOptionError, run_demo

    print("spatial-refine demo: REFINE vs baselines, MERFISH hypothalamus (shipped subset), label transfer")
    start = time.perf_counter()
    try:
        table = run_demo(args.out, n_labelled=args.n_labelled, random_state=args.random_state)
    except DemoOptionError as error:  # a bad option: say so, without a traceback
        print(f"spatial-refine demo: error: {error}", file=sys.stderr)
        return 2
    print()
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"\nTotal {time.perf_counter() - start:.0f} s. Wrote {args.out / 'demo_results.csv'} and {args.out / 'demo.png'}.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spatial-refine", description="REFINE for spatial single-cell data.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="REFINE vs baselines on the shipped MERFISH subset (about a minute).")
    demo.add_argument("--out", type=Path, default=Path("spatial_refine_demo"), help="output folder")
    demo.add_argument("--n-labelled", type=int, default=500, help="labelled reference cells")
    demo.add_argument("--random-state", type=int, default=0)
    demo.set_defaults(handler=_demo)

    bench = add_bench_parser(commands)
    bench.set_defaults(handler=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``spatial-refine``; ``argv`` defaults to ``sys.argv[1:]``. Returns the exit status."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
