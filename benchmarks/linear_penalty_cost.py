"""What do REFINE's penalty choice and temperature scaling (``LINEAR_CS``, ``LINEAR_TEMPERATURE``) cost?

REFINE's default (``hidden="auto"``: the SIGN network and three logistic regressions) trained on a synthetic
tissue (:func:`spatial_refine.datasets.synthetic_tissue`, log-normalised, 10-NN graph, label = the niche, a fixed
random projection of the expression as the frozen representation) with 1,000 to 10,000 labelled cells (up to
10,000 the linear members are cross-validated, and choose their penalty), with the package's default and with the
plain linear members (``LINEAR_CS = (1.0,)``, no temperature: the default before 2026-12-04) in the same run,
alternating, median of ``--repeats``; macro-F1 on the unlabelled cells.

    python benchmarks/linear_penalty_cost.py --cells 50000 --labelled 1000 3000 10000
    # -> benchmarks/results/linear_penalty_cost.{md,csv}
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
from spatial_refine import annotator
from spatial_refine.datasets import synthetic_tissue

VARIANTS = {"default": (annotator.LINEAR_CS, True), "plain C = 1": ((1.0,), False)}


def run(n_cells: int, labelled_counts: list[int], seed: int, repeats: int) -> pd.DataFrame:
    adata = synthetic_tissue(n_cells, values="log", random_state=seed)
    sr.pp.spatial_neighbors(adata, n_neighs=10)
    projection = np.random.default_rng(seed).normal(size=(adata.n_vars, 32)) / np.sqrt(adata.n_vars)
    adata.obsm["X_rep"] = np.asarray(adata.X @ projection, dtype=np.float32)
    truth = adata.obs["niche"].astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    rows = []
    for n_labelled in labelled_counts:
        labelled = np.zeros(n_cells, dtype=bool)
        labelled[rng.choice(n_cells, n_labelled, replace=False)] = True
        adata.obs["train_label"] = adata.obs["niche"].astype(object).where(labelled)
        seconds, models = {v: [] for v in VARIANTS}, {}
        for _ in range(repeats):  # alternating, median: the machine's load varies
            for name, (penalties, temperature) in VARIANTS.items():
                annotator.LINEAR_CS, annotator.LINEAR_TEMPERATURE = penalties, temperature
                start = time.perf_counter()
                models[name] = sr.RefineAnnotator(adata, "train_label", rep_key="X_rep").train(random_state=seed)
                seconds[name].append(time.perf_counter() - start)
        annotator.LINEAR_CS, annotator.LINEAR_TEMPERATURE = VARIANTS["default"]
        for name, model in models.items():
            proba = model.predict()
            predicted = proba.columns.to_numpy()[proba.to_numpy().argmax(1)]
            rows.append({"cells": n_cells, "labelled": n_labelled, "variant": name,
                         "train_s": round(float(np.median(seconds[name])), 2),
                         "penalty": str(model.metrics_.get("penalty")),
                         "unlabelled_macro_f1": round(f1_score(truth[~labelled], predicted[~labelled],
                                                               average="macro"), 4)})
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, default=50_000)
    parser.add_argument("--labelled", type=int, nargs="+", default=[1000, 3000, 10_000])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    start = time.time()
    runs = run(args.cells, args.labelled, args.seed, args.repeats)
    runs.to_csv(RESULTS / "linear_penalty_cost.csv", index=False)
    wide = runs.pivot(index="labelled", columns="variant", values="train_s")
    lines = [
        "# REFINE's penalty choice and temperature scaling: cost",
        "",
        f"`python benchmarks/linear_penalty_cost.py {' '.join(sys.argv[1:] if argv is None else argv)}` on "
        f"{platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}, {time.time() - start:.0f} s. REFINE's default on a synthetic tissue of "
        f"{args.cells:,} cells (10-NN graph, label = niche), with the package's linear members and with the plain "
        f"ones (`LINEAR_CS = (1.0,)`, no temperature); train seconds, median of {args.repeats} alternating runs; "
        "macro-F1 on the unlabelled cells.",
        "",
        "| labelled | variant | train s | unlabelled macro-F1 | penalties chosen |",
        "|---|---|---|---|---|",
        *(f"| {r.labelled:,} | {r.variant} | {r.train_s:.1f} | {r.unlabelled_macro_f1:.4f} | {r.penalty} |"
          for r in runs.itertuples()),
        "",
        "default / plain train time: " + ", ".join(
            f"{n:,} labelled {wide.loc[n, 'default'] / wide.loc[n, 'plain C = 1']:.2f}x" for n in wide.index) + ".",
    ]
    (RESULTS / "linear_penalty_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
