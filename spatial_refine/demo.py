"""``spatial-refine demo``: REFINE against the baselines on the MERFISH subset shipped with the package.

Reference: slice ``1.-0.09`` with ``n_labelled`` labelled cells; query: slice ``7.-0.09`` (label transfer).
Frozen source representation: PCA of the reference's expression, applied unchanged to the query (a
stand-in for a foundation-model embedding such as scGPT, which is not shipped). Prints a table and saves
a figure.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

METHODS = ("logreg", "neighbor_logreg", "linear_probe", "gnn", "refine")
#: fewest labelled reference cells the demo accepts (every class it learns needs a few)
MIN_LABELLED = 20


class DemoOptionError(ValueError):
    """A demo option out of range (the command line reports it without a traceback)."""


def _frozen_pca(reference, query, n_components: int, random_state: int) -> None:
    from sklearn.decomposition import PCA

    pca = PCA(n_components=n_components, random_state=random_state).fit(reference.X)
    reference.obsm["X_source"] = pca.transform(reference.X).astype(np.float32)
    query.obsm["X_source"] = pca.transform(query.X).astype(np.float32)


def run_demo(out_dir: Path, *, n_labelled: int = 500, random_state: int = 0, verbose: bool = True) -> pd.DataFrame:
    """Run the demo; return the results table and write ``demo_results.csv`` and ``demo.png`` to ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import accuracy_score, f1_score

    import spatial_refine as sr

    warnings.filterwarnings("ignore", category=FutureWarning)
    adata = sr.datasets.merfish_demo()
    reference = adata[adata.obs["samples"] == "1.-0.09"].copy()
    query = adata[adata.obs["samples"] == "7.-0.09"].copy()
    if not MIN_LABELLED <= n_labelled < reference.n_obs:
        raise DemoOptionError(
            f"n_labelled must be between {MIN_LABELLED} and {reference.n_obs - 1} (the reference slice has "
            f"{reference.n_obs} cells; the others are held out), got {n_labelled}."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for part in (reference, query):
        sr.pp.spatial_neighbors(part, n_neighs=10)
    _frozen_pca(reference, query, 30, random_state)

    rng = np.random.default_rng(random_state)
    labels = reference.obs["Cell_class"].astype(object).copy()
    hidden = np.ones(reference.n_obs, dtype=bool)
    hidden[rng.choice(reference.n_obs, n_labelled, replace=False)] = False
    labels[hidden] = np.nan
    counts = labels.value_counts()
    labels[labels.isin(counts.index[counts < 3])] = np.nan  # too rare to learn from
    reference.obs["labelled"] = labels

    rows = []
    for method in METHODS:
        start = time.perf_counter()
        model = sr.RefineAnnotator(reference, "labelled", rep_key="X_source", strategy=method).train(
            random_state=random_state
        )
        sr.tl.annotate(query, model, key_added=method)
        truth, predicted = query.obs["Cell_class"].astype(str), query.obs[method].astype(str)
        # predicted on the whole slice (its graph: a cell's neighbours are there, labelled or not), read where hidden
        held_out = model.predict(reference).idxmax(axis=1)[hidden]
        rows.append(
            {
                "method": method,
                "reference held-out macro-F1": f1_score(reference.obs["Cell_class"][hidden].astype(str), held_out, average="macro"),
                "query macro-F1": f1_score(truth, predicted, average="macro"),
                "query accuracy": accuracy_score(truth, predicted),
                "seconds": time.perf_counter() - start,
            }
        )
        if verbose:
            print(f"  {method:<16} done in {rows[-1]['seconds']:.1f} s", flush=True)
    table = pd.DataFrame(rows).set_index("method")
    table.to_csv(out_dir / "demo_results.csv")

    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    for ax, key, title in ((axes[0], "Cell_class", "query slice: true cell class"), (axes[1], "refine", "REFINE prediction")):
        codes = query.obs[key].astype("category")
        categories = sorted(set(query.obs["Cell_class"].astype(str)) | set(query.obs["refine"].astype(str)))
        colour = pd.Categorical(codes.astype(str), categories=categories).codes
        ax.scatter(*query.obsm["spatial"].T, c=colour, cmap="tab20", s=4, vmin=0, vmax=19)
        ax.set_title(title)
        ax.set_aspect("equal")
        ax.axis("off")
    table[["query macro-F1", "query accuracy"]].plot.bar(ax=axes[2], rot=30)
    axes[2].set_ylim(0, 1.12)  # room for the legend above the bars
    axes[2].legend(ncol=2, loc="upper left", frameon=False)
    axes[2].set_title(f"label transfer, {n_labelled} labelled reference cells")
    fig.tight_layout()
    fig.savefig(out_dir / "demo.png", dpi=120)
    plt.close(fig)
    return table
