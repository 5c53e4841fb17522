"""Class weights between none and balanced: do tempered weights keep the gains and lose the cost?

The class-balanced default of the time raised REFINE by 0.0086 macro-F1 on average over the spatial benchmark, most where
rare classes have few labels (MERFISH n = 3000 with PCA +0.032), but cost it where every class has enough
(osmFISH regions, n = 3000: -0.006; ``diagnose_weights_per_class.md``: the rare regions get over-predicted).
This diagnostic trains the default REFINE on the same labelled cells and seeds as ``spatial_annotation.py``
with hand-set weights (``train(class_weight={label: weight})``), normalised so that the labelled cells' mean
weight is 1 as with ``"balanced"``:

- ``sqrt``: the square root of the balanced weight, ``(n / (k n_c)) ** 0.5``;
- ``effective``: the inverse "effective number" of each class's labelled cells (Cui et al., CVPR 2019),
  ``(1 - beta) / (1 - beta ** n_c)`` with ``beta = 0.99``: close to balanced for classes of a few cells, flat
  once every class has a few hundred.

and puts them next to the committed unweighted and balanced REFINE fits of ``spatial_annotation-runs.csv``
(``refine_unweighted``, ``refine_bal``). It changes nothing in the package. (Its ``effective`` scheme became the
package default on 2026-12-02: its fits are the benchmark's ``refine`` rows now, and this report, written while
``"balanced"`` was the default, compares with the balanced REFINE and the unweighted and ``_bal`` baselines.)

    python benchmarks/diagnose_tempered_weights.py --task osmfish-region --n 3000 --rep encoder --out part.csv
    python benchmarks/diagnose_tempered_weights.py --report part.csv ...
    # -> benchmarks/results/diagnose_tempered_weights.{md,csv}
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, f1_score
from spatial_annotation import (
    REP_KEYS,
    RESULTS,
    labelled_samples,
    load_settings,
    per_task_cli,
    run_task_or_report,
    standard_error,
    train_and_predict,
)

from spatial_refine.annotator import EFFECTIVE_NUMBER_BETA, effective_number_weights

SCHEMES = ("sqrt", "effective")
BETA = EFFECTIVE_NUMBER_BETA


def tempered_weights(labels: pd.Series, scheme: str) -> dict[str, float]:
    """Per-class weights of the labelled cells' labels, normalised to a mean weight of 1 per labelled cell."""
    counts = labels.value_counts()
    if scheme == "effective":  # the package's class_weight="effective"
        raw = effective_number_weights(counts.to_numpy(), BETA)
    elif scheme == "sqrt":
        raw = np.sqrt(len(labels) / (len(counts) * counts.to_numpy()))
        raw = raw * len(labels) / float((raw * counts.to_numpy()).sum())
    else:
        raise ValueError(f"unknown scheme {scheme!r}")
    return {str(label): float(weight) for label, weight in zip(counts.index, raw, strict=True)}


def fit(setting, rep: str, labelled: np.ndarray, seed: int, class_weight: dict) -> dict:
    _, y_pred, y_true = train_and_predict(setting, labelled, seed, class_weight=class_weight, rep_key=REP_KEYS[rep])
    return {"macro_f1": f1_score(y_true, y_pred, average="macro"), "accuracy": accuracy_score(y_true, y_pred)}


def run(task: str, ns: list[int], reps: list[str], seeds: list[int], schemes: list[str]) -> pd.DataFrame:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    setting = load_settings(tasks=[task])[0][0]
    truth = setting.reference.obs[setting.labels_key].astype(str).reset_index(drop=True)
    rows = []
    for n, seed, labelled in labelled_samples(setting, ns, seeds):
        for rep in reps:
            for scheme in schemes:
                start = time.perf_counter()
                scores = fit(setting, rep, labelled, seed, tempered_weights(truth.iloc[labelled], scheme))
                rows.append({"task": task, "n": n, "rep": rep, "seed": seed, "weights": scheme, **scores,
                             "seconds": time.perf_counter() - start})
                print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def report(paths: list[str]) -> None:
    tempered = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    key = ["task", "n", "rep", "seed", "weights"]
    repeated = tempered[tempered.duplicated(key, keep=False)].groupby(key)["macro_f1"].agg(["min", "max"])
    if not repeated.empty:  # a fit run twice must give the same score (reproducibility)
        assert (repeated["max"] - repeated["min"]).abs().max() == 0.0, repeated
    tempered = tempered.drop_duplicates(key)
    committed = pd.read_csv(RESULTS / "spatial_annotation-runs.csv")
    lines = [
        "# Tempered class weights for REFINE (diagnostic)", "",
        f"`python benchmarks/diagnose_tempered_weights.py` per setting, then `--report` ({platform.machine()}, "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}). The default REFINE trained with hand-set "
        "class weights (`sqrt`: square root of the balanced weights; `effective`: inverse effective number, beta "
        f"= {BETA}; both normalised to a mean weight of 1 per labelled cell) next to the committed unweighted "
        "(`refine_unweighted`) and balanced (`refine_bal`, the default then) fits of `spatial_annotation-runs.csv`, same "
        "seeds and labelled cells. Macro-F1 on the test cells, mean over seeds (paired difference to the "
        "balanced default +- standard error).", "",
        "| task | n | rep | seeds | unweighted | balanced (default then) | sqrt | effective |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (task, n, rep), part in tempered.groupby(["task", "n", "rep"], sort=False):
        seeds = sorted(part["seed"].unique())
        base = committed[(committed.task == task) & (committed.n == n) & committed.seed.isin(seeds)]
        balanced = base[base.method == f"refine_bal[{rep}]"].set_index("seed")["macro_f1"]
        unweighted = base[base.method == f"refine_unweighted[{rep}]"].set_index("seed")["macro_f1"]
        cells = []
        for scheme in SCHEMES:
            scores = part[part.weights == scheme].set_index("seed")["macro_f1"]
            if scores.empty:
                cells.append("-")
                continue
            diff = (scores - balanced).dropna()
            se = standard_error(diff)
            cells.append(f"{scores.mean():.4f} ({diff.mean():+.4f} ± {se:.4f})")
        diff_u = (unweighted - balanced).dropna()
        cells_u = f"{unweighted.mean():.4f} ({diff_u.mean():+.4f})"
        lines.append(f"| {task} | {n} | {rep} | {len(seeds)} | {cells_u} | {balanced.mean():.4f} | "
                     + " | ".join(cells) + " |")
    lines += ["", *_claim_lines(tempered, committed)]
    tempered.to_csv(RESULTS / "diagnose_tempered_weights.csv", index=False)
    (RESULTS / "diagnose_tempered_weights.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _claim_lines(tempered: pd.DataFrame, committed: pd.DataFrame) -> list[str]:
    """Each scheme in place of the default REFINE, through spatial_annotation.py's claim check, where it ran on
    every setting's seeds."""
    from spatial_annotation import claim_check

    lines = []
    for scheme in SCHEMES:
        runs = tempered[tempered.weights == scheme]
        if runs.empty:
            continue
        settings = runs.groupby(["task", "n", "rep"]).ngroups
        rows = runs.assign(method=lambda r: "refine[" + r["rep"] + "]")[["task", "n", "seed", "method", "macro_f1"]]
        # the baselines of the report's day: unweighted and class-balanced (not the later "_eff" ones)
        baselines = committed[~committed.method.str.startswith("refine") & ~committed.method.str.contains("_eff")]
        claims = claim_check(pd.concat([baselines, rows], ignore_index=True))
        balanced = committed[committed.method.str.startswith("refine_bal[")]
        balanced = balanced.assign(method=balanced.method.str.replace("refine_bal[", "refine[", regex=False))
        default = claim_check(pd.concat([baselines, balanced], ignore_index=True))
        default = default.merge(claims[["task", "n", "rep"]], on=["task", "n", "rep"])
        gain = claims.set_index(["task", "n", "rep"])["refine"] - default.set_index(["task", "n", "rep"])["refine"]
        lines.append(
            f"`{scheme}` on {settings} settings: {gain.mean():+.4f} macro-F1 over the balanced default on average "
            f"(higher by more than 0.002 in {(gain > 0.002).sum()}, lower in {(gain < -0.002).sum()}); against the "
            f"best of every baseline (both weightings) level or ahead in "
            f"{(claims.diff_to_best_baseline >= -0.002).sum()} (default: {(default.diff_to_best_baseline >= -0.002).sum()}), "
            f"below by more than two paired standard errors in {int(claims.below_best_by_more_than_noise.sum())} "
            f"(default: {int(default.below_best_by_more_than_noise.sum())}), mean difference to the best "
            f"{claims.diff_to_best_baseline.mean():+.4f} ({default.diff_to_best_baseline.mean():+.4f}).")
        below = claims[claims.below_best_by_more_than_noise.astype(bool)]
        for r in below.itertuples():
            lines.append(f"- below: {r.task} n = {r.n} {r.rep}: {r.refine:.4f} vs {r.best_baseline} "
                         f"{r.best_baseline_f1:.4f} ({r.diff_to_best_baseline:+.4f} ± {r.diff_to_best_se:.4f})")
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = per_task_cli(__doc__, ["encoder"])
    parser.add_argument("--schemes", nargs="+", choices=SCHEMES, default=list(SCHEMES))
    args = parser.parse_args(argv)
    run_task_or_report(parser, args, "diagnose_tempered_weights",
                       lambda a: run(a.task, a.n, a.rep, a.seeds, a.schemes), report)


if __name__ == "__main__":
    main()
