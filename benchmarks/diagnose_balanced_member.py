"""A lead for REFINE's candidate pool: the hop-feature logistic regression with class-balanced weights.

REFINE's ensemble selection cannot pick up what its candidates miss (``diagnose_shift_validation.md``: on MERFISH
with the PCA of one slice, rare classes decide macro-F1 and the PCA loses them). This diagnostic fits REFINE's
hop-feature member exactly as the package does (``strategy="neighbor_logreg"``: cell + mean of its 1..L-hop
neighbours, depth by 5-fold cross-validation, refitted on all labelled cells) with ``class_weight=None`` (the
package default when this was measured; balanced was the default next, effective-number weights since) and ``class_weight="balanced"``, on every task, n and seed of
``spatial_annotation.py``, and reports test macro-F1, accuracy and validation log-loss of both, next to REFINE and
the best baseline of ``spatial_annotation-runs.csv``. It changes nothing in the package.

    python benchmarks/diagnose_balanced_member.py --seeds 0 1 2 3 4
    # -> benchmarks/results/diagnose_balanced_member.{md,csv}
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from spatial_annotation import RESULTS, _sample_labelled, load_settings, standard_error, train_and_predict

WEIGHTS = {"unweighted": None, "balanced": "balanced"}


def fit_member(setting, labelled: np.ndarray, seed: int, class_weight: str | None) -> dict:
    """REFINE's hop-feature member on the labelled cells; scores on the test cells as spatial_annotation.py."""
    model, y_pred, y_true = train_and_predict(setting, labelled, seed, class_weight=class_weight,
                                              strategy="neighbor_logreg")
    return {"macro_f1": f1_score(y_true, y_pred, average="macro"), "accuracy": accuracy_score(y_true, y_pred),
            "val_loss": model.metrics_["val_loss"], "n_layers": model.n_layers_}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 300, 1000, 3000])
    args = parser.parse_args(argv)
    start = time.time()
    settings, _ = load_settings()
    rows = []
    for setting in settings:
        truth = setting.reference.obs[setting.labels_key].astype(str).reset_index(drop=True)
        for n in args.n:
            if n > 0.8 * setting.reference.n_obs:
                continue
            for seed in args.seeds:
                labelled = _sample_labelled(truth, n, seed)
                for name, weight in WEIGHTS.items():
                    rows.append({"task": setting.name, "n": n, "seed": seed, "weights": name,
                                 **fit_member(setting, labelled, seed, weight)})
                print(f"{setting.name} n={n} seed={seed} ({time.time() - start:.0f} s)", flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(RESULTS / "diagnose_balanced_member.csv", index=False)
    write_report(table, time.time() - start, argv)


def write_report(table: pd.DataFrame, seconds: float, argv: list[str] | None) -> None:
    runs = pd.read_csv(RESULTS / "spatial_annotation-runs.csv")
    wide = table.pivot_table(index=["task", "n", "seed"], columns="weights", values=["macro_f1", "accuracy", "val_loss"])
    lines = [
        "# The hop-feature member with class-balanced weights (diagnostic)", "",
        f"`python benchmarks/diagnose_balanced_member.py {' '.join(argv or [])}` on {platform.machine()}, "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}, {seconds:.0f} s. REFINE's hop-feature member "
        "(`strategy=\"neighbor_logreg\"`, depth by 5-fold cross-validation, refitted on all labelled cells) fitted "
        "unweighted (the package default when measured) and with `class_weight=\"balanced\"`; test macro-F1 / accuracy as in "
        "`spatial_annotation.py`; diff = balanced minus unweighted (mean over seeds +- standard error); "
        "`val lower` = seeds where the balanced fit has the lower validation log-loss (what ensemble selection "
        "reads). REFINE (PCA / encoder) and the best baseline from `spatial_annotation-runs.csv` for context.", "",
        "| task | n | macro-F1 unweighted | macro-F1 balanced | diff +- SE | accuracy diff | val lower | "
        "REFINE pca / encoder | best baseline |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    diffs = []
    for (task, n), group in wide.groupby(level=[0, 1]):
        f1 = group["macro_f1"]
        d = f1["balanced"] - f1["unweighted"]
        diffs.append(d.mean())
        acc = (group["accuracy"]["balanced"] - group["accuracy"]["unweighted"]).mean()
        lower = int((group["val_loss"]["balanced"] < group["val_loss"]["unweighted"]).sum())
        here = runs[(runs.task == task) & (runs.n == n)]
        means = here.groupby("method").macro_f1.mean()
        refine = " / ".join(f"{means.get(f'refine[{rep}]', np.nan):.3f}" for rep in ("pca", "encoder"))
        baselines = means[[m for m in means.index if not m.startswith("refine")]]
        best = f"{baselines.idxmax()} {baselines.max():.3f}" if len(baselines) else "-"
        se = standard_error(d)
        lines.append(f"| {task} | {n} | {f1['unweighted'].mean():.3f} | {f1['balanced'].mean():.3f} | "
                     f"{d.mean():+.3f} +- {se:.3f} | {acc:+.3f} | {lower} / {len(d)} | {refine} | {best} |")
    lines += ["", f"Mean macro-F1 difference over the {len(diffs)} settings: {np.mean(diffs):+.4f} "
              f"(higher in {sum(x > 0.002 for x in diffs)}, lower in {sum(x < -0.002 for x in diffs)}, by more "
              "than 0.002).", ""]
    (RESULTS / "diagnose_balanced_member.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
