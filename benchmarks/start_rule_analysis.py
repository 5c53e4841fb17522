"""How REFINE's start rule behaves on the committed runs: the core's default (``start="auto"``: train
from the linear probe and from the from-scratch residual model, keep the lower validation loss) against
always one start (``refine:probe``, ``refine:residual``) and the plain random start (``refine:cold``).

The default sees a held-out split of the target training subset; the final model after choosing a start
is exactly the ``refine:probe`` or ``refine:residual`` model of that seed (same seed, same initialisation,
whole target subset), so the table needs no extra training, only runs that recorded ``refine`` with its
validation losses next to the forced variants.

    python benchmarks/start_rule_analysis.py [results_dir]   # -> <results_dir>/START_RULE.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

FORCED = ("refine:probe", "refine:residual", "refine:cold")


def _per_seed(runs: pd.DataFrame) -> pd.DataFrame | None:
    if "strategy" not in runs or not {"refine", "notrans"} <= set(runs["strategy"]) or "start_val_loss_residual" not in runs:
        return None
    acc = runs.pivot_table(index="seed", columns="strategy", values="accuracy")
    chosen = runs[runs["strategy"] == "refine"].set_index("seed")
    out = pd.DataFrame(index=acc.index)
    out["notrans"] = acc["notrans"]
    out["linear_probe"] = acc.get("linear_probe", np.nan)
    out["auto"] = acc["refine"]
    for name in FORCED:
        out[name] = acc.get(name, np.nan)
    out["chose_residual"] = chosen["refine_start"] == "residual"
    return out


def _fmt(values: pd.Series) -> str:
    values = 100 * values.astype(float)
    if values.isna().any():
        return "-"
    return f"{values.mean():.1f} +- {values.std(ddof=1):.1f}" if len(values) > 1 else f"{values.mean():.1f}"


def main(results: Path) -> str:
    lines = [
        "# REFINE's start rule on the committed runs",
        "",
        "Accuracy %, mean +- std over seeds. `auto` = the core's default (`start='auto'`: the probe start and the",
        "residual start trained on 80% of the target subset, the lower validation loss kept, then retrained on all",
        "of it); `probe` / `residual` / `cold` = always that start. k/n = seeds where `auto` chose the residual",
        "start. Produced by `benchmarks/start_rule_analysis.py` from the `-runs.csv` files (no extra training).",
        "",
        "| task | protocol | NoTrans | LinearProbe | REFINE auto (default) | probe | residual | cold | residual k/n |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(results.glob("*-runs.csv")):
        runs = pd.read_csv(path)
        table = _per_seed(runs)
        if table is None:
            continue
        task = str(runs["task"].iloc[0])
        protocol = path.name[len(task) + 1 : -len("-runs.csv")]
        lines.append(
            f"| {task} | {protocol} | {_fmt(table['notrans'])} | {_fmt(table['linear_probe'])} | {_fmt(table['auto'])} | "
            + " | ".join(_fmt(table[name]) for name in FORCED)
            + f" | {int(table['chose_residual'].sum())}/{len(table)} |"
        )
    text = "\n".join(lines) + "\n"
    (results / "START_RULE.md").write_text(text)
    return text


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else root / "benchmarks" / "results"))
