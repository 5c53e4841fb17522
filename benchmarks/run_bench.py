"""Run the vision/text benchmarks from a source checkout (same options as ``spatial-refine bench``).

Examples::

    SPATIAL_REFINE_DATA_DIR=../shared/data python benchmarks/run_bench.py vision --task all --protocol quick
    python benchmarks/run_bench.py text --task books-kitchen dvd-electronics
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "spatial_refine").is_dir():
    sys.path.insert(0, str(ROOT))  # this checkout's package, not an installed copy

from spatial_refine.bench.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
