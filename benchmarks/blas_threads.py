"""Logistic-regression fits with one BLAS thread (the package default) against unlimited BLAS threads.

numpy and scipy wheels each bring their own OpenBLAS; scikit-learn's L-BFGS alternates between them at every
step, and with several threads per pool they contend. The annotator therefore fits its logistic regressions
under ``threadpool_limits(LINEAR_FIT_BLAS_THREADS, user_api="blas")`` (1). This times, in the same run and the
same process settings (every thread the machine has, as a user runs it), training with that limit and with
the limit lifted (``LINEAR_FIT_BLAS_THREADS = None``), and checks that both give the same probabilities:

- the shipped MERFISH demo slice (one slice, 500 labelled cells): ``neighbor_logreg`` and the default REFINE
  (its three logistic-regression members next to the network);
- a synthetic tissue of 200,000 cells with 10,000 labelled: ``neighbor_logreg``.

    python benchmarks/blas_threads.py
    # -> benchmarks/results/blas_threads.{md,csv}
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np
import pandas as pd
import scanpy as sc
import torch
from spatial_annotation import RESULTS

import spatial_refine as sr
import spatial_refine.annotator as annotator
from spatial_refine.datasets import synthetic_tissue

#: the loss weighting the committed results were measured with (the default before 2026-12-02); the
#: package default is now class_weight="effective"
UNWEIGHTED = None


def _label(adata, key: str, n_labelled: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    labelled = np.zeros(adata.n_obs, dtype=bool)
    labelled[rng.choice(adata.n_obs, n_labelled, replace=False)] = True
    adata.obs["train_label"] = adata.obs[key].astype(object).where(labelled)
    counts = adata.obs["train_label"].value_counts()
    adata.obs.loc[adata.obs["train_label"].isin(counts[counts < 5].index), "train_label"] = np.nan


def _datasets() -> dict:
    demo = sr.datasets.merfish_demo()
    demo = demo[demo.obs["samples"] == demo.obs["samples"].cat.categories[0]].copy()
    sr.pp.spatial_neighbors(demo, n_neighs=10)
    _label(demo, "Cell_class", 500)
    sc.pp.pca(demo, n_comps=20, random_state=0)
    tissue = synthetic_tissue(200_000, values="log", random_state=0)
    sr.pp.spatial_neighbors(tissue, n_neighs=10)
    _label(tissue, "niche", 10_000)
    return {"MERFISH demo slice, 500 labelled": demo, "synthetic 200,000 cells, 10,000 labelled": tissue}


def main() -> None:
    start_all = time.time()
    rows = []
    datasets = _datasets()
    warm_up = next(iter(datasets.values()))  # first calls (imports, allocations) outside the timings
    sr.RefineAnnotator(warm_up, "train_label", rep_key="X_pca").train(class_weight=UNWEIGHTED, max_epochs=2, random_state=0)
    for data_name, adata in datasets.items():
        strategies = ["neighbor_logreg", "refine"] if adata.n_obs < 100_000 else ["neighbor_logreg"]
        for strategy in strategies:
            probas = {}
            for limit in (1, None):
                annotator.LINEAR_FIT_BLAS_THREADS = limit
                start = time.perf_counter()
                model = sr.RefineAnnotator(adata, "train_label", rep_key="X_pca" if strategy == "refine" else None,
                                           strategy=strategy).train(class_weight=UNWEIGHTED, random_state=0)
                seconds = time.perf_counter() - start
                probas[limit] = model.predict().to_numpy()
                rows.append({"data": data_name, "strategy": strategy, "blas_threads": limit or "unlimited",
                             "train_s": round(seconds, 2)})
                print(rows[-1], flush=True)
            rows[-1]["max_proba_difference"] = float(np.abs(probas[1] - probas[None]).max())
    annotator.LINEAR_FIT_BLAS_THREADS = 1
    runs = pd.DataFrame(rows)
    runs.to_csv(RESULTS / "blas_threads.csv", index=False)
    lines = [
        "# Logistic-regression fits: one BLAS thread vs unlimited",
        "",
        f"`python benchmarks/blas_threads.py` on {platform.machine()} ({platform.processor() or 'cpu'}), "
        f"{os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, no thread "
        f"variables set, {time.strftime('%Y-%m-%d %H:%M')}, {time.time() - start_all:.0f} s. Train time of "
        "`RefineAnnotator(...).train(class_weight=None)` (package defaults of 2026-12-02 before class weights; REFINE on a 20-d PCA, `sc.pp.pca`) with its logistic regressions fitted "
        "under one BLAS thread (`LINEAR_FIT_BLAS_THREADS = 1`, the default) and with no limit.",
        "",
        "| data | strategy | train s, 1 BLAS thread | train s, unlimited | unlimited / 1 | max probability difference |",
        "|---|---|---|---|---|---|",
    ]
    for (data_name, strategy), group in runs.groupby(["data", "strategy"], sort=False):
        one, unlimited = group["train_s"].to_numpy()
        difference = group["max_proba_difference"].dropna().iloc[0]
        lines.append(f"| {data_name} | {strategy} | {one:.2f} | {unlimited:.2f} | {unlimited / one:.1f}x | "
                     f"{difference:.1e} |")
    (RESULTS / "blas_threads.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
