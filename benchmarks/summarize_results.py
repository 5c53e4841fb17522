"""Collect every ``benchmarks/results/<task>-<protocol>.csv`` into one overview (``SUMMARY.md``): test
accuracy (mean +- std over seeds) per task and strategy, the published accuracy beside it, and the
REFINE ablation (default vs each forced start; "-" where a variant was not run).

    python benchmarks/summarize_results.py [results_dir]
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "spatial_refine").is_dir():
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from spatial_refine.bench.tasks import PUBLISHED  # noqa: E402

MAIN = ["notrans", "linear_probe", "adapter", "distill", "lora", "dann_gate", "refine"]
# refine = the core's default (start chosen on validation); probe / residual / cold force one start
ABLATION = ["refine", "refine:probe", "refine:residual", "refine:cold"]


def _cell(frame: pd.DataFrame, strategy: str) -> str:
    row = frame[frame["strategy"] == strategy]
    if row.empty:
        return "-"
    return f"{row['accuracy_mean'].iloc[0]:.1f} +- {row['accuracy_std'].iloc[0]:.1f}"


def main(results: Path) -> str:
    tables = sorted(p for p in results.glob("*.csv") if not p.name.endswith("-runs.csv"))
    lines = [
        "# Overview of the committed benchmark results",
        "",
        "Test accuracy %, mean +- std over seeds (ours), and the published accuracy in brackets (paper protocol).",
        "",
        "| task | protocol | " + " | ".join(MAIN) + " |",
        "|---|---|" + "---|" * len(MAIN),
    ]
    ablation = ["", "## REFINE ablation (accuracy %)", "",
                "| task | protocol | NoTrans | LinearProbe | " + " | ".join(ABLATION) + " |",
                "|---|---|---|---|" + "---|" * len(ABLATION)]
    for path in tables:
        frame = pd.read_csv(path)
        if not {"task", "strategy", "accuracy_mean"} <= set(frame.columns):
            continue  # another script's table (synthetic, theory, diagnostics)
        task = str(frame["task"].iloc[0])
        protocol = path.stem[len(task) + 1 :]
        published = PUBLISHED.get(task, {})
        cells = []
        for s in MAIN:
            pub = f" [{published[s]:.1f}]" if s in published else ""
            cells.append(_cell(frame, s) + pub)
        lines.append(f"| {task} | {protocol} | " + " | ".join(cells) + " |")
        if len(set(ABLATION) & set(frame["strategy"])) > 1:
            ablation.append(
                f"| {task} | {protocol} | {_cell(frame, 'notrans')} | {_cell(frame, 'linear_probe')} | "
                + " | ".join(_cell(frame, s) for s in ABLATION) + " |"
            )
    text = "\n".join(lines + ablation) + "\n"
    (results / "SUMMARY.md").write_text(text)
    return text


if __name__ == "__main__":
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "benchmarks" / "results"))
