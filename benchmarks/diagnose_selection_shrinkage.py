"""REFINE's ensemble selection shrunk to the single best fit unless the mixture is better by more than noise?

On the five new seeds of ``spatial_seed_replication.md`` the leads that keep their sign are a logistic regression
on the expression ahead of REFINE (MERFISH n = 1000 pca, osmFISH ``ClusterName`` n = 100-300 pca). That
regression is one of REFINE's fits, and where checked REFINE equals it when ensemble selection gives it all the
weight and falls below it when selection, on the validation fifth of the labels, mixes in other fits. This
diagnostic tries one rule against that: keep the mixture of greedy ensemble selection only if its per-cell
validation log-loss beats the best single fit's by more than ``K_SE`` paired standard errors, else predict
with that single fit. The rule wraps :meth:`RefineAnnotator._ensemble_weights` here; the package is unchanged.

It trains the default REFINE with the rule on seeds 5-9 (same labelled and test cells as the replication) and
compares, on those seeds, with the replication's default REFINE fits and with the best baseline chosen on
seeds 0-4 (``spatial_seed_replication.held_out_comparison``).

    python benchmarks/diagnose_selection_shrinkage.py --task osmfish-cluster --n 100 300 --seeds 5 6 7 8 9 --out part.csv
    python benchmarks/diagnose_selection_shrinkage.py --report part.csv ... \\
        --replication-runs replication-before.csv --committed-runs committed-before.csv
    # the committed report compared with the runs as they were before `refit=True` became the default:
    # git show 2105a27:benchmarks/results/spatial_seed_replication-runs.csv > replication-before.csv
    # git show 2105a27:benchmarks/results/spatial_annotation-runs.csv > committed-before.csv
    # -> benchmarks/results/diagnose_selection_shrinkage.{md,csv}
"""

from __future__ import annotations

import numpy as np
from spatial_seed_replication import variant_main

#: the mixture must beat the best single fit's validation log-loss by more than this many paired standard errors
K_SE = 1.0


def shrunk_weights(fits: dict, codes: np.ndarray, weights: dict[str, float], k_se: float = K_SE) -> dict[str, float]:
    """``weights`` (greedy ensemble selection) if the mixture's per-cell log-loss on the validation cells beats the
    best single fit's by more than ``k_se`` paired standard errors; else all the weight on that single fit."""
    rows = np.arange(len(codes))

    def cell_losses(proba):
        return -np.log(np.clip(proba[rows, codes], 1e-12, None))

    singles = {name: cell_losses(fit.val_proba) for name, fit in fits.items()}
    best = min(singles, key=lambda name: singles[name].mean())
    mixture = cell_losses(sum(w * fits[name].val_proba for name, w in weights.items() if w > 0))
    gain = singles[best] - mixture  # > 0: the mixture is better on that cell
    se = gain.std(ddof=1) / np.sqrt(len(gain)) if len(gain) > 1 else np.inf
    if gain.mean() > k_se * se:
        return weights
    return {name: float(name == best) for name in fits}


def main(argv: list[str] | None = None) -> None:
    def rule(annotator, fits, val_pos, weights):
        return shrunk_weights(fits, annotator.codes_[val_pos], weights)

    variant_main(argv, __doc__, "diagnose_selection_shrinkage", "refine_shrunk", rule,
                 "REFINE's ensemble selection shrunk to the single best fit unless the mixture is better",
                 "the mixture of greedy ensemble selection is kept only if its per-cell validation log-loss beats "
                 f"the best single fit's by more than {K_SE:g} paired standard error, else the single fit predicts "
                 "alone.")


if __name__ == "__main__":
    main()
