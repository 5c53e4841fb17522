"""Merge the per-seed records of one task from several ``run_bench.py`` invocations into one report.

Long runs on a shared CPU are safer split by seed (``--seeds 42`` into one folder, ``--seeds 43`` into
another, ...): a run that is cut off loses only its own seed. This rebuilds the table, CSVs and plot
from every ``<task>-<protocol>-runs.csv`` given, as if all seeds had run at once::

    python benchmarks/merge_runs.py --out benchmarks/results --task books-kitchen --protocol quick \\
        parts/s42/books-kitchen-quick-runs.csv parts/s43/books-kitchen-quick-runs.csv ...

The source's training record and the machine are taken from the first part's ``.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "spatial_refine").is_dir():
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from spatial_refine.bench.report import write_report  # noqa: E402
from spatial_refine.bench.tasks import get_task  # noqa: E402


def merge(parts: list[Path], out: Path, task: str, protocol: str, plot: bool = True) -> dict[str, Path]:
    """Concatenate the run records of ``parts`` (duplicate strategy/seed rows: the later part wins)."""
    frame = pd.concat([pd.read_csv(p) for p in parts], ignore_index=True)
    frame = frame.drop_duplicates(subset=["strategy", "seed"], keep="last")
    order = {s: i for i, s in enumerate(dict.fromkeys(frame["strategy"]))}
    frame = frame.sort_values(["seed", "strategy"], key=lambda c: c.map(order) if c.name == "strategy" else c)
    records = [{k: v for k, v in row.items() if not (isinstance(v, float) and pd.isna(v))} for row in frame.to_dict("records")]
    meta_path = parts[0].with_name(parts[0].name.replace("-runs.csv", ".json"))
    source_meta = json.loads(meta_path.read_text()).get("source") if meta_path.is_file() else None
    spec = get_task(task)
    return write_report(records, out, task=task, protocol=protocol, published=spec.published,
                        description=spec.description, source_meta=source_meta, plot=plot)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="+", type=Path, help="<task>-<protocol>-runs.csv files")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--protocol", required=True)
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    written = merge(args.parts, args.out, args.task, args.protocol, plot=not args.no_plot)
    print(written["markdown"].read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
