"""Class-balanced REFINE against every baseline, weighted ones included: is the lead of
``diagnose_balanced_member.md`` a REFINE gain or just class weighting?

Reads the default runs (``spatial_annotation-runs.csv``) and the runs of the class-balanced variants
(``spatial_annotation.py --methods refine_bal logreg_bal neighbor_logreg_bal``: ``train(class_weight="balanced")``),
keeps the task x n settings where the variants ran on all seeds, and runs the claim check of
``spatial_annotation.py`` twice against the same baselines (the unweighted ones and their balanced versions):
once for the default REFINE, once for REFINE with balanced weights.

    python benchmarks/spatial_annotation.py --methods refine_bal logreg_bal neighbor_logreg_bal --out /tmp/bal/part
    python benchmarks/compare_balanced.py /tmp/bal/part-runs.csv [more parts]
    # -> benchmarks/results/spatial_annotation_balanced.{md,csv} and spatial_annotation_balanced-runs.csv
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
from spatial_annotation import RESULTS, claim_check

VARIANTS = ("refine_bal", "logreg_bal", "neighbor_logreg_bal")


def complete_settings(balanced: pd.DataFrame, seeds: int = 5) -> set[tuple[str, int]]:
    """Task x n settings where every balanced variant ran on every seed."""
    base = balanced.method.str.replace(r"\[.*\]$", "", regex=True)
    counts = balanced.assign(base=base).groupby(["task", "n", "base"]).seed.nunique().unstack("base")
    ok = counts.reindex(columns=list(VARIANTS)).fillna(0).ge(seeds).all(axis=1)
    return set(ok[ok].index)


def compare(default: pd.DataFrame, balanced: pd.DataFrame) -> pd.DataFrame:
    settings = complete_settings(balanced)

    def keep(runs: pd.DataFrame) -> pd.DataFrame:
        return runs[[(t, n) in settings for t, n in zip(runs.task, runs.n, strict=True)]]

    baselines = pd.concat([default[~default.method.str.startswith("refine")],
                           balanced[~balanced.method.str.startswith("refine")]], ignore_index=True)
    refine_default = default[default.method.str.startswith("refine[")]
    refine_balanced = balanced[balanced.method.str.startswith("refine_bal[")].assign(
        method=lambda r: r.method.str.replace("refine_bal[", "refine[", regex=False))
    out = []
    for name, refine in (("default", refine_default), ("balanced", refine_balanced)):
        claims = claim_check(keep(pd.concat([baselines, refine], ignore_index=True)))
        out.append(claims.assign(refine_weights=name))
    return pd.concat(out, ignore_index=True)


def report(claims: pd.DataFrame, sources: list[str], run: str = "") -> str:
    wide = claims.pivot_table(index=["task", "n", "rep"], columns="refine_weights",
                              values=["refine", "diff_to_best_baseline", "below_best_by_more_than_noise"], aggfunc="first")
    best = claims[claims.refine_weights == "balanced"].set_index(["task", "n", "rep"])
    lines = [
        "# REFINE with class-balanced weights, against every baseline and its balanced version", "",
        f"`python benchmarks/compare_balanced.py {' '.join(Path(s).name for s in sources)}` ({time.strftime('%Y-%m-%d')}). "
        "Macro-F1, mean over 5 seeds, the settings where the balanced variants ran on every seed. Baselines: those of "
        "`spatial_annotation.md` plus `logreg_bal` and `neighbor_logreg_bal` (`train(class_weight=\"balanced\")`); "
        "REFINE `default` (unweighted, the package default) and `balanced` (`train(class_weight=\"balanced\")`); "
        "minus best = REFINE minus the best of all those baselines; below = by more than two paired standard errors."
        + (f" Runs: {run}" if run else ""),
        "",
        "| task | n | rep | REFINE default | REFINE balanced | best baseline | default minus best | below? | "
        "balanced minus best | below? |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (task, n, rep), row in wide.iterrows():
        b = best.loc[(task, n, rep)]
        mark = {True: "**below**", False: "no"}
        lines.append(
            f"| {task} | {n} | {rep} | {row[('refine', 'default')]:.3f} | {row[('refine', 'balanced')]:.3f} | "
            f"{b.best_baseline} {b.best_baseline_f1:.3f} | {row[('diff_to_best_baseline', 'default')]:+.3f} | "
            f"{mark[bool(row[('below_best_by_more_than_noise', 'default')])]} | "
            f"{row[('diff_to_best_baseline', 'balanced')]:+.3f} | "
            f"{mark[bool(row[('below_best_by_more_than_noise', 'balanced')])]} |")
    gain = (wide[("refine", "balanced")] - wide[("refine", "default")])
    for name in ("default", "balanced"):
        d = wide[("diff_to_best_baseline", name)]
        below = int(wide[("below_best_by_more_than_noise", name)].astype(bool).sum())
        lines.append("")
        lines.append(f"REFINE {name}: level or ahead (>= -0.002) in {int((d >= -0.002).sum())} of {len(d)}, "
                     f"below by more than noise in {below}, mean minus best {d.mean():+.4f}.")
    lines += ["", f"Balanced minus default REFINE: {gain.mean():+.4f} on average (higher in {int((gain > 0.002).sum())}, "
              f"lower in {int((gain < -0.002).sum())}, by more than 0.002).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="runs CSVs of the balanced variants")
    parser.add_argument("--run", default="", help="how and when the runs were made (written into the report)")
    args = parser.parse_args(argv)
    default = pd.read_csv(RESULTS / "spatial_annotation-runs.csv")
    balanced = pd.concat([pd.read_csv(p) for p in args.runs], ignore_index=True)
    balanced = balanced.drop_duplicates(["task", "method", "n", "seed"], keep="last")  # parts may overlap
    balanced.to_csv(RESULTS / "spatial_annotation_balanced-runs.csv", index=False)
    claims = compare(default, balanced)
    claims.to_csv(RESULTS / "spatial_annotation_balanced.csv", index=False)
    text = report(claims, args.runs, args.run)
    (RESULTS / "spatial_annotation_balanced.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
