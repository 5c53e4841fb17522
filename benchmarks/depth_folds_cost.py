"""What does choosing a logistic regression's depth by 5-fold cross-validation cost, against one split?

``train(depth_folds="auto")`` (the default) chooses the depth (0-3 hops) of the logistic regressions
(``neighbor_logreg``, REFINE's linear members) by 5-fold cross-validation on all labelled cells up to
10,000 of them, and on the 20 % validation split above. This times ``neighbor_logreg`` on a synthetic tissue
(:func:`spatial_refine.datasets.synthetic_tissue`, log-normalised, 100 genes, 10-NN graph, label = the niche)
with 1,000 to 10,000 labelled cells, both ways in the same run, and scores each on the unlabelled cells.

    python benchmarks/depth_folds_cost.py --cells 200000 --labelled 1000 3000 10000
    # -> benchmarks/results/depth_folds_cost.{md,csv}
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import f1_score
from spatial_annotation import RESULTS

import spatial_refine as sr
from spatial_refine.datasets import synthetic_tissue

#: the loss weighting the committed results were measured with (the default before 2026-12-02); the
#: package default is now class_weight="effective"
UNWEIGHTED = None


def run(n_cells: int, labelled_counts: list[int], seed: int, repeats: int = 3) -> pd.DataFrame:
    adata = synthetic_tissue(n_cells, values="log", random_state=seed)
    sr.pp.spatial_neighbors(adata, n_neighs=10)
    truth = adata.obs["niche"].astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    warm_up = np.zeros(n_cells, dtype=bool)  # first calls (imports, allocations) outside the timings
    warm_up[np.random.default_rng(seed + 1).choice(n_cells, 500, replace=False)] = True
    adata.obs["train_label"] = adata.obs["niche"].astype(object).where(warm_up)
    sr.RefineAnnotator(adata, "train_label", strategy="neighbor_logreg").train(class_weight=UNWEIGHTED, depth_folds=None, random_state=seed)
    rows = []
    for n_labelled in labelled_counts:
        labelled = np.zeros(n_cells, dtype=bool)
        labelled[rng.choice(n_cells, n_labelled, replace=False)] = True
        adata.obs["train_label"] = adata.obs["niche"].astype(object).where(labelled)
        seconds, models = {5: [], None: []}, {}
        for _ in range(repeats):  # alternating, median: the machine's load varies
            for folds in (5, None):
                start = time.perf_counter()
                models[folds] = sr.RefineAnnotator(adata, "train_label", strategy="neighbor_logreg")
                models[folds].train(class_weight=UNWEIGHTED, depth_folds=folds, random_state=seed)
                seconds[folds].append(time.perf_counter() - start)
        for folds, model in models.items():
            proba = model.predict()
            predicted = proba.columns.to_numpy()[proba.to_numpy().argmax(1)]
            rows.append({
                "cells": n_cells, "labelled": n_labelled, "depth_by": "5-fold" if folds else "split",
                "depth": model.n_layers_, "train_s": round(float(np.median(seconds[folds])), 2),
                "unlabelled_macro_f1": round(f1_score(truth[~labelled], predicted[~labelled], average="macro"), 4),
            })
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, default=200_000)
    parser.add_argument("--labelled", type=int, nargs="+", default=[1000, 3000, 10_000])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    start = time.time()
    runs = run(args.cells, args.labelled, args.seed)
    runs.to_csv(RESULTS / "depth_folds_cost.csv", index=False)
    wide = runs.pivot(index="labelled", columns="depth_by", values="train_s")
    lines = [
        "# Depth of the logistic regression by 5-fold cross-validation vs one split: cost",
        "",
        f"`python benchmarks/depth_folds_cost.py {' '.join(sys.argv[1:] if argv is None else argv)}` on "
        f"{platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}, {time.time() - start:.0f} s. `neighbor_logreg` (depths 0-3) on a "
        f"synthetic tissue of {args.cells:,} cells (100 genes, 10-NN graph, label = niche); train seconds include the "
        "hop features of every cell (median of 3 alternating runs); macro-F1 on the unlabelled cells.",
        "",
        "| labelled | depth by | depth | train s | unlabelled macro-F1 |",
        "|---|---|---|---|---|",
        *(f"| {r.labelled:,} | {r.depth_by} | {r.depth} | {r.train_s:.1f} | {r.unlabelled_macro_f1:.4f} |"
          for r in runs.itertuples()),
        "",
        "5-fold / split train time: " + ", ".join(
            f"{n:,} labelled {wide.loc[n, '5-fold'] / wide.loc[n, 'split']:.1f}x" for n in wide.index) + ".",
    ]
    (RESULTS / "depth_folds_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
