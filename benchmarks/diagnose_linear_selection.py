"""REFINE's ensemble selection: its logistic regressions weighed on out-of-fold probabilities of every labelled cell?

REFINE's default (``hidden="auto"``) weights four fits (the SIGN network, the linear residual, and its hop-only
and representation-only limits) by greedy ensemble selection on the validation cells: 20 % of the labels, so
20-60 cells at n = 100-300, which the benchmark's narrative names as the likely cause of its remaining small
leads for the baselines (several of them are exactly one of REFINE's logistic regressions). With
cross-validated depth on (``depth_folds``, up to 10,000 labelled cells) the three logistic regressions already
have 5-fold out-of-fold probabilities for every labelled cell. ``CV_LINEAR_SELECTION = True`` (``annotator.py``;
off by default since this measurement) selects in two stages: the logistic regressions among themselves on those probabilities (all labelled cells),
then their blend against the network on the validation cells.

This trains the default REFINE twice per task x n x representation x seed of ``spatial_annotation.py`` (same
labelled and test cells, package defaults), in the same process: with the one-stage selection
(``CV_LINEAR_SELECTION = False``) and with the two-stage one, and reports the paired test macro-F1 difference
and, for each rule in place of ``refine``, the claim check against the committed baselines.

    python benchmarks/diagnose_linear_selection.py --task osmfish-cluster --n 100 300 --rep encoder pca --out part.csv
    python benchmarks/diagnose_linear_selection.py --report part.csv ...
    # -> benchmarks/results/diagnose_linear_selection.{md,csv}
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from spatial_annotation import (
    REP_KEYS,
    RESULTS,
    _pin_torch_threads,
    claim_check,
    labelled_samples,
    load_settings,
    per_task_cli,
    run_task_or_report,
    standard_error,
    train_and_predict,
    write_report,
)

import spatial_refine.annotator as annotator

RULES = {"split": False, "cv": True}  # rule name -> CV_LINEAR_SELECTION


def run(task: str, ns: list[int], reps: list[str], seeds: list[int]) -> pd.DataFrame:
    _pin_torch_threads()
    setting = load_settings(tasks=[task])[0][0]
    rows, default = [], annotator.CV_LINEAR_SELECTION
    try:
        _run_rules(setting, ns, reps, seeds, rows, task)
    finally:
        annotator.CV_LINEAR_SELECTION = default
    return pd.DataFrame(rows)


def _run_rules(setting, ns, reps, seeds, rows: list, task: str) -> None:
    for n, seed, labelled in labelled_samples(setting, ns, seeds):
        for rep in reps:
            for rule, flag in RULES.items():
                annotator.CV_LINEAR_SELECTION = flag
                _pin_torch_threads()
                start = time.perf_counter()
                model, y_pred, y_true = train_and_predict(setting, labelled, seed, class_weight="effective",
                                                          rep_key=REP_KEYS[rep])
                rows.append({
                    "task": task, "n": n, "rep": rep, "seed": seed, "rule": rule,
                    "macro_f1": f1_score(y_true, y_pred, average="macro"),
                    "accuracy": accuracy_score(y_true, y_pred),
                    "weights": str(model.metrics_.get("ensemble_weights")),
                    "seconds": time.perf_counter() - start,
                })
                print(rows[-1], flush=True)


def report(paths: list[str]) -> None:
    runs = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    wide = runs.pivot_table(index=["task", "n", "rep", "seed"], columns="rule", values="macro_f1")
    committed = pd.read_csv(RESULTS / "spatial_annotation-runs.csv")
    lines = [
        "# REFINE's ensemble selection: one stage on the validation cells, or two with out-of-fold linear fits "
        "(diagnostic)", "",
        f"`python benchmarks/diagnose_linear_selection.py` per task, then `--report` ({platform.machine()}, "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}). The default REFINE (effective-number class "
        "weights) trained twice on the same labelled cells, seeds and test cells as `spatial_annotation.py`: "
        "`split` = greedy ensemble selection of the four fits on the validation cells; `cv` = the three logistic "
        "regressions weighed among themselves on their 5-fold out-of-fold probabilities of every labelled cell, "
        "then their blend against the network on the validation cells. Test macro-F1, mean over seeds; diff = "
        "cv - split (paired, ± standard error).", "",
        "| task | n | rep | seeds | split | cv | diff ± SE |",
        "|---|---|---|---|---|---|---|",
    ]
    diffs = []
    for (task, n, rep), part in wide.groupby(level=[0, 1, 2], sort=False):
        d = (part["cv"] - part["split"]).dropna()
        se = standard_error(d)
        diffs.append(d.mean())
        lines.append(f"| {task} | {n} | {rep} | {len(d)} | {part['split'].mean():.4f} | {part['cv'].mean():.4f} | "
                     f"{d.mean():+.4f} ± {se:.4f} |")
    diffs = np.array(diffs)
    lines += ["", f"Over {len(diffs)} settings: cv - split {diffs.mean():+.4f} on average (higher by more than 0.002 "
              f"in {(diffs > 0.002).sum()}, lower in {(diffs < -0.002).sum()}).", ""]
    baselines = committed[~committed.method.str.startswith("refine")]
    for rule in RULES:
        rows = runs[runs.rule == rule].assign(method=lambda r: "refine[" + r["rep"] + "]")
        claims = claim_check(pd.concat([baselines, rows[["task", "n", "seed", "method", "macro_f1"]]],
                                       ignore_index=True))
        gap = claims.diff_to_best_baseline
        lines.append(f"- `{rule}` in place of `refine` against the best of every committed baseline (three "
                     f"weightings): level or ahead in {(gap >= -0.002).sum()} of {len(claims)}, ahead by more than "
                     f"0.002 in {(gap > 0.002).sum()}, mean {gap.mean():+.4f}, below by more than two paired SE in "
                     f"{int(claims.below_best_by_more_than_noise.sum())}, below the better of GNN and probe in "
                     f"{int(claims.below_by_more_than_noise.sum())}.")
        for r in claims[claims.below_best_by_more_than_noise.astype(bool)].itertuples():
            lines.append(f"  - below: {r.task} n = {r.n} {r.rep}: {r.refine:.4f} vs {r.best_baseline} "
                         f"{r.best_baseline_f1:.4f} ({r.diff_to_best_baseline:+.4f} ± {r.diff_to_best_se:.4f})")
    runs.to_csv(RESULTS / "diagnose_linear_selection.csv", index=False)
    write_report(RESULTS / "diagnose_linear_selection.md", lines)


def main(argv: list[str] | None = None) -> None:
    parser = per_task_cli(__doc__, ["encoder", "pca"])
    args = parser.parse_args(argv)
    run_task_or_report(parser, args, "diagnose_linear_selection",
                       lambda a: run(a.task, a.n, a.rep, a.seeds), report)


if __name__ == "__main__":
    main()
