"""Does the hop-feature logistic regression pick its depth better by 5-fold cross-validation than on one split?

The package chooses the depth (0-3 hops) of its logistic regressions (``neighbor_logreg``, and REFINE's
``linear[hops]`` member, its exact twin) on one stratified validation split (20 % of the labels), then refits on
every label. On osmFISH ``ClusterName`` that choice sometimes lands on hops that lose on test, where depth 0 (plain
``logreg``) wins. This diagnostic scores the alternative scikit-learn's ``GridSearchCV`` would make: the depth of
lowest 5-fold cross-validated log-loss on all labelled cells (``StratifiedKFold``, shuffled with the seed;
fewer folds when a class has fewer than 5 cells). It needs the stored fits of ``diagnose_combination.py`` (their
per-depth test probabilities, ``lin0_d{d}_test``, refitted on all labels) and fits only the cross-validation
folds; the hop features do not depend on the frozen representation, so the ``pca`` files serve.

    python benchmarks/diagnose_linear_depth.py --folder /tmp/diag   # -> results/diagnose_linear_depth.{md,csv}
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
from diagnose_rep_penalty import label_subset
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from spatial_annotation import REP_KEYS, RESULTS, load_settings

from spatial_refine.annotator import RefineAnnotator
from spatial_refine.refine.ensemble import log_loss

DEPTHS = (0, 1, 2, 3)


def score_setting(setting, n: int, seed: int, folder: Path) -> dict:
    """Depth chosen on the split (stored) vs by 5-fold cross-validation, and the test macro-F1 of each."""
    stored = np.load(folder / f"{setting.name}_{n}_pca_{seed}.npz")
    label_subset(setting, n, seed)
    try:
        model = RefineAnnotator(setting.reference, "_train_labels", rep_key=REP_KEYS["pca"], hidden=None)
        inputs = model._inputs(setting.reference)
        hops = model._node_inputs(inputs, max(DEPTHS))[model.labelled_]
    finally:
        del setting.reference.obs["_train_labels"]
    codes, n_genes = model.codes_, inputs.expression.shape[1]
    folds = StratifiedKFold(min(5, np.bincount(codes).min()), shuffle=True, random_state=seed)
    losses = {}
    for depth in DEPTHS:
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        proba = cross_val_predict(clf, hops[:, : (depth + 1) * n_genes], codes, cv=folds, method="predict_proba")
        losses[depth] = log_loss(proba, codes)
    kfold_depth = min(losses, key=losses.get)
    classes = stored["classes"]

    def f1(proba: np.ndarray) -> float:
        return f1_score(stored["y_test"], classes[proba.argmax(1)], average="macro")

    return {"task": setting.name, "n": n, "seed": seed, "split_depth": int(stored["lin0_depth"]),
            "kfold_depth": kfold_depth, "split_f1": f1(stored["lin0_test"]),
            "kfold_f1": f1(stored[f"lin0_d{kfold_depth}_test"]), "depth0_f1": f1(stored["lin0_d0_test"]),
            "best_depth_f1": max(f1(stored[f"lin0_d{d}_test"]) for d in DEPTHS)}


def report(rows: pd.DataFrame, out: Path, seconds: float) -> None:
    rows.to_csv(out.with_suffix(".csv"), index=False)
    diff = rows.kfold_f1 - rows.split_f1
    per_setting = rows.groupby(["task", "n"], sort=False)
    setting_diff = diff.groupby([rows.task, rows.n], sort=False).mean()
    lines = [
        "# Depth of the hop-feature logistic regression: one validation split or 5-fold cross-validation "
        "(diagnostic)", "",
        f"`python benchmarks/diagnose_linear_depth.py` on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}, {seconds:.0f} s: the 15 task x n settings of "
        "`spatial_annotation.md`, 5 seeds each (same labelled cells). `split`: the depth the package picks on "
        "its 20 % validation split (as `neighbor_logreg` and REFINE's `linear[hops]` member); `5-fold`: the depth "
        "of lowest cross-validated log-loss on all labelled cells. Test macro-F1 of the model refitted on all "
        "labels at that depth; `depth 0` = `logreg`; `best depth` = the best of the four on test (an oracle).", "",
        f"5-fold minus split, mean over the {len(rows)} fits: {diff.mean():+.4f} macro-F1 (per setting, by more "
        f"than 0.0005: higher in {int((setting_diff > 0.0005).sum())}, lower in {int((setting_diff < -0.0005).sum())} "
        f"of {per_setting.ngroups}); the depth differs in {int((rows.kfold_depth != rows.split_depth).sum())} fits.", "",
        "| task | n | depths (split) | depths (5-fold) | split | 5-fold | depth 0 | best depth |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (task, n), g in per_setting:
        lines.append(f"| {task} | {n} | {' '.join(map(str, g.split_depth))} | {' '.join(map(str, g.kfold_depth))} | "
                     f"{g.split_f1.mean():.3f} | {g.kfold_f1.mean():.3f} | {g.depth0_f1.mean():.3f} | "
                     f"{g.best_depth_f1.mean():.3f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(out.with_suffix(".md").read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/diagnose_combination"),
                        help="stored fits of diagnose_combination.py (with --add-depths)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args(argv)
    start = time.perf_counter()
    settings = load_settings()[0]
    rows = [score_setting(s, n, seed, args.folder) for s in settings for n in (100, 300, 1000, 3000)
            if n <= 0.8 * s.reference.n_obs for seed in args.seeds]
    report(pd.DataFrame(rows), RESULTS / "diagnose_linear_depth", time.perf_counter() - start)


if __name__ == "__main__":
    main()
