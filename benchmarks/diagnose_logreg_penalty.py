"""How strongly should a logistic regression on expression be penalised, and can cross-validation tell?

The logistic regression on standardised expression (the ``logreg`` baseline, and depth 0 of REFINE's linear member
on the hop features) with the benchmark's default class weights (``"effective"``), at each inverse L2 penalty ``C``
of 0.01-1 (scikit-learn's default: 1), fitted on the labelled cells of ``spatial_annotation.py`` (same draws, seeds
0-9) and scored on its test cells; and ``C`` chosen per fit by 5-fold cross-validation on the labelled cells
(stratified, shuffled with the seed) under four criteria: the out-of-fold log-loss, the class-weighted log-loss
(the fit's weights), the balanced log-loss (each class the same total weight) and the macro-F1. This is what
``spatial_refine.annotator.LINEAR_CS`` builds on (``diagnose_linear_penalty.md``: the macro-F1 criterion inside
REFINE). Command (one task per process; ``--report`` merges the parts)::

    python benchmarks/diagnose_logreg_penalty.py --task osmfish-cluster --out part.csv
    python benchmarks/diagnose_logreg_penalty.py --report part.csv ...
    # -> benchmarks/results/diagnose_logreg_penalty.{md,csv}
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, log_loss
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from spatial_annotation import RESULTS, _dense, labelled_samples, load_settings, standard_error

from spatial_refine.annotator import effective_number_weights

PENALTIES = (0.01, 0.03, 0.1, 0.3, 1.0)
CRITERIA = ("log_loss", "weighted_log_loss", "balanced_log_loss", "macro_f1")
NS = (100, 300, 1000)
SEEDS = tuple(range(10))


def _fit(x, codes, c, weights):
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=c, max_iter=1000, class_weight=dict(enumerate(weights)))
    return scaler, model.fit(scaler.transform(x), codes)


def run(task: str) -> pd.DataFrame:
    """One row per fit: the test macro-F1 at every C and the C each criterion picks."""
    setting = load_settings(tasks=[task])[0][0]
    x_ref = _dense(setting.reference.X).astype(np.float64)
    truth = setting.reference.obs[setting.labels_key].astype(str).to_numpy()
    rows = []
    for n, seed, labelled in labelled_samples(setting, list(NS), list(SEEDS)):
        classes, codes = np.unique(truth[labelled], return_inverse=True)
        weights = effective_number_weights(np.bincount(codes))
        if setting.query is not None:  # the new slice
            x_test, y_test = _dense(setting.query.X), setting.query.obs[setting.labels_key].astype(str).to_numpy()
        else:
            test = np.setdiff1d(np.arange(len(truth)), labelled)
            x_test, y_test = x_ref[test], truth[test]
        folds = list(StratifiedKFold(min(5, np.bincount(codes).min()), shuffle=True, random_state=seed)
                     .split(labelled, codes))
        row, scores = {"task": task, "n": n, "seed": seed}, {}
        for c in PENALTIES:
            oof = np.zeros((len(labelled), len(classes)))
            for fit_rows, held_rows in folds:
                scaler, model = _fit(x_ref[labelled[fit_rows]], codes[fit_rows], c, weights)
                held = scaler.transform(x_ref[labelled[held_rows]])
                oof[np.ix_(held_rows, model.classes_)] = model.predict_proba(held)
            oof = np.clip(oof, 1e-12, 1)
            labels = range(len(classes))
            scores[c] = {"log_loss": log_loss(codes, oof, labels=labels),
                         "weighted_log_loss": log_loss(codes, oof, labels=labels, sample_weight=weights[codes]),
                         "balanced_log_loss": log_loss(codes, oof, labels=labels,
                                                       sample_weight=(1 / np.bincount(codes))[codes]),
                         "macro_f1": -f1_score(codes, oof.argmax(1), average="macro")}
            scaler, model = _fit(x_ref[labelled], codes, c, weights)
            row[f"test_C={c:g}"] = f1_score(y_test, classes[model.predict(scaler.transform(x_test))], average="macro")
        for criterion in CRITERIA:  # lowest (macro-F1 negated); ties: the larger C
            picked = min(sorted(PENALTIES, reverse=True), key=lambda c, k=criterion: scores[c][k])
            row[f"C_{criterion}"], row[f"test_{criterion}"] = picked, row[f"test_C={picked:g}"]
        rows.append(row)
        print(row, flush=True)
    return pd.DataFrame(rows)


def report(paths: list[str]) -> None:
    runs = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    runs.to_csv(RESULTS / "diagnose_logreg_penalty.csv", index=False)
    fixed = [f"test_C={c:g}" for c in PENALTIES]
    lines = ["# The logistic regression on expression at each L2 penalty, and C chosen by cross-validation "
             "(diagnostic)", "",
             f"`python benchmarks/diagnose_logreg_penalty.py` per task, then `--report` ({platform.machine()}, "
             f"{time.strftime('%Y-%m-%d %H:%M')}). Test macro-F1, mean over seeds "
             f"{min(SEEDS)}-{max(SEEDS)}; `C` fixed (scikit-learn's default 1), or picked per fit by 5-fold "
             "cross-validation on the labelled cells by each criterion (its picks' median in brackets); "
             "diff = macro-F1 criterion minus C = 1, paired.", "",
             "| task | n | " + " | ".join(f"C = {c:g}" for c in PENALTIES) + " | "
             + " | ".join(CRITERIA) + " | macro_f1 - (C = 1) ± SE |",
             "|---|---|" + "---|" * (len(PENALTIES) + len(CRITERIA) + 1)]
    for (task, n), group in runs.groupby(["task", "n"]):
        diff = group.test_macro_f1 - group["test_C=1"]
        picked = [f"{group[f'test_{k}'].mean():.4f} ({group[f'C_{k}'].median():g})" for k in CRITERIA]
        lines.append(f"| {task} | {n} | " + " | ".join(f"{group[f].mean():.4f}" for f in fixed) + " | "
                     + " | ".join(picked) + f" | {diff.mean():+.4f} ± {standard_error(diff):.4f} |")
    path = RESULTS / "diagnose_logreg_penalty.md"
    path.write_text("\n".join(lines) + "\n")
    print(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task")
    parser.add_argument("--out")
    parser.add_argument("--report", nargs="+")
    args = parser.parse_args()
    if args.report:
        report(args.report)
    else:
        run(args.task).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
