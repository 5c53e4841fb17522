"""Where do class-balanced losses cost? Per-class precision, recall and F1 with and without the weights.

On osmFISH anatomical regions with 3,000 labelled cells the class-balanced default of the time put REFINE (0.953 macro-F1)
below the unweighted GNN from scratch (0.960), and the balanced GNN lost too (0.951;
``spatial_annotation.md``). This diagnostic trains a model (``--strategy``, default ``gnn``) on the same
labelled cells, seeds and package defaults as ``spatial_annotation.py``, once with ``class_weight=None`` and once
with ``"balanced"``, and reports for every class its share of the labelled cells and the test precision, recall
and F1 of both, averaged over seeds. It changes nothing in the package.

    python benchmarks/diagnose_weights_per_class.py --task osmfish-region --n 3000 --seeds 0 1 2 3 4
    # -> benchmarks/results/diagnose_weights_per_class.{md,csv}
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import f1_score, precision_recall_fscore_support
from spatial_annotation import REP_KEYS, RESULTS, TASKS, _sample_labelled, load_settings, train_and_predict

WEIGHTS = {"unweighted": None, "balanced": "balanced"}


def per_class(setting, strategy: str, rep: str, labelled: np.ndarray, seed: int, class_weight) -> pd.DataFrame:
    """Test precision / recall / F1 per class of one fit (test cells as in spatial_annotation.py)."""
    truth = setting.reference.obs[setting.labels_key].astype(str).to_numpy()
    _, y_pred, y_true = train_and_predict(setting, labelled, seed, class_weight=class_weight, rep_key=REP_KEYS[rep],
                                          strategy=strategy)
    classes = np.unique(y_true)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    share = pd.Series(truth[labelled]).value_counts(normalize=True)
    return pd.DataFrame({"class": classes, "labelled_share": share.reindex(classes).fillna(0.0).to_numpy(),
                         "precision": precision, "recall": recall, "f1": f1, "test_cells": support,
                         "macro_f1": f1_score(y_true, y_pred, average="macro")})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="osmfish-region", choices=TASKS)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--strategy", default="gnn")
    parser.add_argument("--rep", default="encoder", choices=sorted(REP_KEYS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    start = time.time()
    setting = load_settings(tasks=[args.task])[0][0]
    truth = setting.reference.obs[setting.labels_key].astype(str).reset_index(drop=True)
    frames = []
    for seed in args.seeds:
        labelled = _sample_labelled(truth, args.n, seed)
        for name, class_weight in WEIGHTS.items():
            frame = per_class(setting, args.strategy, args.rep, labelled, seed, class_weight)
            frames.append(frame.assign(seed=seed, weights=name))
            print(f"seed {seed} {name:10s} macro-F1 {frame['macro_f1'].iloc[0]:.4f}", flush=True)
    runs = pd.concat(frames, ignore_index=True)
    table = runs.pivot_table(index="class", columns="weights", values=["precision", "recall", "f1"], aggfunc="mean")
    share = runs.groupby("class")["labelled_share"].mean()
    cells = runs.groupby("class")["test_cells"].mean()
    macro = runs.groupby(["weights", "seed"])["macro_f1"].first().groupby("weights").mean()
    out = RESULTS / "diagnose_weights_per_class"
    runs.to_csv(out.with_suffix(".csv"), index=False)
    lines = [
        "# Per-class cost of class-balanced losses (diagnostic)", "",
        f"`python benchmarks/diagnose_weights_per_class.py {' '.join(argv or [])}` on {platform.machine()}, "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}, {time.time() - start:.0f} s. "
        f"Task `{args.task}`, n = {args.n}, strategy `{args.strategy}` (rep `{args.rep}` where used), seeds "
        f"{args.seeds}; test cells as in `spatial_annotation.py`. Macro-F1 unweighted {macro['unweighted']:.4f}, "
        f"balanced {macro['balanced']:.4f}. Per class (mean over seeds; classes by their share of the labelled "
        "cells; diff = balanced minus unweighted):", "",
        "| class | labelled share | test cells | precision unw. / bal. | recall unw. / bal. | F1 unw. / bal. | F1 diff |",
        "|---|---:|---:|---|---|---|---:|",
    ]
    for cls in share.sort_values().index:
        p, r, f = (table.loc[cls, (k, "unweighted")] for k in ("precision", "recall", "f1"))
        pb, rb, fb = (table.loc[cls, (k, "balanced")] for k in ("precision", "recall", "f1"))
        lines.append(f"| {cls} | {share[cls]:.3f} | {cells[cls]:.0f} | {p:.3f} / {pb:.3f} | {r:.3f} / {rb:.3f} | "
                     f"{f:.3f} / {fb:.3f} | {fb - f:+.3f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
