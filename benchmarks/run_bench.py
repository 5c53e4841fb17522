"""Run the vision/text benchmarks from a source checkout (same options as ``spatial-refine bench``).

Examples::

    SPATIAL_REFINE_DATA_DIR=../shared/data python benchmarks/run_bench.py vision --task all --protocol quick
    python benchmarks/run_bench.py text --task books-kitchen dvd-electronics
"""

from spatial_refine.bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
