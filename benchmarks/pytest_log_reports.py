"""pytest plugin for benchmarks/gpu_check.sh: append each test's outcome, and each failure's traceback, to files
under ``$OUT`` as the reports arrive, so a run stopped at its time limit still says what failed and why
(pytest's own summary is printed only at the end).

    OUT=/tmp/x PYTHONPATH=benchmarks python -m pytest tests -p pytest_log_reports
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _append(name: str, text: str) -> None:
    with open(Path(os.environ.get("OUT", ".")) / name, "a") as handle:
        handle.write(text)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.outcome != "passed":
        _append("outcomes.txt", f"{report.outcome} {report.when} {report.duration:.2f} {report.nodeid}\n")
    if report.failed:
        _append("failures.txt", f"=== {report.nodeid} [{report.when}] {report.duration:.1f}s\n"
                                f"{report.longreprtext[-2500:]}\n\n")
