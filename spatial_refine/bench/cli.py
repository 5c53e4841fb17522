"""``spatial-refine bench {vision,text}``: the benchmark command line.

The main CLI registers it with :func:`add_bench_parser` and dispatches to :func:`run`. Examples::

    spatial-refine bench vision --task usps-mnist --protocol quick
    spatial-refine bench text --task books-kitchen dvd-electronics --seeds 42 43
    spatial-refine bench vision --task cifar10-split5 --strategies notrans linear_probe refine refine:plain
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

__all__ = ["add_bench_parser", "main", "run"]

DEFAULT_OUT = Path("benchmarks") / "results"


def _task_names(modality: str) -> list[str]:
    from .tasks import tasks_for

    return tasks_for(modality)


def add_bench_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench`` with ``vision`` and ``text`` sub-commands on ``subparsers``; returns the parser."""
    bench = subparsers.add_parser("bench", help="run the REFINE paper's vision and text benchmarks")
    modalities = bench.add_subparsers(dest="modality", required=True)
    for modality in ("vision", "text"):
        names = _task_names(modality)
        p = modalities.add_parser(modality, help=f"{modality} tasks: {', '.join(names)}")
        p.add_argument("--task", nargs="+", default=None, choices=[*names, "all"], metavar="TASK",
                       help=f"task(s), or 'all' (every task whose data is available): {', '.join(names)}")
        p.add_argument("--protocol", choices=("quick", "paper"), default="quick",
                       help="'paper' (published models and epochs) or 'quick' (small, minutes on a CPU)")
        p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="settings",
                       help="override a protocol field, e.g. --set n_target=2000 (repeatable; recorded in the name)")
        p.add_argument("--seeds", type=int, nargs="+", default=None, help="run seeds (default: the protocol's)")
        p.add_argument("--strategies", nargs="+", default=None,
                       help="strategies (core names; refine:nostd / refine:cold / refine:probe / refine:residual / refine:plain for ablations)")
        p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                       help=f"folder for tables and plots (default: {DEFAULT_OUT}, where the committed results live: "
                            "their file names hold the task and protocol, not the seeds, so pass --out for trial runs)")
        p.add_argument("--cache-dir", type=Path, default=None,
                       help="folder of pretrained sources (default: <user cache>/bench_sources)")
        p.add_argument("--data-dir", default=None, help="data folder searched before $SPATIAL_REFINE_DATA_DIR")
        p.add_argument("--path", action="append", default=[], metavar="ENTRY=FILE",
                       help="use FILE for manifest entry ENTRY (repeatable)")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
        p.add_argument("--threads", type=int, default=1,
                       help="torch CPU threads (default 1: the quick models are too small to gain from more, and "
                            "on a shared CPU extra threads slowed them down 4-17x; 0 keeps torch's default)")
        p.add_argument("--no-plot", action="store_true", help="skip the plot")
        p.add_argument("-v", "--verbose", action="store_true", help="log every run")
    bench.set_defaults(func=run)
    return bench


def _paths(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        entry, sep, file = item.partition("=")
        if not sep or not entry or not file:
            raise SystemExit(f"--path expects ENTRY=FILE, got {item!r}.")
        out[entry] = file
    return out


def _check_options(args: argparse.Namespace) -> None:
    """Refuse bad ``--strategies``, ``--device``, ``--seeds`` and ``--threads`` with a ValueError that says why."""
    from .._device import resolve_device
    from ..refine import STRATEGIES
    from .runner import parse_strategy

    for spec in args.strategies or ():
        name, _ = parse_strategy(spec)
        if name not in STRATEGIES:
            raise ValueError(f"unknown strategy {name!r} in --strategies: choose from {', '.join(STRATEGIES)}.")
    resolve_device(args.device)
    if args.seeds is not None and min(args.seeds) < 0:
        raise ValueError(f"--seeds must be non-negative integers, got {args.seeds}.")
    if args.threads < 0:
        raise ValueError(f"--threads must be positive (or 0 for torch's default), got {args.threads}.")


def run(args: argparse.Namespace) -> int:
    """Run the tasks named in ``args``; print where the tables went. Returns the exit status."""
    from ..datasets import cache_dir
    from .protocols import get_protocol, override
    from .report import write_report
    from .runner import DEFAULT_STRATEGIES, run_task
    from .tasks import DataMissingError, get_task

    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:  # every option checked before any data is read or source trained
        protocol = override(get_protocol(args.protocol), args.settings)
        _check_options(args)
    except ValueError as err:
        print(f"spatial-refine bench: error: {err}", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    paths = _paths(args.path)
    names = args.task or ["all"]
    everything = "all" in names
    if everything:
        names = _task_names(args.modality)
    cache = args.cache_dir or cache_dir() / "bench_sources"
    status = 0
    for name in names:
        task = get_task(name)
        if task.modality != args.modality:
            print(f"{name} is a {task.modality} task, not {args.modality}.", file=sys.stderr)
            return 2
        try:
            task.check_data(paths, args.data_dir)
        except DataMissingError as err:
            print(f"skipped {name}: {err}" if everything else str(err), file=sys.stderr)
            status = status if everything else 1
            continue
        records, source = run_task(
            task,
            protocol,
            strategies=tuple(args.strategies or DEFAULT_STRATEGIES),
            seeds=args.seeds,
            cache_dir=cache,
            paths=paths,
            data_dir=args.data_dir,
            device=args.device,
        )
        written = write_report(
            records,
            args.out,
            task=name,
            protocol=protocol.name,
            published=task.published,
            description=task.description,
            source_meta=source.meta,
            plot=not args.no_plot,
        )
        print(f"{name}: {written['markdown']}")
        print(written["markdown"].read_text())
    return status


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m spatial_refine.bench.cli vision --task usps-mnist``."""
    parser = argparse.ArgumentParser(prog="spatial-refine")
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
