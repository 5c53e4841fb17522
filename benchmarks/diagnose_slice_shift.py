"""Is REFINE's gap to the linear probe on a new slice a slice shift? Score the same models on held-out cells
of the labelled slice and on the new slice.

For the two spatial tasks whose test set is another slice (seqFISH embryo2, MERFISH 7.-0.09; see
``spatial_annotation.py``), every method is trained as there was before class weights (package defaults with
``class_weight=None``, the frozen
``encoder`` representation pretrained on a third slice) and scored twice: on the unlabelled cells of the
reference slice (what REFINE's validation split sees) and on the new slice.

    python benchmarks/diagnose_slice_shift.py --n 300 1000 --seeds 0 1 2 3 4
    # -> benchmarks/results/diagnose_slice_shift.{md,csv}
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import f1_score
from spatial_annotation import RESULTS, _sample_labelled, load_settings

import spatial_refine as sr

#: the loss weighting the committed results were measured with (the default before 2026-12-02); the
#: package default is now class_weight="effective"
UNWEIGHTED = None

METHODS = ("logreg", "gnn", "linear_probe", "adapter", "refine")


def _f1(proba: pd.DataFrame, truth: np.ndarray) -> float:
    return f1_score(truth, proba.columns.to_numpy()[proba.to_numpy().argmax(1)], average="macro")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--tasks", nargs="+", default=["seqfish-celltype", "merfish-cellclass"])
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    settings = [s for s in load_settings()[0] if s.name in args.tasks and s.query is not None]
    rows = []
    for setting in settings:
        reference, query = setting.reference, setting.query
        truth = reference.obs[setting.labels_key].astype(str).to_numpy()
        query_truth = query.obs[setting.labels_key].astype(str).to_numpy()
        for n in args.n:
            for seed in args.seeds:
                labelled = _sample_labelled(pd.Series(truth), n, seed)
                heldout = np.setdiff1d(np.arange(reference.n_obs), labelled)
                labels = np.full(reference.n_obs, np.nan, dtype=object)
                labels[labelled] = truth[labelled]
                reference.obs["_train_labels"] = pd.Categorical(labels)
                for method in METHODS:
                    model = sr.RefineAnnotator(reference, "_train_labels", rep_key="X_encoder", strategy=method)
                    model.train(class_weight=UNWEIGHTED, random_state=seed)
                    row = {"task": setting.name, "n": n, "seed": seed, "method": method,
                           "same_slice_f1": _f1(model.predict(reference).iloc[heldout], truth[heldout]),
                           "new_slice_f1": _f1(model.predict(query), query_truth)}
                    rows.append(row)
                    print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
        del reference.obs["_train_labels"]
    runs = pd.DataFrame(rows)
    runs.to_csv(RESULTS / "diagnose_slice_shift.csv", index=False)
    table = runs.groupby(["task", "n", "method"], sort=False)[["same_slice_f1", "new_slice_f1"]].agg(["mean", "std"])
    lines = [
        "# Same slice vs new slice (macro-F1, mean +- std over seeds)",
        "",
        f"`python benchmarks/diagnose_slice_shift.py {' '.join(argv or [])}` on {platform.machine()}, "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; frozen representation `encoder`.",
        "",
        "| task | n | method | held-out cells, labelled slice | new slice | drop |",
        "|---|---|---|---|---|---|",
    ]
    for (task, n, method), r in table.iterrows():
        same, new = r[("same_slice_f1", "mean")], r[("new_slice_f1", "mean")]
        lines.append(f"| {task} | {n} | {method} | {same:.3f} +- {r[('same_slice_f1', 'std')]:.3f} | "
                     f"{new:.3f} +- {r[('new_slice_f1', 'std')]:.3f} | {same - new:.3f} |")
    (RESULTS / "diagnose_slice_shift.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
