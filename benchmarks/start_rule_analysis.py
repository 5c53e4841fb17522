"""How REFINE's start rule behaves on the committed runs: the core's one-standard-error rule (keep the warm
start unless the cold start's validation loss is lower by more than one standard error) against the plain
argmin of the two validation losses, per task.

Both rules see the same held-out split; the final model after choosing a start is exactly the
``refine:nowarm`` (cold) or ``refine:warm`` model of that seed (same seed, same initialisation, whole
target subset), so the argmin rule's accuracy follows from runs that recorded ``refine`` with its
validation losses plus ``refine:nowarm`` (and ``refine:warm`` where present), with no extra training.

    python benchmarks/start_rule_analysis.py [results_dir]   # -> <results_dir>/START_RULE.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd


def _per_seed(runs: pd.DataFrame) -> pd.DataFrame | None:
    need = {"refine", "refine:nowarm", "notrans"}
    if not need <= set(runs["strategy"]) or "start_val_loss_cold" not in runs:
        return None
    acc = runs.pivot_table(index="seed", columns="strategy", values="accuracy")
    chosen = runs[runs["strategy"] == "refine"].set_index("seed")
    out = pd.DataFrame(index=acc.index)
    out["notrans"] = acc["notrans"]
    out["linear_probe"] = acc.get("linear_probe", np.nan)
    out["one_se"] = acc["refine"]
    out["cold"] = acc["refine:nowarm"]
    warm = acc["refine:warm"] if "refine:warm" in acc else pd.Series(np.nan, index=acc.index)
    out["warm"] = warm.where(chosen["refine_start"] != "warm", acc["refine"])
    argmin_cold = chosen["start_val_loss_cold"] < chosen["start_val_loss_warm"]
    out["argmin"] = out["cold"].where(argmin_cold, out["warm"])
    out["one_se_cold"] = chosen["refine_start"] == "cold"
    out["argmin_cold"] = argmin_cold
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
        "Accuracy %, mean +- std over seeds. `1-SE` = the core's default (`probe_warm_start='auto'`: warm start",
        "kept unless the cold start's validation loss is lower by more than one standard error); `argmin` = keep",
        "the lower validation loss; `warm` / `cold` = always that start. k/n = seeds where the rule chose cold.",
        "Produced by `benchmarks/start_rule_analysis.py` from the `-runs.csv` files (no extra training).",
        "",
        "| task | protocol | NoTrans | LinearProbe | REFINE 1-SE (default) | REFINE argmin | warm | cold | 1-SE cold k/n | argmin cold k/n |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(results.glob("*-runs.csv")):
        runs = pd.read_csv(path)
        table = _per_seed(runs)
        if table is None:
            continue
        task = str(runs["task"].iloc[0])
        protocol = path.name[len(task) + 1 : -len("-runs.csv")]
        n = len(table)
        lines.append(
            f"| {task} | {protocol} | {_fmt(table['notrans'])} | {_fmt(table['linear_probe'])} | {_fmt(table['one_se'])} | "
            f"{_fmt(table['argmin'])} | {_fmt(table['warm'])} | {_fmt(table['cold'])} | "
            f"{int(table['one_se_cold'].sum())}/{n} | {int(table['argmin_cold'].sum())}/{n} |"
        )
    text = "\n".join(lines) + "\n"
    (results / "START_RULE.md").write_text(text)
    return text


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else root / "benchmarks" / "results"))
