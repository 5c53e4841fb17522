"""Which residual encoder should REFINE's default pick on validation? An analysis of measured runs.

REFINE on spatial data ran with two residual encoders on the same seeds and splits
(``benchmarks/spatial_annotation.py --methods refine refine_linear``): the SIGN network (``refine``, hidden
64) and the linear residual (``refine_linear``, ``hidden=None``: a convex logistic regression on the hop
features and the frozen representation). Each run recorded its validation metrics. A selection rule picks,
per seed, the model with the better validation score; since both models are trained on the same split, the
rule's test score is read off the runs, with no extra training. Rules: the lower validation cross-entropy
(``val_loss``), the lower class-balanced cross-entropy (``val_balanced_loss``: the mean over classes of each
class's mean loss, every class counting alike as in macro-F1), the higher validation macro-F1.

    python benchmarks/residual_rule_analysis.py RUNS_CSV [RUNS_CSV ...] [--baselines BASELINE_RUNS_CSV]
    # -> benchmarks/results/RESIDUAL_RULE.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).parent / "results"
#: rule name -> (validation column, True when higher is better)
RULES = {"val_loss": ("val_loss", False), "val_balanced_loss": ("val_balanced_loss", False),
         "val_macro_f1": ("val_macro_f1", True)}


def per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per task, n, representation and seed: both models' test macro-F1 and each rule's pick."""
    runs = runs.copy()
    runs["rep"] = runs["method"].str.extract(r"\[(.*)\]", expand=False)
    runs["model"] = runs["method"].str.replace(r"\[.*\]", "", regex=True)
    runs = runs[runs["model"].isin(["refine", "refine_linear"])]
    wide = runs.pivot_table(index=["task", "n", "rep", "seed"], columns="model",
                            values=["macro_f1", *{c for c, _ in RULES.values()}])
    out = pd.DataFrame({"sign": wide[("macro_f1", "refine")], "linear": wide[("macro_f1", "refine_linear")]})
    for rule, (column, higher) in RULES.items():
        linear, sign = wide[(column, "refine_linear")], wide[(column, "refine")]
        linear_wins = linear > sign if higher else linear < sign
        out[rule] = np.where(linear_wins, out["linear"], out["sign"])
        out[f"{rule}_picks_linear"] = linear_wins
    return out.dropna(subset=["sign", "linear"])


def best_baselines(baseline_runs: pd.DataFrame) -> pd.DataFrame:
    """Per task, n and representation: the best baseline by mean macro-F1 (representation-free ones and
    those on the same representation), with its per-seed scores."""
    f1 = baseline_runs.pivot_table(index=["task", "n", "seed"], columns="method", values="macro_f1")
    rows = []
    for rep in sorted({m[m.index("[") + 1:-1] for m in f1.columns if "[" in m}):
        names = [m for m in f1.columns if not m.startswith("refine") and ("[" not in m or m.endswith(f"[{rep}]"))]
        for (task, n), block in f1[names].groupby(level=[0, 1]):
            block = block.dropna(axis=1, how="all")
            best = block.mean().idxmax()
            for (_, _, seed), value in block[best].items():
                rows.append({"task": task, "n": n, "rep": rep, "seed": seed, "best_baseline": best, "baseline": value})
    return pd.DataFrame(rows).set_index(["task", "n", "rep", "seed"])


def report(seeds: pd.DataFrame, baselines: pd.DataFrame | None, note: str = "") -> str:
    columns = ["sign", "linear", *RULES]
    table = seeds.groupby(level=[0, 1, 2])[columns].mean()
    picks = seeds.groupby(level=[0, 1, 2])[[f"{r}_picks_linear" for r in RULES]].sum().astype(int)
    lines = [
        "## REFINE's residual encoder: SIGN network, linear, or chosen on validation",
        "",
        __doc__.split("\n\n")[1].replace("\n", " "),
        "",
        *([note, ""] if note else []),
    ]
    header = "| task | n | rep | SIGN (hidden 64) | linear | " + " | ".join(f"pick by {r}" for r in RULES)
    if baselines is not None:
        joined = seeds.join(baselines, how="inner")
        base = joined.groupby(level=[0, 1, 2]).agg(best_baseline=("best_baseline", "first"), baseline=("baseline", "mean"))
        table = table.join(base)
        header += " | best baseline |"
    else:
        header += " |"
    lines += ["Test macro-F1, mean over seeds; (k) = seeds where the rule picked the linear residual.", "",
              header, "|---" * (header.count("|") - 1) + "|"]
    for key, row in table.iterrows():
        cells = [f"{row['sign']:.3f}", f"{row['linear']:.3f}"]
        cells += [f"{row[r]:.3f} ({picks.loc[key, f'{r}_picks_linear']})" for r in RULES]
        if baselines is not None:
            cells.append(f"{row['best_baseline']} {row['baseline']:.3f}" if pd.notna(row.get("baseline")) else "-")
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + " |")
    lines += ["", "Summary over settings (mean of per-setting means; wins = settings where the rule's mean is at "
              "least the SIGN-only default's):", ""]
    lines += ["| rule | mean macro-F1 | minus SIGN only | settings >= SIGN only | worst setting vs SIGN only |",
              "|---|---|---|---|---|"]
    for name in columns:
        diff = table[name] - table["sign"]
        lines.append(f"| {name} | {table[name].mean():.4f} | {diff.mean():+.4f} | {(diff >= 0).sum()} / {len(diff)} | "
                     f"{diff.min():+.3f} |")
    if baselines is not None and "baseline" in table:
        lines += ["", "Against the best baseline of each setting:", "", "| rule | settings >= best baseline | "
                  "mean minus best baseline | worst |", "|---|---|---|---|"]
        for name in columns:
            diff = (table[name] - table["baseline"]).dropna()
            lines.append(f"| {name} | {(diff >= 0).sum()} / {len(diff)} | {diff.mean():+.4f} | {diff.min():+.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="-runs.csv files with refine and refine_linear and their validation metrics")
    parser.add_argument("--baselines", default=None, help="-runs.csv with the baselines of the same tasks and seeds")
    parser.add_argument("--out", default=str(RESULTS / "RESIDUAL_RULE.md"))
    parser.add_argument("--note", default="", help="a paragraph put under the title (where and how the runs ran)")
    args = parser.parse_args(argv)
    runs = pd.concat([pd.read_csv(p) for p in args.runs], ignore_index=True)
    baselines = best_baselines(pd.read_csv(args.baselines)) if args.baselines else None
    text = report(per_seed(runs), baselines, args.note)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
